"""Validation report: figures (matplotlib + mplhep) and a self-contained HTML page from a metrics dict."""

from hepgen.report.html import flagged_features, write_report

__all__ = ["flagged_features", "write_report"]
