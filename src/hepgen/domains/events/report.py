"""Figures and the self-contained HTML page of an event-image evaluation.

Figures (PNG embedded as base64, so the page is one file): the jet observables real vs
generated, the average images (real, generated, difference), the pixel-intensity spectrum,
and — with several mass points — the summed-jet-mass mean against the gluino mass, real and
generated (the paper's Figure 3 style).  Matplotlib is used through ``Figure`` +
``FigureCanvasAgg``: the global backend is never touched.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from hepgen._io import atomic_path
from hepgen.data.events import EventImages
from hepgen.report.style import figure_png_base64

__all__ = ["figures", "write_event_report"]

_LABELS = {"n_jets": "fat-jet multiplicity", "leading_pt": "leading-jet pT [GeV]",
           "leading_mass": "leading-jet mass [GeV]", "summed_mass": "summed jet mass [GeV]", "ht": "HT [GeV]",
           "sparsity": "fraction of empty pixels", "total_energy": "total image energy [GeV]"}


def _hist(ax, a, b, label, log=False):
    a, b = np.asarray(a, float), np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 and b.size == 0:
        ax.set_title(f"{label}: empty")
        return
    both = np.concatenate([a, b])
    if log:
        both = both[both > 0]
        edges = np.logspace(np.log10(both.min()), np.log10(both.max() * 1.01), 40) if both.size else 10
        ax.set_xscale("log")
    elif label.startswith("fat-jet multiplicity"):
        edges = np.arange(-0.5, both.max() + 1.5)
    else:
        edges = np.linspace(both.min(), both.max() + 1e-9, 30)
    ax.hist(a, edges, histtype="step", density=True, label="real", color="k")
    ax.hist(b, edges, histtype="step", density=True, label="generated", color="tab:red")
    ax.set_xlabel(label)
    ax.legend(fontsize=7)


def figures(real: EventImages, gen: EventImages, extras: dict, metrics: dict) -> list[tuple[str, str]]:
    """``[(title, base64 png), ...]`` for the report."""
    out = []
    o_r, o_g = extras["real"], extras["gen"]
    fig = Figure(figsize=(11, 9))
    for i, k in enumerate(_LABELS):
        _hist(fig.add_subplot(3, 3, i + 1), o_r[k], o_g[k], _LABELS[k])
    _hist(fig.add_subplot(3, 3, 8), o_r["jet_pt"], o_g["jet_pt"], "jet pT (all jets) [GeV]")
    _hist(fig.add_subplot(3, 3, 9), o_r["pixel_energy"], o_g["pixel_energy"], "pixel energy [GeV]", log=True)
    fig.tight_layout()
    out.append(("Jet and image observables (anti-kT R = 1.0 on pixels, pT > 200 GeV)", figure_png_base64(fig, dpi=80)))
    fig = Figure(figsize=(12, 3.6))
    avg_r, avg_g = real.total().mean(0), gen.total().mean(0)
    ext = [-np.pi, np.pi, -real.eta_max, real.eta_max]
    vmax = max(avg_r.max(), avg_g.max(), 1e-9)
    for i, (img, title) in enumerate(((avg_r, "real"), (avg_g, "generated"))):
        ax = fig.add_subplot(1, 3, i + 1)
        im = ax.imshow(img, origin="lower", extent=ext, aspect="auto", vmin=0, vmax=vmax, cmap="viridis")
        ax.set_title(f"average image, {title} [GeV]")
        ax.set_xlabel("φ")
        ax.set_ylabel("η")
        fig.colorbar(im, ax=ax)
    ax = fig.add_subplot(1, 3, 3)
    d = avg_g - avg_r
    lim = max(abs(d).max(), 1e-9)
    im = ax.imshow(d, origin="lower", extent=ext, aspect="auto", vmin=-lim, vmax=lim, cmap="RdBu_r")
    ax.set_title("generated − real [GeV]")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    out.append(("Average images", figure_png_base64(fig, dpi=80)))
    points = metrics.get("mass_points") or []
    if len(points) > 1:
        fig = Figure(figsize=(6, 4))
        ax = fig.add_subplot(1, 1, 1)
        for mn in sorted({p["m_neutralino"] for p in points}):
            ps = sorted((p for p in points if p["m_neutralino"] == mn), key=lambda p: p["m_gluino"])
            mg = [p["m_gluino"] for p in ps]
            ax.plot(mg, [p["summed_mass_mean_real"] for p in ps], "o-", color="k")
            ax.plot(mg, [p["summed_mass_mean_gen"] for p in ps], "s--", color="tab:red")
            ax.annotate(f"m(χ)={mn:g}", (mg[-1], ps[-1]["summed_mass_mean_real"]), fontsize=7)
        ax.plot([], [], "o-", color="k", label="real (Pythia + detector)")
        ax.plot([], [], "s--", color="tab:red", label="generated")
        ax.set_xlabel("m(gluino) [GeV]")
        ax.set_ylabel("mean summed jet mass [GeV]")
        ax.legend(fontsize=8)
        fig.tight_layout()
        out.append(("Summed jet mass against the masses (Figure 3 style)", figure_png_base64(fig, dpi=80)))
    return out


def _rows(metrics: dict) -> str:
    rows = []
    for k, v in metrics["observables"].items():
        cells = "".join(f"<td>{'' if v[c] is None else f'{v[c]:.4g}'}</td>"
                        for c in ("mean_real", "mean_gen", "w1", "w1_floor", "ks", "ks_floor", "ks_p"))
        rows.append(f"<tr><td>{html.escape(k)}</td>{cells}</tr>")
    return "\n".join(rows)


def write_event_report(metrics: dict, figs: list[tuple[str, str]], out_dir, title: str = "hepgen event images") -> Path:
    """Write ``report.html`` (self-contained) into ``out_dir``; returns its path."""
    out_dir = Path(out_dir)
    summary = {k: metrics.get(k) for k in ("n_real", "n_generated", "selection_score", "selection_score_floor",
                                           "classifier_auc", "classifier_auc_err", "fpd", "fpd_err", "fpd_floor")}
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             ("<style>body{font-family:sans-serif;max-width:1200px;margin:auto}td,th{padding:2px 8px;"
              "border-bottom:1px solid #ddd;text-align:right}</style></head><body>"),
             f"<h1>{html.escape(title)}</h1><h2>Summary</h2><pre>{html.escape(json.dumps(summary, indent=1))}</pre>",
             ("<h2>Observables (floor: real vs real, half samples)</h2><table><tr><th>observable</th><th>mean real"
              "</th><th>mean gen</th><th>W1</th><th>W1 floor</th><th>KS</th><th>KS floor</th><th>KS p</th></tr>"),
             _rows(metrics), "</table>"]
    if metrics.get("mass_points"):
        parts.append("<h2>Mass points</h2><pre>" + html.escape(json.dumps(metrics["mass_points"], indent=1)) + "</pre>")
    if metrics.get("overlay"):
        parts.append("<h2>Pile-up overlay</h2><pre>" + html.escape(json.dumps(metrics["overlay"], indent=1)) + "</pre>")
    for t, png in figs:
        parts.append(f"<h2>{html.escape(t)}</h2><img src='data:image/png;base64,{png}' style='max-width:100%'>")
    parts.append("</body></html>")
    path = out_dir / "report.html"
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(parts), encoding="utf-8")
    return path
