"""What every report shares: the figure style (:mod:`hepgen.report.style`).

Each kind of data writes its own report section (``hepgen.domains.<kind>.report``); strict
JSON metrics files are written by :func:`hepgen._io.write_metrics`.
"""

from hepgen.report.style import (
    DPI,
    GEN,
    RATIO_RANGE,
    REAL,
    draw_ratio,
    figure_png_base64,
    figure_style,
    ratio_axes,
)

__all__ = ["DPI", "GEN", "RATIO_RANGE", "REAL", "draw_ratio", "figure_png_base64", "figure_style", "ratio_axes"]
