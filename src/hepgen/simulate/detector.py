"""A parametrised calorimeter in the spirit of Delphes' ATLAS card: particles → 64×64 (η, φ) images.

Delphes (de Favereau et al., arXiv:1307.6346) is not installable here, so hepgen carries a
small numpy re-implementation of the two ``SimpleCalorimeter`` modules of
``cards/delphes_card_ATLAS.tcl`` (github.com/delphes/delphes, read at commit 15772b7), on
the image grid of the whole-event GAN studies (Bhimji et al., arXiv:1711.03573; Farrell et
al., "Next Generation Generative Neural Networks for HEP", EPJ Web Conf. 214 (2019) 09005):

* **towers**: ``n_eta × n_phi`` = 64 × 64 pixels over ``|η| < 2.5`` and ``φ ∈ [−π, π)``
  (≈ 0.078 × 0.098, close to the ATLAS hadronic granularity 0.1 × 0.1 of the card's HCal);
  particles outside ``|η| < eta_max`` are not seen (the card's calorimeters reach 4.9, the
  images stop at the tracker acceptance as in the papers).
* **energy sharing** (card ``EnergyFraction``, ECAL / HCAL): e±, γ, π⁰ → 1 / 0; K⁰_S, Λ →
  0.3 / 0.7; ν (12, 14, 16), μ (13) and the neutralinos (1000022, 1000023, 1000025, 1000035,
  1000045) → 0 / 0 (not deposited); every other particle → 0 / 1.
* **resolutions** (card ``ResolutionFormula``; σ in GeV, E in GeV, evaluated at the pixel's
  centre |η|):

  - ECAL, ``|η| ≤ 3.2``: ``σ = sqrt(E²·0.0017² + E·0.101²)``;
  - HCAL, ``|η| ≤ 1.7``: ``σ = sqrt(E²·0.0302² + E·0.5205² + 1.59²)``;
    ``1.7 < |η| ≤ 3.2``: ``σ = sqrt(E²·0.0500² + E·0.706²)``.

  Each tower's ECAL and HCAL energies are smeared separately with a log-normal of mean E and
  standard deviation σ(E) (as Delphes ≥ 3.4 ``SimpleCalorimeter`` does).
* **thresholds** (card ``EnergyMin``, ``EnergySignificanceMin``): a smeared ECAL tower below
  0.5 GeV, an HCAL tower below 1.0 GeV, or either below 2 σ is dropped.
* **charged particles** that curl up before the calorimeter do not reach it: the card's
  ``ParticlePropagator`` (``Radius 1.15`` m, ``Bz 2.0`` T) gives ``pT_min = 0.3·B·R/2 =
  0.345`` GeV (applied when the charges are passed).  The φ bending of the tracks is not
  modelled (the towers take the particle's direction at the vertex).

The image holds the tower **energy** E in GeV (one channel, ECAL + HCAL, as in the paper) or
two channels (ECAL, HCAL).  Everything is numpy; the randomness comes from the
``numpy.random.Generator`` passed in.

Example:
    >>> import numpy as np
    >>> cal = Calorimeter(DetectorConfig(smear=False))
    >>> img = cal.images(np.array([211, 13]), np.array([100.0, 50.0]), np.array([0.0, 0.0]),
    ...                  np.array([0.0, 0.0]), np.array([100.0, 50.0]), np.array([0, 0]), n_events=1,
    ...                  rng=np.random.default_rng(0))
    >>> img.shape, float(img.sum())        # the muon leaves nothing
    ((1, 1, 64, 64), 100.0)
    >>> cal.pixel_of(np.array([0.01]), np.array([0.01]))
    (array([32]), array([32]))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "DELPHES_ATLAS",
    "Calorimeter",
    "DetectorConfig",
    "ecal_fraction",
    "ecal_resolution",
    "hcal_resolution",
    "overlay",
]

#: The numbers taken from Delphes' ``cards/delphes_card_ATLAS.tcl`` (see the module docstring).
DELPHES_ATLAS = {
    "source": "delphes/delphes cards/delphes_card_ATLAS.tcl (commit 15772b7)",
    "ecal_resolution": "|eta|<=3.2: sqrt(E^2*0.0017^2 + E*0.101^2)",
    "hcal_resolution": "|eta|<=1.7: sqrt(E^2*0.0302^2 + E*0.5205^2 + 1.59^2); 1.7<|eta|<=3.2: sqrt(E^2*0.0500^2 + E*0.706^2)",
    "ecal_energy_min": 0.5, "hcal_energy_min": 1.0, "energy_significance_min": 2.0,
    "propagator_radius_m": 1.15, "bz_tesla": 2.0,
}
_ECAL_ONLY = (11, 22, 111)
_SHARED = (310, 3122)  # K0S, Lambda: 0.3 ECAL, 0.7 HCAL
_INVISIBLE = (12, 13, 14, 16, 1000022, 1000023, 1000025, 1000035, 1000045)


@dataclass(frozen=True)
class DetectorConfig:
    """Settings of the parametrised calorimeter (GeV, radians).

    Arguments:
        n_eta, n_phi: pixels in η and φ.
        eta_max: the image covers ``−eta_max < η < eta_max``, ``−π ≤ φ < π``.
        channels: ``"total"`` (one channel, ECAL + HCAL) or ``"ecal_hcal"`` (two channels).
        smear: apply the card's energy resolutions (False: exact deposits, for tests).
        ecal_energy_min, hcal_energy_min, significance_min: tower thresholds (0: none).
        charged_pt_min: charged particles below this pT never reach the calorimeter.
    """

    n_eta: int = 64
    n_phi: int = 64
    eta_max: float = 2.5
    channels: str = "total"
    smear: bool = True
    ecal_energy_min: float = 0.5
    hcal_energy_min: float = 1.0
    significance_min: float = 2.0
    charged_pt_min: float = 0.3 * 2.0 * 1.15 / 2

    def __post_init__(self) -> None:
        if int(self.n_eta) < 1 or int(self.n_phi) < 1:
            raise ValueError(f"DetectorConfig: n_eta and n_phi must be >= 1, found {self.n_eta}, {self.n_phi}")
        if not float(self.eta_max) > 0:
            raise ValueError(f"DetectorConfig: eta_max must be > 0, found {self.eta_max}")
        if self.channels not in ("total", "ecal_hcal"):
            raise ValueError(f"DetectorConfig: key 'channels': expected 'total' or 'ecal_hcal', found {self.channels!r}")
        for k in ("ecal_energy_min", "hcal_energy_min", "significance_min", "charged_pt_min"):
            if float(getattr(self, k)) < 0:
                raise ValueError(f"DetectorConfig: {k} must be >= 0, found {getattr(self, k)}")

    @property
    def n_channels(self) -> int:
        return 1 if self.channels == "total" else 2

    def to_dict(self) -> dict:
        return asdict(self)


def ecal_fraction(pid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(f_ecal, f_hcal)`` per particle from the card's ``EnergyFraction`` lists (by |PDG id|).

    >>> ecal_fraction(np.array([22, -211, 310, 14]))
    (array([1. , 0. , 0.3, 0. ]), array([0. , 1. , 0.7, 0. ]))
    """
    a = np.abs(np.asarray(pid))
    fe = np.zeros(a.shape)
    fh = np.ones(a.shape)
    em = np.isin(a, _ECAL_ONLY)
    fe[em], fh[em] = 1.0, 0.0
    sh = np.isin(a, _SHARED)
    fe[sh], fh[sh] = 0.3, 0.7
    inv = np.isin(a, _INVISIBLE)
    fe[inv], fh[inv] = 0.0, 0.0
    return fe, fh


def ecal_resolution(energy: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """σ(E) of the ECAL in GeV (card formula; 0 outside ``|η| ≤ 3.2``, as the card's 3.2–4.9 band
    is outside every image).

    >>> round(float(ecal_resolution(np.array(100.0), np.array(0.0))), 4)  # sqrt(0.17² + 100·0.101²)
    1.0242
    """
    e, a = np.asarray(energy, float), np.abs(np.asarray(eta, float))
    return np.where(a <= 3.2, np.sqrt(e**2 * 0.0017**2 + e * 0.101**2), 0.0)


def hcal_resolution(energy: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """σ(E) of the HCAL in GeV (card formula, two bands below |η| = 3.2).

    >>> round(float(hcal_resolution(np.array(100.0), np.array(0.0))), 4)   # sqrt(3.02² + 100·0.5205² + 1.59²)
    6.2242
    >>> round(float(hcal_resolution(np.array(100.0), np.array(2.0))), 4)   # sqrt(5² + 100·0.706²)
    8.6512
    """
    e, a = np.asarray(energy, float), np.abs(np.asarray(eta, float))
    barrel = np.sqrt(e**2 * 0.0302**2 + e * 0.5205**2 + 1.59**2)
    endcap = np.sqrt(e**2 * 0.0500**2 + e * 0.706**2)
    return np.where(a <= 1.7, barrel, np.where(a <= 3.2, endcap, 0.0))


def _lognormal(rng: np.random.Generator, mean: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Log-normal draws with the given mean and standard deviation (0 where mean ≤ 0)."""
    out = np.zeros_like(mean)
    ok = mean > 0
    m, s = mean[ok], sigma[ok]
    s2 = np.log1p((s / m) ** 2)
    out[ok] = rng.lognormal(np.log(m) - 0.5 * s2, np.sqrt(s2))
    return out


class Calorimeter:
    """The parametrised calorimeter: deposits, smears and thresholds particles into images.

    Arguments:
        config: :class:`DetectorConfig`.
    """

    def __init__(self, config: DetectorConfig = DetectorConfig()) -> None:
        self.config = config
        self.eta_edges = np.linspace(-config.eta_max, config.eta_max, config.n_eta + 1)
        self.phi_edges = np.linspace(-np.pi, np.pi, config.n_phi + 1)
        self.eta_centers = 0.5 * (self.eta_edges[1:] + self.eta_edges[:-1])
        self.phi_centers = 0.5 * (self.phi_edges[1:] + self.phi_edges[:-1])

    def pixel_of(self, eta: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel indices ``(i_eta, i_phi)`` of directions (φ wrapped into [−π, π); η not checked)."""
        c = self.config
        phi = (np.asarray(phi, float) + np.pi) % (2 * np.pi) - np.pi
        i = np.floor((np.asarray(eta, float) + c.eta_max) / (2 * c.eta_max) * c.n_eta).astype(np.int64)
        j = np.floor((phi + np.pi) / (2 * np.pi) * c.n_phi).astype(np.int64)
        return np.clip(i, 0, c.n_eta - 1), np.clip(j, 0, c.n_phi - 1)

    def images(self, pid: np.ndarray, px: np.ndarray, py: np.ndarray, pz: np.ndarray, energy: np.ndarray,
               event: np.ndarray, n_events: int, rng: np.random.Generator,
               charged: np.ndarray | None = None) -> np.ndarray:
        """Calorimeter images of ``n_events`` events from their final-state particles.

        Arguments:
            pid: ``(P,)`` PDG ids; px, py, pz, energy: ``(P,)`` momenta in GeV.
            event: ``(P,)`` index (0 … n_events − 1) of each particle's event.
            n_events: number of images.
            rng: source of the resolution smearing.
            charged: ``(P,)`` bool, optional: charged particles below ``charged_pt_min`` are
                dropped (they do not reach the calorimeter).

        Returns:
            ``(n_events, C, n_eta, n_phi)`` float32, tower energies in GeV (C = 1 or 2).
        """
        c = self.config
        pid, px, py, pz, energy = (np.asarray(a) for a in (pid, px, py, pz, energy))
        event = np.asarray(event, np.int64)
        if not all(a.shape == pid.shape for a in (px, py, pz, energy, event)) or pid.ndim != 1:
            raise ValueError(f"Calorimeter.images: expected 1-d arrays of one length, found shapes "
                             f"{[a.shape for a in (pid, px, py, pz, energy, event)]}")
        if event.size and (event.min() < 0 or event.max() >= n_events):
            raise ValueError(f"Calorimeter.images: event indices must lie in 0 … {n_events - 1}, "
                             f"found {event.min()} … {event.max()}")
        pt = np.hypot(px, py)
        with np.errstate(divide="ignore", invalid="ignore"):
            eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pt, dtype=float), where=pt > 0))
        phi = np.arctan2(py, px)
        keep = (pt > 0) & (np.abs(eta) < c.eta_max)
        if charged is not None:
            keep &= ~(np.asarray(charged, bool) & (pt < c.charged_pt_min))
        fe, fh = ecal_fraction(pid)
        i, j = self.pixel_of(eta[keep], phi[keep])
        n_pix = c.n_eta * c.n_phi
        flat = event[keep] * n_pix + i * c.n_phi + j
        ecal = np.bincount(flat, weights=(fe * energy)[keep], minlength=n_events * n_pix).reshape(n_events, c.n_eta, c.n_phi)
        hcal = np.bincount(flat, weights=(fh * energy)[keep], minlength=n_events * n_pix).reshape(n_events, c.n_eta, c.n_phi)
        if c.smear:
            eta_pix = np.broadcast_to(self.eta_centers[None, :, None], ecal.shape)
            ecal, hcal = self._smear(ecal, eta_pix, rng, ecal_resolution, c.ecal_energy_min), \
                self._smear(hcal, eta_pix, rng, hcal_resolution, c.hcal_energy_min)
        out = (ecal + hcal)[:, None] if c.channels == "total" else np.stack([ecal, hcal], axis=1)
        return out.astype(np.float32)

    def _smear(self, towers, eta_pix, rng, resolution, energy_min):
        hit = towers > 0
        sigma = resolution(towers[hit], eta_pix[hit])
        smeared = np.zeros_like(towers)
        e = _lognormal(rng, towers[hit], sigma)
        sig_new = resolution(e, eta_pix[hit])
        ok = (e >= energy_min) & (e >= self.config.significance_min * sig_new)
        smeared[hit] = np.where(ok, e, 0.0)
        return smeared


def overlay(hard: np.ndarray, pileup: np.ndarray) -> np.ndarray:
    """Pile-up overlay of calorimeter images: the pixel-wise sum (energies add).

    Arguments:
        hard: ``(N, C, H, W)`` hard-scatter images; pileup: ``(N, C, H, W)`` or ``(C, H, W)``.

    >>> float(overlay(np.ones((2, 1, 2, 2)), np.full((1, 2, 2), 0.5))[0, 0, 0, 0])
    1.5
    """
    hard, pileup = np.asarray(hard), np.asarray(pileup)
    if pileup.shape != hard.shape and pileup.shape != hard.shape[1:]:
        raise ValueError(f"overlay: pile-up images of shape {pileup.shape} do not fit hard-scatter images "
                         f"of shape {hard.shape}")
    return (hard + pileup).astype(np.result_type(hard, pileup))
