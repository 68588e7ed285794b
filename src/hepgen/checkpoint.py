"""Checkpoint files: one ``.pt`` holding weights, config, preprocessing state, the kind of data and its extras.

Checkpoints are read with ``torch.load(weights_only=True)``: they contain only tensors,
numbers, strings, lists and dicts, so a checkpoint from a stranger cannot run code.
Writes are atomic.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import torch

from hepgen._io import atomic_path, error_line

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_FORMAT = "hepgen.checkpoint/1"
_REQUIRED = ("format", "family", "hparams", "model", "preprocessing")


def save_checkpoint(path: Union[str, os.PathLike], payload: dict) -> None:
    payload = {"format": CHECKPOINT_FORMAT, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Union[str, os.PathLike]) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for foreign / corrupt / unsafe files
        raise ValueError(
            f"{path}: not a loadable hepgen checkpoint (only weights-only files are accepted): {error_line(err)}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path}: key 'format': expected {CHECKPOINT_FORMAT!r}, found {found!r}")
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise ValueError(f"{path}: checkpoint is missing keys {missing}")
    return payload
