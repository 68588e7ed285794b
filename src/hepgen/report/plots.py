"""Figures for the validation report (matplotlib + mplhep); no metric is computed here.

Figures are built with the object-oriented API (:class:`matplotlib.figure.Figure`, which
renders with the Agg canvas) inside a local style context, so nothing touches pyplot's
global state or the interactive backend of a notebook that imports hepgen.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from hepgen.metrics.distances import histogram
from hepgen.metrics.observables import (
    feature_label,
    feature_stem,
    feature_title,
    layer_energies,
    radial_profile,
)

__all__ = ["plot_average_showers", "plot_feature_group", "plot_profiles", "plot_roc", "save_all"]

REAL = dict(color="black", label="reference")
GEN = dict(color="tab:red", label="generated")
RATIO_RANGE = (0.5, 1.5)
DPI = 80

_RC = {
    "font.size": 10,
    "axes.labelsize": 10,
    "axes.titlesize": 10,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "figure.titlesize": 13,
    "axes.linewidth": 1.0,
    "xtick.major.size": 5,
    "ytick.major.size": 5,
    "xtick.minor.size": 2.5,
    "ytick.minor.size": 2.5,
    "savefig.dpi": DPI,
    # minor ticks on every side of dozens of small panels cost most of the drawing time
    "xtick.minor.visible": False,
    "ytick.minor.visible": False,
}


@contextlib.contextmanager
def _style():
    """mplhep's CMS look (ticks inside, on all sides) with fonts sized for grids of small panels."""
    try:
        import mplhep

        base = mplhep.style.CMS
    except ImportError:  # pragma: no cover - mplhep is a dependency; degrade to plain matplotlib
        base = {}
    with mpl.style.context([base, _RC]):
        yield


def _ratio_axes(fig, spec):
    sub = spec.subgridspec(2, 1, height_ratios=[3, 1], hspace=0.06)
    ax = fig.add_subplot(sub[0])
    rax = fig.add_subplot(sub[1], sharex=ax)
    ax.tick_params(labelbottom=False)
    return ax, rax


def _draw_ratio(rax, x, ratio, err=None, color=GEN["color"]):
    """Ratio points in range; points outside drawn as triangles on the panel edge."""
    lo, hi = RATIO_RANGE
    ok = np.isfinite(ratio)
    inside = ok & (ratio >= lo) & (ratio <= hi)
    if err is None:
        rax.plot(x[inside], ratio[inside], "o", color=color, ms=2.5)
    else:
        rax.errorbar(x[inside], ratio[inside], yerr=err[inside], fmt="o", color=color, ms=2.5, lw=0.8)
    rax.plot(x[ok & (ratio > hi)], np.full((ok & (ratio > hi)).sum(), hi - 0.02 * (hi - lo)), "^",
             color=color, ms=4)
    rax.plot(x[ok & (ratio < lo)], np.full((ok & (ratio < lo)).sum(), lo + 0.02 * (hi - lo)), "v",
             color=color, ms=4)
    rax.axhline(1.0, color="black", lw=0.8)
    rax.set_ylim(lo, hi)
    rax.set_yticks([0.75, 1.0, 1.25])
    rax.set_ylabel("gen/ref", fontsize=8)


def _hist_with_ratio(ax, rax, a, b, edges, sep=None, log_x=False, legend=False):
    """Normalised step histograms of reference and generated, with the ratio gen/ref below.

    Error bars are Poisson (√n); the grey band in the ratio panel is the reference's
    relative Poisson error, the error bars on the ratio points the generated one's.
    """
    ha, hb = histogram(a, edges), histogram(b, edges)
    na, nb = max(ha.sum(), 1.0), max(hb.sum(), 1.0)
    widths = np.diff(edges)
    if log_x:  # fraction per log-width bin, so the shapes read correctly on a log axis
        widths = np.diff(np.log10(edges))
    da, db = ha / na / widths, hb / nb / widths
    centres = np.sqrt(edges[1:] * edges[:-1]) if log_x else 0.5 * (edges[1:] + edges[:-1])
    ax.stairs(da, edges, color=REAL["color"], lw=1.3, label=REAL["label"])
    ax.stairs(db, edges, color=GEN["color"], lw=1.3, label=GEN["label"])
    ax.errorbar(centres, da, yerr=np.sqrt(ha) / na / widths, fmt="none", ecolor=REAL["color"], lw=0.7)
    ax.errorbar(centres, db, yerr=np.sqrt(hb) / nb / widths, fmt="none", ecolor=GEN["color"], lw=0.7)
    top = max(da.max(initial=0), db.max(initial=0))
    ax.set_ylim(0, 1.3 * top if top > 0 else 1.0)  # headroom for the legend and S
    ax.set_ylabel("density (unit area)" if not log_x else "density per decade", fontsize=8)
    ratio = np.divide(db, da, out=np.full_like(da, np.nan), where=ha > 0)
    rerr = np.divide(np.sqrt(hb) / nb / widths, da, out=np.full_like(da, np.nan), where=ha > 0)
    band = np.divide(1.0, np.sqrt(ha), out=np.zeros_like(ha), where=ha > 0)
    rax.stairs(1 + band, edges, baseline=1 - band, fill=True, color="grey", alpha=0.35, lw=0)
    _draw_ratio(rax, centres, ratio, rerr)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlim(edges[0], edges[-1])
    if sep is not None:
        ax.text(0.97, 0.95, f"S = {sep:.3f}", transform=ax.transAxes, ha="right", va="top", fontsize=8)
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
    with _style():
        height = 3.5 * nrow + 0.7
        width = max(4.0 * ncol, 5.5)
        fig = Figure(figsize=(width, height))
        # fixed margins instead of bbox_inches="tight", which draws the figure twice
        grid = fig.add_gridspec(nrow, ncol, hspace=0.42, wspace=0.32, left=0.06 if ncol > 1 else 0.16,
                                right=0.98, bottom=0.55 / height, top=1 - 0.65 / height)
        for k, name in enumerate(names):
            ax, rax = _ratio_axes(fig, grid[k // ncol, k % ncol])
            e = np.asarray(edges[name])
            log_x = _is_log_binning(e)
            _hist_with_ratio(ax, rax, feats_real[name], feats_gen[name], e, seps.get(name), log_x, legend=k == 0)
            rax.set_xlabel(feature_label(name), fontsize=8)
        fig.suptitle(title, y=1 - 0.2 / height)
        fig.savefig(path, dpi=DPI)


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
    with _style():
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
        fig.savefig(path, dpi=DPI, bbox_inches="tight")


def plot_profiles(path, real, generated, geometry):
    """Mean longitudinal (per layer) and radial (per r bin) energy profiles, with ratios and errors of the mean."""
    real, generated = np.asarray(real, dtype=np.float64), np.asarray(generated, dtype=np.float64)
    with _style():
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
            ax, rax = _ratio_axes(fig, grid[0, k])
            ma, mb = a.mean(0), b.mean(0)
            sa, sb = a.std(0) / np.sqrt(len(a)), b.std(0) / np.sqrt(len(b))
            ax.errorbar(x, ma, yerr=sa, fmt="o-", ms=3, lw=1.2, **REAL)
            ax.errorbar(x, mb, yerr=sb, fmt="s--", ms=3, lw=1.2, **GEN)
            if np.any(ma > 0) or np.any(mb > 0):
                ax.set_yscale("log")
            ax.set_ylabel("mean energy per shower [MeV]")
            ratio = np.divide(mb, ma, out=np.full_like(ma, np.nan), where=ma > 0)
            rerr = np.divide(np.hypot(sb, ratio * sa), ma, out=np.full_like(ma, np.nan), where=ma > 0)
            _draw_ratio(rax, np.asarray(x, dtype=float), ratio, rerr)
            rax.set_xlabel(xlabel)
            if radial and np.all(x > 0) and x[-1] / x[0] > 10:
                ax.set_xscale("log")
            ax.set_title("longitudinal profile" if not radial else "radial profile (all layers)")
            ax.legend()
        fig.savefig(path, dpi=DPI, bbox_inches="tight")


def plot_roc(path, rocs: dict, aucs: dict):
    """ROC curves of the classifier two-sample tests (diagonal = indistinguishable)."""
    with _style():
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
        fig.savefig(path, dpi=DPI, bbox_inches="tight")


def save_all(out_dir, real, generated, geometry, feats_real, feats_gen, edges, seps, rocs=None, aucs=None):
    """Draw every figure into ``out_dir/figures``; return ``[(title, path relative to out_dir)]``.

    Arguments:
        real, generated: (N, n_voxels) showers, MeV.
        feats_real, feats_gen: high-level features (name → (N,)).
        edges: name → shared bin edges; seps: name → separation power.
        rocs: level → ``{"fpr", "tpr"}``; aucs: level → AUC (both optional).
    """
    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    figures = []
    plot_average_showers(fig_dir / "average_showers.png", real, generated, geometry)
    figures.append(("Average shower per layer", "figures/average_showers.png"))
    plot_profiles(fig_dir / "profiles.png", real, generated, geometry)
    figures.append(("Longitudinal and radial profiles", "figures/profiles.png"))
    if rocs:
        plot_roc(fig_dir / "roc.png", rocs, aucs or {})
        figures.append(("Classifier ROC curves", "figures/roc.png"))
    stems: dict[str, list[str]] = {}
    for name in feats_real:
        stems.setdefault(feature_stem(name), []).append(name)
    for stem, names in stems.items():
        rel = f"figures/{stem}.png"
        plot_feature_group(out_dir / rel, names, feats_real, feats_gen, edges, seps, feature_title(stem))
        figures.append((feature_title(stem), rel))
    return figures
