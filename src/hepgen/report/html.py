"""Self-contained HTML validation report from a metrics dict and a list of figures; no computation."""

from __future__ import annotations

import html
import math
from pathlib import Path

from hepgen._io import atomic_path

__all__ = ["flagged_features", "write_report"]

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


def _fmt(x, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            return "–"
        return f"{x:.0f}" if 1e3 <= abs(x) < 1e12 else f"{x:.{digits}g}"
    return html.escape(str(x))


def flagged_features(metrics: dict, sep_threshold: float = 0.1, p_threshold: float = 0.01) -> list[str]:
    """Features whose separation power exceeds ``sep_threshold`` or whose KS p-value is below ``p_threshold``."""
    out = []
    for name, sep in metrics["separation_power"].items():
        p = (metrics.get("ks", {}).get(name) or {}).get("pvalue")
        if (sep is not None and sep > sep_threshold) or (p is not None and p < p_threshold):
            out.append(name)
    return out


def write_report(metrics: dict, out_dir, figures=(), sep_threshold: float = 0.1, p_threshold: float = 0.01,
                 title: str = "hepgen validation report") -> Path:
    """Write ``out_dir/report.html`` (atomically) and return its path.

    Arguments:
        metrics: the dict of :func:`hepgen.evaluate.evaluate` (keys in docs/metrics.md);
            an optional ``timing`` dict (name → number) is shown as a "Speed" section.
        out_dir: folder of the report; figures are referenced relative to it.
        figures: ``[(title, relative path)]``, e.g. from :func:`hepgen.report.plots.save_all`.
        sep_threshold: flag features whose separation power exceeds this.
        p_threshold: flag features whose KS p-value is below this.
        title: page title.
    """
    out = Path(out_dir)
    seps = metrics["separation_power"]
    ks = metrics.get("ks", {})
    clf = metrics.get("classifier") or {}
    flagged = set(flagged_features(metrics, sep_threshold, p_threshold))
    worst = metrics["separation_power_max"]

    head: list[tuple[str, str]] = [("reference showers", _fmt(metrics["n_real"])),
                                   ("generated showers", _fmt(metrics["n_generated"]))]
    for level, res in clf.items():
        name = level.replace("_", "-")
        head.append((f"classifier AUC, {name}", f"{res['auc']:.4f} ± {res['auc_err']:.4f}"))
        head.append((f"classifier JSD, {name} [bits]", _fmt(res["jsd"])))
    head.append(("mean separation power", _fmt(metrics["separation_power_mean"])))
    head.append(("worst feature", f"{html.escape(worst['feature'])} (S = {_fmt(worst['value'])})"))
    resp = metrics.get("energy_response")
    if resp:
        head.append(("E_tot/E_inc, reference", f"{_fmt(resp['real_mean'])} ± {_fmt(resp.get('real_std'))} (std)"))
        head.append(("E_tot/E_inc, generated",
                     f"{_fmt(resp['generated_mean'])} ± {_fmt(resp.get('generated_std'))} (std)"))
    head.append(("features flagged", f"{len(flagged)} of {len(seps)}"))

    e = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        (f"<p class='note'>hepgen {e(str(metrics.get('hepgen_version', '')))} · metrics schema "
         f"{e(str(metrics.get('schema', '')))} · geometry: {e(str(metrics.get('geometry', {}).get('kind', '?')))}"),
    ]
    if "inputs" in metrics:
        parts.append(f" · reference: <code>{e(str(metrics['inputs']['real']))}</code> · generated: "
                     f"<code>{e(str(metrics['inputs']['generated']))}</code>")
    parts.append("</p><h2>Summary</h2><table>")
    parts += [f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in head]
    parts.append("</table>")
    parts.append("<p class='note'>AUC 0.5: the classifier cannot tell generated from reference showers; "
                 "1: it always can. Separation power S: 0 identical histograms, 1 disjoint.</p>")
    if metrics.get("timing"):
        parts.append("<h2>Speed</h2><table>")
        parts += [f"<tr><th>{e(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in metrics["timing"].items()]
        parts.append("</table>")
    if figures:
        parts.append("<h2>Figures</h2>")
        for fig_title, rel in figures:
            parts.append(f"<h3>{e(fig_title)}</h3><img src='{e(str(rel))}' alt='{e(fig_title)}'>")
    parts.append(f"<h2>Every feature</h2><p>{len(flagged)} of {len(seps)} features flagged "
                 f"(separation power &gt; {sep_threshold:g} or KS p-value &lt; {p_threshold:g}).</p>")
    parts.append("<table><tr><th>feature</th><th>separation power</th><th>KS statistic</th>"
                 "<th>KS p-value</th><th>status</th></tr>")
    for name, sep in seps.items():
        k = ks.get(name) or {}
        bad = name in flagged
        status = "<span class='bad'>flagged</span>" if bad else "<span class='ok'>ok</span>"
        parts.append(f"<tr class='{'flag' if bad else 'pass'}'><td>{e(name)}</td><td>{_fmt(sep)}</td>"
                     f"<td>{_fmt(k.get('statistic'))}</td><td>{_fmt(k.get('pvalue'), 3)}</td><td>{status}</td></tr>")
    parts.append("</table><p class='note'>Definitions of every number: docs/metrics.md in the hepgen "
                 "repository.</p></body></html>")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.html"
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(parts), encoding="utf-8")
    return path
