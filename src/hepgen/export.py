"""Export a trained shower generator to ONNX, and check onnxruntime against PyTorch.

The exported graph is the whole :class:`~hepgen.domains.showers.inference.ShowerSampler`: condition
preprocessing, the network and the inverse preprocessing, so a C++ caller (a Geant4
fast-simulation model, see docs/inference.md) needs no Python and no hepgen state:

* inputs: ``incident_energy`` ``(B, 1)`` float32 MeV; ``conditions`` ``(B, K)`` float32
  (only for models trained with extra conditions, raw values in the order of the
  ``hepgen_condition_names`` metadata entry); ``noise`` ``(B, noise_dim)`` float32 standard
  normal drawn by the caller;
* output: ``showers`` ``(B, n_voxels)`` float32 MeV, voxel order of the checkpoint's
  geometry (radial fastest, then angular, then layer), stored as JSON in the metadata
  entry ``hepgen_geometry``.

``B`` is dynamic.  :func:`check_onnx` runs both on the same inputs and reports the
largest differences; the stated tolerance (:data:`ONNX_RTOL`, :data:`ONNX_ATOL`) holds for
every voxel except those within ``ONNX_ATOL`` of the preprocessor's energy threshold,
which one runtime may cut to zero and the other not (counted as ``n_threshold_flips``;
their difference is below ``threshold + ONNX_ATOL``, 0.012 MeV by default).  Measured on
the demo flow (384 voxels, 5,000 showers, AMD EPYC): relative differences ≤ 4e-4 on voxels
≥ 1 MeV, absolute ≤ 5e-4 MeV below; onnxruntime's vectorised exp/sigmoid are the larger part
of it (PyTorch float32 vs float64: ≤ 1e-4).  On an Intel Xeon (onnxruntime 1.32) the test
suite's tiny spline flow had one voxel of 0.0213 MeV at 0.0224 MeV in onnxruntime (1.1e-3 MeV
off, where PyTorch float32 and float64 agree to 3e-5 MeV), hence ``ONNX_ATOL`` 2e-3 MeV.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hepgen._version import __version__
from hepgen._extras import needs_extra, require_extra
from hepgen._io import atomic_path
from hepgen.domains.showers.inference import ShowerSampler

_WHAT = "ONNX export (hepgen export)"

__all__ = ["ONNX_ATOL", "ONNX_RTOL", "check_onnx", "export_onnx", "onnx_input_names", "ort_session", "write_onnx"]

ONNX_RTOL = 1e-3  #: relative tolerance of onnxruntime vs PyTorch outputs (measured max 4e-4 on the demo model)
ONNX_ATOL = 2e-3  #: absolute tolerance in MeV (1.1e-3 measured on an Intel Xeon; see the module docstring)


class _Export(nn.Module):
    """Fixed positional signature ``(incident_energy, noise)`` for the exporter."""

    def __init__(self, sampler: ShowerSampler) -> None:
        super().__init__()
        self.sampler = sampler

    def forward(self, incident_energy: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.sampler(incident_energy, noise)


class _ExportWithConditions(_Export):
    """Fixed positional signature ``(incident_energy, conditions, noise)`` for the exporter."""

    def forward(self, incident_energy: torch.Tensor, conditions: torch.Tensor,  # type: ignore[override]
                noise: torch.Tensor) -> torch.Tensor:
        return self.sampler(incident_energy, noise, conditions)


def onnx_input_names(sampler: ShowerSampler) -> list[str]:
    """The graph's input names in order: ``incident_energy``, [``conditions``,] ``noise``."""
    return ["incident_energy", *(["conditions"] if sampler.n_extra_conditions else []), "noise"]


@contextlib.contextmanager
def _quiet_exporter():
    """Silence torch's exporter chatter (internal deprecation notes, optional-op logs)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # warnings raised inside torch.export/onnxscript about their own internals
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def write_onnx(module: nn.Module, example: tuple, path: str | os.PathLike, input_names: list[str],
               output_names: list[str], metadata: dict[str, str], opset: int | None = None) -> None:
    """Export ``module`` (called as ``module(*example)``) to one ``.onnx`` file, atomically.

    The batch dimension (axis 0 of every input) is dynamic; weights are embedded; the
    metadata (string keys and values) is stored as the model's ``metadata_props``.  Shared by
    the shower export (:func:`export_onnx`) and the jet export (:mod:`hepgen.export_jets`).

    Raises:
        MissingExtraError: no ``hepgen[onnx]`` extra.
    """
    with needs_extra("onnx", _WHAT):  # lazy import of an optional extra
        import onnx
    require_extra("onnx", _WHAT, ("onnxscript",))  # torch.onnx's dynamo exporter imports it

    batch = torch.export.Dim("batch", min=1)
    with atomic_path(path) as tmp, _quiet_exporter():
        kwargs = {} if opset is None else {"opset_version": int(opset)}
        torch.onnx.export(module, tuple(example), tmp, input_names=list(input_names),
                          output_names=list(output_names), dynamic_shapes=tuple({0: batch} for _ in example),
                          dynamo=True, external_data=False, verbose=False, **kwargs)
        model = onnx.load(tmp)
        onnx.helper.set_model_props(model, {str(k): str(v) for k, v in metadata.items()})
        onnx.save(model, tmp)


def ort_session(path: str | os.PathLike, threads: int | None = 1, what: str = "the ONNX check (onnxruntime)"):
    """An onnxruntime CPU ``InferenceSession`` of ``path`` with ``threads`` intra-op threads
    (None: onnxruntime's default) and one inter-op thread.

    Raises:
        MissingExtraError: no ``hepgen[onnx]`` extra (``what`` names the feature in the message).
    """
    with needs_extra("onnx", what):  # lazy import of an optional extra
        import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_onnx(generator, path: str | os.PathLike, checkpoint_sha256: str | None = None,
                fast: bool = True, opset: int | None = None) -> dict:
    """Write ``generator`` as a single-file ONNX model (weights embedded), atomically.

    Arguments:
        generator: a :class:`~hepgen.domains.showers.generator.ShowerGenerator` whose family has a noise →
            sample map (``model.noise_dim`` not None).
        path: the ``.onnx`` file.
        checkpoint_sha256: recorded in the metadata (provenance).
        fast: export the pruned flow sampler where available (see :mod:`hepgen.domains.showers.inference`).
        opset: ONNX opset (default: the exporter's).

    Returns:
        ``{"path", "inputs", "noise_dim", "n_voxels", "export_s"}``.

    Raises:
        ValueError: the family cannot be exported (no ``sample_from_noise``).
    """
    path = Path(path)
    sampler = ShowerSampler.from_generator(generator, fast=fast)
    if sampler.noise_dim is None:
        raise ValueError(f"model family {generator.model.family!r} has no noise → sample map "
                         "(GenerativeModel.sample_from_noise / noise_dim); it cannot be exported to ONNX")
    wrapper = (_ExportWithConditions if sampler.n_extra_conditions else _Export)(sampler).eval()
    names = onnx_input_names(sampler)
    b = 2
    example = [torch.full((b, 1), 1e4)]
    if sampler.n_extra_conditions:
        example.append(torch.zeros(b, sampler.n_extra_conditions))
    example.append(torch.zeros(b, sampler.noise_dim))
    meta = {
        "hepgen_version": __version__,
        "hepgen_family": generator.model.family,
        "hepgen_checkpoint_sha256": checkpoint_sha256 or "",
        "hepgen_inputs": json.dumps(names),
        "hepgen_condition_names": json.dumps(sampler.condition_names),
        "hepgen_noise_dim": str(sampler.noise_dim),
        "hepgen_n_voxels": str(sampler.n_voxels),
        "hepgen_units": "incident_energy MeV; showers MeV; noise standard normal",
        "hepgen_energy_range_mev": json.dumps(generator.meta.get("energy_range")),
        "hepgen_geometry": json.dumps(generator.geometry.to_dict()),
    }
    t0 = time.perf_counter()
    write_onnx(wrapper, tuple(example), path, names, ["showers"], meta, opset=opset)
    return {"path": str(path), "inputs": names, "noise_dim": sampler.noise_dim, "n_voxels": sampler.n_voxels,
            "export_s": time.perf_counter() - t0}


def check_onnx(path: str | os.PathLike, generator, n: int = 1000, seed: int = 0, fast: bool = True,
               threads: int | None = 1) -> dict:
    """Run the ONNX file with onnxruntime and the PyTorch sampler on the same inputs; compare.

    Arguments:
        path: the exported model.
        generator: the :class:`~hepgen.domains.showers.generator.ShowerGenerator` it was exported from.
        n: showers compared (energies log-uniform in the training range, extra conditions
            uniform in theirs, one seeded noise draw).
        seed: seeds the inputs.
        fast: must match the ``fast`` used for the export (only float rounding differs).
        threads: onnxruntime intra-op threads (None: its default).

    Returns:
        ``{"n", "max_abs_diff_mev", "max_rel_diff" (voxels >= 1 MeV), "n_threshold_flips",
        "n_outside_tolerance", "rtol", "atol_mev", "ok"}``.
    """
    sampler = ShowerSampler.from_generator(generator, fast=fast)
    rng = np.random.default_rng(seed)
    lo, hi = generator.meta.get("energy_range", [1e3, 1e5])
    feeds = {"incident_energy": np.exp(rng.uniform(np.log(lo), np.log(hi), size=(n, 1))).astype(np.float32)}
    extra = None
    if sampler.n_extra_conditions:
        cols = []
        for name in sampler.condition_names:
            clo, chi = (np.asarray(x, dtype=float) for x in generator.meta["condition_ranges"][name])
            cols.append(rng.uniform(clo, chi, size=(n, np.atleast_1d(clo).size)))
        extra = np.concatenate(cols, axis=1).astype(np.float32)
        feeds["conditions"] = extra
    feeds["noise"] = rng.standard_normal((n, sampler.noise_dim)).astype(np.float32)
    session = ort_session(path, threads)
    got = session.run(["showers"], feeds)[0]
    with torch.no_grad():
        ref = sampler(torch.from_numpy(feeds["incident_energy"]), torch.from_numpy(feeds["noise"]),
                      None if extra is None else torch.from_numpy(extra)).numpy()
    diff = np.abs(got.astype(np.float64) - ref)
    threshold = sampler.decoder.threshold
    # a voxel within rounding of the threshold may be cut in one runtime and kept in the other
    flip = ((got == 0) != (ref == 0)) & (np.maximum(got, ref) < threshold + ONNX_ATOL)
    outside = (diff > ONNX_RTOL * np.abs(ref) + ONNX_ATOL) & ~flip
    big = np.abs(ref) >= 1.0
    return {
        "n": int(n),
        "max_abs_diff_mev": float(diff.max()) if diff.size else 0.0,
        "max_rel_diff": float((diff[big] / np.abs(ref[big])).max()) if big.any() else 0.0,
        "n_threshold_flips": int(flip.sum()),
        "n_outside_tolerance": int(outside.sum()),
        "rtol": ONNX_RTOL,
        "atol_mev": ONNX_ATOL,
        "ok": bool(not outside.any()),
    }
