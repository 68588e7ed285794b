"""Small I/O helpers shared by every writer: atomic replacement of files, strict JSON, provenance, and
the one-line summary of an exception that error messages and warnings quote."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
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

from hepgen._version import __version__

__all__ = ["OutputLocked", "atomic_path", "disk_full_error", "error_line", "json_safe", "output_lock", "provenance",
           "release_freed_memory", "set_command_line", "write_metrics"]

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


def error_line(err: BaseException) -> str:
    """``"Type: first line of the message"``: an exception as one line of an error or a warning.

    >>> error_line(RuntimeError("no C++ compiler\\nsecond line"))
    'RuntimeError: no C++ compiler'
    >>> error_line(KeyError())
    'KeyError: '
    """
    text = str(err)
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


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


# --- memory and disk of long streamed jobs ---------------------------------------------------
_LIBC_TRIM = None  # glibc's malloc_trim, looked up once; False where the C library has none


def release_freed_memory() -> bool:
    """Hand the C heap's freed pages back to the operating system (glibc ``malloc_trim(0)``).

    Why this exists: a streamed job (``hepgen sample``) allocates and frees the same large
    buffers once per chunk (torch temporaries, the chunk's arrays, HDF5's gzip buffers).  glibc
    raises its mmap threshold to the size of the largest buffer freed so far (the "dynamic mmap
    threshold", ``mallopt(3)``: M_MMAP_THRESHOLD), so later buffers come from the brk heap,
    whose freed pages can stay resident.  Measured (384 voxels, a small flow, gzip): the
    resident size of ``hepgen sample`` grew by ~1 kB per shower written (345 → 582 MiB over
    300,000 showers); it stayed flat with ``malloc_trim(0)`` after each chunk, with a fixed
    ``MALLOC_MMAP_THRESHOLD_``, or without compression; tracemalloc (Python objects) stayed
    flat throughout, so nothing was leaked.  ``malloc_trim`` (glibc >= 2.8 also releases free
    pages inside the heap with ``madvise``) took ~2 µs here; it frees nothing that is in use.  There is no
    portable Python API for this, hence ctypes; on other C libraries (macOS, musl) it does
    nothing.  Reference: glibc manual, "Memory Allocation Tunables"; ``malloc_trim(3)``.

    Returns:
        True when glibc released memory, False otherwise (also where there is no ``malloc_trim``).

    >>> isinstance(release_freed_memory(), bool)
    True
    """
    global _LIBC_TRIM
    if _LIBC_TRIM is None:
        try:
            _LIBC_TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
            _LIBC_TRIM.argtypes, _LIBC_TRIM.restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError):
            _LIBC_TRIM = False
    return bool(_LIBC_TRIM(0)) if _LIBC_TRIM else False


def disk_full_error(err: BaseException, output: Union[str, os.PathLike], kept: str = "") -> ValueError | None:
    """A one-line ``ValueError`` for an ``OSError`` that means a full disk or quota, else None.

    Arguments:
        err: the exception caught while writing: an ``OSError`` with ``errno`` ENOSPC or EDQUOT,
            or h5py's ``RuntimeError``/``OSError`` whose message carries HDF5's "errno = 28" or
            "No space left on device" (h5py does not set ``errno`` there, so the text is read).
        output: the output being written (named in the message).
        kept: what was kept and how to continue (appended to the message).

    >>> import errno
    >>> str(disk_full_error(OSError(errno.ENOSPC, "No space left on device"), "out.h5", "rerun with --resume"))
    'out.h5: no space left on device while writing; rerun with --resume'
    >>> disk_full_error(OSError(errno.EACCES, "Permission denied"), "out.h5") is None
    True
    """
    if not isinstance(err, (OSError, RuntimeError)):
        return None
    text = str(err).lower()
    code = getattr(err, "errno", None)
    # h5py turns HDF5's failed writes into RuntimeError("... errno = 28, error message = 'No space left ...'")
    if (code not in (errno.ENOSPC, errno.EDQUOT) and "no space left" not in text and "quota" not in text
            and f"errno = {errno.ENOSPC}," not in text):
        return None
    what = "disk quota exceeded" if code == errno.EDQUOT or "quota" in text else "no space left on device"
    return ValueError(f"{output}: {what} while writing" + (f"; {kept}" if kept else ""))
