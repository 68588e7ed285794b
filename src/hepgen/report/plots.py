"""Figures for the validation report (matplotlib + mplhep); no metric is computed here."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never opens a window
import matplotlib.pyplot as plt  # noqa: E402
import mplhep  # noqa: E402
import numpy as np  # noqa: E402

from hepgen.metrics.distances import histogram  # noqa: E402
from hepgen.metrics.observables import feature_label, layer_energies, radial_profile  # noqa: E402

__all__ = ["plot_feature_group", "plot_average_showers", "plot_profiles", "plot_roc"]

REAL = dict(color="black", label="reference")
GEN = dict(color="tab:red", label="generated")


def _style():
    return plt.style.context(mplhep.style.ROOT)


def _ratio_axes(fig, spec):
    sub = spec.subgridspec(2, 1, height_ratios=[3, 1], hspace=0.05)
    ax = fig.add_subplot(sub[0])
    rax = fig.add_subplot(sub[1], sharex=ax)
    plt.setp(ax.get_xticklabels(), visible=False)
    return ax, rax


def _hist_with_ratio(ax, rax, a, b, edges, sep=None, log_x=False):
    ha, hb = histogram(a, edges), histogram(b, edges)
    na, nb = max(ha.sum(), 1), max(hb.sum(), 1)
    mplhep.histplot(ha / na, edges, ax=ax, histtype="step", yerr=np.sqrt(ha) / na, **REAL)
    mplhep.histplot(hb / nb, edges, ax=ax, histtype="step", yerr=np.sqrt(hb) / nb, **GEN)
    ratio = np.divide(hb / nb, ha / na, out=np.full_like(ha, np.nan), where=ha > 0)
    err = np.divide(np.sqrt(ha) / na, ha / na, out=np.zeros_like(ha), where=ha > 0)  # reference stat. band
    centres = 0.5 * (edges[1:] + edges[:-1])
    rax.fill_between(edges, np.append(1 - err, 1 - err[-1]), np.append(1 + err, 1 + err[-1]),
                     step="post", color="grey", alpha=0.3, lw=0)
    rax.plot(centres, ratio, "o", color=GEN["color"], ms=2.5)
    rax.axhline(1.0, color="black", lw=0.8)
    rax.set_ylim(0.5, 1.5)
    rax.set_ylabel("gen/ref", fontsize=9)
    ax.set_ylabel("fraction", fontsize=9)
    if log_x:
        ax.set_xscale("log")
    if sep is not None:
        ax.text(0.97, 0.95, f"S = {sep:.3f}", transform=ax.transAxes, ha="right", va="top", fontsize=9)


def plot_feature_group(path, names, feats_real, feats_gen, edges, seps, title):
    """Grid of histograms (with ratio panels) for features sharing a stem, e.g. all ``E_layer_i``."""
    n = len(names)
    ncol = min(4, n)
    nrow = int(np.ceil(n / ncol))
    with _style():
        fig = plt.figure(figsize=(4.2 * ncol, 3.6 * nrow))
        grid = fig.add_gridspec(nrow, ncol, hspace=0.45, wspace=0.35)
        for k, name in enumerate(names):
            ax, rax = _ratio_axes(fig, grid[k // ncol, k % ncol])
            e = edges[name]
            log_x = e[0] > 0 and e[-1] / e[0] > 50
            _hist_with_ratio(ax, rax, feats_real[name], feats_gen[name], e, seps.get(name), log_x)
            rax.set_xlabel(feature_label(name), fontsize=9)
            ax.tick_params(labelsize=8)
            rax.tick_params(labelsize=8)
            if k == 0:
                ax.legend(fontsize=8, loc="upper left")
        fig.suptitle(title, fontsize=13)
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)


def plot_average_showers(path, real, generated, geometry):
    """Mean energy per voxel, per layer: reference (top row) and generated (bottom row)."""
    mr, mg = real.mean(axis=0), generated.mean(axis=0)
    n = geometry.n_layers
    vmax = max(mr.max(), mg.max())
    vmin = max(vmax * 1e-5, min(mr[mr > 0].min(initial=vmax), mg[mg > 0].min(initial=vmax)))
    norm = matplotlib.colors.LogNorm(vmin=vmin, vmax=vmax)
    cylindrical = geometry.kind == "cylindrical"
    with _style():
        fig = plt.figure(figsize=(2.6 * n, 5.6))
        for row, (mean, label) in enumerate(((mr, "reference"), (mg, "generated"))):
            for i, s in enumerate(geometry.layer_slices):
                kw = {"projection": "polar"} if cylindrical else {}
                ax = fig.add_subplot(2, n, row * n + i + 1, **kw)
                layer_mean = np.clip(mean[s], vmin, None)
                if cylindrical:
                    lb = geometry.active_layers[i]
                    img = layer_mean.reshape(lb.n_alpha, lb.n_r)
                    # radial axis on a log-like scale: sqrt keeps the fine core bins visible
                    r = np.sqrt(np.asarray(lb.r_edges))
                    mesh = ax.pcolormesh(lb.alpha_edges, r, img.T, norm=norm, cmap="viridis", shading="flat")
                    ax.set_xticks([])
                    ax.set_yticks([])
                else:
                    img = layer_mean.reshape(geometry.ny, geometry.nx)
                    mesh = ax.imshow(img, norm=norm, cmap="viridis", origin="lower")
                    ax.set_xticks([])
                    ax.set_yticks([])
                if row == 0:
                    ax.set_title(f"layer {i}", fontsize=10)
                if i == 0:
                    ax.text(-0.15, 0.5, label, rotation=90, fontsize=11, va="center", ha="center",
                            transform=ax.transAxes)
        fig.colorbar(mesh, ax=fig.axes, shrink=0.8, label="mean energy per voxel [MeV]")
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)


def plot_profiles(path, real, generated, geometry):
    """Mean longitudinal (per layer) and radial (per r bin) energy profiles with ratios."""
    with _style():
        fig = plt.figure(figsize=(11, 4.8))
        grid = fig.add_gridspec(1, 2, wspace=0.3)
        lr, lg = layer_energies(real, geometry).mean(0), layer_energies(generated, geometry).mean(0)
        centres, er = radial_profile(real, geometry)
        _, eg = radial_profile(generated, geometry)
        panels = (
            (np.arange(len(lr) + 1) - 0.5, lr, lg, "layer", "mean energy [MeV]", False),
            (None, er.mean(0), eg.mean(0), "radial bin centre [mm]", "mean energy [MeV]", True),
        )
        for k, (edges, a, b, xlabel, ylabel, radial) in enumerate(panels):
            ax, rax = _ratio_axes(fig, grid[0, k])
            x = centres if radial else np.arange(len(a))
            ax.plot(x, a, "o-", ms=3, **REAL)
            ax.plot(x, b, "s--", ms=3, **GEN)
            ax.set_yscale("log")
            ax.set_ylabel(ylabel, fontsize=10)
            rax.plot(x, np.divide(b, a, out=np.full_like(a, np.nan), where=a > 0), "o", color=GEN["color"], ms=3)
            rax.axhline(1.0, color="black", lw=0.8)
            rax.set_ylim(0.5, 1.5)
            rax.set_xlabel(xlabel, fontsize=10)
            rax.set_ylabel("gen/ref", fontsize=9)
            if radial:
                ax.set_xscale("log")
            ax.legend(fontsize=9)
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)


def plot_roc(path, rocs: dict, aucs: dict):
    """ROC curves of the classifier two-sample tests."""
    with _style():
        fig, ax = plt.subplots(figsize=(5.5, 5))
        for level, roc in rocs.items():
            ax.plot(roc["fpr"], roc["tpr"], label=f"{level.replace('_', '-')} (AUC = {aucs[level]:.3f})")
        ax.plot([0, 1], [0, 1], ":", color="grey", label="indistinguishable")
        ax.set_xlabel("false positive rate (generated called reference)", fontsize=10)
        ax.set_ylabel("true positive rate", fontsize=10)
        ax.legend(fontsize=9, loc="lower right")
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)


def save_all(out_dir: Path, real, generated, geometry, feats_real, feats_gen, edges, seps, rocs, aucs):
    """Draw every figure into ``out_dir/figures``; return [(title, relative path)]."""
    fig_dir = Path(out_dir) / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    figures = []
    stems: dict[str, list[str]] = {}
    for name in feats_real:
        stem = name.rpartition("_")[0] if name[-1].isdigit() else name
        stems.setdefault(stem, []).append(name)
    for stem, names in stems.items():
        rel = f"figures/{stem}.png"
        plot_feature_group(Path(out_dir) / rel, names, feats_real, feats_gen, edges, seps, feature_label(names[0]).split(",")[0])
        figures.append((feature_label(names[0]).split(",")[0], rel))
    plot_average_showers(fig_dir / "average_showers.png", real.showers, generated.showers, geometry)
    figures.insert(0, ("Average shower per layer", "figures/average_showers.png"))
    plot_profiles(fig_dir / "profiles.png", real.showers, generated.showers, geometry)
    figures.insert(1, ("Longitudinal and radial profiles", "figures/profiles.png"))
    if rocs:
        plot_roc(fig_dir / "roc.png", rocs, aucs)
        figures.insert(2, ("Classifier ROC curves", "figures/roc.png"))
    return figures
