"""Small I/O helpers shared by every writer: atomic replacement of files, strict JSON, provenance."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import shlex
import socket
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Union

import numpy as np

from hepgen import __version__

__all__ = ["OutputLocked", "atomic_path", "json_safe", "output_lock", "provenance", "set_command_line",
           "write_metrics"]

log = logging.getLogger("hepgen")

_COMMAND_LINE: list[str] | None = None  # set by the hepgen command; sys.argv otherwise


@contextlib.contextmanager
def atomic_path(path: Union[str, os.PathLike]) -> Iterator[str]:
    """Yield a temporary path in the same folder as ``path``; rename it onto ``path`` on success.

    An exception (or a kill) inside the block leaves any existing file at ``path`` untouched
    and removes the temporary file, so a half-written dataset or checkpoint never appears
    under its final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        # mkstemp creates 0600; give the final file the permissions a plain open() would (umask)
        umask = os.umask(0)
        os.umask(umask)
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def json_safe(obj):
    """NaN/inf → None and numpy scalars → Python, so that metrics.json is strict JSON.

    >>> json_safe({"a": float("nan"), "b": np.float32(0.5), "c": (np.int64(2), float("inf"))})
    {'a': None, 'b': 0.5, 'c': [2, None]}
    """
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def write_metrics(metrics: dict, path: str | os.PathLike) -> Path:
    """Write ``metrics`` as strict JSON (NaN → null), atomically; ROC arrays are never included.

    A ``provenance`` entry (:func:`provenance` with the metrics' ``seed``) is added unless present.
    """
    path = Path(path)
    metrics = {**metrics, "provenance": metrics.get("provenance") or provenance(metrics.get("seed"))}
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(json_safe(metrics), indent=2, sort_keys=True, allow_nan=False))
    return path


def set_command_line(argv: list[str] | None) -> None:
    """Record the command line that :func:`provenance` reports (``hepgen``'s ``main`` calls it)."""
    global _COMMAND_LINE
    _COMMAND_LINE = None if argv is None else [str(a) for a in argv]


def _version(package: str) -> str | None:
    # the running module's version when it is imported, else the installed distribution's
    # (read from its metadata: importing torch here would load it for numpy-only callers)
    module = sys.modules.get(package)
    if module is not None and hasattr(module, "__version__"):
        return str(module.__version__)
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def provenance(seed=None, what: str | None = None) -> dict:
    """Who made an output: the seed, the hepgen / torch / numpy / Python versions and the command line.

    Stored in checkpoints (``meta['provenance']``), in every HDF5 file hepgen writes (attribute
    ``hepgen_provenance``, JSON) and in ``metrics.json``.  With ``what``, also logged as one INFO
    line of the ``hepgen`` logger.

    Arguments:
        seed: the run's seed (an int, or None when the run draws no random numbers).
        what: what is being made, for the log line (e.g. ``"training"``).

    Returns:
        a JSON-able dict with keys ``seed``, ``command``, ``hepgen_version``, ``torch_version``,
        ``numpy_version``, ``python_version``.

    >>> set_command_line(["hepgen", "sample", "best.pt", "-o", "my out.h5", "--seed", "3"])
    >>> p = provenance(3)
    >>> p["seed"], p["command"]
    (3, "hepgen sample best.pt -o 'my out.h5' --seed 3")
    >>> p["numpy_version"] == np.__version__
    True
    >>> set_command_line(None)
    """
    record = {
        "seed": int(seed) if isinstance(seed, (int, np.integer)) else json_safe(seed),
        "command": shlex.join(_COMMAND_LINE if _COMMAND_LINE is not None else sys.argv),
        "hepgen_version": __version__,
        "torch_version": _version("torch"),
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
    }
    if what:
        log.info("%s: seed %s; hepgen %s, torch %s, numpy %s, Python %s; command: %s", what, record["seed"],
                 record["hepgen_version"], record["torch_version"], record["numpy_version"],
                 record["python_version"], record["command"])
    return record


class OutputLocked(ValueError):
    """Another live process holds the lock of an output (see :func:`output_lock`)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def output_lock(path: Union[str, os.PathLike]) -> Iterator[Path]:
    """Hold ``<path>.lock`` while writing ``path`` (a file or a run folder); yields the lock's path.

    The lock is a file created with ``O_CREAT | O_EXCL`` (atomic on local and NFS v3+ file
    systems) holding ``pid host``.  A second writer finds it and raises :class:`OutputLocked`, a
    one-line error naming the output and the holder.  A lock whose process is dead (same host,
    ``kill(pid, 0)`` fails: a killed run) is taken over; a lock from another host is always
    respected (its pid cannot be checked from here).  The lock is removed on leaving the block,
    also on an exception or Ctrl-C.  Only ``hepgen``'s commands take it; the Python API does not.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "gen.h5"
    >>> with output_lock(out) as lock:
    ...     with output_lock(out):
    ...         pass
    Traceback (most recent call last):
    ...
    hepgen._io.OutputLocked: ...gen.h5: another process (pid ...) is writing this output; ...
    >>> lock.exists()
    False
    """
    path = Path(path)
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = f"{os.getpid()} {socket.gethostname()}"
    for attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid_text, _, host = lock.read_text().strip().partition(" ")
                pid = int(pid_text)
            except (OSError, ValueError):  # vanished or half-written by a starting writer
                pid, host = None, socket.gethostname()
            if attempt == 0 and pid is not None and host == socket.gethostname() and not _pid_alive(pid):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock)  # stale: its process is gone
                continue
            holder = f"pid {pid}" + (f" on {host}" if host != socket.gethostname() else "") if pid else "unknown"
            raise OutputLocked(f"{path}: another process ({holder}) is writing this output; wait for it, or delete "
                               f"{lock} if it is gone") from None
        with os.fdopen(fd, "w") as fh:
            fh.write(me)
        break
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError):
            if lock.read_text().strip() == me:  # never remove a lock taken over by someone else
                os.unlink(lock)
