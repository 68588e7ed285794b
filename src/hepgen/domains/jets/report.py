"""Figures and HTML report of the jet evaluation (:mod:`hepgen.domains.jets.evaluate`); no metric computed here."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from hepgen._io import atomic_path
from hepgen.metrics.distances import binning_for, histogram
from hepgen.report.portable import data_uri
from hepgen.report.style import DPI, GEN, REAL, draw_ratio, figure_style, ratio_axes, save_figure

__all__ = ["OBSERVABLE_LABELS", "plot_jet_histograms", "save_jet_figures", "write_jet_report"]

FLOOR = dict(color="tab:grey", label="2nd reference (floor)")
OBSERVABLE_LABELS = {
    "eta_rel": r"particle $\eta^\mathrm{rel}$",
    "phi_rel": r"particle $\phi^\mathrm{rel}$",
    "pt_rel": r"particle $p_T^\mathrm{rel}$",
    "mass_rel": r"jet $m/p_T$ (relative mass)",
    "pt_rel_jet": r"jet $p_T^\mathrm{rel}$ (stored constituents)",
    "multiplicity": "constituents stored",
    "tau21": r"$\tau_{21}$",
    "tau32": r"$\tau_{32}$",
    "d2": r"$D_2$ ($\beta = 1$)",
    "jet_pt": r"jet $p_T$ [GeV]",
    "jet_eta": r"jet $\eta$",
    "jet_mass": "jet mass [GeV]",
    "jet_num_particles": "jet constituents (all)",
}
_LOG = ("pt_rel",)  # particle pT_rel spans decades


def _density(x, edges, log_x):
    h = histogram(x, edges)
    n = max(h.sum(), 1.0)
    w = np.diff(np.log10(edges)) if log_x else np.diff(edges)
    return h, h / n / w, np.sqrt(h) / n / w


def plot_jet_histograms(path, samples: dict, title: str) -> None:
    """Grid of normalised histograms: reference, generated and floor sample, with ratios to the reference.

    Arguments:
        path: the PNG to write (and a vector PDF of the same name beside it).
        samples: observable name → ``{"real": (n,), "generated": (m,), "floor": (k,)}``;
            NaN values are left out.
        title: figure title.
    """
    names = list(samples)
    ncol = min(4, len(names))
    nrow = int(np.ceil(len(names) / ncol))
    with figure_style():
        height = 3.5 * nrow + 0.7
        fig = Figure(figsize=(max(4.0 * ncol, 5.5), height))
        grid = fig.add_gridspec(nrow, ncol, hspace=0.42, wspace=0.32, left=0.06 if ncol > 1 else 0.16,
                                right=0.98, bottom=0.55 / height, top=1 - 0.65 / height)
        for k, name in enumerate(names):
            s = {key: np.asarray(v, dtype=np.float64) for key, v in samples[name].items()}
            s = {key: v[np.isfinite(v)] for key, v in s.items()}
            log_x = name in _LOG and all((v > 0).any() for v in s.values())
            edges = binning_for(s["real"], s["generated"], 30, log=log_x)
            ax, rax = ratio_axes(fig, grid[k // ncol, k % ncol])
            centres = np.sqrt(edges[1:] * edges[:-1]) if log_x else 0.5 * (edges[1:] + edges[:-1])
            h_ref, d_ref, _ = _density(s["real"], edges, log_x)
            top = 0.0
            for key, style, ls in (("real", REAL, "-"), ("generated", GEN, "-"), ("floor", FLOOR, "--")):
                _, d, e = _density(s[key], edges, log_x)
                ax.stairs(d, edges, color=style["color"], lw=1.3, ls=ls, label=style["label"])
                ax.errorbar(centres, d, yerr=e, fmt="none", ecolor=style["color"], lw=0.7)
                top = max(top, d.max(initial=0))
                if key != "real":
                    ratio = np.divide(d, d_ref, out=np.full_like(d, np.nan), where=h_ref > 0)
                    rerr = np.divide(e, d_ref, out=np.full_like(d, np.nan), where=h_ref > 0)
                    draw_ratio(rax, centres, ratio, rerr, color=style["color"])
            ax.set_ylim(0, 1.3 * top if top > 0 else 1.0)
            ax.set_ylabel("density per decade" if log_x else "density (unit area)", fontsize=8)
            if log_x:
                ax.set_xscale("log")
            ax.set_xlim(edges[0], edges[-1])
            rax.set_ylabel("ratio to ref.", fontsize=8)
            rax.set_xlabel(OBSERVABLE_LABELS.get(name, name), fontsize=8)
            if k == 0:
                ax.legend(loc="upper left", fontsize=7)
        fig.suptitle(title, y=1 - 0.2 / height)
        save_figure(fig, path, dpi=DPI)


def save_jet_figures(out_dir, details: dict) -> list[tuple[str, str]]:
    """Particle-feature and jet-observable figures per jet type; return ``[(title, path relative to out_dir)]``.

    ``details`` is the second item of ``evaluate_jets(..., return_details=True)``.
    """
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    figures = []
    for jt, det in details.items():
        parts = {}
        for k, name in enumerate(("eta_rel", "phi_rel", "pt_rel")):
            parts[name] = {key: d.particle_features[..., k][d.mask] for key, d in det["samples"].items()}
        rel = f"figures/{jt}_particles.png"
        plot_jet_histograms(out / rel, parts, f"{jt} jets: particle features (all stored constituents)")
        figures.append((f"{jt} jets: particle features", rel))
        obs = {}
        for name in det["observables"]["real"]:
            key = "pt_rel_jet" if name == "pt_rel" else name
            obs[key] = {s: det["observables"][s][name] for s in det["observables"]}
        rel = f"figures/{jt}_jets.png"
        plot_jet_histograms(out / rel, obs, f"{jt} jets: jet observables")
        figures.append((f"{jt} jets: jet observables", rel))
    return figures


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.4g}"


def _pm(entry: dict, key: str) -> str:
    err = entry.get("error" if key == "value" else "floor_error")
    return f"{_fmt(entry.get(key))} ± {_fmt(err)}"


def _ratio(entry: dict) -> str:
    v, f = entry.get("value"), entry.get("floor")
    if v is None or f is None or not f > 0:
        return "–"
    return f"{v / f:.2f}"


def write_jet_report(metrics: dict, out_dir, figures=(), title: str = "hepgen jet validation report") -> Path:
    """Write ``out_dir/report.html`` (atomically) from the metrics of :func:`hepgen.domains.jets.evaluate.evaluate_jets`.

    Every metric is shown beside its real-vs-real floor and the ratio metric / floor
    (≈ 1 or below: the generated jets are as close to the reference as an independent
    reference sample of the same size).  The page is one file: ``figures`` (``[(title, PNG path
    relative to out_dir)]``) are embedded as ``data:`` URIs, the files stay beside it.
    """
    e = html.escape
    css = ("body{font-family:Helvetica,Arial,sans-serif;margin:2em auto;max-width:1250px;color:#222}"
           "table{border-collapse:collapse;margin:.5em 0;font-size:.92em}td,th{border:1px solid #ccc;"
           "padding:3px 9px;text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}"
           "img{max-width:100%;border:1px solid #eee;margin:.3em 0 1em 0}.note{color:#666;font-size:.9em}")
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>{e(title)}</title><style>{css}</style></head><body><h1>{e(title)}</h1>",
             (f"<p class='note'>hepgen {e(str(metrics.get('hepgen_version', '')))} · schema "
              f"{e(str(metrics.get('schema', '')))} · W1 batches: {metrics.get('num_batches')} × "
              f"{metrics.get('num_eval_samples')} jets (value ± std over batches)")]
    if "inputs" in metrics:
        parts.append("".join(f" · {e(k)}: <code>{e(str(v))}</code>" for k, v in metrics["inputs"].items() if v))
    parts.append("</p>")
    for jt, res in metrics["types"].items():
        method = ("two random halves of the reference" if res["floor_method"] == "split"
                  else "the reference and a second, independent reference sample")
        parts.append(f"<h2>{e(jt)} jets</h2><p class='note'>{res['n_real']} reference, {res['n_generated']} "
                     f"generated jets, {res['n_particles']} particles per jet. Floor: the same metric between "
                     f"{method}, with {res['n_floor']} jets in the compared sample.</p>")
        parts.append("<table><tr><th>metric</th><th>generated vs reference</th><th>real-vs-real floor</th>"
                     "<th>ratio</th></tr>")
        rows = [("W1m (relative mass)", res["w1m"]), ("W1p (mean of 3 particle features)", res["w1p"])]
        rows += [(f"  W1p {k}", v) for k, v in res["w1p"]["per_feature"].items()]
        if "w1efp" in res:
            rows.append(("W1efp (mean of 5 EFPs, n=4, d=4, prime)", res["w1efp"]))
        for key, label in (("fpd", "FPD (36 EFPs, d ≤ 4)"), ("kpd", "KPD (36 EFPs, d ≤ 4)"),
                           ("classifier_auc", "classifier AUC (deep sets, held-out jets; 0.5 = indistinguishable)")):
            if key in res:
                rows.append((label, res[key]))
        for label, entry in rows:
            parts.append(f"<tr><td>{e(label)}</td><td>{_pm(entry, 'value')}</td><td>{_pm(entry, 'floor')}</td>"
                         f"<td>{_ratio(entry)}</td></tr>")
        parts.append("</table>")
        skipped = res.get("classifier_auc", {}).get("skipped")
        if skipped:
            parts.append(f"<p class='note'>classifier AUC skipped: {e(skipped)}</p>")
        parts.append("<h3>W1 of jet observables (substructure: τ21, τ32, D2)</h3><table><tr><th>observable</th><th>generated</th>"
                     "<th>floor</th><th>ratio</th><th>mean ref / gen</th></tr>")
        for name, o in res["observables"].items():
            label = OBSERVABLE_LABELS.get("pt_rel_jet" if name == "pt_rel" else name, name)
            label = label.replace("$", "").replace("\\mathrm", "").replace("\\", "")
            parts.append(f"<tr><td>{e(label)}</td><td>{_pm(o['w1'], 'value')}</td><td>{_pm(o['w1'], 'floor')}</td>"
                         f"<td>{_ratio(o['w1'])}</td><td>{_fmt(o['mean']['real'])} / "
                         f"{_fmt(o['mean']['generated'])}</td></tr>")
        parts.append("</table>")
        for fig_title, rel in figures:
            if fig_title.startswith(f"{jt} jets"):
                parts.append(f"<h3>{e(fig_title)}</h3><img src='{data_uri(Path(out_dir) / rel, 'image/png')}' "
                             f"alt='{e(fig_title)} ({e(rel)})'>")
    parts.append("<p class='note'>Figures: PNG and vector PDF in <code>figures/</code> beside this report. "
                 "Definitions: docs/jets.md in the hepgen repository.</p></body></html>")
    path = Path(out_dir) / "report.html"
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(parts), encoding="utf-8")
    return path
