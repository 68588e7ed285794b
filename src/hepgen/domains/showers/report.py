"""Self-contained HTML validation report from a metrics dict and a list of figures; no computation.

``report.html`` is one file: the figures are embedded as base64 PNG ``data:`` URIs and
``hist_data.json`` as a download link of the same kind (:mod:`hepgen.report.portable`); the
PNG and PDF files stay in ``figures/`` beside it.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from hepgen._io import atomic_path
from hepgen.report.portable import data_uri

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


def _feature_rows(metrics: dict) -> dict[str, dict]:
    """name → {separation_power, ks_statistic, ks_pvalue, wasserstein?, jsd?} for every feature in metrics."""
    rows = {}
    for name, sep in metrics["separation_power"].items():
        k = metrics.get("ks", {}).get(name) or {}
        rows[name] = {"separation_power": sep, "ks_statistic": k.get("statistic"), "ks_pvalue": k.get("pvalue")}
    for name, row in (metrics.get("features") or {}).items():
        rows[name] = {**rows.get(name, {}), **row}
    return rows


def flagged_features(metrics: dict, sep_threshold: float = 0.1, p_threshold: float = 0.01) -> list[str]:
    """Features whose separation power exceeds ``sep_threshold`` or whose KS p-value is below ``p_threshold``.

    Every feature of ``separation_power``/``ks`` and, when present, of the ``features`` table
    (which adds the depth observables).
    """
    out = []
    for name, row in _feature_rows(metrics).items():
        sep, p = row.get("separation_power"), row.get("ks_pvalue")
        if (sep is not None and sep > sep_threshold) or (p is not None and p < p_threshold):
            out.append(name)
    return out


def _pm(value, err, digits: int = 4) -> str:
    if value is None:
        return "–"
    return _fmt(value, digits) + ("" if err is None else f" ± {_fmt(err, 2)}")


def _worst_layer(values) -> int | None:
    """Index of the largest non-null value of a per-layer list, None if all are null."""
    finite = [(v, i) for i, v in enumerate(values) if v is not None]
    return max(finite)[1] if finite else None


def _extended_sections(metrics: dict) -> list[str]:
    """HTML tables of the optional metric groups present in ``metrics`` (physics, correlation, …)."""
    e = html.escape
    parts: list[str] = []
    rr = metrics.get("response_resolution")
    cell = metrics.get("cell_energy")
    lc = metrics.get("layer_correlation")
    if rr or cell or lc:
        parts.append("<h2>Physics observables</h2><table><tr><th>quantity</th><th>reference</th>"
                     "<th>generated</th></tr>")
        if rr:
            fr, fg = rr["real"]["fit"], rr["generated"]["fit"]
            parts.append(f"<tr><td>stochastic term a [√GeV] (σ/E = a/√E ⊕ b)</td><td>{_pm(fr['a'], fr['a_err'])}</td>"
                         f"<td>{_pm(fg['a'], fg['a_err'])}</td></tr>")
            parts.append(f"<tr><td>constant term b</td><td>{_pm(fr['b'], fr['b_err'])}</td>"
                         f"<td>{_pm(fg['b'], fg['b_err'])}</td></tr>")
            parts.append(f"<tr><td>fit χ² / ndof</td><td>{_fmt(fr['chi2'], 3)} / {fr['ndof']}</td>"
                         f"<td>{_fmt(fg['chi2'], 3)} / {fg['ndof']}</td></tr>")
        if cell and "separation_power" in cell:
            parts.append(f"<tr><td>mean cell energy (non-zero voxels) [MeV]</td><td>{_fmt(cell['real_mean'])}</td>"
                         f"<td>{_fmt(cell['generated_mean'])}</td></tr>")
            parts.append(f"<tr><td>cell-energy spectrum: separation power / JSD [bits]</td>"
                         f"<td colspan='2'>{_fmt(cell['separation_power'])} / {_fmt(cell['jsd'])}</td></tr>")
        if lc:
            parts.append(f"<tr><td>layer-energy correlations: max |Δr| (Pearson)</td>"
                         f"<td colspan='2'>{_fmt(lc.get('max_abs_diff'), 3)}</td></tr>")
            if lc.get("spearman"):  # a large Pearson but small Spearman difference: a few outlying showers
                parts.append(f"<tr><td>layer-energy correlations: max |Δρ| (Spearman, insensitive to a few "
                             f"outlying showers)</td><td colspan='2'>{_fmt(lc['spearman'].get('max_abs_diff'), 3)}"
                             f"</td></tr>")
        oa = metrics.get("orientation_asymmetry")
        if oa:  # the data's azimuthal symmetry: a model may break it where the data keep it
            parts.append(f"<tr><td>azimuthal symmetry ({oa['n_orientations']} turns and mirror images): cell-mean "
                         f"χ²/ndof (≈ 1 symmetric, ≫ 1 not)</td><td>{_fmt(oa['real']['chi2_per_ndof'], 3)}</td>"
                         f"<td>{_fmt(oa['generated']['chi2_per_ndof'], 3)}</td></tr>")
        above = (metrics.get("lit_cells") or {}).get("above_real_q99")
        if above:
            worst = _worst_layer(above["generated"])
            if worst is not None:
                parts.append(f"<tr><td>showers with more lit cells than the reference's 99th percentile at their "
                             f"layer energy (worst layer: {worst})</td><td>{_fmt(above['real'][worst], 3)}</td>"
                             f"<td>{_fmt(above['generated'][worst], 3)}</td></tr>")
        parts.append("</table>")
    fz = (metrics.get("correlation") or {}).get("fisher_z")
    if fz:
        parts.append("<h2>Correlations (Fisher z)</h2><table><tr><th>quantity</th><th>value</th></tr>")
        parts.append(f"<tr><td>χ² / ndof (generated vs reference)</td><td>{_fmt(fz['chi2'], 5)} / {fz['ndof']} = "
                     f"{_fmt(fz['chi2_per_ndof'], 3)}</td></tr>")
        parts.append(f"<tr><td>p-value, permutation ({fz['n_permutations']} permutations)</td>"
                     f"<td>{_fmt(fz['p_value_permutation'], 3)}</td></tr>")
        parts.append(f"<tr><td>p-value, χ²(ndof) approximation</td><td>{_fmt(fz['p_value'], 3)}</td></tr>")
        parts.append(f"<tr><td>χ² / ndof, reference vs reference (two halves)</td>"
                     f"<td>{_fmt(fz.get('reference_chi2_per_ndof'), 3)}</td></tr>")
        parts.append(f"<tr><td>max |z|</td><td>{_fmt(fz['max_abs_z'], 3)}</td></tr></table>")
        parts.append("<p class='note'>The pairwise z share features and are correlated, so χ² does not follow "
                     "χ²(ndof): trust the permutation p-value; compare χ²/ndof with the reference-vs-reference "
                     "value.</p>")
    mv = metrics.get("multivariate")
    if mv:
        parts.append("<h2>Multivariate metrics</h2><table><tr><th>metric</th><th>generated vs reference</th>"
                     "<th>reference vs reference</th></tr>")
        rows = (("FPD", "fpd", "fpd_err"), ("KPD", "kpd", "kpd_err"), ("MMD² (Gaussian kernel)", "mmd_gaussian", None),
                ("precision", "precision", None), ("recall", "recall", None), ("density", "density", None),
                ("coverage", "coverage", None))
        for label, key, err in rows:
            v = mv[key]
            ev = mv[err] if err else {"value": None, "reference": None}
            parts.append(f"<tr><td>{e(label)}</td><td>{_pm(v['value'], ev['value'])}</td>"
                         f"<td>{_pm(v['reference'], ev['reference'])}</td></tr>")
        parts.append(f"</table><p class='note'>{mv['n_features']} features, standardised by the reference. One "
                     f"half of the reference ({mv['n_compared']} showers) is compared with {mv['n_compared']} "
                     "generated showers (middle column) and with the other half (right column: what a perfect "
                     f"generator would score); PRDC (k = {mv['prdc_k']}) and MMD on {mv['n_subsample']} showers "
                     "each.</p>")
    cr = metrics.get("condition_regression")
    if cr:
        parts.append("<h2>Conditions regressed from the showers</h2><table><tr><th>condition</th>"
                     "<th>bias, reference</th><th>bias, generated</th><th>resolution, reference</th>"
                     "<th>resolution, generated</th></tr>")
        for name, r in cr.items():
            parts.append(f"<tr><td>{e(name)}</td><td>{_pm(r['bias_real'], r['bias_real_err'])}</td>"
                         f"<td>{_pm(r['bias_gen'], r['bias_gen_err'])}</td><td>{_fmt(r['res_real'])}</td>"
                         f"<td>{_fmt(r['res_gen'])}</td></tr>")
        parts.append("</table><p class='note'>A regressor trained on reference showers predicts each condition "
                     "(log_E_inc = ln E_inc/MeV); bias = mean(predicted − label), resolution = its std.</p>")
    dv = metrics.get("diversity")
    if dv:
        parts.append("<h2>Diversity and memorisation</h2><table><tr><th>quantity</th><th>reference</th>"
                     "<th>generated</th></tr>")
        ssim = dv.get("ssim")
        if ssim:
            for key in ssim["real"]:
                r, g = ssim["real"][key], ssim["generated"][key]
                parts.append(f"<tr><td>mean SSIM of random pairs, intensity^{e(key[3:])}</td>"
                             f"<td>{_pm(r['mean'], r['error'])}</td><td>{_pm(g['mean'], g['error'])}</td></tr>")
        bd = dv.get("birthday")
        if bd:
            parts.append(f"<tr><td>birthday support estimate (s²)</td><td>{_fmt(bd['real']['support'])}</td>"
                         f"<td>{_fmt(bd['generated']['support'])}</td></tr>")
        mc = dv.get("mode_collapse")
        if mc:
            parts.append(f"<tr><td>exact duplicate fraction</td><td>{_fmt(mc['duplicate_fraction_real'])}</td>"
                         f"<td>{_fmt(mc['duplicate_fraction_gen'])}</td></tr>")
            parts.append(f"<tr><td>spread ratio gen/ref: std, mean pairwise distance</td>"
                         f"<td colspan='2'>{_fmt(mc['std_ratio'], 3)}, {_fmt(mc['pairwise_distance_ratio'], 3)}</td></tr>")
        mem = dv.get("memorisation")
        if mem:
            parts.append(f"<tr><td>memorisation: median NN distance to training set, ratio gen/ref</td>"
                         f"<td colspan='2'>{_fmt(mem['ratio'], 3)} (p = {_fmt(mem['p_value'], 3)}"
                         f"{', flagged' if mem['flagged'] else ''})</td></tr>")
        parts.append("</table>")
    return parts


def write_report(metrics: dict, out_dir, figures=(), sep_threshold: float = 0.1, p_threshold: float = 0.01,
                 title: str = "hepgen validation report") -> Path:
    """Write ``out_dir/report.html`` (atomically) and return its path.

    Arguments:
        metrics: the dict of :func:`hepgen.domains.showers.evaluate.evaluate` (keys in docs/metrics.md);
            an optional ``timing`` dict (name → number) is shown as a "Speed" section.
        out_dir: folder of the report; figures are read relative to it and embedded.
        figures: ``[(title, relative path)]`` of PNG files, e.g. from
            :func:`hepgen.domains.showers.plots.save_all`.
        sep_threshold: flag features whose separation power exceeds this.
        p_threshold: flag features whose KS p-value is below this.
        title: page title.
    """
    out = Path(out_dir)
    clf = metrics.get("classifier") or {}
    flagged = set(flagged_features(metrics, sep_threshold, p_threshold))
    worst = metrics["separation_power_max"]

    head: list[tuple[str, str]] = [("reference showers", _fmt(metrics["n_real"])),
                                   ("generated showers", _fmt(metrics["n_generated"]))]
    for level, res in clf.items():
        name = level.replace("_", "-")
        head.append((f"classifier AUC, {name}", f"{res['auc']:.4f} ± {res['auc_err']:.4f}"))
        head.append((f"classifier JSD, {name} [bits]", _fmt(res["jsd"])))
    for level, res in (metrics.get("classifier_calochallenge") or {}).items():
        name = level.replace("_", "-")
        note = " (deviations: " + "; ".join(res["deviations"]) + ")" if res.get("deviations") else ""
        head.append((f"CaloChallenge classifier AUC / JSD [bits], {name}",
                     f"{res['auc']:.4f} / {_fmt(res['jsd'])} (best epoch {res['best_epoch']} of {res['epochs']}, "
                     f"{res['n_train']} train / {res['n_test']} test showers){html.escape(note)}"))
    head.append(("mean separation power", _fmt(metrics["separation_power_mean"])))
    head.append(("worst feature", f"{html.escape(worst['feature'])} (S = {_fmt(worst['value'])})"))
    resp = metrics.get("energy_response")
    if resp:
        head.append(("E_tot/E_inc, reference", f"{_fmt(resp['real_mean'])} ± {_fmt(resp.get('real_std'))} (std)"))
        head.append(("E_tot/E_inc, generated",
                     f"{_fmt(resp['generated_mean'])} ± {_fmt(resp.get('generated_std'))} (std)"))
    fz = (metrics.get("correlation") or {}).get("fisher_z")
    if fz:
        text = (f"{_fmt(fz['chi2_per_ndof'], 3)} ({_fmt(fz.get('reference_chi2_per_ndof'), 3)}), "
                f"p = {_fmt(fz['p_value_permutation'], 2)}")
        head.append(("correlations: Fisher-z χ²/ndof (reference halves), permutation p", text))
    mv = metrics.get("multivariate")
    if mv:
        text = (f"{_pm(mv['fpd']['value'], mv['fpd_err']['value'])} "
                f"({_pm(mv['fpd']['reference'], mv['fpd_err']['reference'])})")
        head.append(("FPD (reference vs reference)", text))
    reg = (metrics.get("condition_regression") or {}).get("log_E_inc")
    if reg:
        head.append(("ln E_inc regressed from showers: bias generated (reference)",
                     f"{_pm(reg['bias_gen'], reg['bias_gen_err'])} ({_pm(reg['bias_real'], reg['bias_real_err'])})"))
    head.append(("features flagged", f"{len(flagged)} of {len(_feature_rows(metrics))}"))

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
        hist = out / "hist_data.json"
        link = (f"<a download='hist_data.json' href='{data_uri(hist)}'>hist_data.json</a> (embedded; also beside "
                "this report)") if hist.is_file() else "<code>hist_data.json</code>"
        parts.append("<h2>Figures</h2><p class='note'>Each figure is also a PNG and a vector PDF in the folder "
                     "<code>figures/</code> beside this report (<code>figures/NAME.pdf</code>); the bin edges and "
                     f"counts of every feature histogram, and the training history, are in {link}.</p>")
        for fig_title, rel in figures:
            parts.append(f"<h3>{e(fig_title)}</h3><img src='{data_uri(out / rel, 'image/png')}' "
                         f"alt='{e(fig_title)} (figures/{e(Path(rel).name)})'>")
    parts += _extended_sections(metrics)
    rows = _feature_rows(metrics)
    extended = "features" in metrics
    parts.append(f"<h2>Every feature</h2><p>{len(flagged)} of {len(rows)} features flagged "
                 f"(separation power &gt; {sep_threshold:g} or KS p-value &lt; {p_threshold:g}).</p>")
    parts.append("<table><tr><th>feature</th><th>separation power</th><th>KS statistic</th>"
                 "<th>KS p-value</th>" + ("<th>W1</th><th>JSD [bits]</th>" if extended else "")
                 + "<th>status</th></tr>")
    for name, row in rows.items():
        bad = name in flagged
        status = "<span class='bad'>flagged</span>" if bad else "<span class='ok'>ok</span>"
        more = f"<td>{_fmt(row.get('wasserstein'))}</td><td>{_fmt(row.get('jsd'))}</td>" if extended else ""
        parts.append(f"<tr class='{'flag' if bad else 'pass'}'><td>{e(name)}</td>"
                     f"<td>{_fmt(row.get('separation_power'))}</td><td>{_fmt(row.get('ks_statistic'))}</td>"
                     f"<td>{_fmt(row.get('ks_pvalue'), 3)}</td>{more}<td>{status}</td></tr>")
    parts.append("</table><p class='note'>Definitions of every number: docs/metrics.md in the hepgen "
                 "repository.</p></body></html>")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.html"
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(parts), encoding="utf-8")
    return path
