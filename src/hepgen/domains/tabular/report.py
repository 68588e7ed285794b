"""Self-contained HTML report of a tabular evaluation: headline numbers, per-variable table,
histograms with ratio panels, correlation matrices with the Fisher-z map, ROC curves.

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas (the global backend is
never changed) and embedded as base64 PNG, so ``report.html`` is one file.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from hepgen._io import atomic_path
from hepgen.metrics.distances import binning_for
from hepgen.report.style import figure_png_base64

__all__ = ["figures", "write_tabular_report"]


def _histograms(arrays: dict) -> Figure:
    cols, units = arrays["columns"], arrays["units"]
    real, gen = arrays["real"], arrays["generated"]
    ncol = 6
    nrow = int(np.ceil(len(cols) / ncol))
    fig = Figure(figsize=(3.0 * ncol, 3.2 * nrow))
    grid = fig.add_gridspec(2 * nrow, ncol, height_ratios=[3, 1] * nrow, hspace=0.7, wspace=0.35)
    for i, c in enumerate(cols):
        r, k = divmod(i, ncol)
        ax, axr = fig.add_subplot(grid[2 * r, k]), fig.add_subplot(grid[2 * r + 1, k])
        edges = binning_for(real[:, i], gen[:, i], 30)
        hr, _ = np.histogram(real[:, i], edges, density=True)
        hg, _ = np.histogram(gen[:, i], edges, density=True)
        ax.stairs(hr, edges, label="real", color="k")
        ax.stairs(hg, edges, label="generated", color="C1")
        ax.set_title(c, fontsize=8)
        ax.tick_params(labelsize=6, labelbottom=False)
        ratio = np.divide(hg, hr, out=np.full_like(hg, np.nan), where=hr > 0)
        axr.stairs(ratio, edges, color="C1")
        axr.axhline(1.0, color="k", lw=0.5)
        axr.set_ylim(0.5, 1.5)
        axr.tick_params(labelsize=6)
        axr.set_xlabel(f"{c} [{units[i]}]" if units[i] else c, fontsize=6)
        if i == 0:
            ax.legend(fontsize=6)
            axr.set_ylabel("gen/real", fontsize=6)
    return fig


def _correlations(arrays: dict) -> Figure:
    fig = Figure(figsize=(16, 5))
    axes = fig.subplots(1, 3)
    for ax, key, title, cmap, lim in ((axes[0], "corr_real", "real: Pearson r", "RdBu_r", 1.0),
                                      (axes[1], "corr_gen", "generated: Pearson r", "RdBu_r", 1.0),
                                      (axes[2], "z", "Fisher z (real − generated)", "PuOr", 5.0)):
        im = ax.imshow(np.asarray(arrays[key], dtype=float), cmap=cmap, vmin=-lim, vmax=lim)
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(len(arrays["columns"])))
        ax.set_yticks(range(len(arrays["columns"])))
        ax.set_xticklabels(arrays["columns"], rotation=90, fontsize=5)
        ax.set_yticklabels(arrays["columns"], fontsize=5)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def _rocs(arrays: dict) -> Figure | None:
    rocs = arrays.get("roc") or {}
    if not rocs:
        return None
    fig = Figure(figsize=(5, 4.5))
    ax = fig.add_subplot()
    for k, (model, r) in enumerate(rocs.items()):
        for style, which in (("-", "real"), ("--", "generated")):
            ax.plot(r[which]["fpr"], r[which]["tpr"], style, color=f"C{k}", label=f"{model}, trained on {which}")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("background efficiency (real test events)")
    ax.set_ylabel("signal efficiency")
    ax.legend(fontsize=7)
    return fig


def figures(arrays: dict) -> list[tuple[str, str]]:
    """``[(title, base64 PNG)]`` of the report's figures."""
    out = [("Per-variable distributions (ratio generated / real)", figure_png_base64(_histograms(arrays), dpi=80)),
           ("Correlation matrices and Fisher-z map", figure_png_base64(_correlations(arrays), dpi=80))]
    roc = _rocs(arrays)
    if roc is not None:
        out.append(("ROC curves of the benchmark classifier (tested on real events)", figure_png_base64(roc, dpi=80)))
    return out


def _f(x, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, (int, np.integer)):
        return str(x)
    return f"{x:.{digits}g}"


def write_tabular_report(metrics: dict, arrays: dict, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/report.html`` (atomically) and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fz = metrics.get("fisher_z", {})
    rows = [("events (real / generated)", f"{metrics['n_real']} / {metrics['n_generated']}"),
            ("mean separation power (floor)", f"{_f(metrics['mean_separation'])} ({_f(metrics['mean_separation_floor'])})"),
            ("mean KS (floor)", f"{_f(metrics['mean_ks'])} ({_f(metrics['mean_ks_floor'])})")]
    for key in ("generated", "real_vs_real", "destroyed"):
        if key in fz:
            rows.append((f"Fisher-z χ²/ndof, {key.replace('_', '-')} (calibrated p)",
                         f"{_f(fz[key]['chi2_ndof'])} (p = {_f(fz[key]['p_calibrated'])}, ndof {fz[key]['ndof']})"))
    if "critic_w" in metrics:
        rows.append(("critic-only W estimate (real vs real)",
                     f"{_f(metrics['critic_w']['generated'])} ({_f(metrics['critic_w']['real_vs_real'])})"))
    for model, b in (metrics.get("benchmark") or {}).items():
        if isinstance(b, dict):
            rows.append((f"benchmark {model}: AUC trained on real / generated; ΔAUC ± paired-bootstrap error "
                         "(seed spread)",
                         f"{_f(b['auc_real_trained'])} / {_f(b['auc_generated_trained'])}; "
                         f"{_f(b['auc_difference'], 3)} ± {_f(b.get('auc_difference_err'), 2)} "
                         f"({_f(b.get('auc_difference_seed_std'), 2)})"))
    rows.append(("classifier two-sample AUC real vs generated", _f(metrics.get("two_sample_auc"))))
    if "speedup" in metrics:
        rows.append(("speed-up per event vs Pythia + reconstruction, wall clock", _f(metrics["speedup"])))
    if "speedup_cpu" in metrics:
        rows.append(("speed-up per event, CPU time", _f(metrics["speedup_cpu"])))
    for proc, sp in (metrics.get("speedup_by_process") or {}).items():
        rows.append((f"speed-up for {proc} alone, wall / CPU", f"{_f(sp.get('wall'))} / {_f(sp.get('cpu'))}"))
    summary = "".join(f"<tr><th>{html.escape(a)}</th><td>{html.escape(b)}</td></tr>" for a, b in rows)
    pv = metrics["per_variable"]
    table = "".join(
        f"<tr><td>{html.escape(c)}</td>" + "".join(f"<td>{_f(pv[c][k])}</td>" for k in
                                                   ("w1", "w1_floor", "ks", "ks_floor", "separation", "separation_floor"))
        + "</tr>" for c in pv)
    figs = "".join(f"<h2>{html.escape(t)}</h2><img src='data:image/png;base64,{b}'/>" for t, b in figures(arrays))
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>hepgen tabular report</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}"
        "img{max-width:100%}</style></head><body><h1>Tabular evaluation</h1>"
        f"<table>{summary}</table><h2>Per variable (generated vs real half A; floor: real B vs A)</h2>"
        "<table><tr><th>variable</th><th>W1</th><th>W1 floor</th><th>KS</th><th>KS floor</th>"
        f"<th>separation</th><th>floor</th></tr>{table}</table>{figs}</body></html>")
    path = out / "report.html"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return path
