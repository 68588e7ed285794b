"""FastJet start-up banner: printed once per process to stdout, which would corrupt CLI output.

hepgen silences it; cite FastJet (Cacciari, Salam, Soyez, EPJC 72 (2012) 1896,
arXiv:1111.6097) in work that uses hepgen's jet tools — docs/jets.md says so.
"""

from __future__ import annotations

__all__ = ["quiet_fastjet"]


def quiet_fastjet() -> None:
    """Send FastJet's banner nowhere (``ClusterSequence::set_fastjet_banner_stream(nullptr)``)."""
    try:
        import fastjet._swig as fj_swig

        fj_swig.ClusterSequence.set_fastjet_banner_stream(None)
    except (ImportError, AttributeError):  # pragma: no cover - other fastjet builds: the banner stays
        pass
