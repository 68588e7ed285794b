"""GFlash-based electromagnetic shower simulator for a sampling calorimeter.

This is hepgen's **reference simulator for demos and tests; real users bring
Geant4/CaloChallenge files**.  It makes realistic-looking e±/γ showers in seconds, on any
:mod:`hepgen.data.geometry` binning, so that the whole train → sample → evaluate chain can
run without an external detector simulation.  It is a parametrised simulation, not a
replacement for Geant4.

The physics is the GFlash parametrisation of Grindhammer and Peters, with the constants
of its Geant4 implementation (``GVFlashHomoShowerTuning``, ``GFlashSamplingShowerTuning``,
``GFlashSamplingShowerParameterisation``).  With ``y = E/E_c``, ``ln`` natural, ``E`` in
MeV unless marked GeV, and effective ``X0``, ``R_M``, ``E_c``, ``Z`` of the sampling
structure (see :class:`SamplingCalorimeter`):

**Longitudinal profile** (per shower): ``dE/dt ∝ (βt)^(α-1) e^(-βt)``, ``t`` in X0,
with ``T = (α-1)/β`` (depth of the maximum) and ``(ln T, ln α)`` drawn from a
correlated two-dimensional Gaussian (the "fluctuated" GFlash parametrisation)::

    ⟨ln T_hom⟩ = ln(ln y − 0.812)
    ⟨ln α_hom⟩ = ln(0.81 + (0.458 + 2.26/Z) ln y)
    ⟨ln T⟩     = ln(exp⟨ln T_hom⟩ − 0.55/F_S − 0.69 (1 − ê))      (sampling calorimeter)
    ⟨ln α⟩     = ln(exp⟨ln α_hom⟩ − 0.476/F_S)
    σ(ln T)    = (−2.5 + 1.25 ln y)^-1,   σ(ln α) = (−0.82 + 0.79 ln y)^-1   (≤ 0.5)
    ρ(ln T, ln α) = 0.784 − 0.023 ln y
    T ≥ 1,  α ≥ 1.1,  β = (α − 1)/T

(The mean profile of the paper, ``T = ln y − 0.858``, ``α = 0.21 + (0.492 + 2.38/Z) ln y``,
describes the *average* shower; the set above describes individual showers and is what a
shower-by-shower simulation samples.)

**Radial profile** at depth ``τ = t/T · (α−1)/α · ⟨α⟩/(⟨α⟩−1)`` (≈ t/T), ``r`` in Molière
radii::

    f(r) = p 2r R_C²/(r² + R_C²)² + (1 − p) 2r R_T²/(r² + R_T²)²
    R_C = z1 + z2 τ,                z1 = 0.0251 + 0.00319 ln(E/GeV),  z2 = 0.1162 − 0.000381 Z
    R_T = k1 (e^{k3(τ−k2)} + e^{k4(τ−k2)}),
          k1 = 0.659 − 0.00309 Z, k2 = 0.645, k3 = −2.59, k4 = 0.3585 + 0.0412 ln(E/GeV)
    p   = p1 exp((p2 − τ)/p3 − exp((p2 − τ)/p3)),
          p1 = 2.632 − 0.00094 Z, p2 = 0.401 + 0.00187 Z, p3 = 1.313 − 0.0686 ln(E/GeV)
    sampling:  R_C += −0.0203 (1 − ê) + 0.0397/F_S e^{−τ}
               R_T += −0.14 (1 − ê) − 0.495/F_S e^{−τ}
               p   += (1 − ê)(0.348 − 0.642/F_S e^{−(τ−1)²})

Radii are drawn by inverse CDF, ``r = R sqrt(u/(1 − u))``, azimuth uniformly.

**Energy spots**: each shower's energy is split into ``N = 93 ln(Z) (E/GeV)^0.876`` spots of
equal energy (GFlash's homogeneous spot count), capped at ``max_spots`` for speed.  Spot
depths follow the shower's own Gamma profile (GFlash uses a slightly different Gamma
profile for the spot *number* than for the energy; here spots carry equal energy, so both
coincide).  Spots behind the last layer or outside the binning are lost (leakage).

**Sampling fluctuations**: the visible energy of a voxel holding deposited energy ``e`` is
``f_samp · s · Gamma(e/s)`` with ``s = a² · 1 GeV`` — GFlash's ``ApplySampling`` Gamma
smearing applied voxel by voxel.  Sums of Gamma variables with a common scale are Gamma,
so the total visible energy fluctuates exactly as ``σ/E = a/sqrt(E_dep/GeV)`` whatever the
binning or the spot count; the spot cap only adds spatial (voxel-to-voxel) noise.

**Geometry**: the shower axis enters at ``impact_position`` (x, y) on the front face and is
tilted by ``θ`` in the x–z plane; a spot at depth ``s`` along the axis with transverse
offsets ``(u, v)`` sits at ``z = s cos θ − u sin θ``, ``x = x0 + s sin θ + u cos θ``,
``y = y0 + v`` (so the axis moves as ``x = x0 + z tan θ``).  Layers are consecutive slabs in
``z`` of ``layer_thickness_x0`` effective radiation lengths.

References:
    G. Grindhammer, S. Peters, "The Parameterized Simulation of Electromagnetic Showers in
    Homogeneous and Sampling Calorimeters", hep-ex/0001020 (1993/2000).
    G. Grindhammer, M. Rudowicz, S. Peters, "The fast simulation of electromagnetic and
    hadronic showers", Nucl. Instrum. Meth. A 290 (1990) 469.
    Geant4 GFlash (``parameterisations/gflash``), constants of ``GFlashSamplingShowerTuning``.
    Particle Data Group, "Passage of particles through matter" (material constants,
    mixture rules for X0 and the Molière radius).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from hepgen.data.formats import ShowerData
from hepgen.data.geometry import default_binning

if TYPE_CHECKING:  # pragma: no cover
    from hepgen.data.formats import ShowerData
    from hepgen.data.geometry import Geometry

__all__ = [
    "LEAD",
    "POLYSTYRENE",
    "Material",
    "SamplingCalorimeter",
    "ShowerSimulator",
    "default_calorimeter",
    "simulate_dataset",
]

SeedLike = int | np.random.Generator | None

_GEV = 1000.0  # MeV
_MAX_BATCH_CELLS = 20_000_000


@dataclass(frozen=True)
class Material:
    """A calorimeter material.

    Arguments:
        name: label.
        X0_mm: radiation length in mm.
        moliere_radius_mm: Molière radius in mm.
        critical_energy_MeV: critical energy (electrons, Rossi definition as in the PDG tables).
        Z: (effective) atomic number; for compounds the mass-weighted mean, as in GFlash.
        density: g/cm³ (needed to mix materials by mass and for the MIP sampling fraction).
        mip_dedx: minimum-ionisation stopping power in MeV cm²/g (for the MIP sampling fraction).
    """

    name: str
    X0_mm: float
    moliere_radius_mm: float
    critical_energy_MeV: float
    Z: float
    density: float | None = None
    mip_dedx: float | None = None

    def __post_init__(self) -> None:
        for attr in ("X0_mm", "moliere_radius_mm", "critical_energy_MeV", "Z"):
            v = getattr(self, attr)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"Material {self.name!r}: {attr} must be a positive number, found {v!r}")


#: Lead (PDG: X0 = 0.5612 cm, R_M = 1.602 cm, E_c = 7.43 MeV, dE/dx_min = 1.122 MeV cm²/g).
LEAD = Material("lead", X0_mm=5.612, moliere_radius_mm=16.02, critical_energy_MeV=7.43,
                Z=82.0, density=11.35, mip_dedx=1.122)
#: Polystyrene scintillator (PDG: X0 = 41.31 cm, E_c = 93.11 MeV, dE/dx_min = 2.052 MeV cm²/g;
#: R_M = 21.2 MeV · X0 / E_c; Z = mass-weighted 0.923·6 + 0.077·1).
POLYSTYRENE = Material("polystyrene scintillator", X0_mm=413.1, moliere_radius_mm=94.08,
                       critical_energy_MeV=93.11, Z=5.61, density=1.06, mip_dedx=2.052)


@dataclass(frozen=True)
class SamplingCalorimeter:
    """A sampling calorimeter: alternating absorber and active layers, read out in depth slabs.

    Effective material constants follow the PDG mixture rules used by GFlash: with volume
    fractions ``v_i`` and mass fractions ``w_i`` of one absorber + active period,
    ``1/X0 = Σ v_i/X0_i``, ``1/R_M = Σ v_i/R_M,i``, ``E_c = X0 Σ v_i E_c,i/X0_i`` and
    ``Z = Σ w_i Z_i``.  GFlash's sampling corrections use the sampling frequency
    ``F_S = X0/(d_abs + d_act)`` and ``ê = 1/(1 + 0.007 (Z_abs − Z_act))`` (e/mip ratio).

    Arguments:
        absorber: passive material (default lead).
        active: active material (default polystyrene scintillator).
        sampling_fraction: visible / deposited energy for electrons.  ``None`` (default)
            computes it as ``ê · f_mip`` from the layer thicknesses, with ``f_mip`` the
            fraction of a minimum-ionising particle's energy loss that falls in the active
            layers (≈ 0.166 for 2 mm Pb / 4 mm scintillator).
        sampling_term: stochastic term ``a`` of ``σ/E = a/sqrt(E/GeV)`` of the visible energy.
        total_depth_x0: depth of the calorimeter in effective radiation lengths.
        layer_thickness_x0: thickness (effective X0) of each read-out layer of the geometry,
            front to back; their sum must not exceed ``total_depth_x0`` (any remainder is
            passive material behind the last layer).  Default: ``total_depth_x0 / n_layers``
            each.
        absorber_thickness_mm, active_thickness_mm: thicknesses of one sampling period.

    Example:
        >>> cal = SamplingCalorimeter(sampling_term=0.08, total_depth_x0=30.0)
        >>> round(cal.X0_mm, 1), round(cal.moliere_radius_mm, 1)
        (16.4, 35.9)
    """

    absorber: Material = LEAD
    active: Material = POLYSTYRENE
    sampling_fraction: float | None = None
    sampling_term: float = 0.10
    total_depth_x0: float = 24.0
    layer_thickness_x0: tuple[float, ...] | None = None
    absorber_thickness_mm: float = 2.0
    active_thickness_mm: float = 4.0
    #: zero suppression of the cell read-out (MeV): deposits below it are recorded as 0.
    #: GFlash spreads a shower's energy over spots of equal energy, so without a threshold
    #: its cells carry deposits down to 1e-23 MeV (≈ 8 cells per shower below 10 keV on the
    #: demo binning), which no calorimeter reads out and no generator needs to learn.
    readout_threshold_mev: float = 0.01
    _derived: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.absorber_thickness_mm) and self.absorber_thickness_mm >= 0):
            raise ValueError(f"absorber_thickness_mm must be >= 0, found {self.absorber_thickness_mm!r}")
        if not (np.isfinite(self.active_thickness_mm) and self.active_thickness_mm > 0):
            raise ValueError(f"active_thickness_mm must be > 0, found {self.active_thickness_mm!r}")
        if not (np.isfinite(self.sampling_term) and self.sampling_term >= 0):
            raise ValueError(f"sampling_term must be >= 0, found {self.sampling_term!r}")
        if not (np.isfinite(self.total_depth_x0) and self.total_depth_x0 > 0):
            raise ValueError(f"total_depth_x0 must be > 0, found {self.total_depth_x0!r}")
        if not (np.isfinite(self.readout_threshold_mev) and self.readout_threshold_mev >= 0):
            raise ValueError(f"readout_threshold_mev must be >= 0 MeV, found {self.readout_threshold_mev!r}")
        if self.layer_thickness_x0 is not None:
            lt = tuple(float(x) for x in self.layer_thickness_x0)
            if not lt or any(not (np.isfinite(x) and x > 0) for x in lt):
                raise ValueError(f"layer_thickness_x0 must be positive numbers, found {self.layer_thickness_x0!r}")
            if sum(lt) > self.total_depth_x0 * (1 + 1e-9):
                raise ValueError(
                    f"layer_thickness_x0 sums to {sum(lt):g} X0, more than total_depth_x0={self.total_depth_x0:g}"
                )
            object.__setattr__(self, "layer_thickness_x0", lt)

        d_p, d_a = float(self.absorber_thickness_mm), float(self.active_thickness_mm)
        p, a = self.absorber, self.active
        v_p, v_a = d_p / (d_p + d_a), d_a / (d_p + d_a)
        x0 = 1.0 / (v_p / p.X0_mm + v_a / a.X0_mm)
        rm = 1.0 / (v_p / p.moliere_radius_mm + v_a / a.moliere_radius_mm)
        ec = x0 * (v_p * p.critical_energy_MeV / p.X0_mm + v_a * a.critical_energy_MeV / a.X0_mm)
        if p.density is not None and a.density is not None:
            m_p, m_a = d_p * p.density, d_a * a.density
            z = (m_p * p.Z + m_a * a.Z) / (m_p + m_a)
        else:
            z = v_p * p.Z + v_a * a.Z
        e_hat = 1.0 / (1.0 + 0.007 * (p.Z - a.Z))
        f_s = x0 / (d_p + d_a)
        self._derived.update(X0_mm=x0, moliere_radius_mm=rm, critical_energy_MeV=ec, Z_eff=z,
                             e_hat=e_hat, sampling_frequency=f_s)

        if self.sampling_fraction is None:
            if None in (p.density, a.density, p.mip_dedx, a.mip_dedx):
                raise ValueError(
                    "sampling_fraction=None needs density and mip_dedx of both materials; "
                    "give sampling_fraction explicitly"
                )
            loss_a = d_a * a.density * a.mip_dedx
            loss_p = d_p * p.density * p.mip_dedx
            object.__setattr__(self, "sampling_fraction", float(e_hat * loss_a / (loss_a + loss_p)))
        sf = self.sampling_fraction
        if not (np.isfinite(sf) and 0 < sf <= 1):
            raise ValueError(f"sampling_fraction must be in (0, 1], found {sf!r}")
        object.__setattr__(self, "sampling_fraction", float(sf))

    # --- effective quantities used by GFlash -----------------------------------------------
    @property
    def X0_mm(self) -> float:
        """Effective radiation length (mm) of the absorber + active structure."""
        return self._derived["X0_mm"]

    @property
    def moliere_radius_mm(self) -> float:
        """Effective Molière radius (mm)."""
        return self._derived["moliere_radius_mm"]

    @property
    def critical_energy_MeV(self) -> float:
        """Effective critical energy (MeV)."""
        return self._derived["critical_energy_MeV"]

    @property
    def Z_eff(self) -> float:
        """Mass-weighted effective atomic number."""
        return self._derived["Z_eff"]

    @property
    def e_hat(self) -> float:
        """GFlash e/mip ratio ``ê = 1/(1 + 0.007 (Z_abs − Z_act))``."""
        return self._derived["e_hat"]

    @property
    def sampling_frequency(self) -> float:
        """GFlash ``F_S = X0_eff / (d_abs + d_act)``: sampling periods per radiation length."""
        return self._derived["sampling_frequency"]

    def layer_boundaries_x0(self, n_layers: int) -> np.ndarray:
        """(n_layers + 1,) depths (effective X0) of the read-out layer boundaries."""
        if self.layer_thickness_x0 is None:
            return np.linspace(0.0, self.total_depth_x0, n_layers + 1)
        if len(self.layer_thickness_x0) != n_layers:
            raise ValueError(
                f"layer_thickness_x0 has {len(self.layer_thickness_x0)} entries but the geometry "
                f"has {n_layers} active layers"
            )
        return np.concatenate([[0.0], np.cumsum(self.layer_thickness_x0)])


def default_calorimeter() -> SamplingCalorimeter:
    """The built-in calorimeter: 2 mm lead / 4 mm scintillator, 24 X0 deep, a = 10 %.

    Effective X0 ≈ 16.4 mm, R_M ≈ 35.9 mm, E_c ≈ 9.7 MeV, Z ≈ 70, sampling fraction ≈ 0.166.
    """
    return SamplingCalorimeter()


class ShowerSimulator:
    """GFlash-based e±/γ shower simulator: reference simulator for demos and tests.

    Real users bring Geant4/CaloChallenge files; this class makes statistically sensible
    showers (GFlash longitudinal and radial profiles, their shower-to-shower fluctuations,
    sampling fluctuations, leakage) on any geometry of :mod:`hepgen.data.geometry`, fast
    enough for demos and unit tests.  See the module docstring for every formula used.

    Arguments:
        geometry: a ``CylindricalBinning`` or ``CartesianGrid``; its active layers are the
            read-out slabs of the calorimeter, front to back.
        calorimeter: materials, sampling and depth (default :func:`default_calorimeter`).
        max_spots: cap on the number of equal-energy spots per shower (GFlash's count
            ``93 ln(Z) (E/GeV)^0.876`` exceeds it above a few GeV).  It changes voxel-level
            spatial noise only, never the total-energy resolution.
        min_spots: floor on the spot count for very low energies.

    Example:
        >>> from hepgen.data.geometry import default_binning
        >>> sim = ShowerSimulator(default_binning())
        >>> showers = sim.simulate(np.array([1e4, 5e4]), seed=1)   # (2, 384) float32 MeV

    References:
        G. Grindhammer, S. Peters, hep-ex/0001020; G. Grindhammer, M. Rudowicz, S. Peters,
        Nucl. Instrum. Meth. A 290 (1990) 469.
    """

    def __init__(self, geometry: Geometry, calorimeter: SamplingCalorimeter | None = None,
                 max_spots: int = 2000, min_spots: int = 20) -> None:
        if not hasattr(geometry, "voxel_index") or not hasattr(geometry, "n_layers"):
            raise ValueError(f"geometry must be a hepgen geometry (CylindricalBinning/CartesianGrid), found {type(geometry).__name__}")
        if int(max_spots) < 1 or int(min_spots) < 1 or int(min_spots) > int(max_spots):
            raise ValueError(f"need 1 <= min_spots <= max_spots, found min_spots={min_spots}, max_spots={max_spots}")
        self.geometry = geometry
        self.calorimeter = calorimeter if calorimeter is not None else default_calorimeter()
        self.max_spots = int(max_spots)
        self.min_spots = int(min_spots)
        self.n_voxels = int(geometry.n_voxels)
        self.n_layers = int(geometry.n_layers)
        self._layer_edges_mm = self.calorimeter.layer_boundaries_x0(self.n_layers) * self.calorimeter.X0_mm

    # --- parametrisation ----------------------------------------------------------------------
    def longitudinal_means(self, energies_mev: np.ndarray) -> dict[str, np.ndarray]:
        """GFlash means, spreads and correlation of ``(ln T, ln α)`` at each energy (sampling calorimeter).

        Returns a dict of arrays: ``mean_log_T``, ``mean_log_alpha``, ``sigma_log_T``,
        ``sigma_log_alpha``, ``rho``, ``ln_y``.
        """
        cal = self.calorimeter
        e = np.asarray(energies_mev, dtype=float)
        ln_y = np.log(e / cal.critical_energy_MeV)
        z, fs, eh = cal.Z_eff, cal.sampling_frequency, cal.e_hat
        t_hom = np.maximum(ln_y - 0.812, 0.1)
        a_hom = np.maximum(0.81 + (0.458 + 2.26 / z) * ln_y, 0.1)
        t_sam = np.maximum(t_hom - 0.55 / fs - 0.69 * (1.0 - eh), 1.0)
        a_sam = np.maximum(a_hom - 0.476 / fs, 1.1)
        return {
            "ln_y": ln_y,
            "mean_log_T": np.log(t_sam),
            "mean_log_alpha": np.log(a_sam),
            "sigma_log_T": 1.0 / np.maximum(-2.5 + 1.25 * ln_y, 2.0),
            "sigma_log_alpha": 1.0 / np.maximum(-0.82 + 0.79 * ln_y, 2.0),
            "rho": np.clip(0.784 - 0.023 * ln_y, -1.0, 1.0),
        }

    def shower_profile_params(self, energies_mev: np.ndarray, seed: SeedLike = 0) -> dict[str, np.ndarray]:
        """Draw the per-shower longitudinal parameters, exactly as :meth:`simulate` does first.

        Returns a dict of ``(N,)`` arrays: ``T_max`` (X0), ``alpha``, ``beta`` (1/X0),
        ``mean_depth`` = α/β (X0), and ``mean_alpha`` = exp⟨ln α⟩ (used for τ).
        """
        e = _check_energies(energies_mev)
        return self._draw_longitudinal(e, _rng(seed))

    def _draw_longitudinal(self, e: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        m = self.longitudinal_means(e)
        z1 = rng.standard_normal(e.shape)
        z2 = rng.standard_normal(e.shape)
        c1 = np.sqrt((1.0 + m["rho"]) / 2.0)
        c2 = np.sqrt((1.0 - m["rho"]) / 2.0)
        t_max = np.maximum(np.exp(m["mean_log_T"] + m["sigma_log_T"] * (c1 * z1 + c2 * z2)), 1.0)
        alpha = np.maximum(np.exp(m["mean_log_alpha"] + m["sigma_log_alpha"] * (c1 * z1 - c2 * z2)), 1.1)
        beta = (alpha - 1.0) / t_max
        return {"T_max": t_max, "alpha": alpha, "beta": beta, "mean_depth": alpha / beta,
                "mean_alpha": np.exp(m["mean_log_alpha"])}

    def radial_profile_params(self, energies_mev: np.ndarray, tau: np.ndarray) -> dict[str, np.ndarray]:
        """GFlash radial parameters (sampling calorimeter) at relative depth ``τ`` ≈ t/T.

        Arguments (broadcast together): ``energies_mev``, ``tau``.  Returns ``R_C``, ``R_T``
        (Molière radii) and ``p`` (core weight, clipped to [0, 1]).
        """
        cal = self.calorimeter
        ln_e = np.log(np.asarray(energies_mev, dtype=float) / _GEV)
        tau = np.asarray(tau, dtype=float)
        z, fs, eh = cal.Z_eff, cal.sampling_frequency, cal.e_hat
        exp_tau = np.exp(-tau)
        r_c = (0.0251 + 0.00319 * ln_e) + (0.1162 - 0.000381 * z) * tau
        r_c = r_c - 0.0203 * (1.0 - eh) + 0.0397 / fs * exp_tau
        k1, k2, k3 = 0.659 - 0.00309 * z, 0.645, -2.59
        k4 = 0.3585 + 0.0412 * ln_e
        r_t = k1 * (np.exp(k3 * (tau - k2)) + np.exp(k4 * (tau - k2)))
        r_t = r_t - 0.14 * (1.0 - eh) - 0.495 / fs * exp_tau
        p1, p2 = 2.632 - 0.00094 * z, 0.401 + 0.00187 * z
        p3 = 1.313 - 0.0686 * ln_e
        arg = (p2 - tau) / p3
        p = p1 * np.exp(arg - np.exp(arg)) + (1.0 - eh) * (0.348 - 0.642 / fs * np.exp(-((tau - 1.0) ** 2)))
        return {"R_C": np.maximum(r_c, 1e-3), "R_T": np.maximum(r_t, 1e-3), "p": np.clip(p, 0.0, 1.0)}

    def n_spots(self, energies_mev: np.ndarray) -> np.ndarray:
        """Spots per shower: GFlash ``93 ln(Z) (E/GeV)^0.876``, clipped to [min_spots, max_spots]."""
        e = np.asarray(energies_mev, dtype=float)
        n = 93.0 * math.log(self.calorimeter.Z_eff) * (e / _GEV) ** 0.876
        return np.clip(np.ceil(n), self.min_spots, self.max_spots).astype(np.int64)

    # --- simulation -----------------------------------------------------------------------------
    def simulate(
        self,
        energies_mev: np.ndarray,
        theta: np.ndarray | None = None,
        impact_position: np.ndarray | None = None,
        seed: SeedLike = 0,
        progress: bool = False,
        batch_size: int = 1000,
    ) -> np.ndarray:
        """Simulate showers of the given incident energies.

        Arguments:
            energies_mev: ``(N,)`` or ``(N, 1)`` incident energies in MeV, > 0.
            theta: optional ``(N,)``/``(N, 1)`` incident angles (rad, |θ| < π/2), tilt in x–z.
            impact_position: optional ``(N, 2)`` impact point (x, y) in mm on the front face.
            seed: int or ``numpy.random.Generator``.  The output depends on the seed and on
                ``batch_size`` (random numbers are drawn batch by batch).
            progress: show a tqdm progress bar.
            batch_size: showers simulated together (memory ≈ batch_size · max_spots · 100 B);
                lowered automatically so that batch_size · n_voxels stays below 2e7.

        Returns:
            showers: ``(N, n_voxels)`` float32, visible energy in MeV per voxel; cells below
            the calorimeter's ``readout_threshold_mev`` are 0.
        """
        e = _check_energies(energies_mev)
        n = e.shape[0]
        th = _check_per_shower(theta, n, "theta", width=1)
        if th is not None and np.any(np.abs(th) >= np.pi / 2):
            raise ValueError(f"theta must satisfy |theta| < pi/2 rad, found max |theta| = {np.abs(th).max():g}")
        xy = _check_per_shower(impact_position, n, "impact_position", width=2)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, found {batch_size}")
        # keep the (batch, n_voxels) float64 accumulator below ~160 MB on large geometries
        batch_size = max(1, min(int(batch_size), _MAX_BATCH_CELLS // max(self.n_voxels, 1)))
        rng = _rng(seed)
        out = np.zeros((n, self.n_voxels), dtype=np.float32)
        starts = range(0, n, batch_size)
        if progress and n > 0:
            from tqdm import tqdm

            starts = tqdm(starts, total=(n + batch_size - 1) // batch_size, desc="simulating", unit="batch")
        for s in starts:
            sl = slice(s, min(s + batch_size, n))
            out[sl] = self._simulate_batch(
                e[sl], None if th is None else th[sl], None if xy is None else xy[sl], rng
            )
        out[out < self.calorimeter.readout_threshold_mev] = 0.0
        return out

    def _simulate_batch(self, e: np.ndarray, theta: np.ndarray | None, xy: np.ndarray | None,
                        rng: np.random.Generator) -> np.ndarray:
        cal = self.calorimeter
        b = e.shape[0]
        lon = self._draw_longitudinal(e, rng)
        counts = self.n_spots(e)
        owner = np.repeat(np.arange(b), counts)
        n_tot = owner.size

        # depth along the axis (X0) from the shower's own Gamma profile
        alpha, beta = lon["alpha"][owner], lon["beta"][owner]
        t = rng.standard_gamma(alpha) / beta
        tau = t * beta / alpha * (lon["mean_alpha"] / (lon["mean_alpha"] - 1.0))[owner]
        # radial position (Molière radii → mm)
        rad = self.radial_profile_params(e[owner], tau)
        core = rng.random(n_tot) < rad["p"]
        u = rng.random(n_tot)
        r = np.where(core, rad["R_C"], rad["R_T"]) * np.sqrt(u / (1.0 - u)) * cal.moliere_radius_mm
        phi = rng.uniform(-np.pi, np.pi, n_tot)
        du, dv = r * np.cos(phi), r * np.sin(phi)
        s_mm = t * cal.X0_mm
        if theta is None:
            z, x = s_mm, du
        else:
            st, ct = np.sin(theta)[owner], np.cos(theta)[owner]
            z = np.maximum(s_mm * ct - du * st, 0.0)
            x = s_mm * st + du * ct
        y = dv
        if xy is not None:
            x = x + xy[owner, 0]
            y = y + xy[owner, 1]

        layer = np.searchsorted(self._layer_edges_mm, z, side="right") - 1
        inside = (layer >= 0) & (layer < self.n_layers)
        vox = np.full(n_tot, -1, dtype=np.int64)
        vox[inside] = self.geometry.voxel_index(layer[inside], x[inside], y[inside])
        keep = vox >= 0
        spot_energy = (e / counts)[owner]
        flat = owner[keep] * self.n_voxels + vox[keep]
        dep = np.bincount(flat, weights=spot_energy[keep], minlength=b * self.n_voxels)

        # sampling fluctuations: Gamma smearing voxel by voxel (additive in the Gamma shape)
        a = cal.sampling_term
        if a > 0:
            scale = a * a * _GEV
            nz = np.flatnonzero(dep)
            dep[nz] = rng.standard_gamma(dep[nz] / scale) * scale
        return (cal.sampling_fraction * dep).reshape(b, self.n_voxels).astype(np.float32)


# --- dataset helper ------------------------------------------------------------------------------
def simulate_dataset(
    n: int,
    geometry: Geometry | None = None,
    calorimeter: SamplingCalorimeter | None = None,
    energy_range: tuple[float, float] = (1_000.0, 100_000.0),
    energies: Sequence[float] | None = None,
    theta_range: tuple[float, float] | None = None,
    position_range: tuple[float, float] | None = None,
    seed: SeedLike = 0,
    progress: bool = False,
) -> ShowerData:
    """Simulate ``n`` showers with the reference simulator and wrap them as ``ShowerData``.

    Arguments:
        n: number of showers (>= 0).
        geometry: voxel geometry (default :func:`hepgen.data.geometry.default_binning`).
        calorimeter: default :func:`default_calorimeter`.
        energy_range: (lo, hi) MeV; energies are log-uniform in it unless ``energies`` is given.
        energies: optional discrete list of energies (MeV), drawn uniformly.
        theta_range: optional (lo, hi) rad; θ uniform, stored as condition ``incident_theta`` (N, 1).
        position_range: optional (lo, hi) mm; x and y of the impact point uniform in the
            square, stored as condition ``impact_position`` (N, 2).
        seed: int or ``numpy.random.Generator``.
        progress: show a progress bar.

    Returns:
        ``ShowerData`` with ``showers`` (N, n_voxels) float32 MeV, ``incident_energies``
        (N, 1) MeV, ``conditions`` holding only the conditions that were varied, and
        ``attrs`` describing the generator.
    """
    n = _check_count(n)
    geometry = geometry if geometry is not None else default_binning()
    calorimeter = calorimeter if calorimeter is not None else default_calorimeter()
    rng = _rng(seed)
    seed_attr = int(seed) if isinstance(seed, (int, np.integer)) else ("none" if seed is None else "generator")
    attrs: dict = {"generator": "hepgen.simulate.calorimeter", "seed": seed_attr,
                   "sampling_fraction": calorimeter.sampling_fraction,
                   "sampling_term": calorimeter.sampling_term,
                   "total_depth_x0": calorimeter.total_depth_x0,
                   "X0_mm": calorimeter.X0_mm, "moliere_radius_mm": calorimeter.moliere_radius_mm,
                   "critical_energy_MeV": calorimeter.critical_energy_MeV,
                   "readout_threshold_MeV": calorimeter.readout_threshold_mev}

    if energies is not None:
        choices = np.asarray(energies, dtype=float).ravel()
        if choices.size == 0:
            raise ValueError("energies must list at least one energy (MeV), found an empty list")
        _check_energies(choices)
        e = rng.choice(choices, size=n)
        attrs["energies"] = [float(v) for v in choices]
    else:
        lo, hi = _check_range(energy_range, "energy_range")
        if lo <= 0:
            raise ValueError(f"energy_range must be positive (MeV), found {energy_range!r}")
        e = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
        attrs["energy_range"] = [lo, hi]
    conditions: dict[str, np.ndarray] = {}
    theta = xy = None
    if theta_range is not None:
        lo, hi = _check_range(theta_range, "theta_range")
        if max(abs(lo), abs(hi)) >= np.pi / 2:
            raise ValueError(f"theta_range must lie within (-pi/2, pi/2) rad, found {theta_range!r}")
        theta = rng.uniform(lo, hi, n)
        conditions["incident_theta"] = theta[:, None]
        attrs["theta_range"] = [lo, hi]
    if position_range is not None:
        lo, hi = _check_range(position_range, "position_range")
        xy = rng.uniform(lo, hi, (n, 2))
        conditions["impact_position"] = xy
        attrs["position_range"] = [lo, hi]

    sim = ShowerSimulator(geometry, calorimeter)
    showers = sim.simulate(e, theta=theta, impact_position=xy, seed=rng, progress=progress)
    return ShowerData(showers=showers, incident_energies=e[:, None], conditions=conditions,
                      geometry=geometry, attrs=attrs)


# --- input checks ---------------------------------------------------------------------------------
def _rng(seed: SeedLike) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (int, np.integer)):
        return np.random.default_rng(seed)
    raise ValueError(f"seed must be an int or a numpy.random.Generator, found {type(seed).__name__}")


def _check_count(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, found {n!r}")
    return int(n)


def _check_range(rng_pair, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in rng_pair)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (lo, hi) of numbers, found {rng_pair!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise ValueError(f"{name} must be finite with lo <= hi, found {rng_pair!r}")
    return lo, hi


def _check_energies(energies) -> np.ndarray:
    try:
        e = np.asarray(energies, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("energies_mev must be an array of numbers (MeV)") from None
    if e.ndim == 2 and e.shape[1] == 1:
        e = e[:, 0]
    if e.ndim != 1:
        raise ValueError(f"energies_mev must have shape (N,) or (N, 1), found {e.shape}")
    if not np.all(np.isfinite(e)):
        raise ValueError(f"energies_mev must be finite, found {int(np.sum(~np.isfinite(e)))} NaN/inf values")
    if np.any(e <= 0):
        raise ValueError(f"energies_mev must be > 0 MeV, found minimum {e.min():g}")
    return e


def _check_per_shower(values, n: int, name: str, width: int) -> np.ndarray | None:
    if values is None:
        return None
    try:
        v = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers") from None
    if width == 1 and v.ndim == 2 and v.shape[1] == 1:
        v = v[:, 0]
    expected = (n,) if width == 1 else (n, width)
    if v.shape != expected:
        allowed = f"({n},) or ({n}, 1)" if width == 1 else f"({n}, {width})"
        raise ValueError(f"{name} must have shape {allowed} (one per shower), found {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite, found NaN/inf values")
    return v
