"""Figures for the validation report (matplotlib + mplhep); no metric is computed here.

Figures are built with the object-oriented API (:class:`matplotlib.figure.Figure`, which
renders with the Agg canvas) inside a local style context, so nothing touches pyplot's
global state or the interactive backend of a notebook that imports hepgen.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from hepgen.metrics.distances import binning_for, histogram
from hepgen.metrics.observables import (
    DEPTH_OBSERVABLES,
    feature_label,
    feature_stem,
    feature_title,
    layer_energies,
    radial_profile,
    resolution_model,
)
from hepgen.report.hexagons import draw_hexagonal_layer
from hepgen.report.style import DPI, GEN, REAL, draw_ratio, figure_style, ratio_axes, save_figure

__all__ = [
    "plot_average_showers",
    "plot_cell_spectrum",
    "plot_feature_correlations",
    "plot_feature_group",
    "plot_layer_correlation",
    "plot_lit_cells",
    "plot_loss_curve",
    "plot_profiles",
    "plot_response_resolution",
    "plot_roc",
    "save_all",
]

def _hist_with_ratio(ax, rax, a, b, edges, sep=None, log_x=False, legend=False, log_y=False):
    """Normalised step histograms of reference and generated, with the ratio gen/ref below.

    Error bars are Poisson (√n); the grey band in the ratio panel is the reference's
    relative Poisson error, the error bars on the ratio points the generated one's.
    """
    ha, hb = histogram(a, edges), histogram(b, edges)
    _counts_with_ratio(ax, rax, ha, hb, ha, hb, edges, sep, log_x, legend, log_y)


def _counts_with_ratio(ax, rax, ha, hb, var_a, var_b, edges, sep=None, log_x=False, legend=False, log_y=False):
    """Draw two histograms given as counts and count variances, normalised to unit area, with the ratio panel."""
    na, nb = max(ha.sum(), 1.0), max(hb.sum(), 1.0)
    widths = np.diff(edges)
    if log_x:  # fraction per log-width bin, so the shapes read correctly on a log axis
        widths = np.diff(np.log10(edges))
    da, db = ha / na / widths, hb / nb / widths
    ea, eb = np.sqrt(var_a) / na / widths, np.sqrt(var_b) / nb / widths
    centres = np.sqrt(edges[1:] * edges[:-1]) if log_x else 0.5 * (edges[1:] + edges[:-1])
    ax.stairs(da, edges, color=REAL["color"], lw=1.3, label=REAL["label"])
    ax.stairs(db, edges, color=GEN["color"], lw=1.3, label=GEN["label"])
    ax.errorbar(centres, da, yerr=ea, fmt="none", ecolor=REAL["color"], lw=0.7)
    ax.errorbar(centres, db, yerr=eb, fmt="none", ecolor=GEN["color"], lw=0.7)
    top = max(da.max(initial=0), db.max(initial=0))
    if log_y and top > 0:
        pos = np.concatenate([da[da > 0], db[db > 0]])
        ax.set_yscale("log")
        ax.set_ylim(pos.min() / 2, top * 10)  # a decade of headroom for the legend and S
    else:
        ax.set_ylim(0, 1.3 * top if top > 0 else 1.0)  # headroom for the legend and S
    ax.set_ylabel("density (unit area)" if not log_x else "density per decade", fontsize=8)
    ratio = np.divide(db, da, out=np.full_like(da, np.nan), where=ha > 0)
    rerr = np.divide(eb, da, out=np.full_like(da, np.nan), where=ha > 0)
    band = np.divide(np.sqrt(var_a), ha, out=np.zeros_like(ha), where=ha > 0)
    rax.stairs(1 + band, edges, baseline=1 - band, fill=True, color="grey", alpha=0.35, lw=0)
    draw_ratio(rax, centres, ratio, rerr)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlim(edges[0], edges[-1])
    if sep is not None:
        ax.text(0.97, 0.95, f"S = {sep:.3g}", transform=ax.transAxes, ha="right", va="top", fontsize=8)
    if legend:
        ax.legend(loc="upper left", fontsize=8)


def _is_log_binning(edges: np.ndarray) -> bool:
    """True for log-spaced edges spanning more than a decade (drawn on a log axis)."""
    if len(edges) < 3 or edges[0] <= 0 or edges[-1] / edges[0] < 10:
        return False
    ratios = edges[1:] / edges[:-1]
    return bool(np.allclose(ratios, ratios[0], rtol=1e-6))


def plot_feature_group(path, names, feats_real, feats_gen, edges, seps, title):
    """Grid of histograms (with ratio panels) for features sharing a stem, e.g. all ``E_layer_i``."""
    n = len(names)
    ncol = min(4, n)
    nrow = int(np.ceil(n / ncol))
    with figure_style():
        height = 3.5 * nrow + 0.7
        width = max(4.0 * ncol, 5.5)
        fig = Figure(figsize=(width, height))
        # fixed margins instead of bbox_inches="tight", which draws the figure twice
        grid = fig.add_gridspec(nrow, ncol, hspace=0.42, wspace=0.32, left=0.06 if ncol > 1 else 0.16,
                                right=0.98, bottom=0.55 / height, top=1 - 0.65 / height)
        for k, name in enumerate(names):
            ax, rax = ratio_axes(fig, grid[k // ncol, k % ncol])
            e = np.asarray(edges[name])
            log_x = _is_log_binning(e)
            _hist_with_ratio(ax, rax, feats_real[name], feats_gen[name], e, seps.get(name), log_x, legend=k == 0)
            rax.set_xlabel(feature_label(name), fontsize=8)
        fig.suptitle(title, y=1 - 0.2 / height)
        save_figure(fig, path, dpi=DPI)


def _positive_floor(*arrays):
    vmax = max(float(np.max(a)) for a in arrays)
    if not vmax > 0:
        return 1e-3, 1.0
    pos = [a[a > 0].min() for a in arrays if np.any(a > 0)]
    return max(vmax * 1e-5, min(pos)), vmax


def plot_average_showers(path, real, generated, geometry):
    """Mean energy per voxel, per layer: reference (top row) and generated (bottom row), log colour scale."""
    mr, mg = np.asarray(real, dtype=np.float64).mean(axis=0), np.asarray(generated, dtype=np.float64).mean(axis=0)
    n = geometry.n_layers
    vmin, vmax = _positive_floor(mr, mg)
    norm = LogNorm(vmin=vmin, vmax=vmax)
    cylindrical = geometry.kind == "cylindrical"
    ncol = min(n, 8)
    nrow_per = int(np.ceil(n / ncol))
    with figure_style():
        fig = Figure(figsize=(2.2 * ncol + 1.2, 2.5 * 2 * nrow_per + 0.5))
        grid = fig.add_gridspec(2 * nrow_per, ncol, wspace=0.15, hspace=0.3)
        mesh = None
        for row, (mean, label) in enumerate(((mr, "reference"), (mg, "generated"))):
            for i, s in enumerate(geometry.layer_slices):
                spec = grid[row * nrow_per + i // ncol, i % ncol]
                layer_mean = np.clip(mean[s], vmin, None)
                if cylindrical:
                    ax = fig.add_subplot(spec, projection="polar")
                    lb = geometry.active_layers[i]
                    img = layer_mean.reshape(lb.n_alpha, lb.n_r)  # radial-fastest voxel order
                    # pcolormesh joins corners with straight lines: split each angular bin into
                    # sub-bins so rings look round, not polygonal, when there are few angular bins
                    sub = max(1, int(np.ceil(64 / lb.n_alpha)))
                    alpha = np.linspace(-np.pi, np.pi, lb.n_alpha * sub + 1)
                    # radial axis as √r: the fine core bins stay visible next to the wide outer ones
                    mesh = ax.pcolormesh(alpha, np.sqrt(np.asarray(lb.r_edges)), np.repeat(img, sub, axis=0).T,
                                         norm=norm, cmap="viridis", shading="flat")
                    ax.set_ylim(0, np.sqrt(lb.r_edges[-1]))
                    ax.grid(False)
                elif geometry.kind == "hexagonal":
                    ax = fig.add_subplot(spec)
                    mesh = draw_hexagonal_layer(ax, geometry, layer_mean, norm=norm)
                elif geometry.kind == "layered-cartesian":
                    ax = fig.add_subplot(spec)
                    lay = geometry.layers[i]
                    img = layer_mean.reshape(lay.ny, lay.nx)
                    mesh = ax.imshow(img, norm=norm, cmap="viridis", origin="lower",
                                     extent=(-0.5 * lay.nx * lay.dx, 0.5 * lay.nx * lay.dx,
                                             -0.5 * lay.ny * lay.dy, 0.5 * lay.ny * lay.dy))
                else:
                    ax = fig.add_subplot(spec)
                    img = layer_mean.reshape(geometry.ny, geometry.nx)
                    half_x, half_y = 0.5 * geometry.nx * geometry.cell_size, 0.5 * geometry.ny * geometry.cell_size
                    mesh = ax.imshow(img, norm=norm, cmap="viridis", origin="lower",
                                     extent=(-half_x, half_x, -half_y, half_y))
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"{label}, layer {i}", fontsize=8)
        cbar = fig.colorbar(mesh, ax=fig.axes, shrink=0.85, pad=0.02)
        cbar.set_label("mean energy per voxel [MeV]", fontsize=10)
        cbar.ax.tick_params(labelsize=8)
        if cylindrical:
            fig.suptitle("Average shower per layer (radial axis: √r, angle = α)", fontsize=12)
        else:
            fig.suptitle("Average shower per layer (x horizontal, y vertical)", fontsize=12)
        save_figure(fig, path, dpi=DPI, bbox_inches="tight")


def plot_profiles(path, real, generated, geometry):
    """Mean longitudinal (per layer) and radial (per r bin) energy profiles, with ratios and errors of the mean."""
    real, generated = np.asarray(real, dtype=np.float64), np.asarray(generated, dtype=np.float64)
    with figure_style():
        fig = Figure(figsize=(11, 4.6))
        grid = fig.add_gridspec(1, 2, wspace=0.28)
        ler, leg = layer_energies(real, geometry), layer_energies(generated, geometry)
        centres, rr = radial_profile(real, geometry)
        _, rg = radial_profile(generated, geometry)
        panels = (
            (np.arange(ler.shape[1]), ler, leg, "layer", False),
            (centres, rr, rg, "radial bin centre [mm]", True),
        )
        for k, (x, a, b, xlabel, radial) in enumerate(panels):
            ax, rax = ratio_axes(fig, grid[0, k])
            ma, mb = a.mean(0), b.mean(0)
            sa, sb = a.std(0) / np.sqrt(len(a)), b.std(0) / np.sqrt(len(b))
            ax.errorbar(x, ma, yerr=sa, fmt="o-", ms=3, lw=1.2, **REAL)
            ax.errorbar(x, mb, yerr=sb, fmt="s--", ms=3, lw=1.2, **GEN)
            if np.any(ma > 0) or np.any(mb > 0):
                ax.set_yscale("log")
            ax.set_ylabel("mean energy per shower [MeV]")
            ratio = np.divide(mb, ma, out=np.full_like(ma, np.nan), where=ma > 0)
            rerr = np.divide(np.hypot(sb, ratio * sa), ma, out=np.full_like(ma, np.nan), where=ma > 0)
            draw_ratio(rax, np.asarray(x, dtype=float), ratio, rerr)
            rax.set_xlabel(xlabel)
            if radial and np.all(x > 0) and x[-1] / x[0] > 10:
                ax.set_xscale("log")
            ax.set_title("longitudinal profile" if not radial else "radial profile (all layers)")
            ax.legend()
        save_figure(fig, path, dpi=DPI, bbox_inches="tight")


def plot_roc(path, rocs: dict, aucs: dict):
    """ROC curves of the classifier two-sample tests (diagonal = indistinguishable)."""
    with figure_style():
        fig = Figure(figsize=(5.2, 5))
        ax = fig.add_subplot()
        for level, roc in rocs.items():
            auc = aucs.get(level)
            label = level.replace("_", "-") + (f" (AUC = {auc:.3f})" if auc is not None else "")
            ax.plot(roc["fpr"], roc["tpr"], lw=1.5, label=label)
        ax.plot([0, 1], [0, 1], ":", color="grey", label="indistinguishable (AUC = 0.5)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("false positive rate (generated taken for reference)")
        ax.set_ylabel("true positive rate (reference recognised)")
        ax.set_title("classifier two-sample tests")
        ax.legend(loc="lower right")
        save_figure(fig, path, dpi=DPI, bbox_inches="tight")


def plot_loss_curve(path, log: dict[str, list]):
    """The training history: every ``train_*`` number and ``val_loss`` per epoch (left axis) and
    ``val_physics`` when logged (right axis).  ``log``: column → values, from ``train_log.csv``."""
    epochs = np.asarray(log["epoch"], dtype=float)
    with figure_style():
        fig = Figure(figsize=(6.4, 4))
        ax = fig.add_subplot()
        for name, values in log.items():
            if name.startswith("train_") or name == "val_loss":
                y = np.asarray(values, dtype=float)
                ax.plot(epochs, y, "o-" if len(y) < 30 else "-", ms=3, lw=1.3, label=name,
                        color="black" if name == "val_loss" else None)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss (as logged by the family)")
        if "val_physics" in log and np.isfinite(np.asarray(log["val_physics"], dtype=float)).any():
            ax2 = ax.twinx()
            y = np.asarray(log["val_physics"], dtype=float)
            ok = np.isfinite(y)
            ax2.plot(epochs[ok], y[ok], "s--", ms=3, color=GEN["color"], label="val_physics (right)")
            ax2.set_ylabel("val_physics: mean separation power")
            ax2.legend(loc="upper center")
        ax.legend(loc="upper right")
        ax.set_title("training history (train_log.csv)")
        save_figure(fig, path, dpi=DPI, bbox_inches="tight")


def _ticks_125(axis, lo: float, hi: float) -> None:
    """Ticks at 1, 2, 5 × 10^k on a log axis spanning [lo, hi], labelled as plain numbers."""
    if not (lo > 0 and hi > lo):
        return
    k = np.arange(np.floor(np.log10(lo)), np.ceil(np.log10(hi)) + 1)
    ticks = np.sort(np.outer(10.0**k, [1, 2, 5]).ravel())
    ticks = ticks[(ticks >= lo) & (ticks <= hi)]
    if len(ticks) < 2:
        return
    axis.set_major_locator(mpl.ticker.FixedLocator(ticks))
    axis.set_major_formatter(mpl.ticker.FormatStrFormatter("%g"))
    axis.set_minor_formatter(mpl.ticker.NullFormatter())


def plot_response_resolution(path, rr: dict):
    """Energy response and relative resolution vs incident energy, with the fitted σ/E curves.

    ``rr`` is ``metrics["response_resolution"]`` of :func:`hepgen.domains.showers.evaluate.evaluate`.
    """
    with figure_style():
        fig = Figure(figsize=(11, 4.6))
        grid = fig.add_gridspec(1, 2, wspace=0.28)
        ax_resp, ax_res = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
        e_all = []
        for style, key, marker in ((REAL, "real", "o"), (GEN, "generated", "s")):
            d = rr.get(key) or {}
            e = np.asarray(d.get("e_mean", []), dtype=float) / 1e3
            ok = np.isfinite(e)
            if not ok.any():
                continue
            e_all.append(e[ok])
            resp = np.asarray(d["response"], dtype=float)
            ax_resp.errorbar(e[ok], resp[ok], yerr=np.asarray(d["response_err"], dtype=float)[ok], fmt=marker,
                             ms=4, color=style["color"], label=style["label"])
            res = np.asarray(d["resolution"], dtype=float)
            fit = d.get("fit") or {}
            label = style["label"]
            if np.isfinite(fit.get("a") or np.nan):
                label += (f": a = {fit['a']:.3f} ± {fit['a_err']:.3f} √GeV, "
                          f"b = {fit['b']:.4f} ± {fit['b_err']:.4f}")
            ax_res.errorbar(e[ok], res[ok], yerr=np.asarray(d["resolution_err"], dtype=float)[ok], fmt=marker,
                            ms=4, color=style["color"], label=label)
            if np.isfinite(fit.get("a") or np.nan):
                grid_e = np.geomspace(e[ok].min() * 0.9, e[ok].max() * 1.1, 200)
                ax_res.plot(grid_e, resolution_model(grid_e, fit["a"], fit["b"]), "-" if key == "real" else "--",
                            color=style["color"], lw=1.2)
        for ax in (ax_resp, ax_res):
            ax.set_xscale("log")
            _ticks_125(ax.xaxis, *ax.get_xlim())
            ax.set_xlabel("incident energy E_inc [GeV]")
        ax_resp.set_ylabel("response: mean of E_vis / E_inc")
        ax_resp.set_title("energy response")
        lo, hi = ax_resp.get_ylim()
        ax_resp.set_ylim(lo, hi + 0.35 * (hi - lo))  # room for the legend above the points
        ax_resp.legend(loc="upper left")
        ax_res.set_ylabel("resolution: std / mean of R = E_vis / E_inc")
        ax_res.set_yscale("log")
        ax_res.set_title("resolution, fit σ/E = √(a²/E + b²), E in GeV")
        lo, hi = ax_res.get_ylim()
        ax_res.set_ylim(lo, hi * 2)
        _ticks_125(ax_res.yaxis, lo, hi * 2)
        ax_res.legend(loc="upper right", fontsize=7)
        save_figure(fig, path, dpi=DPI, bbox_inches="tight")


def _label_blocks(labels: list[str]) -> list[tuple[int, int, str]]:
    """Blocks of consecutive labels for matrix axes: (start, stop, text).

    Runs sharing a stem (``EC_r_0 … EC_r_7``) become ``EC_r (0–7)``; runs of single features
    become one block ``a / b / c`` (without ``log10_`` prefixes), so that their labels do not
    overlap.
    """
    runs: list[list] = []
    for i, name in enumerate(labels):
        stem = feature_stem(name)
        if runs and runs[-1][2] == stem and stem != name:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1, stem])
    blocks: list[list] = []
    for a, b, stem in runs:
        single = b - a == 1
        if single and blocks and blocks[-1][3]:
            blocks[-1][1] = b
            blocks[-1][2].append(stem.removeprefix("log10_"))
        else:
            blocks.append([a, b, [stem.removeprefix("log10_") if single else f"{stem} (0–{b - a - 1})"], single])
    return [(a, b, " / ".join(texts)) for a, b, texts, _ in blocks]


def _heatmap(fig, ax, m, title, cmap, vmin, vmax, labels=None, annotate=False, cbar_label="", tick_labels=True):
    """One matrix panel with its colour bar; long label lists are shown as blocks of one feature group."""
    m = np.asarray(m, dtype=float)
    img = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title)
    n = m.shape[0]
    ax.tick_params(which="both", length=0, top=False, right=False)
    ax.minorticks_off()
    if labels is not None and n <= 12:
        ax.set_xticks(np.arange(n))
        ax.set_yticks(np.arange(n))
        ax.set_xticklabels(labels if tick_labels else [], fontsize=8)
        ax.set_yticklabels(labels if tick_labels else [], fontsize=8)
    elif labels is not None:
        blocks = _label_blocks(list(labels))
        centres = [0.5 * (a + b - 1) for a, b, _ in blocks]
        texts = [t for _, _, t in blocks] if tick_labels else []
        ax.set_xticks(centres)
        ax.set_yticks(centres)
        ax.set_xticklabels(texts, rotation=90, fontsize=7)
        ax.set_yticklabels(texts, fontsize=7)
        for a, b, _ in blocks[1:]:
            ax.axhline(a - 0.5, color="grey", lw=0.4)
            ax.axvline(a - 0.5, color="grey", lw=0.4)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if annotate:
        for i in range(n):
            for j in range(n):
                if np.isfinite(m[i, j]):
                    ax.text(j, i, f"{round(m[i, j], 2) + 0.0:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if abs(m[i, j]) > 0.6 * max(abs(vmin), abs(vmax)) else "black")
    cbar = fig.colorbar(img, ax=ax, fraction=0.046, pad=0.03)
    cbar.set_label(cbar_label, fontsize=8)
    cbar.ax.tick_params(labelsize=7)


def plot_layer_correlation(path, lc: dict):
    """Correlation of the layer energies: reference, generated and their difference (generated − reference)."""
    r, g = np.asarray(lc["real"], dtype=float), np.asarray(lc["generated"], dtype=float)
    n = r.shape[0]
    labels = [str(i) for i in range(n)]
    diff = g - r
    dmax = max(float(np.nanmax(np.abs(diff))) if np.isfinite(diff).any() else 0.0, 0.05)
    with figure_style():
        fig = Figure(figsize=(15, 4.6))
        grid = fig.add_gridspec(1, 3, wspace=0.3, left=0.04, right=0.97, bottom=0.12, top=0.86)
        panels = ((r, "reference", "RdBu_r", -1, 1, "Pearson r"), (g, "generated", "RdBu_r", -1, 1, "Pearson r"),
                  (diff, "generated − reference", "PiYG", -dmax, dmax, "Δr"))
        for k, (m, title, cmap, lo, hi, clabel) in enumerate(panels):
            ax = fig.add_subplot(grid[0, k])
            _heatmap(fig, ax, m, title, cmap, lo, hi, labels if n <= 30 else None, annotate=n <= 12,
                     cbar_label=clabel)
            ax.set_xlabel("layer")
            ax.set_ylabel("layer")
        fig.suptitle("Correlation of the layer energies (empty layers blank)")
        save_figure(fig, path, dpi=DPI, bbox_inches="tight")


def plot_lit_cells(path, lc: dict, max_panels: int = 12):
    """Number of lit cells of each layer vs that layer's energy: the reference's and the generated
    quantiles (50, 90, 99 %) in the reference's log bins, one panel per layer (the first
    ``max_panels`` layers with bins); each title gives the fraction of showers above the
    reference's 99th percentile (metrics ``lit_cells``, docs/metrics.md)."""
    # metrics.json's nulls (layers without bins, empty bins) become NaN in a float array
    edges = np.asarray(lc["edges_mev"], dtype=float)
    layers = [k for k in range(len(edges)) if np.all(np.isfinite(edges[k]))][:max_panels]
    if not layers:
        return
    qs = lc["quantiles"]
    qr, qg = (np.asarray(lc[s]["quantiles"], dtype=float) for s in ("real", "generated"))
    above = lc.get("above_real_q99") or {"real": [None] * len(edges), "generated": [None] * len(edges)}
    ncol = min(4, len(layers))
    nrow = -(-len(layers) // ncol)
    styles = ("-", "--", ":")
    with figure_style():
        fig = Figure(figsize=(3.6 * ncol, 3.0 * nrow + 0.6))
        grid = fig.add_gridspec(nrow, ncol, hspace=0.55, wspace=0.3)
        for j, k in enumerate(layers):
            ax = fig.add_subplot(grid[j // ncol, j % ncol])
            centres = np.sqrt(edges[k, 1:] * edges[k, :-1])
            for iq, q in enumerate(qs):
                ls = styles[iq % len(styles)]
                ax.plot(centres, qr[iq, k], ls, color="black", label=f"reference {100 * q:g} %")
                ax.plot(centres, qg[iq, k], ls, color="tab:red", label=f"generated {100 * q:g} %")
            ax.set_xscale("log")
            ax.set_xlabel(f"layer {k} energy [MeV]")
            ax.set_ylabel("lit cells")
            fr, fg = above["real"][k], above["generated"][k]
            title = f"layer {k}"
            if fr is not None and fg is not None:
                title += f": > ref. 99 %: {100 * fg:.1f} % (ref. {100 * fr:.1f} %)"
            ax.set_title(title, fontsize=9)
            if j == 0:
                ax.legend(fontsize=7, ncol=1)
        fig.suptitle("Lit cells per layer vs the layer's energy (quantiles over showers)")
        save_figure(fig, path, dpi=DPI, bbox_inches="tight")


def plot_feature_correlations(path, fz: dict, chi2_text: str = ""):
    """Normal-score correlation matrices of the features (reference, generated) and the Fisher-z map.

    ``fz`` is the ``fisher_z`` entry of :class:`hepgen.domains.showers.evaluate.EvaluationDetails.extra`:
    ``corr_a``, ``corr_b``, ``z`` (k × k) and ``names``.  Features of one group (``EC_r_0 …``)
    are labelled as a block.
    """
    names = list(fz["names"])
    z = np.asarray(fz["z"], dtype=float)
    zmax = max(5.0, float(np.nanmax(np.abs(z)))) if np.isfinite(z).any() else 5.0
    zmax = min(zmax, 10.0)  # beyond ±10 everything is equally wrong; keep the colour scale readable
    with figure_style():
        fig = Figure(figsize=(19, 7.2))
        grid = fig.add_gridspec(1, 3, wspace=0.12, left=0.1, right=0.98, bottom=0.2, top=0.9)
        panels = ((fz["corr_a"], "reference", "RdBu_r", -1, 1, "correlation of normal scores"),
                  (fz["corr_b"], "generated", "RdBu_r", -1, 1, "correlation of normal scores"),
                  (z, "Fisher z = (artanh r_ref − artanh r_gen) / σ", "PiYG", -zmax, zmax, "z"))
        for j, (m, title, cmap, lo, hi, clabel) in enumerate(panels):
            ax = fig.add_subplot(grid[0, j])
            _heatmap(fig, ax, m, title, cmap, lo, hi, names, cbar_label=clabel, tick_labels=True)
            if j > 0:
                ax.set_yticklabels([])
        fig.suptitle("Correlations of the high-level features" + (f": {chi2_text}" if chi2_text else ""))
        save_figure(fig, path, dpi=DPI, bbox_inches="tight")


def _cell_counts(showers: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of non-zero cells per bin, and their variance with showers as the independent units.

    Cells of one shower are correlated (one energetic shower fills many high-energy bins), so
    Poisson errors would understate the spread; var(C_b) = Σ_showers n_{s,b}² instead.
    """
    x = np.asarray(showers, dtype=np.float64)
    rows, cols = np.nonzero(x > 0)
    values = np.clip(x[rows, cols], edges[0], edges[-1])
    nb = len(edges) - 1
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, nb - 1)
    per_shower = np.bincount(rows * nb + idx, minlength=len(x) * nb).reshape(len(x), nb).astype(np.float64)
    return per_shower.sum(axis=0), (per_shower**2).sum(axis=0)


def plot_cell_spectrum(path, real, generated, edges, sep=None):
    """Single-cell energy spectrum (every non-zero voxel) on log axes, with the ratio panel.

    Errors treat showers, not cells, as independent (see :func:`_cell_counts`); the first and
    last bins hold the under- and overflow.
    """
    edges = np.asarray(edges, dtype=np.float64)
    ha, va = _cell_counts(real, edges)
    hb, vb = _cell_counts(generated, edges)
    with figure_style():
        fig = Figure(figsize=(6.5, 5.2))
        grid = fig.add_gridspec(1, 1)
        ax, rax = ratio_axes(fig, grid[0, 0])
        _counts_with_ratio(ax, rax, ha, hb, va, vb, edges, sep, log_x=True, legend=True, log_y=True)
        rax.set_xlabel("cell energy [MeV]")
        ax.set_ylabel("cells per decade (unit area)", fontsize=8)
        ax.set_title("single-cell energy spectrum (non-zero voxels)")
        save_figure(fig, path, dpi=DPI, bbox_inches="tight")


def save_all(out_dir, real, generated, geometry, feats_real, feats_gen, edges, seps, rocs=None, aucs=None,
             metrics=None, extra=None, training_log=None):
    """Draw every figure into ``out_dir/figures``; return ``[(title, path relative to out_dir)]``.

    Arguments:
        real, generated: (N, n_voxels) showers, MeV.
        feats_real, feats_gen: per-shower features (name → (N,)); the depth observables are
            drawn together in one figure.
        edges: name → shared bin edges; seps: name → separation power.
        rocs: level → ``{"fpr", "tpr"}``; aucs: level → AUC (both optional).
        metrics: the metrics dict; its ``response_resolution`` and ``layer_correlation``
            entries are drawn when present.
        extra: :attr:`hepgen.domains.showers.evaluate.EvaluationDetails.extra` (``fisher_z``).
        training_log: column → values of the generator's ``train_log.csv`` (drawn first when given).

    Every figure is written as PNG (shown by the report) and PDF (vector, for papers) of the same name.
    """
    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    metrics, extra = metrics or {}, extra or {}
    figures = []
    if training_log and training_log.get("epoch"):
        plot_loss_curve(fig_dir / "loss_curve.png", training_log)
        figures.append(("Training history of the generator", "figures/loss_curve.png"))
    plot_average_showers(fig_dir / "average_showers.png", real, generated, geometry)
    figures.append(("Average shower per layer", "figures/average_showers.png"))
    plot_profiles(fig_dir / "profiles.png", real, generated, geometry)
    figures.append(("Longitudinal and radial profiles", "figures/profiles.png"))
    if rocs:
        plot_roc(fig_dir / "roc.png", rocs, aucs or {})
        figures.append(("Classifier ROC curves", "figures/roc.png"))
    if metrics.get("response_resolution"):
        plot_response_resolution(fig_dir / "response_resolution.png", metrics["response_resolution"])
        figures.append(("Energy response and resolution vs incident energy", "figures/response_resolution.png"))
    cell = metrics.get("cell_energy") or {}
    if cell.get("separation_power") is not None:
        ra, ga = np.asarray(real), np.asarray(generated)
        # the binning of the separation power in metrics["cell_energy"]
        ce = binning_for(ra[ra > 0], ga[ga > 0], int(metrics.get("n_bins", 30)), log=True)
        plot_cell_spectrum(fig_dir / "cell_spectrum.png", ra, ga, ce, cell["separation_power"])
        figures.append(("Single-cell energy spectrum", "figures/cell_spectrum.png"))
    if metrics.get("layer_correlation"):
        plot_layer_correlation(fig_dir / "layer_correlation.png", metrics["layer_correlation"])
        figures.append(("Correlation of the layer energies", "figures/layer_correlation.png"))
    if (metrics.get("lit_cells") or {}).get("edges_mev"):
        plot_lit_cells(fig_dir / "lit_cells.png", metrics["lit_cells"])
        figures.append(("Lit cells per layer vs the layer's energy", "figures/lit_cells.png"))
    if extra.get("fisher_z") is not None:
        fzm = (metrics.get("correlation") or {}).get("fisher_z") or {}
        text = ""
        if fzm.get("ndof"):
            text = f"χ²/ndof = {fzm['chi2']:.0f}/{fzm['ndof']}"
            if fzm.get("p_value_permutation") is not None:
                text += f", permutation p = {fzm['p_value_permutation']:.2g}"
        plot_feature_correlations(fig_dir / "feature_correlations.png", extra["fisher_z"], text)
        figures.append(("Correlations of the high-level features (Fisher z)", "figures/feature_correlations.png"))
    stems: dict[str, list[str]] = {}
    for name in feats_real:
        if name not in edges:
            continue
        stems.setdefault("depth" if name in DEPTH_OBSERVABLES else feature_stem(name), []).append(name)
    for stem, names in stems.items():
        rel = f"figures/{stem}.png"
        title = "Longitudinal depth observables (CaloFlow)" if stem == "depth" else feature_title(stem)
        plot_feature_group(out_dir / rel, names, feats_real, feats_gen, edges, seps, title)
        figures.append((title, rel))
    return figures
