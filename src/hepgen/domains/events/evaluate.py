"""Evaluation of generated event images against real ones: jet observables, classifier, FPD.

Every metric is computed twice: generated vs real, and real vs real (the *floor*: the real
sample split into two random halves, so the floor is measured at half the sample size and
is a slightly pessimistic reference).  Jets are anti-kT R = 1.0 on the pixels, pT > 200 GeV
(:mod:`hepgen.metrics.event_jets`).

Keys of the metrics dict (strict JSON: NaN/Inf become null):

* ``observables.<name>`` for ``n_jets, leading_pt, leading_mass, summed_mass, ht, sparsity,
  total_energy, pixel_energy``: ``mean_real, mean_gen, w1, w1_floor, ks, ks_p, ks_floor``;
* ``selection_score`` / ``selection_score_floor``: Σ −log p of the KS tests on jet multiplicity,
  jet pT and summed jet mass (the paper's epoch-selection objective);
* ``classifier_auc`` / ``classifier_auc_err``: an MLP real-vs-generated on the per-event jet
  features (0.5 = indistinguishable);
* ``fpd`` / ``fpd_err`` / ``fpd_floor``: Fréchet physics distance on the same features;
* ``mass_points``: per (m_gluino, m_neutralino, mu) point, the summed-jet-mass means and their
  relative difference and the three KS p-values (the interpolation test).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from hepgen._io import json_safe
from hepgen.data.events import EventImages
from hepgen.metrics.classifier import classifier_two_sample_test
from hepgen.metrics.event_jets import SELECTION_OBSERVABLES, event_observables, ks_selection_score
from hepgen.metrics.multivariate import fpd

__all__ = ["FEATURES", "evaluate_events", "jet_features", "overlay_shift", "overlay_shift_observables"]

#: per-event observables compared (distributions)
FEATURES = ("n_jets", "leading_pt", "leading_mass", "summed_mass", "ht", "sparsity", "total_energy", "pixel_energy")
_VECTOR = ("n_jets", "leading_pt", "leading_mass", "summed_mass", "ht", "sparsity", "total_energy")


def jet_features(obs: dict) -> np.ndarray:
    """``(N, 7)`` per-event features for the classifier and FPD (no jet: leading pT/mass = 0)."""
    return np.nan_to_num(np.stack([np.asarray(obs[k], float) for k in _VECTOR], 1), nan=0.0)


def _compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return float("nan"), float("nan"), float("nan")
    ks = stats.ks_2samp(a, b)
    return float(stats.wasserstein_distance(a, b)), float(ks.statistic), float(ks.pvalue)


def _fpd(a: np.ndarray, b: np.ndarray, seed: int) -> tuple[float, float]:
    n = min(len(a), len(b))
    if n < 40:
        return float("nan"), float("nan")
    return fpd(a, b, min_samples=max(n // 4, 20), max_samples=n, num_batches=10, num_points=5, seed=seed)


def evaluate_events(real: EventImages, gen: EventImages, seed: int = 0, classifier: bool = True,
                    obs_real: dict | None = None, obs_gen: dict | None = None) -> tuple[dict, dict]:
    """Compare generated with real event images.

    Returns:
        ``(metrics, extras)``: the JSON-able metrics dict (module docstring) and the
        observables of both samples (for plots).
    """
    eta = real.eta_max
    o_r = event_observables(real.images, eta) if obs_real is None else obs_real
    o_g = event_observables(gen.images, gen.eta_max) if obs_gen is None else obs_gen
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(real))
    half_a, half_b = perm[: len(real) // 2], perm[len(real) // 2:]
    o_a = {k: (v[half_a] if k in _VECTOR else None) for k, v in o_r.items()}
    o_b = {k: (v[half_b] if k in _VECTOR else None) for k, v in o_r.items()}
    # flat per-jet / per-pixel quantities of each half: recompute on the half images
    sub_a, sub_b = real.subset(half_a), real.subset(half_b)
    fa, fb = event_observables(sub_a.images, eta), event_observables(sub_b.images, eta)
    for k in ("jet_pt", "pixel_energy"):
        o_a[k], o_b[k] = fa[k], fb[k]
    metrics: dict = {"n_real": len(real), "n_generated": len(gen), "observables": {}}
    for k in FEATURES:
        w1, ks, p = _compare(o_r[k], o_g[k])
        w1f, ksf, _ = _compare(o_a[k], o_b[k])
        metrics["observables"][k] = {"mean_real": float(np.nanmean(o_r[k])) if np.isfinite(o_r[k]).any() else None,
                                     "mean_gen": float(np.nanmean(o_g[k])) if np.isfinite(o_g[k]).any() else None,
                                     "w1": w1, "w1_floor": w1f, "ks": ks, "ks_p": p, "ks_floor": ksf}
    metrics["selection_score"] = ks_selection_score(o_r, o_g)
    metrics["selection_score_floor"] = ks_selection_score(o_a, o_b)
    xr, xg = jet_features(o_r), jet_features(o_g)
    if classifier and min(len(xr), len(xg)) >= 50:
        res = classifier_two_sample_test(xr, xg, seed=seed)
        metrics["classifier_auc"], metrics["classifier_auc_err"] = res["auc"], res["auc_err"]
    metrics["fpd"], metrics["fpd_err"] = _fpd(xr, xg, seed)
    metrics["fpd_floor"], _ = _fpd(xr[half_a], xr[half_b], seed)
    points = []
    keys = np.unique(real.conditions, axis=0)
    for cond in keys:
        mr = np.all(real.conditions == cond, axis=1)
        mg = np.all(gen.conditions == cond, axis=1)
        if not mg.any():
            continue
        sr, sg = real.subset(mr), gen.subset(mg)
        pr, pg = event_observables(sr.images, eta), event_observables(sg.images, gen.eta_max)
        m_r, m_g = float(pr["summed_mass"].mean()), float(pg["summed_mass"].mean())
        points.append({"m_gluino": float(cond[0]), "m_neutralino": float(cond[1]), "mu": float(cond[2]),
                       "n_real": int(mr.sum()), "n_gen": int(mg.sum()),
                       "summed_mass_mean_real": m_r, "summed_mass_mean_gen": m_g,
                       "summed_mass_rel_diff": (m_g - m_r) / m_r if m_r else float("nan"),
                       "ks_p": {k: _compare(pr[k], pg[k])[2] for k in SELECTION_OBSERVABLES}})
    metrics["mass_points"] = points
    return json_safe(metrics), {"real": o_r, "gen": o_g}


def overlay_shift(hard: EventImages, pileup_real: EventImages, pileup_gen: EventImages) -> dict:
    """The paper's Figure 5 numbers: shifts of mean fat-jet multiplicity and summed jet mass
    when real or generated pile-up images are added to the same hard-scatter images.

    ``pileup_*`` need at least ``len(hard)`` images (the first ones are used).  Returns per
    observable (``n_jets``, ``summed_mass``) the hard-scatter mean, both shifts with their
    standard errors (over the hard events), the relative difference of the shifts with its
    paired standard error (``shift_rel_diff_err``: the standard error of the mean of
    generated-overlay minus real-overlay observable over the same hard events, over the real
    shift), and the relative difference of the overlaid means.
    """
    n = len(hard)
    if len(pileup_real) < n or len(pileup_gen) < n:
        raise ValueError(f"overlay_shift: need >= {n} pile-up images of each kind, found "
                         f"{len(pileup_real)} real and {len(pileup_gen)} generated")
    o0 = event_observables(hard.images, hard.eta_max)
    o_r = event_observables(hard.images + pileup_real.images[:n], hard.eta_max)
    o_g = event_observables(hard.images + pileup_gen.images[:n], hard.eta_max)
    return overlay_shift_observables(o0, o_r, o_g)


def overlay_shift_observables(o_hard: dict, o_real: dict, o_gen: dict) -> dict:
    """:func:`overlay_shift` from the per-event observables of the hard events alone, with real
    and with generated pile-up overlaid (:func:`hepgen.metrics.event_jets.event_observables` of
    the same ``N`` hard events, in the same order), so that several generators can be compared
    on one set of hard and real-overlay observables without recomputing them.

    >>> import numpy as np
    >>> o0 = {"n_jets": np.array([2.0, 3.0]), "summed_mass": np.array([100.0, 200.0])}
    >>> o_r = {"n_jets": np.array([3.0, 4.0]), "summed_mass": np.array([150.0, 250.0])}
    >>> o_g = {"n_jets": np.array([3.0, 3.0]), "summed_mass": np.array([160.0, 260.0])}
    >>> r = overlay_shift_observables(o0, o_r, o_g)
    >>> r["n_jets"]["shift_real"], r["n_jets"]["shift_gen"], r["n_jets"]["shift_rel_diff"]
    (1.0, 0.5, -0.5)
    >>> round(r["summed_mass"]["shift_rel_diff"], 6), r["summed_mass"]["shift_rel_diff_err"]
    (0.2, 0.0)
    """
    n = len(o_hard["n_jets"])
    for name, o in (("real", o_real), ("generated", o_gen)):
        if any(len(o[k]) != n for k in ("n_jets", "summed_mass")):
            raise ValueError(f"overlay_shift_observables: the {name} overlay has {len(o['n_jets'])} events, "
                             f"expected {n} (one per hard event)")
    o0, o_r, o_g = o_hard, o_real, o_gen
    out = {}
    for k in ("n_jets", "summed_mass"):
        base = float(o0[k].mean())
        sr, sg = float(o_r[k].mean()) - base, float(o_g[k].mean()) - base
        # per-event shifts are paired (same hard events): their standard errors
        err_r = float((o_r[k] - o0[k]).std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        err_g = float((o_g[k] - o0[k]).std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        # the difference of the shifts is the mean of o_g − o_r over the same hard events: its
        # paired standard error (the hard event's own fluctuation, common to both, cancels)
        err_d = float((o_g[k] - o_r[k]).std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        out[k] = {"mean_hard": base, "shift_real": sr, "shift_gen": sg, "shift_real_err": err_r, "shift_gen_err": err_g,
                  "shift_rel_diff": (sg - sr) / abs(sr) if sr else float("nan"),
                  "shift_rel_diff_err": err_d / abs(sr) if sr else float("nan"),
                  "mean_rel_diff": (float(o_g[k].mean()) - float(o_r[k].mean())) / float(o_r[k].mean())
                  if o_r[k].mean() else float("nan")}
    return json_safe(out)
