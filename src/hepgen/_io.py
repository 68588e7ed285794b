"""Small I/O helpers shared by every writer: atomic replacement of files, strict JSON."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

import numpy as np

__all__ = ["atomic_path", "json_safe", "write_metrics"]


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
    """Write ``metrics`` as strict JSON (NaN → null), atomically; ROC arrays are never included."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(json_safe(metrics), indent=2, sort_keys=True, allow_nan=False))
    return path
