"""Real vs generated data of any kind: the one entry point ``hepgen evaluate`` and :func:`hepgen.evaluate` share.

The kind is the caller's (``kind``), else the data's type (in-memory containers), else the real
file's (:func:`~hepgen.domains.base.domain_of_file`; files no kind accepts are read as showers,
whose reader says what is missing).  The options are the kind's ``evaluate_files`` keywords,
named like the command-line options (:func:`~hepgen.domains.base.call_with_options`).
"""

from __future__ import annotations

import inspect
import os

from hepgen.domains.base import call_with_options, domain_of_data, domain_of_file, get_domain

__all__ = ["domain_for", "evaluate"]


def domain_for(real, kind: str | None = None):
    """The domain that compares ``real`` with generated data: ``kind``'s, else ``real``'s type's
    (a container), else the file's.

    >>> domain_for("no-such-file.h5", kind="showers").kind
    'showers'
    """
    if kind:
        return get_domain(kind)
    if isinstance(real, (str, os.PathLike)):
        return domain_of_file(real, default="showers")
    return domain_of_data(real)


def evaluate(real, generated, out_dir=None, kind: str | None = None, progress=None, **options) -> dict:
    """Compare ``generated`` with ``real``; with ``out_dir``, write ``metrics.json``, ``figures/``,
    ``hist_data.json`` (where the kind writes one) and ``report.html`` there.

    Arguments:
        real, generated: files of one kind (HDF5 paths) or containers of one kind
            (:class:`~hepgen.data.formats.ShowerData`, :class:`~hepgen.data.jets.JetData`, …).
        out_dir: the output folder, or None (metrics only; showers and jets).
        kind: the kind of data (default: from ``real``, see :func:`domain_for`).
        progress: False, True (a bar on stderr) or a callable taking each stage's message
            (:class:`hepgen._progress.Stages`); passed to kinds whose ``evaluate_files`` takes it.
        options: the kind's options (showers: ``metrics``, ``seed``, ``no_classifier``, ``max_points``,
            …; jets: ``num_eval_samples``, ``num_batches``, ``no_efp``, ``no_classifier``, …);
            None values are left out, an option the kind does not take is a ``ValueError``.

    Returns:
        the kind's metrics dict (docs/metrics.md, docs/jets.md).
    """
    domain = domain_for(real, kind)
    if progress is not None and "progress" in inspect.signature(domain.evaluate_files).parameters:
        options["progress"] = progress
    return call_with_options(domain.kind, domain.evaluate_files, real, generated, out_dir, **options)
