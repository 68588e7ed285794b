"""Real vs generated showers → a metrics dict with stable keys (documented in docs/metrics.md).

:func:`evaluate` compares two in-memory samples; :func:`evaluate_files` reads two
CaloChallenge-style HDF5 files, writes ``metrics.json`` and the HTML report.  The two
samples are compared as they are: if their incident-energy spectra differ, nothing is
reweighted (the difference shows up in the metrics, as it should for a conditional model
sampled at the wrong energies).

Beyond the CaloChallenge keys, which are always computed, metrics come in groups
(``METRIC_GROUPS``) that can be switched on and off: ``features`` (per-feature KS, W1, JSD
and separation power, depth observables included), ``physics`` (response and resolution vs
energy, single-cell spectrum, layer correlations), ``correlation`` (Fisher-z test of the
feature correlations), ``multivariate`` (FPD, KPD, Gaussian MMD, PRDC, each with a
real-vs-real reference), ``diversity`` (SSIM, birthday support, mode collapse,
memorisation), ``regression`` (conditions regressed from the showers) and ``classifier``
(hepgen's classifier test, the CaloChallenge protocol of :mod:`hepgen.domains.showers.calochallenge`,
or both: ``classifier_protocol``).
``FAST_GROUPS`` are the cheap ones.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from hepgen._version import __version__
from hepgen._progress import Stages
from hepgen._io import atomic_path, json_safe, write_metrics
from hepgen.data.formats import ShowerData
from hepgen.data.geometry import CylindricalBinning, geometry_from_dict, load_geometry
from hepgen.domains.showers.calochallenge import calochallenge_levels
from hepgen.domains.showers.large import features_of, open_for_evaluation, streamed_features
from hepgen.domains.showers.plots import save_all
from hepgen.domains.showers.report import write_report
from hepgen.metrics.classifier import (
    classifier_two_sample_test,
    high_level_inputs,
    low_level_inputs,
)
from hepgen.metrics.correlation import fisher_z_test
from hepgen.metrics.distances import (
    binning_for,
    histogram,
    jensen_shannon,
    ks_statistic,
    separation_power,
    wasserstein_1d,
)
from hepgen.metrics.diversity import (
    birthday_support_size,
    mean_pairwise_ssim,
    mode_collapse_indicators,
    nearest_neighbour_memorisation,
)
from hepgen.metrics.multivariate import fpd, kpd, mmd_gaussian, prdc
from hepgen.metrics.observables import (
    cell_energies,
    depth_observables,
    feature_matrix,
    fraction_above_profile,
    high_level_features,
    incident_energy_edges,
    layer_correlation,
    layer_energy_edges,
    lit_cells_profile,
    orientation_asymmetry,
    response_resolution,
)
from hepgen.metrics.regression import condition_regression, condition_targets, regression_inputs

__all__ = [
    "FAST_GROUPS",
    "LOG_BINNED",
    "METRICS_SCHEMA",
    "METRIC_GROUPS",
    "CLASSIFIER_PROTOCOLS",
    "EvaluationDetails",
    "evaluate",
    "evaluate_files",
    "feature_edges",
    "layer_images",
    "normal_scores",
    "planned_stages",
    "resolve_groups",
    "write_outputs",
]

METRICS_SCHEMA = "hepgen.metrics/1"
LOG_BINNED = ("E_layer_", "depth_weighted_energy")  # features histogrammed in log-spaced bins
METRIC_GROUPS = ("features", "physics", "correlation", "multivariate", "diversity", "regression", "classifier")
FAST_GROUPS = ("features", "physics")
CLASSIFIER_PROTOCOLS = ("hepgen", "calochallenge", "both")  # which classifier test(s) the group runs
SSIM_POWERS = (1.0, 0.5, 0.25)  # intensity powers: linear, and two that bring out low deposits
SSIM_PAIRS = 300  # random pairs per layer and sample
FISHER_PERMUTATIONS = 99  # label permutations for the calibrated Fisher-z p-value (min p = 0.01)
BIRTHDAY_QUANTILE = 1e-3  # near-duplicate distance: this quantile of real pair distances
BIRTHDAY_TRIALS = 100  # batches per batch size
# seeds of the groups are offsets of the one ``seed`` argument, so that groups do not share draws
_SEED_OFFSETS = {"correlation": 404, "multivariate": 101, "diversity": 202, "regression": 303}


class EvaluationDetails(NamedTuple):
    """Arrays behind the metrics, for the figures (never written to metrics.json).

    ``features_real``/``features_generated``: name → (N,) per-shower features (CaloChallenge
    features and depth observables); ``rocs``: level → ``{fpr, tpr}``; ``extra``: optional
    ``fisher_z`` = the result of :func:`hepgen.metrics.correlation.fisher_z_test` on the
    normal scores, with the feature ``names``.
    """

    features_real: dict
    features_generated: dict
    rocs: dict
    extra: dict | None = None


def resolve_groups(groups=None, classifier: bool = True) -> list[str]:
    """The metric groups to run, in ``METRIC_GROUPS`` order.

    Arguments:
        groups: None or ``"all"`` (every group), ``"fast"`` (``FAST_GROUPS``), a
            comma-separated string or an iterable of names from ``METRIC_GROUPS``.
        classifier: False drops ``classifier`` whatever ``groups`` says (older switch).
    """
    if groups is None:
        chosen = set(METRIC_GROUPS)
    else:
        items = groups.replace(",", " ").split() if isinstance(groups, str) else list(groups)
        chosen = set()
        for item in items:
            if item == "all":
                chosen |= set(METRIC_GROUPS)
            elif item == "fast":
                chosen |= set(FAST_GROUPS)
            elif item in METRIC_GROUPS:
                chosen.add(item)
            else:
                raise ValueError(f"unknown metric group {item!r}; expected some of "
                                 f"{', '.join(METRIC_GROUPS)} (or 'all', 'fast')")
    if not classifier:
        chosen.discard("classifier")
    return [g for g in METRIC_GROUPS if g in chosen]


def feature_edges(name: str, a: np.ndarray, b: np.ndarray, n_bins: int = 30) -> np.ndarray:
    """Shared histogram edges for a feature: log-spaced for layer energies, see :func:`binning_for`."""
    log = name.startswith(LOG_BINNED) and bool((np.asarray(a) > 0).any() and (np.asarray(b) > 0).any())
    return binning_for(a, b, n_bins, log=log)


def evaluate(real: ShowerData, generated: ShowerData, geometry=None, seed: int = 0, n_bins: int = 30,
             classifier: bool = True, return_details: bool = False, classifier_kwargs: dict | None = None,
             groups=None, train: ShowerData | None = None, max_points: int = 5000, n_energy_bins: int = 10,
             classifier_protocol: str = "hepgen", calochallenge_kwargs: dict | None = None, progress=False):
    """Compare two shower samples.

    Arguments:
        real, generated: the samples (same geometry).
        geometry: overrides the geometry attached to the samples.
        seed: seeds every random step (classifier split, subsamples, permutations, regressors).
        n_bins: bins per histogram for the separation power and JSD.
        classifier: run the low- and high-level classifier tests (the slow part: ~10 s each
            for 10k + 10k showers of 384 voxels on one CPU core).
        return_details: also return an :class:`EvaluationDetails` for the figures.
        classifier_kwargs: passed to :func:`hepgen.metrics.classifier.classifier_two_sample_test`.
        groups: metric groups to run (see :func:`resolve_groups`; default: all of them).
            The CaloChallenge keys (``separation_power``, ``ks``, ``energy_response`` …) are
            always computed.
        train: the model's training sample, for the memorisation test (``diversity`` group).
        max_points: subsample size (seeded) for the O(N²) metrics: PRDC, Gaussian MMD,
            birthday support, nearest-neighbour memorisation.
        n_energy_bins: bins in incident energy for the response and resolution.
        classifier_protocol: the ``classifier`` group's test(s): ``"hepgen"`` (hepgen's
            classifier, key ``classifier``), ``"calochallenge"`` (the CaloChallenge DNN
            protocol, :mod:`hepgen.domains.showers.calochallenge`, key
            ``classifier_calochallenge``; minutes on a CPU) or ``"both"``.
        calochallenge_kwargs: passed to
            :func:`hepgen.domains.showers.calochallenge.calochallenge_levels` (e.g.
            ``epochs``, ``hidden``, ``min_steps``, ``threshold``).
        progress: report the stages (features, each metric group, each classifier and its
            epochs): False, True (a bar on stderr) or a callable taking the message
            (:class:`hepgen._progress.Stages`).

    Returns:
        the JSON-serialisable metrics dict (keys in docs/metrics.md), and with
        ``return_details`` the tuple ``(metrics, details)``.
    """
    geometry = geometry or real.geometry or generated.geometry
    if geometry is None:
        raise ValueError("evaluate: no geometry attached to the samples; pass a binning XML / geometry JSON")
    for name, data in (("real", real), ("generated", generated)):
        if data.showers.shape[1] != geometry.n_voxels:
            raise ValueError(f"evaluate: {name} showers have {data.showers.shape[1]} voxels, "
                             f"expected {geometry.n_voxels} from the geometry")
        if len(data) == 0:
            raise ValueError(f"evaluate: the {name} sample is empty")
    if train is not None and train.showers.shape[1] != geometry.n_voxels:
        raise ValueError(f"evaluate: training showers have {train.showers.shape[1]} voxels, "
                         f"expected {geometry.n_voxels} from the geometry")
    if classifier_protocol not in CLASSIFIER_PROTOCOLS:
        raise ValueError(f"classifier protocol: expected one of {', '.join(CLASSIFIER_PROTOCOLS)}, "
                         f"found {classifier_protocol!r}")
    chosen = resolve_groups(groups, classifier)
    stages = Stages.of(progress, "evaluate showers", planned_stages(chosen, classifier_protocol))
    try:
        return _evaluate(real, generated, geometry, seed, n_bins, return_details, classifier_kwargs, chosen, train,
                         max_points, n_energy_bins, classifier_protocol, calochallenge_kwargs, stages)
    finally:
        stages.close()


def planned_stages(chosen, classifier_protocol: str = "hepgen", report: bool = False) -> list[str]:
    """The stage names :func:`evaluate` reports for the metric groups ``chosen`` (in order).

    >>> planned_stages(["features", "classifier"], "both")
    ['features', 'classifier low_level', 'classifier high_level', 'calochallenge low_level', 'calochallenge high_level']
    """
    out = ["features"] + [g for g in chosen if g not in ("features", "classifier")]
    if "classifier" in chosen:
        if classifier_protocol in ("hepgen", "both"):
            out += ["classifier low_level", "classifier high_level"]
        if classifier_protocol in ("calochallenge", "both"):
            out += ["calochallenge low_level", "calochallenge high_level"]
    return out + (["figures", "report"] if report else [])


def _evaluate(real, generated, geometry, seed, n_bins, return_details, classifier_kwargs, chosen, train, max_points,
              n_energy_bins, classifier_protocol, calochallenge_kwargs, stages):
    stages.stage("features")
    fr = high_level_features(real.showers, real.incident_energies, geometry)
    fg = high_level_features(generated.showers, generated.incident_energies, geometry)
    edges = {name: feature_edges(name, fr[name], fg[name], n_bins) for name in fr}
    sep, ks = {}, {}
    for name in fr:
        sep[name] = separation_power(fr[name], fg[name], edges[name])
        stat, p = ks_statistic(fr[name], fg[name])
        ks[name] = {"statistic": stat, "pvalue": p}
    worst = max(sep, key=sep.get)
    r_resp, g_resp = fr["E_tot_over_E_inc"], fg["E_tot_over_E_inc"]
    e_r, e_g = np.asarray(real.incident_energies).ravel(), np.asarray(generated.incident_energies).ravel()
    metrics = {
        "schema": METRICS_SCHEMA,
        "hepgen_version": __version__,
        "n_real": len(real),
        "n_generated": len(generated),
        "geometry": geometry.to_dict(),
        "n_bins": int(n_bins),
        "seed": int(seed),
        "metric_groups": chosen,
        "separation_power": sep,
        "separation_power_mean": float(np.mean(list(sep.values()))),
        "separation_power_max": {"feature": worst, "value": sep[worst]},
        "ks": ks,
        "energy_response": {
            "real_mean": float(r_resp.mean()), "real_std": float(r_resp.std()),
            "generated_mean": float(g_resp.mean()), "generated_std": float(g_resp.std()),
        },
        "incident_energy_range": {
            "real": [float(e_r.min()), float(e_r.max())],
            "generated": [float(e_g.min()), float(e_g.max())],
        },
        "sparsity_mean": {
            "real": float((real.showers > 0).mean()), "generated": float((generated.showers > 0).mean()),
        },
    }
    # per-shower scalars beyond the CaloChallenge set: they join the feature table and figures
    fr.update(depth_observables(real.showers, geometry))
    fg.update(depth_observables(generated.showers, geometry))
    extra: dict = {}
    if "features" in chosen:
        metrics["features"] = _feature_table(fr, fg, edges, sep, ks, n_bins)
    if "physics" in chosen:
        stages.stage("physics")
        metrics.update(_physics(real, generated, geometry, e_r, e_g, n_bins, n_energy_bins))
    if {"correlation", "multivariate", "diversity"} & set(chosen):
        xr, names = feature_matrix(fr, e_r)
        xg, _ = feature_matrix(fg, e_g)
    if "correlation" in chosen:
        stages.stage("correlation")
        metrics["correlation"] = _correlation(xr, xg, names, extra, seed + _SEED_OFFSETS["correlation"])
    if "multivariate" in chosen:
        stages.stage("multivariate")
        metrics["multivariate"] = _multivariate(xr, xg, seed + _SEED_OFFSETS["multivariate"], max_points)
    if "diversity" in chosen:
        stages.stage("diversity")
        xt = None
        if train is not None and len(train):
            ft = high_level_features(train.showers, train.incident_energies, geometry)
            ft.update(depth_observables(train.showers, geometry))
            xt = feature_matrix(ft, train.incident_energies)[0]
        metrics["diversity"] = _diversity(real, generated, geometry, xr, xg, xt,
                                          seed + _SEED_OFFSETS["diversity"], max_points)
    if "regression" in chosen:
        stages.stage("regression")
        metrics["condition_regression"] = _regression(real, generated, fr, fg, seed + _SEED_OFFSETS["regression"])
    rocs = {}
    if "classifier" in chosen and classifier_protocol in ("hepgen", "both"):
        metrics["classifier"] = {}
        hr = {k: fr[k] for k in edges}  # the CaloChallenge features only, as documented
        hg = {k: fg[k] for k in edges}
        inputs = {
            "low_level": (low_level_inputs(real.showers, real.incident_energies),
                          low_level_inputs(generated.showers, generated.incident_energies)),
            "high_level": (high_level_inputs(hr, real.incident_energies),
                           high_level_inputs(hg, generated.incident_energies)),
        }
        for level, (a, b) in inputs.items():
            stages.stage(f"classifier {level}")
            res = classifier_two_sample_test(a, b, seed=seed, **(classifier_kwargs or {}))
            rocs[level] = res.pop("roc")
            metrics["classifier"][level] = res
    if "classifier" in chosen and classifier_protocol in ("calochallenge", "both"):
        cc = calochallenge_levels(real.showers, real.incident_energies, generated.showers,
                                  generated.incident_energies, geometry, **{"seed": seed, **(calochallenge_kwargs or {})},
                                  stages=stages)
        for res in cc.values():
            res.pop("history")  # per-epoch losses: logged, not kept
        metrics["classifier_calochallenge"] = cc
    if return_details:
        return metrics, EvaluationDetails(fr, fg, rocs, extra)
    return metrics


def _feature_table(fr: dict, fg: dict, edges: dict, sep: dict, ks: dict, n_bins: int) -> dict:
    """name → {separation_power, ks_statistic, ks_pvalue, wasserstein, jsd} for every per-shower feature."""
    table = {}
    for name, a in fr.items():
        b = fg[name]
        e = edges[name] if name in edges else feature_edges(name, a, b, n_bins)
        if name in sep:
            s, (stat, p) = sep[name], (ks[name]["statistic"], ks[name]["pvalue"])
        else:
            s = separation_power(a, b, e)
            stat, p = ks_statistic(a, b)
        table[name] = {"separation_power": s, "ks_statistic": stat, "ks_pvalue": p,
                       "wasserstein": wasserstein_1d(a, b), "jsd": jensen_shannon(a, b, e)}
    return table


def _response_dict(r: dict) -> dict:
    keys = ("n", "e_mean", "response", "response_err", "resolution", "resolution_err")
    return {**{k: np.asarray(r[k]).tolist() for k in keys}, "fit": r["fit"]}


def _physics(real, generated, geometry, e_r, e_g, n_bins, n_energy_bins) -> dict:
    """Response/resolution vs energy, single-cell spectrum and layer-energy correlations."""
    edges = incident_energy_edges(e_r, n_energy_bins)
    min_count = 20 if min(len(real), len(generated)) >= 200 else 2
    rr = response_resolution(real.showers, e_r, edges=edges, min_count=min_count)
    rg = response_resolution(generated.showers, e_g, edges=edges, min_count=min_count)
    cr, cg = cell_energies(real.showers), cell_energies(generated.showers)
    cell = {"n_real": int(cr.size), "n_generated": int(cg.size)}
    if cr.size and cg.size:
        ce = binning_for(cr, cg, n_bins, log=True)
        cell.update(separation_power=separation_power(cr, cg, ce), jsd=jensen_shannon(cr, cg, ce),
                    real_mean=float(cr.mean()), generated_mean=float(cg.mean()))
    out = {"response_resolution": {"edges": edges.tolist(), "min_count": min_count,
                                   "real": _response_dict(rr), "generated": _response_dict(rg)},
           "cell_energy": cell}
    if len(real) >= 2 and len(generated) >= 2:
        lr, lg = layer_correlation(real.showers, geometry), layer_correlation(generated.showers, geometry)
        sr, sg = (layer_correlation(real.showers, geometry, "spearman"),
                  layer_correlation(generated.showers, geometry, "spearman"))
        out["layer_correlation"] = {
            "real": lr.tolist(), "generated": lg.tolist(), "max_abs_diff": _max_offdiag_diff(lr, lg),
            "constant_layers": {"real": np.flatnonzero(np.isnan(np.diag(lr))).tolist(),
                                "generated": np.flatnonzero(np.isnan(np.diag(lg))).tolist()},
            "spearman": {"real": sr.tolist(), "generated": sg.tolist(), "max_abs_diff": _max_offdiag_diff(sr, sg)},
        }
    out["lit_cells"] = _lit_cells(real, generated, geometry)
    if isinstance(geometry, CylindricalBinning) and len(real) >= 2 and len(generated) >= 2:
        perms = geometry.orientations()  # turns and mirror images ("dihedral")
        if len(perms) > 1:  # angular bins: are the samples' cell means symmetric under turns and mirror images?
            out["orientation_asymmetry"] = {"symmetry": "dihedral", "n_orientations": len(perms),
                                            "real": _asymmetry(real.showers, perms),
                                            "generated": _asymmetry(generated.showers, perms)}
    return out


def _asymmetry(showers: np.ndarray, perms: np.ndarray) -> dict:
    chi2, ndof = orientation_asymmetry(showers, perms)
    return {"chi2": chi2, "ndof": ndof, "chi2_per_ndof": chi2 / ndof if ndof else None}


def _max_offdiag_diff(a: np.ndarray, b: np.ndarray) -> float | None:
    off = ~np.eye(len(a), dtype=bool)
    diff = np.abs(b - a)[off & np.isfinite(a) & np.isfinite(b)]
    return float(diff.max()) if diff.size else None


def _lit_cells(real, generated, geometry, n_bins: int = 12, min_count: int = 20) -> dict:
    """Lit cells per layer vs that layer's energy (quantiles 50/90/99 % in the reference's log bins),
    and per layer the fraction of showers above the reference's 99th percentile at their layer energy
    (bins with at least ``min_count`` reference showers; the reference gives at most 0.01)."""
    edges = layer_energy_edges(real.showers, geometry, n_bins)
    quantiles = (0.5, 0.9, 0.99)
    pr = lit_cells_profile(real.showers, geometry, edges, quantiles)
    pg = lit_cells_profile(generated.showers, geometry, edges, quantiles)
    q99 = np.where(pr["n"] >= min_count, pr["quantiles"][-1], np.nan)
    above_r = fraction_above_profile(real.showers, geometry, edges, q99)
    above_g = fraction_above_profile(generated.showers, geometry, edges, q99)

    def listed(a):  # NaN → null in metrics.json
        return np.where(np.isfinite(a), a, None).tolist()

    return {"edges_mev": listed(edges), "quantiles": list(quantiles), "min_count": min_count,
            "real": {"n": pr["n"].astype(int).tolist(), "quantiles": listed(pr["quantiles"])},
            "generated": {"n": pg["n"].astype(int).tolist(), "quantiles": listed(pg["quantiles"])},
            "above_real_q99": {"real": listed(above_r), "generated": listed(above_g)}}


def normal_scores(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map every column to standard-normal quantiles of its rank in the pooled sample.

    ``Φ⁻¹((rank − ½) / n)`` with average ranks for ties (``scipy.stats.rankdata``), the same
    monotone map for both samples, so identical samples stay identical.  Correlations of
    normal scores (van der Waerden) are robust to the heavy tails and spikes of shower
    features, for which Fisher's z-approximation, derived for bivariate normal data, fails.

    Arguments:
        a: (N_a, d), b: (N_b, d).

    Returns:
        the transformed ``(a, b)``.
    """
    from scipy import stats

    pooled = np.concatenate([a, b])
    ranks = stats.rankdata(pooled, axis=0)
    g = stats.norm.ppf((ranks - 0.5) / len(pooled))
    return g[: len(a)], g[len(a):]


def _correlation(xr: np.ndarray, xg: np.ndarray, names: list[str], extra: dict, seed: int) -> dict:
    """Fisher-z test of the normal-score correlation matrices, with a real-vs-real reference."""
    if min(len(xr), len(xg)) < 4:
        return {"fisher_z": None}
    gr, gg = normal_scores(xr, xg)
    res = fisher_z_test(gr, gg)
    extra["fisher_z"] = {**res, "names": names}
    # the z_ij share features and are correlated, so χ² does not follow χ²_ndof: calibrate it by
    # reassigning the pooled rows to two samples of the same sizes at random
    pooled = np.concatenate([gr, gg])
    rng = np.random.default_rng(seed)
    n_perm = FISHER_PERMUTATIONS
    exceed = 0
    for _ in range(n_perm):
        perm = rng.permutation(len(pooled))
        exceed += fisher_z_test(pooled[perm[: len(gr)]], pooled[perm[len(gr):]])["chi2"] >= res["chi2"]
    z = res["z"]
    finite = np.isfinite(z)
    out = {"chi2": res["chi2"], "ndof": res["ndof"], "p_value": res["p_value"],
           "chi2_per_ndof": res["chi2"] / res["ndof"] if res["ndof"] else None,
           "max_abs_z": float(np.abs(z[finite]).max()) if finite.any() else None,
           "p_value_permutation": (1 + exceed) / (1 + n_perm), "n_permutations": n_perm,
           "n_features": len(names), "constant_features": [names[i] for i in res["constant_columns"]],
           "reference_chi2_per_ndof": None, "reference_p_value": None}
    if len(xr) >= 16:  # two random halves of the real sample: what χ²/ndof equal samples give
        perm = np.random.default_rng(seed).permutation(len(xr))
        half = len(xr) // 2
        ref = fisher_z_test(*normal_scores(xr[perm[:half]], xr[perm[half:]]))
        if ref["ndof"]:
            out.update(reference_chi2_per_ndof=ref["chi2"] / ref["ndof"], reference_p_value=ref["p_value"])
    return {"fisher_z": out}


def _nonconstant(xr: np.ndarray) -> np.ndarray:
    """Mask of the features that vary in the real sample."""
    mu, sd = xr.mean(axis=0), xr.std(axis=0)
    return sd > 1e-12 * np.maximum(np.abs(mu), 1.0)


def _standardise(xr: np.ndarray, xg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardise both by the real sample's mean and std; drop features constant in the real one."""
    keep = _nonconstant(xr)
    mu, sd = xr[:, keep].mean(axis=0), xr[:, keep].std(axis=0)
    return (xr[:, keep] - mu) / sd, (xg[:, keep] - mu) / sd


def _multivariate(xr: np.ndarray, xg: np.ndarray, seed: int, max_points: int) -> dict | None:
    """FPD, KPD, Gaussian MMD and PRDC on standardised features, each with a real-vs-real reference.

    The real sample is split at random (seeded) into halves A and B; the generated sample is
    subsampled to |A| rows with a generator seeded alike (so identical inputs give A itself).
    Every metric is computed for (A, generated) — the value — and for (A, B) — the reference,
    what an ideal generator would score with these sample sizes.  PRDC and MMD use at most
    ``max_points`` rows of each.
    """
    xr, xg = _standardise(xr, xg)
    if xr.shape[1] == 0 or len(xr) < 40 or len(xg) < 20:
        return None
    half = min(len(xr) // 2, len(xg))
    perm = np.random.default_rng(seed).permutation(len(xr))
    a, b = xr[perm[:half]], xr[perm[half:2 * half]]
    g = xg[np.random.default_rng(seed).permutation(len(xg))[:half]]
    m = min(int(max_points), half)
    kpd_batch = min(2000, half)
    prdc_k = 5 if m > 5 else 1

    def run(other: np.ndarray) -> dict:
        f, f_err = fpd(a, other, min_samples=max(2, half // 5), max_samples=half, num_batches=10, num_points=5,
                       normalise=False, seed=seed)
        k, k_err = kpd(a, other, num_batches=10, batch_size=kpd_batch, normalise=False, seed=seed)
        mmd = mmd_gaussian(a, other, seed=seed, max_samples=m)
        pr = prdc(a[:m], other[:m], k=prdc_k)  # already at most m rows: prdc's own cap does not act
        pr = {key: pr[key] for key in ("precision", "recall", "density", "coverage")}
        return {"fpd": f, "fpd_err": f_err, "kpd": k, "kpd_err": k_err, "mmd_gaussian": mmd, **pr}

    value, reference = run(g), run(b)
    out = {name: {"value": value[name], "reference": reference[name]} for name in value}
    out.update(n_compared=int(half), n_subsample=int(m), n_features=int(xr.shape[1]), prdc_k=int(prdc_k))
    return out


def layer_images(showers: np.ndarray, incident_energies: np.ndarray, geometry) -> list[np.ndarray | None]:
    """Per-layer images of the energy fraction E_voxel / E_inc: (N, n_alpha, n_r) or (N, ny, nx).

    Cylindrical layers are (angular, radial) grids in voxel order (radial fastest); Cartesian
    layers (y, x), each layer of a per-layer Cartesian grid its own (ny, nx).  A layer with
    fewer than 3 bins along a side, or of hexagonal cells, has no image (None): the SSIM
    window needs at least 3 × 3 pixels on a square lattice.
    """
    x = np.asarray(showers, dtype=np.float64) / np.asarray(incident_energies, dtype=np.float64).reshape(-1, 1)
    out: list[np.ndarray | None] = []
    for i, s in enumerate(geometry.layer_slices):
        if geometry.kind == "cylindrical":
            lb = geometry.active_layers[i]
            shape = (lb.n_alpha, lb.n_r)
        elif hasattr(geometry, "layer_image_shape"):  # per-layer Cartesian; None for hexagons
            shape = geometry.layer_image_shape(i)
        else:
            shape = (geometry.ny, geometry.nx)
        out.append(x[:, s].reshape(len(x), *shape) if shape is not None and min(shape) >= 3 else None)
    return out


def _diversity(real, generated, geometry, xr, xg, xt, seed, max_points) -> dict:
    """SSIM of random pairs per layer, birthday support, mode-collapse indicators, memorisation."""
    out: dict = {}
    # SSIM: pairs within each sample, per layer image, same data range for both samples
    ir = layer_images(real.showers, real.incident_energies, geometry)
    ig = layer_images(generated.showers, generated.incident_energies, geometry)
    layers = [i for i, im in enumerate(ir) if im is not None]
    if layers and min(len(real), len(generated)) >= 2:
        per_sample = {}
        for name, images in (("real", ir), ("generated", ig)):
            per_layer = []
            for i in layers:
                data_range = float(ir[i].max()) if ir[i].max() > 0 else 1.0
                per_layer.append(mean_pairwise_ssim(images[i], data_range=data_range, n_pairs=SSIM_PAIRS,
                                                    seed=seed + i, powers=SSIM_POWERS))
            per_sample[name] = {
                key: {"mean": float(np.mean([r[key]["mean"] for r in per_layer])),
                      # the layers share their pairs: errors are added linearly (conservative)
                      "error": float(np.mean([r[key]["error"] for r in per_layer]))}
                for key in per_layer[0] if key != "n_pairs"}
        out["ssim"] = {**per_sample, "n_pairs": SSIM_PAIRS, "layers": layers}
    # standardised feature rows for the distance-based checks
    zr, zg = _standardise(xr, xg)
    m = int(max_points)
    # alike-seeded draws: identical inputs give identical subsamples
    sub_r = zr[np.random.default_rng(seed).permutation(len(zr))[:m]]
    sub_g = zg[np.random.default_rng(seed).permutation(len(zg))[:m]]
    if zr.shape[1] and min(len(sub_r), len(sub_g)) >= 3:
        ref_half = sub_r[: len(sub_r) // 2]
        threshold = birthday_support_size(sub_r, quantile=BIRTHDAY_QUANTILE, reference=ref_half, n_trials=1,
                                          batch_sizes=[2], seed=seed)["threshold"]
        # a dense grid of batch sizes and 100 batches per size: the estimate scatters by ~±15 %
        sizes = np.unique(np.round(np.geomspace(2, min(len(sub_r), len(sub_g), 4096), 120)).astype(int))
        bday_r = birthday_support_size(sub_r, threshold=threshold, n_trials=BIRTHDAY_TRIALS, batch_sizes=sizes,
                                       seed=seed)
        bday_g = birthday_support_size(sub_g, threshold=threshold, n_trials=BIRTHDAY_TRIALS, batch_sizes=sizes,
                                       seed=seed)
        keep = ("support", "batch_size", "resolved")
        out["birthday"] = {"real": {k: bday_r[k] for k in keep}, "generated": {k: bday_g[k] for k in keep},
                           "threshold": threshold, "quantile": BIRTHDAY_QUANTILE}
        out["mode_collapse"] = mode_collapse_indicators(zr, zg, seed=seed, max_samples=min(2000, m))
    if xt is not None and len(xt) >= 2 and min(len(xr), len(xg)) >= 2:
        keep = _nonconstant(xr)
        sub_t = xt[np.random.default_rng(seed + 1).permutation(len(xt))[: 2 * m]][:, keep]
        mem = nearest_neighbour_memorisation(sub_t, xg[np.random.default_rng(seed).permutation(len(xg))[:m]][:, keep],
                                             xr[np.random.default_rng(seed).permutation(len(xr))[:m]][:, keep],
                                             max_samples=m, max_train=2 * m, seed=seed)  # the caps applied above
        out["memorisation"] = mem
    return out


def _regression(real, generated, fr, fg, seed) -> dict:
    """Regress log E_inc and the other conditions from the features: real-trained, applied to both."""
    if len(real) < 40 or len(generated) < 2:
        return {}
    tr = condition_targets(real.incident_energies, real.conditions)
    tg = condition_targets(generated.incident_energies, generated.conditions)
    return condition_regression(regression_inputs(fr), tr, regression_inputs(fg), tg, seed=seed)


def read_training_log(generated: ShowerData, train_log=None) -> dict[str, list] | None:
    """Column → values of the ``train_log.csv`` behind ``generated``, or None.

    ``train_log``: the CSV, or a run folder holding it; default: the folder of the checkpoint
    that ``hepgen sample`` recorded in the file's ``checkpoint`` attribute (a relative path is
    taken from the current folder).  Empty cells (epochs without ``val_physics``) become NaN.
    """
    if train_log is None:
        ckpt = generated.attrs.get("checkpoint")
        if not ckpt:
            return None
        train_log = Path(str(ckpt)).parent
    path = Path(train_log)
    path = path / "train_log.csv" if path.is_dir() else path
    if not path.is_file():
        logging.getLogger(__name__).debug("no training log at %s: the report has no loss curve", path)
        return None
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return None
    return {k: [float(r[k]) if r.get(k) not in (None, "") else float("nan") for r in rows] for k in rows[0]}


def _hist_data(metrics: dict, fr: dict, fg: dict, edges: dict, training_log: dict | None) -> dict:
    """The numbers behind the report's histograms, to re-plot them elsewhere (``hist_data.json``)."""
    table = metrics.get("features") or {}
    features = {}
    for name, e in edges.items():
        features[name] = {
            "edges": np.asarray(e, dtype=float).tolist(),
            "counts_real": histogram(fr[name], e).astype(float).tolist(),
            "counts_generated": histogram(fg[name], e).astype(float).tolist(),
            "n_real": int(len(fr[name])), "n_generated": int(len(fg[name])),
            "separation_power": (table.get(name) or {}).get("separation_power",
                                                            metrics["separation_power"].get(name)),
        }
    return {"description": "per feature: shared bin edges and raw counts (not normalised) of the reference "
                           "('real') and generated showers, as drawn in figures/*.png; under- and overflow are "
                           "folded into the first and last bins; NaN values are not counted. training_log: the "
                           "generator's train_log.csv, column -> values.",
            "features": features, "training_log": training_log}


def write_outputs(metrics: dict, real: ShowerData, generated: ShowerData, out_dir, details=None,
                  sep_threshold: float = 0.1, p_threshold: float = 0.01, train_log=None, progress=False) -> Path:
    """Write ``out_dir/metrics.json``, ``out_dir/figures/*.png`` (and ``.pdf``), ``out_dir/hist_data.json``
    and ``out_dir/report.html``; return the report path.

    ``hist_data.json`` holds the bin edges and counts of every feature histogram and the training
    history; ``train_log`` is the generator's ``train_log.csv`` or run folder (default: found
    through the generated file's ``checkpoint`` attribute, see :func:`read_training_log`), drawn
    as the first figure when found.

    ``details`` is the second item of ``evaluate(..., return_details=True)`` (an
    :class:`EvaluationDetails`, or an older ``(features_real, features_generated, rocs)``
    tuple); without it the features are recomputed and the ROC and feature-correlation
    figures are left out.  ``sep_threshold`` and ``p_threshold`` set the report's flags; ``progress``
    reports the stages ``figures`` and ``report`` (see :func:`evaluate`).
    """
    stages = Stages.of(progress, "report", ["figures", "report"])
    try:
        return _write_outputs(metrics, real, generated, out_dir, details, sep_threshold, p_threshold, train_log, stages)
    finally:
        stages.close()


def _write_outputs(metrics, real, generated, out_dir, details, sep_threshold, p_threshold, train_log, stages) -> Path:
    stages.stage("figures")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_metrics(metrics, out / "metrics.json")
    geometry = real.geometry or generated.geometry
    if geometry is None or geometry.to_dict() != metrics["geometry"]:
        geometry = geometry_from_dict(metrics["geometry"])
    if details is None:
        fr = high_level_features(real.showers, real.incident_energies, geometry)
        fg = high_level_features(generated.showers, generated.incident_energies, geometry)
        if "features" in metrics:
            fr.update(depth_observables(real.showers, geometry))
            fg.update(depth_observables(generated.showers, geometry))
        details = EvaluationDetails(fr, fg, {}, {})
    fr, fg, rocs = details[0], details[1], details[2]
    extra = (details[3] if len(details) > 3 else None) or {}
    n_bins = int(metrics.get("n_bins", 30))
    table = metrics.get("features") or {}
    names = [k for k in fr if k in metrics["separation_power"] or k in table]
    edges = {k: feature_edges(k, fr[k], fg[k], n_bins) for k in names}
    seps = {k: (table.get(k) or {}).get("separation_power", metrics["separation_power"].get(k)) for k in names}
    aucs = {k: v["auc"] for k, v in (metrics.get("classifier") or {}).items()}
    training_log = read_training_log(generated, train_log)
    figures = save_all(out, real.showers, generated.showers, geometry, fr, fg, edges, seps, rocs, aucs,
                       metrics=metrics, extra=extra, training_log=training_log)
    stages.stage("report")
    with atomic_path(out / "hist_data.json") as tmp:
        Path(tmp).write_text(json.dumps(json_safe(_hist_data(metrics, fr, fg, edges, training_log)), allow_nan=False))
    return write_report(metrics, out, figures, sep_threshold=sep_threshold, p_threshold=p_threshold)


def _all_rows(real, generated, real_files, gen_files, geometry, n_bins: int, seed: int) -> dict:
    """For files larger than the memory budget (:mod:`hepgen.domains.showers.large`): which rows
    the voxel metrics saw (``evaluated_rows``), and the separation power and KS test of every
    per-shower feature over all rows (``separation_power_all_rows``), features streamed chunk by chunk."""
    rows, feats = {}, []
    for name, data, files in (("real", real, real_files), ("generated", generated, gen_files)):
        if files is None:
            rows[name] = {"rows": len(data), "evaluated": len(data)}
            feats.append(features_of(data.showers, data.incident_energies, geometry))
        else:
            rows[name] = {"rows": len(files), "evaluated": len(data), "seed": int(seed)}
            feats.append(streamed_features(files, geometry))
    fr, fg = feats
    sep, ks = {}, {}
    for name in fr:
        sep[name] = separation_power(fr[name], fg[name], feature_edges(name, fr[name], fg[name], n_bins))
        stat, p = ks_statistic(fr[name], fg[name])
        ks[name] = {"statistic": stat, "pvalue": p}
    return {"evaluated_rows": rows,
            "separation_power_all_rows": {"values": sep, "mean": float(np.mean(list(sep.values()))), "ks": ks}}


def _showers(source, geometry, budget_gb=None, n_samples: int = 2, seed: int = 0):
    """``(showers, file set or None)``: in-memory showers with ``geometry`` attached, or a file read
    (:func:`~hepgen.data.formats.read_showers`; one above ``budget_gb`` as a seeded sample, with its
    :class:`~hepgen.data.chunked.ShowerFileSet` for the streamed features, see
    :func:`~hepgen.domains.showers.large.open_for_evaluation`)."""
    if not isinstance(source, ShowerData):
        return open_for_evaluation(source, geometry, budget_gb, n_samples, seed)
    if geometry is None:
        return source, None
    return ShowerData(source.showers, source.incident_energies, source.conditions, geometry, source.attrs), None


def evaluate_files(real_path: str | os.PathLike, generated_path: str | os.PathLike, geometry=None,
                   out_dir=None, seed: int = 0, report: bool = True, classifier: bool = True,
                   n_bins: int = 30, groups=None, train_path: str | os.PathLike | None = None,
                   sep_threshold: float = 0.1, p_threshold: float = 0.01, max_points: int = 5000,
                   classifier_protocol: str = "hepgen", calochallenge_kwargs: dict | None = None,
                   progress=False, memory_budget_gb: float | None = None) -> dict:
    """Read two shower files, evaluate, and write ``out_dir/metrics.json`` (+ report.html and figures/).

    A file larger than ``memory_budget_gb`` (default 4 GB; :mod:`hepgen.domains.showers.large`)
    is evaluated on a seeded sample of at most ``evaluation_cap`` rows read chunk by chunk, and
    its per-shower features are streamed over every row for ``separation_power_all_rows``
    (``evaluated_rows`` says how many rows each metric saw).

    Arguments:
        real_path, generated_path: CaloChallenge-style HDF5 files (:func:`hepgen.data.formats.read_showers`),
            or :class:`~hepgen.data.formats.ShowerData` already in memory (notebooks).
        geometry: a geometry, or the path of a binning XML / geometry JSON; default: the files' own.
        out_dir: output folder; nothing is written when None.
        seed: seeds the classifier tests.
        report: also write ``report.html`` and ``figures/`` (only with ``out_dir``).
        classifier: run the classifier tests.
        n_bins: bins per histogram.
        groups: metric groups (see :func:`resolve_groups`; default all).
        train_path: the model's training showers (HDF5 or ShowerData), for the memorisation test.
        sep_threshold, p_threshold: flag thresholds of the report (:func:`hepgen.domains.showers.report.write_report`).
        max_points: subsample size of the O(N²) metrics (see :func:`evaluate`).
        classifier_protocol, calochallenge_kwargs: which classifier test(s), see :func:`evaluate`.
        progress: report the stages (reading, features, metric groups, classifier epochs, figures,
            report): False, True (a bar on stderr) or a callable taking the message.
        memory_budget_gb: files above it are evaluated on a bounded sample (see above).

    Returns:
        the metrics dict, with ``inputs`` = the paths of the files read (``train`` too when given).

    Raises:
        ValueError: the two files hold different geometries or numbers of voxels, or neither
            holds a geometry and none is given.
    """
    planned = ["read"] + planned_stages(resolve_groups(groups, classifier), classifier_protocol,
                                        report=out_dir is not None and report)
    stages = Stages.of(progress, "evaluate showers", planned)
    try:
        return _evaluate_files(real_path, generated_path, geometry, out_dir, seed, report, classifier, n_bins, groups,
                               train_path, sep_threshold, p_threshold, max_points, classifier_protocol,
                               calochallenge_kwargs, stages, memory_budget_gb)
    finally:
        stages.close()


def _evaluate_files(real_path, generated_path, geometry, out_dir, seed, report, classifier, n_bins, groups,
                    train_path, sep_threshold, p_threshold, max_points, classifier_protocol, calochallenge_kwargs,
                    stages, memory_budget_gb=None) -> dict:
    stages.stage("read")
    if geometry is not None and not hasattr(geometry, "n_voxels"):
        geometry = load_geometry(geometry)
    paths = {}
    for key, given in (("real", real_path), ("generated", generated_path), ("train", train_path)):
        if given is not None and not isinstance(given, ShowerData):
            paths[key] = str(given)
    n_samples = 2 if train_path is None else 3
    (real, real_files), (generated, gen_files) = (_showers(x, geometry, memory_budget_gb, n_samples, seed)
                                                  for x in (real_path, generated_path))
    real_path, generated_path = paths.get("real", "the reference showers"), paths.get("generated", "the generated showers")
    if real.showers.shape[1] != generated.showers.shape[1]:
        raise ValueError(f"{generated_path} holds showers of {generated.showers.shape[1]} voxels but "
                         f"{real_path} holds {real.showers.shape[1]}: they cannot be compared")
    if geometry is None:
        if real.geometry is not None and generated.geometry is not None \
                and real.geometry.to_dict() != generated.geometry.to_dict():
            raise ValueError(f"{real_path} and {generated_path} store different geometries "
                             f"({real.geometry.to_dict()} vs {generated.geometry.to_dict()}); "
                             "pass the binning to use explicitly if they are meant to be the same")
        geometry = real.geometry or generated.geometry
    if geometry is None:
        raise ValueError(f"neither {real_path} nor {generated_path} stores a geometry; "
                         "pass the CaloChallenge binning XML (--binning)")
    train = None
    if train_path is not None:
        train, _ = _showers(train_path, geometry, memory_budget_gb, n_samples, seed)
        train_path = paths.get("train", "the training showers")
        if train.showers.shape[1] != real.showers.shape[1]:
            raise ValueError(f"{train_path} holds showers of {train.showers.shape[1]} voxels but "
                             f"{real_path} holds {real.showers.shape[1]}: they cannot be compared")
    metrics, details = evaluate(real, generated, geometry, seed=seed, n_bins=n_bins, classifier=classifier,
                                return_details=True, groups=groups, train=train, max_points=max_points,
                                classifier_protocol=classifier_protocol, calochallenge_kwargs=calochallenge_kwargs,
                                progress=stages)
    if paths:  # the files compared (in-memory samples have no path)
        metrics["inputs"] = {"real": paths.get("real", "(in memory)"),
                             "generated": paths.get("generated", "(in memory)")}
        if "train" in paths:
            metrics["inputs"]["train"] = paths["train"]
    if real_files is not None or gen_files is not None:
        metrics.update(_all_rows(real, generated, real_files, gen_files, geometry, n_bins, seed))
    if out_dir is not None:
        if report:
            write_outputs(metrics, real, generated, out_dir, details=details, sep_threshold=sep_threshold,
                          p_threshold=p_threshold, progress=stages)
        else:
            write_metrics(metrics, Path(out_dir) / "metrics.json")
    return metrics
