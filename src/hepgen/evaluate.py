"""Real vs generated showers → a metrics dict with stable keys (see docs/metrics.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Union

import numpy as np

from hepgen import __version__
from hepgen._io import atomic_path
from hepgen.data.formats import ShowerData, read_showers
from hepgen.metrics.classifier import classifier_two_sample_test, high_level_inputs, low_level_inputs
from hepgen.metrics.distances import binning_for, ks_test, separation_power
from hepgen.metrics.observables import high_level_features

__all__ = ["METRICS_SCHEMA", "evaluate", "evaluate_files", "write_outputs", "LOG_BINNED"]

METRICS_SCHEMA = "hepgen.metrics/1"
LOG_BINNED = ("E_layer_",)  # features histogrammed in log-spaced bins


def feature_edges(name: str, a: np.ndarray, b: np.ndarray, n_bins: int) -> np.ndarray:
    """Shared histogram edges for a feature (log-spaced for layer energies)."""
    log = name.startswith(LOG_BINNED) and (np.asarray(a) > 0).any() and (np.asarray(b) > 0).any()
    return binning_for(a, b, n_bins, log=log)


def evaluate(real: ShowerData, generated: ShowerData, geometry=None, seed: int = 0, n_bins: int = 30,
             classifier: bool = True, return_details: bool = False):
    """Compare two shower samples.

    Arguments:
        real, generated: the samples (same geometry).
        geometry: overrides the geometry attached to ``real``.
        seed: seeds the classifier tests.
        n_bins: bins per histogram for the separation power.
        classifier: run the low- and high-level classifier tests.
        return_details: also return ``(features_real, features_generated, roc_curves)`` for plots.

    Returns:
        the JSON-able metrics dict (and the details when asked).
    """
    geometry = geometry or real.geometry or generated.geometry
    if geometry is None:
        raise ValueError("evaluate: no geometry attached to the samples; pass a binning XML / geometry JSON")
    for name, data in (("real", real), ("generated", generated)):
        if data.showers.shape[1] != geometry.n_voxels:
            raise ValueError(f"evaluate: {name} showers have {data.showers.shape[1]} voxels, "
                             f"expected {geometry.n_voxels} from the geometry")
    fr = high_level_features(real.showers, real.incident_energies, geometry)
    fg = high_level_features(generated.showers, generated.incident_energies, geometry)
    sep, ks = {}, {}
    for name in fr:
        sep[name] = separation_power(fr[name], fg[name], feature_edges(name, fr[name], fg[name], n_bins))
        stat, p = ks_test(fr[name], fg[name])
        ks[name] = {"statistic": stat, "pvalue": p}
    worst = max(sep, key=sep.get)
    r_resp, g_resp = fr["E_tot_over_E_inc"], fg["E_tot_over_E_inc"]
    metrics = {
        "schema": METRICS_SCHEMA,
        "hepgen_version": __version__,
        "n_real": len(real),
        "n_generated": len(generated),
        "geometry": geometry.to_dict(),
        "separation_power": sep,
        "separation_power_mean": float(np.mean(list(sep.values()))),
        "separation_power_max": {"feature": worst, "value": sep[worst]},
        "ks": ks,
        "energy_response": {
            "real_mean": float(r_resp.mean()), "real_std": float(r_resp.std()),
            "generated_mean": float(g_resp.mean()), "generated_std": float(g_resp.std()),
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
            res = classifier_two_sample_test(a, b, seed=seed)
            rocs[level] = res.pop("roc")
            metrics["classifier"][level] = res
    if return_details:
        return metrics, (fr, fg, rocs)
    return metrics


def write_outputs(metrics: dict, real: ShowerData, generated: ShowerData, out_dir, details=None) -> Path:
    """Write ``metrics.json`` and ``report.html`` (+ figures/) into ``out_dir``; return the report path."""
    from hepgen.report.html import write_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "metrics.json") as tmp:
        Path(tmp).write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return write_report(metrics, real, generated, out, details=details)


def evaluate_files(real_path: Union[str, os.PathLike], generated_path: Union[str, os.PathLike], geometry=None,
                   out_dir=None, seed: int = 0, classifier: bool = True) -> dict:
    """Read two CaloChallenge files, evaluate, and (with ``out_dir``) write metrics.json + report.html."""
    real = read_showers(real_path, geometry)
    generated = read_showers(generated_path, geometry if geometry is not None else real.geometry)
    geo = real.geometry or generated.geometry
    if geo is None:
        raise ValueError(f"{real_path}: no geometry stored in the file; pass --binning with the CaloChallenge XML")
    if real.showers.shape[1] != generated.showers.shape[1]:
        raise ValueError(f"{generated_path}: key 'showers': expected {real.showers.shape[1]} voxels as in "
                         f"{real_path}, found {generated.showers.shape[1]}")
    metrics, details = evaluate(real, generated, geo, seed=seed, classifier=classifier, return_details=True)
    metrics["inputs"] = {"real": str(real_path), "generated": str(generated_path)}
    if out_dir is not None:
        write_outputs(metrics, real, generated, out_dir, details=details)
    return metrics
