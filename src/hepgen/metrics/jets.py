"""Jet (particle-cloud) metrics in the JetNet definitions, on numpy arrays.

Jets are ``(N, P, 3)`` arrays ``[eta_rel, phi_rel, pt_rel]`` or ``(N, P, 4)`` with the mask
as the 4th feature (the JetNet layout, :mod:`hepgen.data.jets`); without a mask, particles
whose features are all zero are padding (jetnet's ``exclude_zeros``).

* :func:`jet_mass` — relative jet mass m/pT_jet of the constituents taken as massless;
* :func:`jet_observables` — relative mass and pT, multiplicity, τ21, τ32, D2;
* :func:`nsubjettiness` — N-subjettiness τ_N (FastJet contrib ``Nsubjettiness`` through the
  ``fastjet`` package; one-pass exclusive-kT axes, β = 1, normalised measure, R0 = 0.8);
* :func:`energy_correlation_d2` — the energy-correlation ratio D2 = e3 / e2³ (β = 1), from the
  normalised energy-correlation functions as energy-flow polynomials (``energyflow.EFP``);
* :func:`efp_features` — energy-flow polynomials (``energyflow.EFPSet``) as jetnet computes them;
* :func:`w1_batches` — 1-Wasserstein distance per column, mean and spread over batches;
* :func:`w1m`, :func:`w1p`, :func:`w1efp` — jetnet's W1 of the relative mass, of the particle
  features and of the 5 prime EFPs with n = 4, d = 4;
* :func:`fpd_efp`, :func:`kpd_efp` — FPD and KPD (:mod:`hepgen.metrics.multivariate`) on the
  36 EFPs with d ≤ 4 (jetnet's ``get_fpd_kpd_jet_features``).

Batches follow jetnet (``num_eval_samples`` jets drawn with replacement, ``num_batches``
times; value = mean, error = standard deviation over batches) with one change: the two
samples are indexed with *common random numbers* (the same uniforms mapped onto each
sample's length) instead of two independent draws.  For independent samples this changes
nothing in distribution; for identical inputs it makes the distance exactly 0, and for a
sample and its shifted copy exactly the shift.

References:
    Kansal et al., arXiv:2106.11535 (JetNet, W1m, W1p, W1efp);
    Kansal et al., arXiv:2211.10295 (FPD, KPD on EFPs);
    Komiske, Metodiev, Thaler, arXiv:1712.07124 (energy-flow polynomials);
    Thaler, Van Tilburg, arXiv:1011.2268 and arXiv:1108.2701 (N-subjettiness);
    Larkoski, Moult, Neill, arXiv:1409.6298 (D2); Larkoski, Salam, Thaler, arXiv:1305.0007 (ECFs).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from hepgen._extras import needs_extra
from hepgen._fastjet import quiet_fastjet
from hepgen.metrics.multivariate import fpd, kpd

__all__ = [
    "FPD_KPD_EFPS",
    "PARTICLE_FEATURE_NAMES",
    "W1EFP_EFPS",
    "efp_features",
    "energy_correlation_d2",
    "fpd_efp",
    "jet_mass",
    "jet_observables",
    "kpd_efp",
    "nsubjettiness",
    "split_particles",
    "w1_batches",
    "w1efp",
    "w1m",
    "w1p",
]

PARTICLE_FEATURE_NAMES = ("eta_rel", "phi_rel", "pt_rel")
FPD_KPD_EFPS = (("d<=", 4),)  # jetnet get_fpd_kpd_jet_features: 36 EFPs
W1EFP_EFPS = (("n==", 4), ("d==", 4), ("p==", 1))  # jetnet w1efp default: 5 EFPs
_EFP_KW = dict(measure="hadr", beta=1, normed=None, coords="ptyphim")  # as jetnet.utils.efps


def split_particles(jets: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(particles (N, P, 3) float64, mask (N, P) bool)`` from jets in the JetNet layout.

    Arguments:
        jets: ``(N, P, 3)`` ``[eta_rel, phi_rel, pt_rel]`` or ``(N, P, 4)`` with the mask last.
        mask: ``(N, P)`` or ``(N, P, 1)``; default the 4th feature, else "any feature ≠ 0".
    """
    jets = np.asarray(jets)
    if jets.ndim != 3 or jets.shape[2] not in (3, 4):
        raise ValueError(f"jets: expected shape (N, n_particles, 3 or 4) [eta_rel, phi_rel, pt_rel(, mask)], "
                         f"found {jets.shape}")
    parts = np.asarray(jets[..., :3], dtype=np.float64)
    if mask is None:
        mask = jets[..., 3] > 0.5 if jets.shape[2] == 4 else (parts != 0).any(axis=2)
    mask = np.asarray(mask).reshape(jets.shape[:2]).astype(bool)
    return np.where(mask[..., None], parts, 0.0), mask


def _four_vectors(parts: np.ndarray, mask: np.ndarray):
    """Massless ``(px, py, pz, E)``, each ``(N, P)``, zero for padded particles."""
    eta, phi, pt = parts[..., 0], parts[..., 1], np.where(mask, parts[..., 2], 0.0)
    return pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)


def jet_mass(jets: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Relative jet mass: invariant mass of the summed constituents, taken massless.

    With ``(η_rel, φ_rel, pT_rel)`` the sum is the jet boosted along z by −η_jet, rotated by
    −φ_jet and scaled by 1/pT_jet, so this is ``m / pT_jet`` of the stored constituents
    (jetnet's ``jet_features(jets)["mass"]``).

    Arguments:
        jets: ``(N, P, 3 or 4)``; mask: see :func:`split_particles`.

    Returns:
        ``(N,)`` float64, ≥ 0 (0 for an empty jet).

    Example:
        Two particles with pT_rel = ½ at η = 0, φ = ±d/2 have m = sin(d/2).
    """
    parts, mask = split_particles(jets, mask)
    px, py, pz, e = (v.sum(axis=1) for v in _four_vectors(parts, mask))
    return np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))


def nsubjettiness(jets: np.ndarray, mask: np.ndarray | None = None, n: tuple[int, ...] = (1, 2, 3),
                  beta: float = 1.0, r0: float = 0.8, axes: str = "OnePass_KT_Axes") -> np.ndarray:
    """N-subjettiness τ_N of every jet, FastJet contrib ``Nsubjettiness`` (via ``fastjet``).

    ``τ_N = Σ_i pT_i min_k ΔR_ik^β / Σ_i pT_i R0^β`` with N axes found by exclusive kT
    clustering of the constituents, then one pass of minimisation (``OnePass_KT_Axes``);
    ΔR in (rapidity, φ).  Constituents are massless ``(pT_rel, η_rel, φ_rel)``; ratios
    τ_N/τ_{N−1} do not depend on the overall pT scale.  A jet with at most N constituents
    has τ_N = 0.

    Arguments:
        jets: ``(N_jets, P, 3 or 4)``; mask: see :func:`split_particles`.
        n: the N values.
        beta: angular exponent β.
        r0: characteristic radius R0 of the normalisation (the jet radius).
        axes: contrib axes definition (``KT_Axes``, ``OnePass_KT_Axes``, ``WTA_KT_Axes``, …).

    Returns:
        ``(N_jets, len(n))`` float64.

    References:
        Thaler, Van Tilburg, arXiv:1011.2268 and arXiv:1108.2701.
    """
    with needs_extra("jets", "N-subjettiness (FastJet contrib)"):  # lazy import of an optional extra
        import awkward as ak
        import fastjet

    quiet_fastjet()
    parts, mask = split_particles(jets, mask)
    out = np.zeros((parts.shape[0], len(n)))
    counts = mask.sum(axis=1)
    has = counts > 0
    if not has.any():
        return out
    px, py, pz, e = (v[has][mask[has]] for v in _four_vectors(parts, mask))
    vec = ak.unflatten(ak.zip({"px": px, "py": py, "pz": pz, "E": e}, with_name="Momentum4D"), counts[has])
    seq = fastjet.ClusterSequence(vec, fastjet.JetDefinition(fastjet.antikt_algorithm, r0))
    taus = seq.njettiness(measure_definition="NormalizedMeasure", axes_definition=axes,
                          njets=[int(k) for k in n], beta=float(beta), R0=float(r0))
    out[has] = np.asarray(ak.to_numpy(taus), dtype=np.float64).reshape(-1, len(n))
    return out


def energy_correlation_d2(jets: np.ndarray, mask: np.ndarray | None = None, beta: float = 1.0) -> np.ndarray:
    """Energy-correlation ratio ``D2 = e3 / e2³`` of every jet (Larkoski, Moult, Neill).

    With ``z_i = pT_i / Σ_k pT_k`` and ``θ_ij = ΔR_ij`` in (η, φ) (massless constituents, so
    η = rapidity) the normalised energy-correlation functions are

        e2 = Σ_{i<j} z_i z_j θ_ij^β,      e3 = Σ_{i<j<k} z_i z_j z_k θ_ij^β θ_ik^β θ_jk^β.

    They are energy-flow polynomials (``energyflow.EFP``, ``normed=True``, which sums over
    all ordered index tuples; θ_ii = 0): e2 = EFP(line)/2 and e3 = EFP(triangle)/3!, so
    ``D2 = (4/3) · EFP(triangle) / EFP(line)³``, vectorised over jets by energyflow; it
    agrees with FastJet contrib ``EnergyCorrelator`` (``fastjet`` package,
    ``exclusive_jets_energy_correlator(func="d2")``, one exclusive jet per event) within
    1e-8 relative (``tests/test_jets_substructure.py``).  D2 does not depend on
    the jet radius (θ/R scales e3 and e2³ alike) nor on the pT scale.  Two-prong jets (W, Z, H)
    have small D2, one-prong QCD jets larger.

    Arguments:
        jets: ``(N, P, 3 or 4)`` ``[eta_rel, phi_rel, pt_rel(, mask)]``; mask: see :func:`split_particles`.
        beta: angular exponent β (the usual choice, and the default, 1).

    Returns:
        ``(N,)`` float64; 0 for jets with two constituents (e3 = 0); NaN where e2 = 0
        (one constituent, or all at one point).

    Example:
        Three equal particles at the corners of an equilateral triangle: e2 = 3 · (1/9) · d,
        e3 = d³/27, so D2 = 1 for any side d.

        >>> j = np.array([[[0.0, 0.0, 1.0], [0.2, 0.0, 1.0], [0.1, 0.2 * np.sqrt(0.75), 1.0]]])
        >>> np.round(energy_correlation_d2(j), 12)
        array([1.])

    References:
        A. Larkoski, I. Moult, D. Neill, arXiv:1409.6298 (D2); A. Larkoski, G. Salam,
        J. Thaler, arXiv:1305.0007 (energy-correlation functions); P. Komiske,
        E. Metodiev, J. Thaler, arXiv:1712.07124 (EFPs).
    """
    with needs_extra("jets", "energy-flow observables (EnergyFlow)"):  # lazy import of an optional extra
        import energyflow

    parts, mask = split_particles(jets, mask)
    out = np.full(parts.shape[0], np.nan)
    if len(parts) == 0:
        return out
    events = np.stack([np.where(mask, parts[..., 2], 0.0), parts[..., 0], parts[..., 1]], axis=-1)
    # keep only real particles per jet: energyflow's normalisation divides by Σ pT, padding adds 0
    efps = energyflow.EFPSet([(0, 1)], [(0, 1), (1, 2), (0, 2)], measure="hadr", beta=float(beta), normed=True,
                             coords="ptyphim")
    has = mask.any(axis=1)
    if not has.any():
        return out
    vals = np.asarray(efps.batch_compute(events[has], n_jobs=1), dtype=np.float64).reshape(-1, 2)
    line, tri = vals[:, 0], vals[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        out[has] = np.where(line > 0, (4.0 / 3.0) * tri / np.where(line > 0, line, 1.0) ** 3, np.nan)
    return out


def jet_observables(jets: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Jet-level observables from the particle cloud, each ``(N,)`` float64.

    * ``mass_rel`` — :func:`jet_mass`;
    * ``pt_rel`` — |Σ pT vectors| of the stored constituents (≈ 1, less when the
      constituents beyond the P leading ones carry pT);
    * ``multiplicity`` — unmasked constituents;
    * ``tau21``, ``tau32`` — τ2/τ1 and τ3/τ2 (:func:`nsubjettiness`); NaN where the
      denominator is 0 (jets with one, resp. two, constituents);
    * ``d2`` — the energy-correlation ratio D2, β = 1 (:func:`energy_correlation_d2`).
    """
    parts, mask = split_particles(jets, mask)
    px, py, _, _ = (v.sum(axis=1) for v in _four_vectors(parts, mask))
    tau = nsubjettiness(parts, mask)
    with np.errstate(divide="ignore", invalid="ignore"):
        t21 = np.where(tau[:, 0] > 0, tau[:, 1] / np.where(tau[:, 0] > 0, tau[:, 0], 1), np.nan)
        t32 = np.where(tau[:, 1] > 0, tau[:, 2] / np.where(tau[:, 1] > 0, tau[:, 1], 1), np.nan)
    return {
        "mass_rel": jet_mass(parts, mask),
        "pt_rel": np.hypot(px, py),
        "multiplicity": mask.sum(axis=1).astype(np.float64),
        "tau21": t21,
        "tau32": t32,
        "d2": energy_correlation_d2(parts, mask),
    }


def efp_features(jets: np.ndarray, mask: np.ndarray | None = None, efpset_args=FPD_KPD_EFPS,
                 n_jobs: int = 1) -> np.ndarray:
    """Energy-flow polynomials of every jet, as jetnet computes them (``energyflow.EFPSet``).

    ``EFPSet(*efpset_args, measure="hadr", beta=1, normed=None, coords="ptyphim")`` on
    ``(pT_rel, η_rel, φ_rel)``; padded particles get pT = 0 and so contribute nothing.

    Arguments:
        jets: ``(N, P, 3 or 4)``; mask: see :func:`split_particles`.
        efpset_args: EFP selection (default d ≤ 4: the 36 EFPs of jetnet's FPD/KPD features;
            :data:`W1EFP_EFPS` gives the 5 of W1efp).
        n_jobs: energyflow worker processes (1 = this process).

    Returns:
        ``(N, n_efps)`` float64.  Cost: ~2 ms per 30-particle jet for the 36 EFPs, one core.
    """
    with needs_extra("jets", "energy-flow observables (EnergyFlow)"):  # lazy import of an optional extra
        import energyflow

    parts, mask = split_particles(jets, mask)
    events = np.stack([np.where(mask, parts[..., 2], 0.0), parts[..., 0], parts[..., 1]], axis=-1)
    efpset = energyflow.EFPSet(*efpset_args, **_EFP_KW)
    if len(events) == 0:
        return np.zeros((0, efpset.count()))
    return np.asarray(efpset.batch_compute(events, n_jobs=int(n_jobs)), dtype=np.float64).reshape(len(events), -1)


def _efp_columns(selection) -> np.ndarray:
    """Columns of the d ≤ 4 EFP set that a narrower selection (e.g. :data:`W1EFP_EFPS`) picks."""
    with needs_extra("jets", "energy-flow observables (EnergyFlow)"):  # lazy import of an optional extra
        import energyflow

    return np.flatnonzero(energyflow.EFPSet(*FPD_KPD_EFPS, **_EFP_KW).sel(*selection))


def _common_indices(n_a: int, n_b: int, size: int, rng: np.random.Generator):
    """Indices drawn with replacement into two samples from the same uniforms (common random numbers)."""
    u = rng.random(size)
    return np.minimum((u * n_a).astype(np.int64), n_a - 1), np.minimum((u * n_b).astype(np.int64), n_b - 1)


def _check_batches(num_eval_samples, num_batches):
    if int(num_eval_samples) < 1 or int(num_batches) < 1:
        raise ValueError(f"num_eval_samples and num_batches must be >= 1, found {num_eval_samples} and {num_batches}")
    return int(num_eval_samples), int(num_batches)


def w1_batches(a: np.ndarray, b: np.ndarray, num_eval_samples: int = 50_000, num_batches: int = 5,
               seed: int = 0) -> np.ndarray:
    """1-Wasserstein distance of every column of two per-jet feature samples, per batch.

    Each batch draws ``num_eval_samples`` rows of ``a`` and of ``b`` with replacement
    (common random numbers, see the module docstring) and computes
    ``scipy.stats.wasserstein_distance`` per column; NaN values are left out.

    Arguments:
        a: ``(N_a,)`` or ``(N_a, k)``; b: ``(N_b,)`` or ``(N_b, k)``.
        num_eval_samples: rows drawn per batch (jetnet: 50 000).
        num_batches: batches (jetnet: 5).
        seed: seeds ``numpy.random.default_rng``.

    Returns:
        ``(num_batches, k)`` float64; mean and std over axis 0 give jetnet's value and error.
    """
    num_eval_samples, num_batches = _check_batches(num_eval_samples, num_batches)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"w1_batches: expected the same number of columns, found {a.shape[1]} and {b.shape[1]}")
    if len(a) == 0 or len(b) == 0:
        raise ValueError(f"w1_batches: both samples must be non-empty, found {len(a)} and {len(b)} rows")
    rng = np.random.default_rng(seed)
    out = np.empty((num_batches, a.shape[1]))
    for i in range(num_batches):
        ia, ib = _common_indices(len(a), len(b), num_eval_samples, rng)
        for k in range(a.shape[1]):
            x, y = a[ia, k], b[ib, k]
            x, y = x[~np.isnan(x)], y[~np.isnan(y)]
            out[i, k] = stats.wasserstein_distance(x, y) if x.size and y.size else np.inf
    return out


def _mean_std(w: np.ndarray):
    return w.mean(axis=0), w.std(axis=0)


def w1m(real: np.ndarray, gen: np.ndarray, num_eval_samples: int = 50_000, num_batches: int = 5,
        seed: int = 0) -> tuple[float, float]:
    """W1 between the relative-mass distributions (:func:`jet_mass`), jetnet's ``w1m``.

    Arguments:
        real, gen: jets ``(N, P, 3 or 4)``.
        num_eval_samples, num_batches, seed: see :func:`w1_batches`.

    Returns:
        ``(mean, std)`` over batches.
    """
    w = w1_batches(jet_mass(real), jet_mass(gen), num_eval_samples, num_batches, seed)[:, 0]
    return float(w.mean()), float(w.std())


def _particle_w1_batches(real, gen, num_eval_samples, num_batches, seed) -> np.ndarray:
    """``(num_batches, 3)``: W1 of each particle feature over the unmasked particles of the drawn jets."""
    num_eval_samples, num_batches = _check_batches(num_eval_samples, num_batches)
    pr, mr = split_particles(real)
    pg, mg = split_particles(gen)
    if len(pr) == 0 or len(pg) == 0:
        raise ValueError(f"w1p: both samples must be non-empty, found {len(pr)} and {len(pg)} jets")
    rng = np.random.default_rng(seed)
    out = np.empty((num_batches, 3))
    for i in range(num_batches):
        ia, ib = _common_indices(len(pr), len(pg), num_eval_samples, rng)
        x, y = pr[ia][mr[ia]], pg[ib][mg[ib]]
        for k in range(3):
            out[i, k] = stats.wasserstein_distance(x[:, k], y[:, k]) if len(x) and len(y) else np.inf
    return out


def w1p(real: np.ndarray, gen: np.ndarray, num_eval_samples: int = 50_000, num_batches: int = 5,
        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """W1 of each particle feature (η_rel, φ_rel, pT_rel) over all unmasked particles, jetnet's ``w1p``.

    Each batch draws ``num_eval_samples`` jets of each sample and pools their unmasked
    particles.  The JetNet papers quote "W1p" as the average over the three features
    (:func:`hepgen.domains.jets.evaluate.evaluate_jets` reports that, with its spread over batches).

    Returns:
        ``(means (3,), stds (3,))`` over batches.
    """
    return _mean_std(_particle_w1_batches(real, gen, num_eval_samples, num_batches, seed))


def w1efp(real: np.ndarray, gen: np.ndarray, num_eval_samples: int = 50_000, num_batches: int = 5,
          seed: int = 0, efpset_args=W1EFP_EFPS, n_jobs: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """W1 of each EFP (default the 5 prime ones with n = 4, d = 4), jetnet's ``w1efp``.

    Returns:
        ``(means (n_efps,), stds (n_efps,))`` over batches.
    """
    er = efp_features(real, efpset_args=efpset_args, n_jobs=n_jobs)
    eg = efp_features(gen, efpset_args=efpset_args, n_jobs=n_jobs)
    return _mean_std(w1_batches(er, eg, num_eval_samples, num_batches, seed))


def fpd_efp(real: np.ndarray, gen: np.ndarray, seed: int = 42, n_jobs: int = 1, **kwargs) -> tuple[float, float]:
    """FPD (:func:`hepgen.metrics.multivariate.fpd`) on the 36 EFPs with d ≤ 4 of each jet.

    ``real``/``gen`` are jets ``(N, P, 3 or 4)``; ``kwargs`` go to ``fpd``
    (``min_samples``, ``max_samples``, ``num_batches``, ``num_points``, ``normalise``).
    Returns ``(value, error)``.
    """
    return fpd(efp_features(real, n_jobs=n_jobs), efp_features(gen, n_jobs=n_jobs), seed=seed, **kwargs)


def kpd_efp(real: np.ndarray, gen: np.ndarray, seed: int = 42, n_jobs: int = 1, **kwargs) -> tuple[float, float]:
    """KPD (:func:`hepgen.metrics.multivariate.kpd`) on the 36 EFPs with d ≤ 4 of each jet.

    ``kwargs`` go to ``kpd`` (``num_batches``, ``batch_size``, ``normalise``, ``degree``).
    Returns ``(median, error)``.
    """
    return kpd(efp_features(real, n_jobs=n_jobs), efp_features(gen, n_jobs=n_jobs), seed=seed, **kwargs)
