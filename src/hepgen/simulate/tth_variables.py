"""The ttH(bb) analysis variables: 26 high-level event variables and the 32 low-level four-momenta
of a χ² assignment of jets to the semi-leptonic tt̄H hypothesis.

Pure numpy functions of reconstructed four-vectors (GeV).  Inputs, shared by every function:

* ``jets``: ``(N, J, 4)`` float, ``[E, px, py, pz]`` of up to J jets per event, zero-padded;
* ``mask``: ``(N, J)`` bool, the real jets (padded rows are ignored);
* ``btag``: ``(N, J)`` bool, b-tagged jets;
* ``lepton``: ``(N, 4)`` ``[E, px, py, pz]`` of the one isolated lepton;
* ``met``: ``(N, 2)`` ``[px, py]`` of the missing transverse momentum (neutrinos).

η is the pseudorapidity, φ the azimuth, ΔR = √(Δη² + Δφ²) with Δφ wrapped into [−π, π).

High-level variables (:data:`HIGH_LEVEL`, units in :data:`HIGH_LEVEL_UNITS`); "jets" means the
selected jets of ``mask``; "b pairs" the pairs of b-tagged jets (all jet pairs in an event with
fewer than two b-tags):

==========================  ===================================================================
``aplanarity``              A = 3/2 λ₃ of the momentum tensor S^{ab} = Σ p^a p^b / Σ |p|² of the jets
``sphericity``              S = 3/2 (λ₂ + λ₃), λ₁ ≥ λ₂ ≥ λ₃ the eigenvalues of S^{ab}
``transverse_sphericity``   S_T = 2 μ₂ / (μ₁ + μ₂) of the 2×2 tensor Σ p_T^a p_T^b (a, b ∈ {x, y})
``centrality``              Σ p_T / Σ E of the jets
``fox_wolfram_l`` (l=0…4)   H_l = Σ_{i,j} |p_i| |p_j| P_l(cos θ_ij) / (Σ_i E_i)² over the jets
``jet_deta_min/max/avg``    min / max / mean |Δη| over all jet pairs
``jet_dr_min/max/avg``      min / max / mean ΔR over all jet pairs
``m_bb_closest_125``        invariant mass of the b pair whose mass is closest to 125 GeV
``pt_bb_closest_125``       transverse momentum of that pair
``m_bb_min_dr``             invariant mass of the b pair with the smallest ΔR
``pt_bb_min_dr``            transverse momentum of that pair
``jet_lep_deta_min/max``    min / max |Δη| between a jet and the lepton
``jet_lep_dr_min/max``      min / max ΔR between a jet and the lepton
``jet_sum_pt``              H_T = Σ p_T of the jets
``w_had_helicity``          cos θ* of the hadronic W: angle, in the W rest frame, between the
                            light jet of lower energy in the top rest frame (the d-type proxy)
                            and the direction opposite to the b jet (= the W flight direction
                            in the top rest frame); the softer jet in the top frame is the one
                            with cos θ* ≤ 0, so this is −|cos θ*| of either light jet
``w_lep_helicity``          the same for the leptonic W with the charged lepton
==========================  ===================================================================

The two helicity angles use the χ² assignment of :func:`chi2_assignment`.

Low-level variables (:data:`LOW_LEVEL`): ``E, px, py, pz`` of the hadronic-top b (``b_had``), the
two Higgs b jets (``b_h1``, ``b_h2``, leading p_T first), the leptonic-top b (``b_lep``), the two
light jets of the hadronic W (``q1``, ``q2``, leading p_T first), the lepton and the neutrino
(p_z from the W-mass constraint), from the assignment minimising

    χ² = ((m_qq − m_W)/σ_W)² + ((m_bqq − m_t)/σ_t)² + ((m_bℓν − m_t)/σ_t)² + ((m_bb − m_H)/σ_H)²

over all assignments of distinct jets to (b_had, q1, q2, b_lep, b_h1, b_h2) among the leading
``max_jets`` jets, with the four b roles restricted to b-tagged jets when the event has at least
four, and over both neutrino solutions.  Events with fewer than six jets get NaN.

References:
    Sphericity, aplanarity: J. D. Bjorken, S. J. Brodsky, Phys. Rev. D 1 (1970) 1416;
    Fox–Wolfram moments: G. C. Fox, S. Wolfram, Phys. Rev. Lett. 41 (1978) 1581;
    the ttH(bb) variable set and χ² reconstruction: CMS Collaboration, arXiv:1804.03682 and
    ATLAS Collaboration, arXiv:1712.08895; W helicity: CMS, arXiv:1605.09047;
    the WGAN study: "Generating high-level physics variables based on Monte Carlo simulated ttH
    events using Wasserstein GANs" (RWTH Aachen).

Example:
    >>> import numpy as np
    >>> jets = np.array([[[100., 100., 0., 0.], [100., -100., 0., 0.]]])   # back to back along x
    >>> mask = np.ones((1, 2), bool)
    >>> v = event_shapes(jets, mask)
    >>> [round(float(v[k][0]), 6) for k in ("sphericity", "aplanarity", "fox_wolfram_2")]
    [0.0, 0.0, 1.0]
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = [
    "HIGH_LEVEL",
    "HIGH_LEVEL_UNITS",
    "LOW_LEVEL",
    "LOW_LEVEL_UNITS",
    "boost_to_rest_frame",
    "chi2_assignment",
    "event_shapes",
    "high_level_variables",
    "invariant_mass",
    "low_level_variables",
    "neutrino_pz",
    "pair_variables",
    "pt_eta_phi",
    "w_helicity",
]

M_W, M_TOP, M_H = 80.4, 172.5, 125.0  # GeV (PDG)

HIGH_LEVEL = [
    "aplanarity", "centrality",
    "fox_wolfram_0", "fox_wolfram_1", "fox_wolfram_2", "fox_wolfram_3", "fox_wolfram_4",
    "jet_deta_min", "jet_deta_max", "jet_deta_avg", "jet_dr_min", "jet_dr_max", "jet_dr_avg",
    "m_bb_closest_125", "pt_bb_closest_125", "m_bb_min_dr", "pt_bb_min_dr",
    "jet_lep_deta_min", "jet_lep_deta_max", "jet_lep_dr_min", "jet_lep_dr_max",
    "jet_sum_pt", "sphericity", "transverse_sphericity", "w_had_helicity", "w_lep_helicity",
]
"""The 26 high-level variable names, in the order of the study."""

HIGH_LEVEL_UNITS = ["GeV" if n.startswith(("m_", "pt_")) or n == "jet_sum_pt" else "" for n in HIGH_LEVEL]
"""Their units (masses and momenta in GeV, the rest dimensionless)."""

_OBJECTS = ["b_had", "b_h1", "b_h2", "b_lep", "q1", "q2", "lepton", "neutrino"]
LOW_LEVEL = [f"{o}_{c}" for o in _OBJECTS for c in ("E", "px", "py", "pz")]
"""The 32 low-level variable names: ``<object>_<E|px|py|pz>``."""

LOW_LEVEL_UNITS = ["GeV"] * len(LOW_LEVEL)


# --- four-vector helpers ------------------------------------------------------------------------
def pt_eta_phi(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``p: (..., 4)`` ``[E, px, py, pz]`` → ``(pT, η, φ)``, each ``(...)``; η = 0 where pT = 0.

    >>> [round(float(x), 4) for x in pt_eta_phi(np.array([5.0, 3.0, 0.0, 4.0]))]
    [3.0, 1.0986, 0.0]
    """
    p = np.asarray(p, dtype=np.float64)
    pt = np.hypot(p[..., 1], p[..., 2])
    eta = np.arcsinh(np.divide(p[..., 3], pt, out=np.zeros_like(pt), where=pt > 0))
    return pt, eta, np.arctan2(p[..., 2], p[..., 1])


def invariant_mass(p: np.ndarray) -> np.ndarray:
    """``p: (..., 4)`` → ``(...)`` invariant mass √max(E² − |p|², 0).

    >>> float(invariant_mass(np.array([5.0, 0.0, 3.0, 0.0])))
    4.0
    """
    p = np.asarray(p, dtype=np.float64)
    return np.sqrt(np.maximum(p[..., 0] ** 2 - (p[..., 1:] ** 2).sum(-1), 0.0))


def _wrap(dphi: np.ndarray) -> np.ndarray:
    return (dphi + np.pi) % (2 * np.pi) - np.pi


def boost_to_rest_frame(p: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Lorentz-boost four-vectors ``p (..., 4)`` into the rest frame of ``frame (..., 4)`` (massive).

    >>> boost_to_rest_frame(np.array([5.0, 0, 0, 3.0]), np.array([5.0, 0, 0, 3.0])).round(6).tolist()
    [4.0, 0.0, 0.0, 0.0]
    """
    p, frame = np.asarray(p, np.float64), np.asarray(frame, np.float64)
    b = frame[..., 1:] / frame[..., :1]
    b2 = (b**2).sum(-1, keepdims=True)
    gamma = 1.0 / np.sqrt(np.maximum(1.0 - b2, 1e-300))
    bp = (b * p[..., 1:]).sum(-1, keepdims=True)
    g2 = np.divide(gamma - 1.0, b2, out=np.zeros_like(b2), where=b2 > 0)
    e = gamma * (p[..., :1] - bp)
    vec = p[..., 1:] + g2 * bp * b - gamma * b * p[..., :1]
    return np.concatenate([e, vec], axis=-1)


def _check(jets, mask, btag=None, lepton=None, met=None):
    jets = np.asarray(jets, dtype=np.float64)
    if jets.ndim != 3 or jets.shape[2] != 4:
        raise ValueError(f"jets: expected shape (N, J, 4) [E, px, py, pz], found {jets.shape}")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != jets.shape[:2]:
        raise ValueError(f"mask: expected shape {jets.shape[:2]}, found {mask.shape}")
    out = [jets, mask]
    if btag is not None:
        btag = np.asarray(btag, dtype=bool)
        if btag.shape != mask.shape:
            raise ValueError(f"btag: expected shape {mask.shape}, found {btag.shape}")
        out.append(btag & mask)
    if lepton is not None:
        lepton = np.asarray(lepton, dtype=np.float64)
        if lepton.shape != (jets.shape[0], 4):
            raise ValueError(f"lepton: expected shape ({jets.shape[0]}, 4), found {lepton.shape}")
        out.append(lepton)
    if met is not None:
        met = np.asarray(met, dtype=np.float64)
        if met.shape != (jets.shape[0], 2):
            raise ValueError(f"met: expected shape ({jets.shape[0]}, 2), found {met.shape}")
        out.append(met)
    return out


# --- event shapes -------------------------------------------------------------------------------
def event_shapes(jets: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Sphericity, aplanarity, transverse sphericity, centrality and Fox–Wolfram H₀…H₄ of the jets.

    Arguments:
        jets: ``(N, J, 4)`` ``[E, px, py, pz]`` GeV; mask: ``(N, J)`` real jets.

    Returns:
        dict of ``(N,)`` arrays: ``sphericity`` S = 3/2 (λ₂ + λ₃), ``aplanarity`` A = 3/2 λ₃
        (λ the eigenvalues of S^{ab} = Σ p^a p^b / Σ |p|², descending), ``transverse_sphericity``
        2 μ₂ / (μ₁ + μ₂) of Σ p_T^a p_T^b, ``centrality`` Σ p_T / Σ E, ``fox_wolfram_l``
        H_l = Σ_ij |p_i||p_j| P_l(cos θ_ij) / (Σ E)² (Fox, Wolfram, PRL 41 (1978) 1581).
    """
    jets, mask = _check(jets, mask)
    p = np.where(mask[..., None], jets, 0.0)
    vec = p[..., 1:]
    tensor = np.einsum("nja,njb->nab", vec, vec)
    norm = (vec**2).sum((1, 2))
    lam = np.linalg.eigvalsh(tensor / np.where(norm > 0, norm, 1.0)[:, None, None])[:, ::-1]
    t2 = tensor[:, :2, :2]
    mu = np.linalg.eigvalsh(t2)[:, ::-1]
    out = {
        "sphericity": 1.5 * (lam[:, 1] + lam[:, 2]),
        "aplanarity": 1.5 * lam[:, 2],
        "transverse_sphericity": 2 * mu[:, 1] / np.where(mu.sum(1) > 0, mu.sum(1), 1.0),
    }
    pt = np.hypot(p[..., 1], p[..., 2])
    e_sum = p[..., 0].sum(1)
    e_safe = np.where(e_sum > 0, e_sum, 1.0)
    out["centrality"] = pt.sum(1) / e_safe
    mag = np.sqrt((vec**2).sum(-1))
    unit = np.divide(vec, mag[..., None], out=np.zeros_like(vec), where=mag[..., None] > 0)
    cos = np.clip(np.einsum("nia,nja->nij", unit, unit), -1.0, 1.0)
    w = mag[:, :, None] * mag[:, None, :]
    for ell in range(5):
        leg = np.polynomial.legendre.legval(cos, [0] * ell + [1])
        out[f"fox_wolfram_{ell}"] = (w * leg).sum((1, 2)) / e_safe**2
    return out


def _pair_index(j: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(j, k=1)


def pair_variables(jets: np.ndarray, mask: np.ndarray, btag: np.ndarray, lepton: np.ndarray) -> dict[str, np.ndarray]:
    """Angular jet-pair, b-pair and jet–lepton variables and H_T (see the module table).

    Arguments:
        jets: ``(N, J, 4)``; mask, btag: ``(N, J)``; lepton: ``(N, 4)`` (GeV).

    Returns:
        dict of ``(N,)`` arrays: ``jet_deta_min/max/avg``, ``jet_dr_min/max/avg``,
        ``m_bb_closest_125``, ``pt_bb_closest_125``, ``m_bb_min_dr``, ``pt_bb_min_dr``,
        ``jet_lep_deta_min/max``, ``jet_lep_dr_min/max``, ``jet_sum_pt``.  Events with fewer
        than two jets get NaN for the pair variables.
    """
    jets, mask, btag, lepton = _check(jets, mask, btag, lepton)
    n, j = mask.shape
    pt, eta, phi = pt_eta_phi(jets)
    i1, i2 = _pair_index(j)
    deta = np.abs(eta[:, i1] - eta[:, i2])
    dr = np.hypot(deta, _wrap(phi[:, i1] - phi[:, i2]))
    valid = mask[:, i1] & mask[:, i2]
    any_pair = valid.any(1)
    inf = np.inf

    def red(x, ok, fn, fill):
        with np.errstate(invalid="ignore"):
            r = fn(np.where(ok, x, fill), axis=1)
        return np.where(ok.any(1), r, np.nan)

    out = {
        "jet_deta_min": red(deta, valid, np.min, inf), "jet_deta_max": red(deta, valid, np.max, -inf),
        "jet_dr_min": red(dr, valid, np.min, inf), "jet_dr_max": red(dr, valid, np.max, -inf),
    }
    npair = valid.sum(1)
    out["jet_deta_avg"] = np.where(any_pair, (deta * valid).sum(1) / np.maximum(npair, 1), np.nan)
    out["jet_dr_avg"] = np.where(any_pair, (dr * valid).sum(1) / np.maximum(npair, 1), np.nan)
    # b pairs: pairs of b-tagged jets; all jet pairs where fewer than two jets are tagged
    bvalid = btag[:, i1] & btag[:, i2]
    bvalid = np.where((btag.sum(1) >= 2)[:, None], bvalid, valid)
    psum = jets[:, i1] + jets[:, i2]
    m = invariant_mass(psum)
    ptp = np.hypot(psum[..., 1], psum[..., 2])
    rows = np.arange(n)
    k125 = np.argmin(np.where(bvalid, np.abs(m - M_H), inf), axis=1)
    kdr = np.argmin(np.where(bvalid, dr, inf), axis=1)
    has_b = bvalid.any(1)
    out["m_bb_closest_125"] = np.where(has_b, m[rows, k125], np.nan)
    out["pt_bb_closest_125"] = np.where(has_b, ptp[rows, k125], np.nan)
    out["m_bb_min_dr"] = np.where(has_b, m[rows, kdr], np.nan)
    out["pt_bb_min_dr"] = np.where(has_b, ptp[rows, kdr], np.nan)
    _, leta, lphi = pt_eta_phi(lepton)
    ldeta = np.abs(eta - leta[:, None])
    ldr = np.hypot(ldeta, _wrap(phi - lphi[:, None]))
    out["jet_lep_deta_min"] = red(ldeta, mask, np.min, inf)
    out["jet_lep_deta_max"] = red(ldeta, mask, np.max, -inf)
    out["jet_lep_dr_min"] = red(ldr, mask, np.min, inf)
    out["jet_lep_dr_max"] = red(ldr, mask, np.max, -inf)
    out["jet_sum_pt"] = (pt * mask).sum(1)
    return out


# --- neutrino and χ² assignment -----------------------------------------------------------------
def neutrino_pz(lepton: np.ndarray, met: np.ndarray, m_w: float = M_W) -> np.ndarray:
    """The two neutrino p_z solutions of (p_ℓ + p_ν)² = m_W² with p_T,ν = MET, a massless lepton.

    With μ = m_W²/2 + p_T,ℓ · p_T,ν:  p_z = (μ p_z,ℓ ± E_ℓ √(μ² − p_T,ℓ² p_T,ν²)) / p_T,ℓ²;
    a negative discriminant is set to 0 (the real part, the usual choice).

    Arguments:
        lepton: ``(N, 4)`` ``[E, px, py, pz]``; met: ``(N, 2)``; m_w: GeV.

    Returns:
        ``(N, 2)`` solutions (the + root first).

    >>> l = np.array([[30.0, 30.0, 0.0, 0.0]]); met = np.array([[0.0, 40.0]])
    >>> pz = neutrino_pz(l, met)          # μ = 3232.08, p_z = ±30 √(μ² − 30²·40²) / 30²
    >>> pz.round(3).tolist()
    [[100.035, -100.035]]
    >>> nu = np.array([np.sqrt(1600 + pz[0, 0]**2), 0.0, 40.0, pz[0, 0]])
    >>> round(float(invariant_mass(l[0] + nu)), 6)        # the W mass is recovered
    80.4
    """
    lepton, met = np.asarray(lepton, np.float64), np.asarray(met, np.float64)
    ptl2 = lepton[:, 1] ** 2 + lepton[:, 2] ** 2
    mu = 0.5 * m_w**2 + lepton[:, 1] * met[:, 0] + lepton[:, 2] * met[:, 1]
    disc = np.maximum(mu**2 - ptl2 * (met**2).sum(1), 0.0)
    ptl2 = np.where(ptl2 > 0, ptl2, 1e-12)
    root = lepton[:, 0] * np.sqrt(disc)
    return np.stack([(mu * lepton[:, 3] + root) / ptl2, (mu * lepton[:, 3] - root) / ptl2], axis=1)


def _assignments(j: int) -> np.ndarray:
    """All (b_had, q1, q2, b_lep, b_h1, b_h2) of distinct jets among ``j``, q1 < q2, b_h1 < b_h2."""
    rows = [(bh, q1, q2, bl, h1, h2) for bh, q1, q2, bl, h1, h2 in itertools.permutations(range(j), 6)
            if q1 < q2 and h1 < h2]
    return np.asarray(rows, dtype=np.int64).reshape(-1, 6)


def chi2_assignment(jets: np.ndarray, mask: np.ndarray, btag: np.ndarray, lepton: np.ndarray, met: np.ndarray,
                    max_jets: int = 8, sigma_w: float = 10.0, sigma_t: float = 15.0, sigma_h: float = 15.0,
                    chunk: int = 256) -> dict[str, np.ndarray]:
    """The χ²-best assignment of jets to (b_had, q1, q2, b_lep, b_h1, b_h2) (module docstring).

    Arguments:
        jets: ``(N, J, 4)``; mask, btag: ``(N, J)``; lepton: ``(N, 4)``; met: ``(N, 2)`` (GeV).
        max_jets: only the first ``max_jets`` jets (callers sort by p_T) enter the combinatorics.
        sigma_w, sigma_t, sigma_h: widths (GeV) of the W, top and Higgs mass terms — rough
            particle-level resolutions, not fitted.
        chunk: events per vectorised block.

    Returns:
        dict with ``index`` ``(N, 6)`` int (−1 for events with fewer than 6 jets), ``chi2``
        ``(N,)`` (NaN there), ``neutrino`` ``(N, 4)`` the chosen neutrino four-vector.
    """
    jets, mask, btag, lepton, met = _check(jets, mask, btag, lepton, met)
    n, j = mask.shape
    j = min(j, int(max_jets))
    jets, mask, btag = jets[:, :j], mask[:, :j], btag[:, :j]
    combos = _assignments(j)
    pz = neutrino_pz(lepton, met)
    nu = np.zeros((n, 2, 4))
    nu[..., 1:3] = met[:, None, :]
    nu[..., 3] = pz
    nu[..., 0] = np.sqrt((nu[..., 1:] ** 2).sum(-1))
    index = np.full((n, 6), -1, dtype=np.int64)
    chi2 = np.full(n, np.nan)
    best_nu = np.full((n, 4), np.nan)
    if len(combos) == 0:
        return {"index": index, "chi2": chi2, "neutrino": best_nu}
    c = combos
    for s in range(0, n, chunk):
        sl = slice(s, min(n, s + chunk))
        J, M, B = jets[sl], mask[sl], btag[sl]
        m2 = invariant_mass(J[:, :, None] + J[:, None, :])
        m3 = invariant_mass(J[:, :, None, None] + J[:, None, :, None] + J[:, None, None, :])
        lv = lepton[sl][:, None, None, :] + nu[sl][:, None, :, :] + J[:, :, None, :]  # (n, j, 2, 4)
        mlep = invariant_mass(lv)
        r = np.arange(J.shape[0])[:, None]
        x = (((m2[r, c[:, 1], c[:, 2]] - M_W) / sigma_w) ** 2
             + ((m3[r, c[:, 0], c[:, 1], c[:, 2]] - M_TOP) / sigma_t) ** 2
             + ((m2[r, c[:, 4], c[:, 5]] - M_H) / sigma_h) ** 2)
        xl = ((mlep[r, c[:, 3]] - M_TOP) / sigma_t) ** 2  # (n, n_combos, 2)
        total = x[..., None] + xl
        ok = M[:, c].all(-1)
        four_b = B.sum(1) >= 4
        b_ok = B[:, c[:, [0, 3, 4, 5]]].all(-1)
        ok &= np.where(four_b[:, None], b_ok, True)
        total = np.where(ok[..., None], total, np.inf).reshape(len(J), -1)
        k = np.argmin(total, axis=1)
        best = total[np.arange(len(J)), k]
        good = np.isfinite(best)
        kc, kn = k // 2, k % 2
        rows = np.arange(s, sl.stop)
        index[rows[good]] = c[kc[good]]
        chi2[rows[good]] = best[good]
        best_nu[rows[good]] = nu[rows[good], kn[good]]
    return {"index": index, "chi2": chi2, "neutrino": best_nu}


def w_helicity(fermion: np.ndarray, partner: np.ndarray, b: np.ndarray) -> np.ndarray:
    """cos θ*: angle, in the rest frame of W = fermion + partner, between the fermion and −b.

    Arguments:
        fermion, partner, b: ``(N, 4)`` ``[E, px, py, pz]`` (GeV).

    Returns:
        ``(N,)`` cos θ* in [−1, 1].

    >>> f = np.array([[40.2, 0, 0, 40.2]]); pa = np.array([[40.2, 0, 0, -40.2]])
    >>> float(w_helicity(f, pa, np.array([[50.0, 0, 0, -50.0]]))[0])      # W at rest, b along −z
    1.0
    """
    w = fermion + partner
    f_w = boost_to_rest_frame(fermion, w)[:, 1:]
    b_w = boost_to_rest_frame(b, w)[:, 1:]
    num = -(f_w * b_w).sum(1)
    den = np.linalg.norm(f_w, axis=1) * np.linalg.norm(b_w, axis=1)
    return np.clip(np.divide(num, den, out=np.zeros_like(num), where=den > 0), -1.0, 1.0)


def _take(jets: np.ndarray, idx: np.ndarray) -> np.ndarray:
    safe = np.where(idx >= 0, idx, 0)
    out = jets[np.arange(len(jets)), safe]
    return np.where((idx >= 0)[:, None], out, np.nan)


def _lead_first(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    swap = (np.hypot(b[:, 1], b[:, 2]) > np.hypot(a[:, 1], a[:, 2]))[:, None]
    return np.where(swap, b, a), np.where(swap, a, b)


def _objects(jets, lepton, assignment) -> dict[str, np.ndarray]:
    idx = assignment["index"]
    o = {name: _take(jets, idx[:, k]) for k, name in enumerate(["b_had", "q1", "q2", "b_lep", "b_h1", "b_h2"])}
    o["b_h1"], o["b_h2"] = _lead_first(o["b_h1"], o["b_h2"])
    o["q1"], o["q2"] = _lead_first(o["q1"], o["q2"])
    o["lepton"], o["neutrino"] = lepton, assignment["neutrino"]
    return o


def low_level_variables(jets: np.ndarray, mask: np.ndarray, btag: np.ndarray, lepton: np.ndarray, met: np.ndarray,
                        assignment: dict | None = None, **chi2_options) -> dict[str, np.ndarray]:
    """The 32 low-level variables ``<object>_<E|px|py|pz>`` (GeV) of the χ² assignment.

    Arguments:
        jets, mask, btag, lepton, met: as in the module docstring.
        assignment: a result of :func:`chi2_assignment` (computed here when None).
        chi2_options: passed to :func:`chi2_assignment`.
    """
    jets, mask, btag, lepton, met = _check(jets, mask, btag, lepton, met)
    a = chi2_assignment(jets, mask, btag, lepton, met, **chi2_options) if assignment is None else assignment
    o = _objects(jets, lepton, a)
    return {f"{name}_{c}": o[name][:, k] for name in _OBJECTS for k, c in enumerate(("E", "px", "py", "pz"))}


def high_level_variables(jets: np.ndarray, mask: np.ndarray, btag: np.ndarray, lepton: np.ndarray,
                         met: np.ndarray, assignment: dict | None = None, **chi2_options) -> dict[str, np.ndarray]:
    """The 26 high-level variables of :data:`HIGH_LEVEL` (module table), each ``(N,)``.

    Arguments:
        jets, mask, btag, lepton, met: as in the module docstring.
        assignment: a result of :func:`chi2_assignment` for the helicity angles (computed when None).
        chi2_options: passed to :func:`chi2_assignment`.
    """
    jets, mask, btag, lepton, met = _check(jets, mask, btag, lepton, met)
    out = event_shapes(jets, mask)
    out.update(pair_variables(jets, mask, btag, lepton))
    a = chi2_assignment(jets, mask, btag, lepton, met, **chi2_options) if assignment is None else assignment
    o = _objects(jets, lepton, a)
    # the d-type proxy: the light jet of lower energy in the hadronic top's rest frame
    top = o["b_had"] + o["q1"] + o["q2"]
    e1 = boost_to_rest_frame(o["q1"], top)[:, 0]
    e2 = boost_to_rest_frame(o["q2"], top)[:, 0]
    soft, hard = np.where((e1 <= e2)[:, None], o["q1"], o["q2"]), np.where((e1 <= e2)[:, None], o["q2"], o["q1"])
    with np.errstate(invalid="ignore"):
        out["w_had_helicity"] = w_helicity(soft, hard, o["b_had"])
        out["w_lep_helicity"] = w_helicity(o["lepton"], o["neutrino"], o["b_lep"])
    return {k: out[k] for k in HIGH_LEVEL}
