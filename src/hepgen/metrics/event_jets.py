"""Jets reconstructed on calorimeter images, their observables, and the paper's selection score.

Every non-empty pixel of an event image is a massless pseudo-jet at the pixel centre
(η_c, φ_c) with energy E (GeV): ``pT = E / cosh η_c``.  The pseudo-jets are clustered with
anti-kT, R = 1.0 (FastJet, E-scheme) and jets with ``pT > 200 GeV`` are kept — the large-R
"fat" jets of the RPV-SUSY whole-event studies (Bhimji et al., arXiv:1711.03573; Farrell
et al., EPJ Web Conf. 214 (2019) 09005).

Observables per event (:func:`event_observables`): jet multiplicity, leading-jet pT and mass
(NaN without a jet), summed jet mass Σ m_J, HT = Σ pT_J; per image: the pixel-intensity
spectrum (non-empty pixels) and the sparsity (fraction of empty pixels).

:func:`ks_selection_score` is the paper's epoch-selection objective: Σ −log p of the
two-sample Kolmogorov–Smirnov tests on jet multiplicity, jet pT (all jets) and summed jet
mass between generated and real validation events (0 for identical samples).

References: anti-kT, Cacciari, Salam, Soyez, arXiv:0802.1189; FastJet, arXiv:1111.6097.

Example:
    >>> import numpy as np
    >>> img = np.zeros((1, 1, 64, 64), np.float32); img[0, 0, 32, 10] = 500.0   # η ≈ 0.04
    >>> jets = image_jets(img)
    >>> jets.n.tolist(), round(float(jets.pt[0, 0]), 1)
    ([1], 499.6)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from hepgen._extras import require_extra
from hepgen._fastjet import quiet_fastjet

try:  # the optional extra hepgen[jets]: the module imports without it, clustering raises MissingExtraError
    import awkward as ak
    import fastjet
except ImportError:
    ak = fastjet = None

__all__ = [
    "OBSERVABLES",
    "PILEUP_SELECTION_OBSERVABLES",
    "SELECTION_OBSERVABLES",
    "EventJets",
    "cluster_particles",
    "event_observables",
    "image_jets",
    "ks_selection_score",
    "pixel_centers",
]

#: per-event observables of :func:`event_observables`
OBSERVABLES = ("n_jets", "leading_pt", "leading_mass", "summed_mass", "ht")
#: the three distributions of the paper's KS selection score
SELECTION_OBSERVABLES = ("n_jets", "jet_pt", "summed_mass")
#: added for pile-up images, which rarely hold a 200 GeV jet (the jet terms are then all 0)
PILEUP_SELECTION_OBSERVABLES = ("total_energy", "sparsity")


@dataclass
class EventJets:
    """Jets of N events, zero-padded to the largest multiplicity J, ordered by decreasing pT.

    Attributes:
        pt, eta, phi, mass: ``(N, J)`` float64 (GeV, —, rad, GeV); padding has pt = 0.
        n: ``(N,)`` int jet multiplicity.
    """

    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    mass: np.ndarray
    n: np.ndarray

    def all_pt(self) -> np.ndarray:
        """pT of every jet of every event, flattened."""
        return self.pt[self.pt > 0]


def pixel_centers(n_eta: int, n_phi: int, eta_max: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the pixel rows (η over ``±eta_max``) and columns (φ over [−π, π))."""
    e = np.linspace(-eta_max, eta_max, n_eta + 1)
    p = np.linspace(-np.pi, np.pi, n_phi + 1)
    return 0.5 * (e[1:] + e[:-1]), 0.5 * (p[1:] + p[:-1])


def _cluster(px, py, pz, e, counts, radius, pt_min) -> EventJets:
    if ak is None or fastjet is None:
        require_extra("jets", "jet clustering of event images (FastJet)")
    quiet_fastjet()
    n_ev = len(counts)
    if n_ev == 0:
        z = np.zeros((0, 0))
        return EventJets(z, z, z, z, np.zeros(0, np.int64))
    arr = ak.unflatten(ak.zip({"px": px, "py": py, "pz": pz, "E": e}), counts)
    seq = fastjet.ClusterSequence(arr, fastjet.JetDefinition(fastjet.antikt_algorithm, float(radius)))
    jets = seq.inclusive_jets(min_pt=float(pt_min))
    n = ak.to_numpy(ak.num(jets)).astype(np.int64)
    jpx, jpy, jpz, je = (ak.to_numpy(ak.flatten(getattr(jets, c))).astype(np.float64) for c in ("px", "py", "pz", "E"))
    jpt = np.hypot(jpx, jpy)
    keep = jpt > pt_min  # inclusive_jets keeps pT >= pt_min; the cut is strict
    with np.errstate(divide="ignore", invalid="ignore"):
        jeta = np.arcsinh(np.divide(jpz, jpt, out=np.zeros_like(jpt), where=jpt > 0))
    jphi = np.arctan2(jpy, jpx)
    jm = np.sqrt(np.maximum(je**2 - jpx**2 - jpy**2 - jpz**2, 0.0))
    ev = np.repeat(np.arange(n_ev), n)[keep]
    jpt, jeta, jphi, jm = jpt[keep], jeta[keep], jphi[keep], jm[keep]
    n = np.bincount(ev, minlength=n_ev)
    width = int(n.max()) if n.size else 0
    out = {k: np.zeros((n_ev, width)) for k in ("pt", "eta", "phi", "mass")}
    order = np.lexsort((-jpt, ev))
    ev, jpt, jeta, jphi, jm = ev[order], jpt[order], jeta[order], jphi[order], jm[order]
    slot = np.arange(ev.size) - np.concatenate([[0], np.cumsum(n)])[ev]
    for k, v in zip(("pt", "eta", "phi", "mass"), (jpt, jeta, jphi, jm)):
        out[k][ev, slot] = v
    return EventJets(out["pt"], out["eta"], out["phi"], out["mass"], n)


def image_jets(images: np.ndarray, eta_max: float = 2.5, radius: float = 1.0, pt_min: float = 200.0) -> EventJets:
    """Anti-kT jets on event images (pixels as massless pseudo-jets at their centres).

    Arguments:
        images: ``(N, C, H, W)`` or ``(N, H, W)`` energies in GeV (channels are summed).
        eta_max: the rows span ``−eta_max … eta_max``.
        radius: anti-kT R.  pt_min: keep jets with pT > pt_min (GeV).

    Returns:
        :class:`EventJets`.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 4:
        images = images.sum(axis=1)
    if images.ndim != 3:
        raise ValueError(f"image_jets: expected images of shape (N, C, H, W) or (N, H, W), found {images.shape}")
    n_ev, h, w = images.shape
    eta_c, phi_c = pixel_centers(h, w, eta_max)
    ev, i, j = np.nonzero(images > 0)
    e = images[ev, i, j]
    eta, phi = eta_c[i], phi_c[j]
    pt = e / np.cosh(eta)
    counts = np.bincount(ev, minlength=n_ev)
    return _cluster(pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), e, counts, radius, pt_min)


def cluster_particles(px, py, pz, e, event, n_events: int, radius: float = 1.0, pt_min: float = 200.0) -> EventJets:
    """Anti-kT jets of particles (GeV) grouped by ``event`` (0 … n_events − 1, sorted or not)."""
    event = np.asarray(event, np.int64)
    order = np.argsort(event, kind="stable")
    counts = np.bincount(event, minlength=n_events)
    return _cluster(*(np.asarray(a, np.float64)[order] for a in (px, py, pz, e)), counts, radius, pt_min)


def event_observables(images: np.ndarray, eta_max: float = 2.5, radius: float = 1.0,
                      pt_min: float = 200.0, jets: EventJets | None = None) -> dict[str, np.ndarray]:
    """Jet and image observables of event images (see the module docstring).

    Returns:
        dict with ``n_jets``, ``leading_pt``, ``leading_mass`` (NaN without a jet),
        ``summed_mass``, ``ht`` — ``(N,)`` each; ``jet_pt`` (all jets, flat); ``pixel_energy``
        (non-empty pixels, flat, GeV); ``sparsity`` ``(N,)`` (fraction of empty pixels);
        ``total_energy`` ``(N,)`` (GeV, sum over the image).
    """
    images = np.asarray(images)
    jets = image_jets(images, eta_max, radius, pt_min) if jets is None else jets
    tot = images.sum(axis=1) if images.ndim == 4 else images
    has = jets.n > 0
    lead_pt = np.where(has, jets.pt[:, 0] if jets.pt.shape[1] else 0.0, np.nan)
    lead_m = np.where(has, jets.mass[:, 0] if jets.mass.shape[1] else 0.0, np.nan)
    flat = tot.reshape(len(tot), -1)
    return {
        "n_jets": jets.n.astype(np.float64),
        "leading_pt": lead_pt,
        "leading_mass": lead_m,
        "summed_mass": jets.mass.sum(axis=1) if jets.mass.size else np.zeros(len(tot)),
        "ht": jets.pt.sum(axis=1) if jets.pt.size else np.zeros(len(tot)),
        "jet_pt": jets.all_pt(),
        "pixel_energy": flat[flat > 0].astype(np.float64),
        "total_energy": flat.sum(axis=1).astype(np.float64),
        "sparsity": (flat <= 0).mean(axis=1) if flat.shape[1] else np.zeros(len(tot)),
    }


def ks_selection_score(real: dict[str, np.ndarray], fake: dict[str, np.ndarray],
                       keys=SELECTION_OBSERVABLES) -> float:
    """Σ −log p of two-sample KS tests (scipy) on ``keys`` of two :func:`event_observables` dicts.

    Lower is better, 0 for identical samples.  A key with no entries on one side (e.g. no
    jets at all) contributes −log(1e−300) ≈ 690.8 unless both sides are empty (0).

    >>> a = {"n_jets": np.array([1., 2, 3]), "jet_pt": np.array([300., 400]), "summed_mass": np.array([50., 60, 70])}
    >>> ks_selection_score(a, a)
    0.0
    """
    total = 0.0
    for k in keys:
        x, y = np.asarray(real[k], float), np.asarray(fake[k], float)
        x, y = x[np.isfinite(x)], y[np.isfinite(y)]
        if x.size == 0 and y.size == 0:
            continue
        if x.size == 0 or y.size == 0:
            total += -np.log(1e-300)
            continue
        p = float(stats.ks_2samp(x, y).pvalue)
        total += -np.log(max(p, 1e-300))
    return float(total) + 0.0
