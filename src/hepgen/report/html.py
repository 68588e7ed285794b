"""Self-contained HTML validation report from a metrics dict and the two samples."""

from __future__ import annotations

import html
from pathlib import Path

from hepgen._io import atomic_path
from hepgen.metrics.observables import high_level_features

__all__ = ["write_report"]

_CSS = """
body { font-family: -apple-system, Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1250px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
td, th { border: 1px solid #ccc; padding: 3px 9px; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
tr.flag td { background: #fde2e1; } .ok { color: #1a7f37; } .bad { color: #b42318; font-weight: bold; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.3em 0 1em 0; }
.note { color: #666; font-size: 0.9em; }
"""


def _fmt(x, digits=4):
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return html.escape(str(x))


def write_report(metrics: dict, real, generated, out_dir, details=None, sep_threshold: float = 0.1,
                 p_threshold: float = 0.01) -> Path:
    """Write ``out_dir/report.html`` and its figures; rows failing a threshold are flagged.

    Arguments:
        metrics: the dict from :func:`hepgen.evaluate.evaluate`.
        real, generated: the two :class:`~hepgen.data.formats.ShowerData` samples (for the plots).
        details: ``(features_real, features_generated, roc_curves)`` from ``evaluate(return_details=True)``;
            recomputed (without ROC curves) when absent.
        sep_threshold: flag features whose separation power exceeds this.
        p_threshold: flag features whose KS p-value is below this.
    """
    from hepgen.evaluate import feature_edges
    from hepgen.report.plots import save_all

    out = Path(out_dir)
    geometry = real.geometry or generated.geometry
    if details is None:
        details = (high_level_features(real.showers, real.incident_energies, geometry),
                   high_level_features(generated.showers, generated.incident_energies, geometry), {})
    fr, fg, rocs = details
    seps = metrics["separation_power"]
    edges = {k: feature_edges(k, fr[k], fg[k], 30) for k in fr}
    clf = metrics.get("classifier", {})
    aucs = {k: v["auc"] for k, v in clf.items()}
    figures = save_all(out, real, generated, geometry, fr, fg, edges, seps, rocs, aucs)

    worst = metrics["separation_power_max"]
    head = [("reference showers", metrics["n_real"]), ("generated showers", metrics["n_generated"])]
    for level, res in clf.items():
        head.append((f"classifier AUC, {level.replace('_', '-')}", f"{res['auc']:.4f} ± {res['auc_err']:.4f}"))
        head.append((f"classifier JSD, {level.replace('_', '-')}", _fmt(res["jsd"])))
    head += [("mean separation power", _fmt(metrics["separation_power_mean"])),
             ("worst feature", f"{worst['feature']} (S = {worst['value']:.4f})"),
             ("E_tot/E_inc, reference", f"{metrics['energy_response']['real_mean']:.4f} ± {metrics['energy_response']['real_std']:.4f}"),
             ("E_tot/E_inc, generated", f"{metrics['energy_response']['generated_mean']:.4f} ± {metrics['energy_response']['generated_std']:.4f}")]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>hepgen validation report</title><style>{_CSS}</style></head><body>",
             "<h1>hepgen validation report</h1>",
             f"<p class='note'>hepgen {html.escape(str(metrics.get('hepgen_version', '')))} · metrics schema {html.escape(metrics['schema'])}"
             + (f" · reference: {html.escape(metrics['inputs']['real'])} · generated: {html.escape(metrics['inputs']['generated'])}" if "inputs" in metrics else "")
             + "</p>", "<h2>Summary</h2><table>"]
    parts += [f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in head]
    parts.append("</table>")
    if "timing" in metrics:
        parts.append("<h2>Speed</h2><table>")
        parts += [f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in metrics["timing"].items()]
        parts.append("</table>")
    parts.append("<h2>Figures</h2>")
    for title, rel in figures:
        parts.append(f"<h3>{html.escape(title)}</h3><img src='{html.escape(rel)}' alt='{html.escape(title)}'>")
    n_flag = sum(1 for k in seps if seps[k] > sep_threshold or metrics["ks"][k]["pvalue"] < p_threshold)
    parts.append(f"<h2>Every feature</h2><p>{n_flag} of {len(seps)} features flagged "
                 f"(separation power &gt; {sep_threshold} or KS p-value &lt; {p_threshold}).</p>")
    parts.append("<table><tr><th>feature</th><th>separation power</th><th>KS statistic</th><th>KS p-value</th><th>status</th></tr>")
    for k in seps:
        ks = metrics["ks"][k]
        bad = seps[k] > sep_threshold or ks["pvalue"] < p_threshold
        status = "<span class='bad'>flagged</span>" if bad else "<span class='ok'>ok</span>"
        parts.append(f"<tr class='{'flag' if bad else ''}'><td>{html.escape(k)}</td><td>{seps[k]:.4f}</td>"
                     f"<td>{ks['statistic']:.4f}</td><td>{ks['pvalue']:.3g}</td><td>{status}</td></tr>")
    parts.append("</table><p class='note'>Definitions: docs/metrics.md in the hepgen repository.</p></body></html>")
    path = out / "report.html"
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(parts), encoding="utf-8")
    return path
