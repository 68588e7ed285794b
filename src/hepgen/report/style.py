"""The look shared by every report figure: colours, the ratio panel, mplhep's style.

Figures are built with the object-oriented API (:class:`matplotlib.figure.Figure`, which
renders with the Agg canvas) inside :func:`figure_style`, a local style context, so nothing touches
pyplot's global state or the interactive backend of a notebook that imports hepgen.
"""

from __future__ import annotations

import base64
import contextlib
import io
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["DPI", "GEN", "RATIO_RANGE", "REAL", "draw_ratio", "figure_png_base64", "figure_style", "ratio_axes",
           "save_figure"]

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
def figure_style():
    """mplhep's CMS look (ticks inside, on all sides) with fonts sized for grids of small panels."""
    try:
        import mplhep

        base = mplhep.style.CMS
    except ImportError:  # pragma: no cover - mplhep is a dependency; degrade to plain matplotlib
        base = {}
    with mpl.style.context([base, _RC]):
        yield


def ratio_axes(fig, spec):
    """A main panel and a ratio panel below it (3:1), sharing the x axis, in ``spec``."""
    sub = spec.subgridspec(2, 1, height_ratios=[3, 1], hspace=0.06)
    ax = fig.add_subplot(sub[0])
    rax = fig.add_subplot(sub[1], sharex=ax)
    ax.tick_params(labelbottom=False)
    return ax, rax


def draw_ratio(rax, x, ratio, err=None, color=GEN["color"]):
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


def save_figure(fig: Figure, path, dpi: int = DPI, vector: str | None = "pdf", **kwargs) -> list[Path]:
    """Save ``fig`` as the PNG ``path`` (for the HTML report) and, with ``vector``, as a vector file of
    the same name beside it (``.pdf``: for papers, any resolution); returns the paths written.

    ``kwargs`` go to :meth:`~matplotlib.figure.Figure.savefig` for both (e.g. ``bbox_inches="tight"``).

    >>> import tempfile
    >>> fig = Figure(figsize=(1, 1))
    >>> _ = fig.add_subplot().plot([0, 1])
    >>> [p.suffix for p in save_figure(fig, Path(tempfile.mkdtemp()) / "line.png")]
    ['.png', '.pdf']
    """
    path = Path(path)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi, **kwargs)
    written = [path]
    if vector:
        written.append(path.with_suffix(f".{vector}"))
        fig.savefig(written[-1], **kwargs)
    return written


def figure_png_base64(fig: Figure, dpi: int = DPI) -> str:
    """The figure as a base64 PNG, for ``<img src="data:image/png;base64,...">`` in a self-contained
    report (rendered with the Agg canvas: no global backend change).

    >>> fig = Figure(figsize=(1, 1))
    >>> _ = fig.add_subplot().plot([0, 1])
    >>> figure_png_base64(fig)[:8]      # the PNG signature, base64-encoded
    'iVBORw0K'
    """
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode()
