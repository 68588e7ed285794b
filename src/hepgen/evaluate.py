"""Real vs generated showers → a metrics dict with stable keys (documented in docs/metrics.md).

:func:`evaluate` compares two in-memory samples; :func:`evaluate_files` reads two
CaloChallenge-style HDF5 files, writes ``metrics.json`` and the HTML report.  The two
samples are compared as they are: if their incident-energy spectra differ, nothing is
reweighted (the difference shows up in the metrics, as it should for a conditional model
sampled at the wrong energies).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from hepgen import __version__
from hepgen._io import atomic_path
from hepgen.data.formats import ShowerData, read_showers
from hepgen.metrics.classifier import (
    classifier_two_sample_test,
    high_level_inputs,
    low_level_inputs,
)
from hepgen.metrics.distances import binning_for, ks_statistic, separation_power
from hepgen.metrics.observables import high_level_features

__all__ = [
    "LOG_BINNED",
    "METRICS_SCHEMA",
    "evaluate",
    "evaluate_files",
    "feature_edges",
    "write_metrics",
    "write_outputs",
]

METRICS_SCHEMA = "hepgen.metrics/1"
LOG_BINNED = ("E_layer_",)  # features histogrammed in log-spaced bins


def feature_edges(name: str, a: np.ndarray, b: np.ndarray, n_bins: int = 30) -> np.ndarray:
    """Shared histogram edges for a feature: log-spaced for layer energies, see :func:`binning_for`."""
    log = name.startswith(LOG_BINNED) and bool((np.asarray(a) > 0).any() and (np.asarray(b) > 0).any())
    return binning_for(a, b, n_bins, log=log)


def evaluate(real: ShowerData, generated: ShowerData, geometry=None, seed: int = 0, n_bins: int = 30,
             classifier: bool = True, return_details: bool = False, classifier_kwargs: dict | None = None):
    """Compare two shower samples.

    Arguments:
        real, generated: the samples (same geometry).
        geometry: overrides the geometry attached to the samples.
        seed: seeds the classifier tests.
        n_bins: bins per histogram for the separation power.
        classifier: run the low- and high-level classifier tests (the slow part: ~10 s each
            for 10k + 10k showers of 384 voxels on one CPU core).
        return_details: also return ``(features_real, features_generated, roc_curves)`` for plots.
        classifier_kwargs: passed to :func:`hepgen.metrics.classifier.classifier_two_sample_test`.

    Returns:
        the JSON-serialisable metrics dict (keys in docs/metrics.md), and with
        ``return_details`` the tuple ``(metrics, (features_real, features_generated, rocs))``.
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
    fr = high_level_features(real.showers, real.incident_energies, geometry)
    fg = high_level_features(generated.showers, generated.incident_energies, geometry)
    sep, ks = {}, {}
    for name in fr:
        sep[name] = separation_power(fr[name], fg[name], feature_edges(name, fr[name], fg[name], n_bins))
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
    rocs = {}
    if classifier:
        metrics["classifier"] = {}
        inputs = {
            "low_level": (low_level_inputs(real.showers, real.incident_energies),
                          low_level_inputs(generated.showers, generated.incident_energies)),
            "high_level": (high_level_inputs(fr, real.incident_energies),
                           high_level_inputs(fg, generated.incident_energies)),
        }
        for level, (a, b) in inputs.items():
            res = classifier_two_sample_test(a, b, seed=seed, **(classifier_kwargs or {}))
            rocs[level] = res.pop("roc")
            metrics["classifier"][level] = res
    if return_details:
        return metrics, (fr, fg, rocs)
    return metrics


def _json_safe(obj):
    """NaN/inf → None and numpy scalars → Python, so that metrics.json is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def write_metrics(metrics: dict, path: str | os.PathLike) -> Path:
    """Write ``metrics`` as strict JSON (NaN → null), atomically; ROC arrays are never included."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(_json_safe(metrics), indent=2, sort_keys=True, allow_nan=False))
    return path


def write_outputs(metrics: dict, real: ShowerData, generated: ShowerData, out_dir, details=None,
                  sep_threshold: float = 0.1, p_threshold: float = 0.01) -> Path:
    """Write ``out_dir/metrics.json``, ``out_dir/figures/*.png`` and ``out_dir/report.html``; return the report path.

    ``details`` is the second item of ``evaluate(..., return_details=True)``; without it the
    features are recomputed and the ROC figure is left out.
    """
    from hepgen.report.html import write_report
    from hepgen.report.plots import save_all

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_metrics(metrics, out / "metrics.json")
    geometry = real.geometry or generated.geometry
    if geometry is None or geometry.to_dict() != metrics["geometry"]:
        from hepgen.data.geometry import geometry_from_dict

        geometry = geometry_from_dict(metrics["geometry"])
    if details is None:
        details = (high_level_features(real.showers, real.incident_energies, geometry),
                   high_level_features(generated.showers, generated.incident_energies, geometry), {})
    fr, fg, rocs = details
    n_bins = int(metrics.get("n_bins", 30))
    edges = {k: feature_edges(k, fr[k], fg[k], n_bins) for k in fr}
    aucs = {k: v["auc"] for k, v in (metrics.get("classifier") or {}).items()}
    figures = save_all(out, real.showers, generated.showers, geometry, fr, fg, edges,
                       metrics["separation_power"], rocs, aucs)
    return write_report(metrics, out, figures, sep_threshold=sep_threshold, p_threshold=p_threshold)


def evaluate_files(real_path: str | os.PathLike, generated_path: str | os.PathLike, geometry=None,
                   out_dir=None, seed: int = 0, report: bool = True, classifier: bool = True,
                   n_bins: int = 30) -> dict:
    """Read two shower files, evaluate, and write ``out_dir/metrics.json`` (+ report.html and figures/).

    Arguments:
        real_path, generated_path: CaloChallenge-style HDF5 files (:func:`hepgen.data.formats.read_showers`).
        geometry: a geometry, or the path of a binning XML / geometry JSON; default: the files' own.
        out_dir: output folder; nothing is written when None.
        seed: seeds the classifier tests.
        report: also write ``report.html`` and ``figures/`` (only with ``out_dir``).
        classifier: run the classifier tests.
        n_bins: bins per histogram.

    Returns:
        the metrics dict, with ``inputs`` = the two paths.

    Raises:
        ValueError: the two files hold different geometries or numbers of voxels, or neither
            holds a geometry and none is given.
    """
    if geometry is not None and not hasattr(geometry, "n_voxels"):
        from hepgen.data.geometry import load_geometry

        geometry = load_geometry(geometry)
    real = read_showers(real_path, geometry)
    generated = read_showers(generated_path, geometry)
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
    metrics, details = evaluate(real, generated, geometry, seed=seed, n_bins=n_bins, classifier=classifier,
                                return_details=True)
    metrics["inputs"] = {"real": str(real_path), "generated": str(generated_path)}
    if out_dir is not None:
        if report:
            write_outputs(metrics, real, generated, out_dir, details=details)
        else:
            write_metrics(metrics, Path(out_dir) / "metrics.json")
    return metrics
