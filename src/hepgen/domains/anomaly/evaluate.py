"""Anomaly-detection figures of merit: ROC, AUC, signal efficiency at a background efficiency
(FPR) with bootstrap errors, the trigger-rate view, and a JSON + self-contained HTML report.

Conventions (ADC2021, Govorkova et al., arXiv:2107.02157): "signal efficiency at FPR f" is
the fraction of signal events whose score lies above the threshold that keeps a fraction
``f`` of the background (10⁻⁵ in the challenge).  With ``N_b`` background events the
threshold is the ``(k+1)``-th largest background score, ``k = floor(f · N_b)``, and a signal
event counts if its score is *strictly* above it; so exactly ``k`` background events pass
(without ties).  When ``f · N_b < 1`` no background event may pass (``k = 0``) and the
quoted efficiency is that of a larger FPR than asked for: :func:`efficiency_at_fpr` then
sets ``resolved = False`` and the report says so — quote 10⁻⁴ with the counts instead.

Trigger rate: a background efficiency ``f`` becomes a rate ``f · r_0`` with ``r_0`` the rate
of the events the background sample represents: ``collision_rate · preselection_fraction``
(40 MHz bunch crossings × the fraction of them the sample stands for; 1 by default).

Example (a hand-worked ROC):
    >>> bkg = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    >>> sig = np.array([0.35, 0.95, 1.5, 2.0])
    >>> r = efficiency_at_fpr(bkg, sig, 0.1)   # k = 1: threshold 0.9, sig above: 0.95, 1.5, 2.0
    >>> r["threshold"], r["efficiency"], r["n_background_pass"], r["resolved"]
    (0.9, 0.75, 1, True)
    >>> round(auc(bkg, sig), 4)                 # pairs won: (3 + 9 + 10 + 10) / 40
    0.8
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from hepgen._io import atomic_path, json_safe
from hepgen.report.style import figure_png_base64

__all__ = [
    "COLLISION_RATE_HZ",
    "auc",
    "bootstrap",
    "efficiency_at_fpr",
    "evaluate_detector",
    "evaluate_scores",
    "ood_fraction",
    "roc",
    "threshold_for_rate",
    "write_report",
]

COLLISION_RATE_HZ = 40e6  # LHC bunch-crossing rate


def _scores(name: str, a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError(f"{name}: expected at least one score, found none")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: expected finite scores, found {int((~np.isfinite(a)).sum())} non-finite")
    return a


def roc(background, signal) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` of score > threshold, by :func:`sklearn.metrics.roc_curve`."""
    b, s = _scores("background", background), _scores("signal", signal)
    y = np.r_[np.zeros(b.size), np.ones(s.size)]
    return roc_curve(y, np.r_[b, s])


def auc(background, signal) -> float:
    """Area under the ROC curve = P(score_sig > score_bkg) + ½ P(tie) (sklearn's ``roc_auc_score``)."""
    b, s = _scores("background", background), _scores("signal", signal)
    return float(roc_auc_score(np.r_[np.zeros(b.size), np.ones(s.size)], np.r_[b, s]))


def efficiency_at_fpr(background, signal, fpr: float) -> dict:
    """Signal efficiency at background efficiency ``fpr`` (see the module docstring).

    Returns:
        ``{"fpr", "threshold", "efficiency", "n_background", "n_signal", "n_background_pass",
        "n_signal_pass", "fpr_achieved", "resolved"}`` — ``resolved`` is False when
        ``fpr · n_background < 1`` (the sample cannot resolve that FPR).
    """
    if not 0 < float(fpr) < 1:
        raise ValueError(f"fpr: expected a number in (0, 1), found {fpr!r}")
    b, s = _scores("background", background), _scores("signal", signal)
    k = math.floor(float(fpr) * b.size + 1e-9)
    thr = float(np.sort(b)[::-1][min(k, b.size - 1)])
    nb, ns = int((b > thr).sum()), int((s > thr).sum())
    return {"fpr": float(fpr), "threshold": thr, "efficiency": ns / s.size, "n_background": int(b.size),
            "n_signal": int(s.size), "n_background_pass": nb, "n_signal_pass": ns, "fpr_achieved": nb / b.size,
            "resolved": bool(float(fpr) * b.size >= 1)}


def bootstrap(fn, background, signal, n: int = 100, seed: int = 0) -> tuple[float, float]:
    """``(value, std)`` of ``fn(background, signal)`` and its std over ``n`` bootstrap resamples.

    Both samples are resampled with replacement, independently (``numpy.random.default_rng(seed)``).
    """
    b, s = _scores("background", background), _scores("signal", signal)
    if int(n) < 2:
        raise ValueError(f"bootstrap: n: expected >= 2, found {n!r}")
    rng = np.random.default_rng(seed)
    vals = [fn(b[rng.integers(0, b.size, b.size)], s[rng.integers(0, s.size, s.size)]) for _ in range(int(n))]
    return float(fn(b, s)), float(np.std(vals, ddof=1))


def threshold_for_rate(background, rate_hz: float, collision_rate_hz: float = COLLISION_RATE_HZ,
                       preselection_fraction: float = 1.0) -> dict:
    """Score threshold whose background pass rate is ``rate_hz``.

    ``fpr = rate_hz / (collision_rate_hz · preselection_fraction)``; the threshold is that of
    :func:`efficiency_at_fpr` at this FPR.

    >>> threshold_for_rate(np.arange(100_000.0), 4000.0)["fpr"]   # 4 kHz of 40 MHz
    0.0001
    """
    r0 = float(collision_rate_hz) * float(preselection_fraction)
    if not (float(rate_hz) > 0 and r0 > 0 and float(rate_hz) < r0):
        raise ValueError(f"rate_hz: expected 0 < rate < {r0:g} Hz, found {rate_hz!r}")
    fpr = float(rate_hz) / r0
    b = _scores("background", background)
    r = efficiency_at_fpr(b, b[:1], fpr)
    return {"rate_hz": float(rate_hz), "fpr": fpr, "threshold": r["threshold"],
            "rate_achieved_hz": r["fpr_achieved"] * r0, "resolved": r["resolved"]}


def ood_fraction(reference, candidate, quantile: float = 0.999) -> dict:
    """Out-of-distribution check: the fraction of ``candidate`` scores above the ``quantile`` of
    ``reference`` scores (expected ``1 − quantile`` if both come from the same distribution).

    Used to flag generated events that a background-trained auto-encoder finds anomalous.

    >>> ood_fraction(np.arange(1000.0), np.array([10.0, 2000.0]), 0.99)["fraction"]
    0.5
    """
    ref, cand = _scores("reference", reference), _scores("candidate", candidate)
    if not 0 < float(quantile) < 1:
        raise ValueError(f"quantile: expected a number in (0, 1), found {quantile!r}")
    thr = float(np.quantile(ref, quantile))
    frac = float((cand > thr).mean())
    return {"quantile": float(quantile), "threshold": thr, "fraction": frac, "expected": 1 - float(quantile),
            "ratio": frac / (1 - float(quantile))}


def evaluate_scores(background: Mapping[str, np.ndarray], signals: Mapping[str, Mapping[str, np.ndarray]],
                    fprs=(1e-5, 1e-4, 1e-3), n_bootstrap: int = 50, seed: int = 0,
                    rates_hz=(1e3, 4e3), preselection_fraction: float = 1.0) -> dict:
    """All figures of merit for every score and signal.

    Arguments:
        background: score name → ``(N_b,)`` background scores.
        signals: signal name → (score name → ``(N_s,)`` scores).
        fprs: background efficiencies at which to quote the signal efficiency.
        n_bootstrap: bootstrap resamples for the errors (0: none).
        rates_hz: trigger rates for the threshold table.

    Returns:
        ``{"scores": {score: {"signals": {signal: {"auc", "auc_err", "eff@<fpr>": {...}}},
        "thresholds_for_rate": [...]}}, "n_background": N_b}``.
    """
    out: dict = {"n_background": None, "scores": {}}
    for sname, b in background.items():
        b = _scores(f"background score {sname!r}", b)
        out["n_background"] = int(b.size)
        entry: dict = {"signals": {}, "thresholds_for_rate": [
            threshold_for_rate(b, r, preselection_fraction=preselection_fraction) for r in rates_hz]}
        for sig_name, by_score in signals.items():
            if sname not in by_score:
                raise ValueError(f"signal {sig_name!r}: key {sname!r}: missing score; found {sorted(by_score)}")
            s = _scores(f"signal {sig_name!r} score {sname!r}", by_score[sname])
            res: dict = {"n_signal": int(s.size)}
            if n_bootstrap:
                res["auc"], res["auc_err"] = bootstrap(auc, b, s, n_bootstrap, seed)
            else:
                res["auc"], res["auc_err"] = auc(b, s), None
            for f in fprs:
                e = efficiency_at_fpr(b, s, f)
                if n_bootstrap:
                    e["efficiency_err"] = bootstrap(
                        lambda bb, ss, f=f: efficiency_at_fpr(bb, ss, f)["efficiency"], b, s, n_bootstrap, seed)[1]
                res[f"eff@{f:g}"] = e
            entry["signals"][sig_name] = res
        out["scores"][sname] = entry
    return out


def _figures(background: Mapping[str, np.ndarray], signals: Mapping[str, Mapping[str, np.ndarray]]) -> list[tuple[str, str]]:
    figs = []
    for sname, b in background.items():
        fig = Figure(figsize=(10, 4))
        ax1, ax2 = fig.subplots(1, 2)
        lo = min([np.min(b)] + [np.min(v[sname]) for v in signals.values()])
        hi = max([np.max(b)] + [np.max(v[sname]) for v in signals.values()])
        pos = lo > 0
        bins = np.geomspace(lo, hi, 60) if pos and hi > lo else 60
        ax1.hist(b, bins=bins, histtype="step", weights=np.full(len(b), 1.0 / len(b)), label="background", color="k")
        for name, v in signals.items():
            ax1.hist(v[sname], bins=bins, histtype="step", weights=np.full(len(v[sname]), 1.0 / len(v[sname])),
                     label=name)
            fpr, tpr, _ = roc(b, v[sname])
            ax2.plot(fpr, tpr, label=f"{name} (AUC {auc(b, v[sname]):.3f})")
        if pos:
            ax1.set_xscale("log")
        ax1.set_yscale("log")
        ax1.set_xlabel(f"score {sname}")
        ax1.set_ylabel("fraction of events per bin")
        ax1.legend(fontsize=7)
        ax2.set_xscale("log")
        ax2.set_xlim(max(1.0 / len(b), 1e-6), 1)
        ax2.axvline(1e-5, ls=":", c="grey")
        ax2.axvline(1e-4, ls="--", c="grey")
        ax2.set_xlabel("background efficiency (FPR)")
        ax2.set_ylabel("signal efficiency (TPR)")
        ax2.legend(fontsize=7)
        figs.append((f"score {sname}: distributions and ROC", figure_png_base64(fig, dpi=90)))
    return figs


def write_report(out_dir: str | os.PathLike, metrics: dict, background: Mapping[str, np.ndarray],
                 signals: Mapping[str, Mapping[str, np.ndarray]], title: str = "hepgen anomaly detection") -> dict:
    """Write ``metrics.json`` (strict JSON) and a self-contained ``report.html`` (base64 PNGs) to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = json_safe(metrics)
    with atomic_path(out_dir / "metrics.json") as tmp:
        Path(tmp).write_text(json.dumps(metrics, indent=1, allow_nan=False))
    rows = []
    for sname, entry in metrics.get("scores", {}).items():
        for sig, r in entry["signals"].items():
            cells = [sname, sig, f"{r['auc']:.4f} ± {r['auc_err'] or 0:.4f}"]
            for key in sorted(k for k in r if k.startswith("eff@")):
                e = r[key]
                flag = "" if e["resolved"] else " (unresolved: FPR·N<sub>b</sub> &lt; 1)"
                cells.append(f"{e['efficiency']:.4f} ± {e.get('efficiency_err') or 0:.4f} "
                             f"[{e['n_signal_pass']}/{e['n_signal']} sig, {e['n_background_pass']}/"
                             f"{e['n_background']} bkg]{flag}")
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    first = next(iter(metrics.get("scores", {}).values()), {"signals": {}})
    first_sig = next(iter(first["signals"].values()), {})
    heads = ["score", "signal", "AUC"] + [f"efficiency at FPR {k[4:]}" for k in sorted(k for k in first_sig
                                                                                        if k.startswith("eff@"))]
    figs = "".join(f"<h3>{html.escape(t)}</h3><img src='data:image/png;base64,{p}'/>"
                   for t, p in _figures(background, signals))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif} td,th{border:1px solid #ccc;padding:3px}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>Background events: {metrics.get('n_background')}</p>"
            "<table><tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr>" + "".join(rows) + "</table>"
            f"{figs}<h2>metrics</h2><pre>{html.escape(json.dumps(metrics, indent=1))}</pre></body></html>")
    with atomic_path(out_dir / "report.html") as tmp:
        Path(tmp).write_text(page)
    return metrics


def evaluate_detector(detector, background, signals: Mapping, out_dir: str | os.PathLike | None = None,
                      fprs=(1e-5, 1e-4, 1e-3), n_bootstrap: int = 50, seed: int = 0, rates_hz=(1e3, 4e3),
                      preselection_fraction: float = 1.0, generated: Mapping | None = None) -> dict:
    """Score a background sample and signal samples with a trained detector and evaluate.

    Arguments:
        detector: an :class:`hepgen.domains.anomaly.generator.L1Detector` (anything with
            ``scores(data, references)``).
        background: :class:`hepgen.data.l1.L1Events` of the background test sample.
        signals: signal name → :class:`~hepgen.data.l1.L1Events`.
        out_dir: where to write ``metrics.json`` and ``report.html`` (None: nothing written).
        fprs, n_bootstrap, seed, rates_hz, preselection_fraction: see :func:`evaluate_scores`.
        generated: optional name → generated :class:`~hepgen.data.l1.L1Events` (e.g. a
            generative model's events): the out-of-distribution check, :func:`ood_fraction` of
            their ``mse`` against the background's at quantiles 0.99 and 0.999, goes to
            ``metrics["ood"]`` (a ratio ≫ 1: the detector finds the generated events anomalous;
            ≪ 1: they are more "typical" than real ones, e.g. too smooth).

    The ``combined`` score is the equal-weight mean of ``mse`` and ``kl`` (VAE) or ``mse`` and
    ``mu2`` (AE), each divided by its median on ``background``.
    """
    if not signals:
        raise ValueError("evaluate_detector: expected at least one signal sample, found none")
    raw = detector.scores(background)
    refs = {k: float(np.median(raw[k])) for k in ("mse", "kl" if "kl" in raw else "mu2")}
    refs = {k: (v if v > 0 else 1.0) for k, v in refs.items()}
    bkg = detector.scores(background, refs)
    sig = {name: detector.scores(d, refs) for name, d in signals.items()}
    metrics = evaluate_scores(bkg, sig, fprs=fprs, n_bootstrap=n_bootstrap, seed=seed, rates_hz=rates_hz,
                              preselection_fraction=preselection_fraction)
    metrics["combined_references"] = refs
    if generated:
        metrics["ood"] = {name: {str(q): ood_fraction(bkg["mse"], detector.scores(d)["mse"], q) for q in (0.99, 0.999)}
                          for name, d in generated.items()}
    metrics["family"] = getattr(getattr(detector, "model", None), "family", None)
    if out_dir is not None:
        metrics = write_report(out_dir, metrics, bkg, sig, title=f"hepgen anomaly detection ({metrics['family']})")
    return json_safe(metrics)
