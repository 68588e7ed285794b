"""The trained shower generator: model + preprocessing + geometry, saved and loaded together.

:class:`ShowerGenerator` turns a model's samples into showers in MeV; :func:`sample_to_file`
streams many of them into a CaloChallenge HDF5 file in resumable chunks.  Checkpoints carry
``kind = "showers"`` (those written before kinds were recorded have none and load too).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Union

import numpy as np
import torch
from tqdm.auto import tqdm

from hepgen._version import __version__
from hepgen.checkpoint import load_checkpoint, save_checkpoint
from hepgen.data.formats import ShowerData
from hepgen.data.geometry import Geometry, geometry_from_dict
from hepgen.data.stream import (
    ConditionSource,
    DataConditions,
    EnergyListConditions,
    EnergyRangeConditions,
    FileConditions,
    chunk_seed,
    file_sha256,
    stream_showers,
)
from hepgen.domains.showers.inference import (SAMPLING_PATHS, ShowerSampler, call_padded, compiles, normal_cdf,
                                              orient, prepare_path, spline_network)
from hepgen.domains.showers.preprocessing import ShowerPreprocessor, incident_energy_array
from hepgen.models import GenerativeModel, build_model

__all__ = ["ShowerGenerator", "condition_source", "sample_showers", "sample_to_file", "warn_outside_training_range"]

log = logging.getLogger(__name__)


class ShowerGenerator:
    """Samples showers in MeV from a trained conditional model.

    Arguments:
        model: a trained :class:`~hepgen.models.GenerativeModel` on preprocessed features.
        preprocessor: the fitted :class:`~hepgen.domains.showers.preprocessing.ShowerPreprocessor`.
        geometry: the voxel geometry of the training data.
        meta: JSON-able facts about training (energy range, condition ranges, config).
    """

    kind = "showers"

    def __init__(self, model: GenerativeModel, preprocessor: ShowerPreprocessor, geometry: Geometry, meta=None):
        self.model = model
        self.preprocessor = preprocessor
        self.geometry = geometry
        self.meta = dict(meta or {})

    @property
    def condition_names(self) -> list[str]:
        return list(self.preprocessor.condition_names)

    @torch.no_grad()
    def sample(
        self,
        incident_energies: np.ndarray,
        conditions: dict | None = None,
        seed: int = 0,
        batch_size: int = 1_000,
        progress: bool = False,
    ) -> np.ndarray:
        """(N,) or (N, 1) incident energies in MeV → (N, n_voxels) float32 showers in MeV.

        Spline coupling flows (the ``caloflow`` preset, and ``flow`` with ``coupling`` and
        ``spline_bins``) are sampled through
        :class:`~hepgen.domains.showers.spline_sampler.SplineCouplingSampler` (built from the
        current weights at each call; the same function as ``model.sample``, 1.7x its speed on
        the demo checkpoint at one thread, docs/inference.md), with ``model.sample``'s noise
        stream; other models through ``model.sample``.
        """
        e = incident_energy_array(incident_energies)
        c = self.preprocessor.transform_conditions(e, conditions)
        device = next(self.model.parameters()).device
        gen = torch.Generator(device=device).manual_seed(int(seed))
        self.model.eval()
        network = spline_network(self.model)
        if network is not None:
            network = network.to(device)
        pre = self.preprocessor
        oriented = pre.orientations is not None
        perms = torch.from_numpy(pre.orientations) if oriented else None
        out = np.empty((len(e), pre.n_voxels), dtype=np.float32)
        starts = range(0, len(e), batch_size)
        for s in tqdm(starts, desc="sampling", unit="batch", disable=not progress):
            ct = torch.from_numpy(c[s : s + batch_size]).to(device)
            if network is None and (not oriented or self.model.noise_dim is None):
                x = self.model.sample(ct, generator=gen)
                if oriented:  # as ShowerSampler draws it for a generator-driven sampler
                    u = torch.rand(ct.shape[0], generator=gen, device=device)
            else:  # model.sample's noise: (B, noise_dim) standard normals from the same generator
                # (and, with orientations, one more column, as ShowerSampler's noise)
                to_showers = self.model.sample_from_noise if network is None else network
                d = int(self.model.noise_dim)
                z = torch.randn(ct.shape[0], d + int(oriented), generator=gen, device=device, dtype=ct.dtype)
                x = to_showers(ct, z[:, :d])
                if oriented:
                    u = normal_cdf(z[:, -1])
            showers = pre.inverse(x.float().cpu().numpy(), e[s : s + batch_size])
            if oriented:  # ShowerSampler's own function, so that both pick the same orientation from u
                showers = orient(torch.from_numpy(showers), u.float().cpu(), perms).numpy()
            out[s : s + batch_size] = showers
        return out

    def sample_like(self, data: ShowerData, seed: int = 0, batch_size: int = 1_000,
                    progress: bool = False) -> ShowerData:
        """Generated showers at ``data``'s incident energies and conditions (same geometry)."""
        showers = self.sample(data.incident_energies, data.conditions, seed=seed, batch_size=batch_size,
                              progress=progress)
        return ShowerData(showers, data.incident_energies, dict(data.conditions), self.geometry)

    def save(self, path: Union[str, os.PathLike], trainer_state: dict | None = None) -> None:
        save_checkpoint(
            path,
            {
                "hepgen_version": __version__,
                "kind": self.kind,
                "family": self.model.family,
                "hparams": self.model.hparams,
                "model": self.model.state_dict(),
                "preprocessing": self.preprocessor.state_dict(),
                "geometry": self.geometry.to_dict(),
                "meta": self.meta,
                "trainer": trainer_state,
            },
        )

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "ShowerGenerator":
        payload = load_checkpoint(path)
        return cls.from_payload(payload, source=str(path))

    @classmethod
    def from_payload(cls, payload: dict, source: str = "<checkpoint>") -> "ShowerGenerator":
        if payload.get("kind", "showers") != "showers":
            raise ValueError(f"{source}: key 'kind': expected a shower checkpoint, found {payload.get('kind')!r} "
                             "(jet checkpoints: hepgen.domains.jets.generator.JetGenerator, `hepgen sample-jets`)")
        try:
            model = build_model(payload["family"], **payload["hparams"])
            model.load_state_dict(payload["model"])
            pre = ShowerPreprocessor.from_state(payload["preprocessing"])
            geometry = geometry_from_dict(payload["geometry"])
        except (KeyError, TypeError, RuntimeError) as err:
            raise ValueError(f"{source}: inconsistent checkpoint ({type(err).__name__}: {err})") from None
        model.eval()
        return cls(model, pre, geometry, payload.get("meta"))


def _chunk_sampler(gen: ShowerGenerator, seed: int, batch_size: int, fast: bool = True, path: str = "fp32"):
    """``(energies, conditions, chunk_index) → showers``, deterministic in ``(seed, chunk_index)``.

    Families with a noise → sample map draw the chunk's noise at once from a generator
    seeded with :func:`~hepgen.data.stream.chunk_seed` and run the
    :class:`~hepgen.domains.showers.inference.ShowerSampler` batch by batch (the showers depend on
    ``batch_size`` and the thread count only through float rounding: BLAS kernels are not
    batch-invariant); other families fall back to :meth:`ShowerGenerator.sample` with the
    chunk's seed (the showers then depend on ``batch_size`` too).  The network runs where the
    model is; the noise is drawn on the CPU, so the showers do not depend on the device beyond
    float rounding.  ``path`` other than ``fp32`` runs the sampler through
    :func:`~hepgen.domains.showers.inference.prepare_path` (same noise, different arithmetic); a
    compiled path pads a chunk's short last batch to ``batch_size`` so that it compiles once.
    """
    if path not in SAMPLING_PATHS:
        raise ValueError(f"sampling path: expected one of {SAMPLING_PATHS} or auto, found {path!r}")
    if gen.model.noise_dim is None:
        if path != "fp32":
            raise ValueError(f"sampling path {path!r}: family {gen.model.family!r} has no noise map; use fp32")
        def sample_chunk(energies, conditions, index):
            return gen.sample(energies, conditions, seed=chunk_seed(seed, index), batch_size=batch_size)

        return sample_chunk, {"sampler": "model.sample", "batch_size": int(batch_size)}

    sampler = ShowerSampler.from_generator(gen, fast=fast)
    dev = next(gen.model.parameters()).device
    sampler.to(dev)
    module = sampler if path == "fp32" else prepare_path(sampler, path, dev)

    @torch.no_grad()
    def sample_chunk(energies, conditions, index):
        m = len(energies)
        g = torch.Generator().manual_seed(chunk_seed(seed, index))
        z = torch.randn(m, sampler.noise_dim, generator=g)
        e = torch.as_tensor(np.asarray(energies, dtype=np.float32).reshape(m, 1))
        extra = sampler.condition_matrix(conditions, m)
        extra = None if extra is None else torch.as_tensor(extra)
        out = np.empty((m, sampler.n_voxels), dtype=np.float32)
        for s in range(0, m, batch_size):
            sl = slice(s, s + batch_size)
            xs = None if extra is None else extra[sl].to(dev)
            out[sl] = call_padded(module, e[sl].to(dev), z[sl].to(dev), xs, batch_size,
                                  compiles(path) and m > batch_size).cpu().numpy()
        return out

    job = {"sampler": type(sampler.sampler).__name__}
    if path != "fp32":  # fp32 jobs keep the description they had before paths existed (resumable)
        job["sampling_path"] = path
    return sample_chunk, job


def warn_outside_training_range(meta: dict, energies, conditions: dict, row0: int = 0, skip=()) -> list[str]:
    """Log one warning per condition whose requested values leave the checkpoint's training range.

    The ranges are the training data's (``meta['energy_range']`` in MeV, ``meta['condition_ranges']``
    per extra condition, min and max per column); a model asked for conditions it never saw
    extrapolates, and its showers are not validated there.

    Arguments:
        meta: a generator's ``meta`` (from the checkpoint).
        energies: ``(m,)`` requested incident energies in MeV.
        conditions: ``{name: (m, k)}`` requested extra conditions.
        row0: index of the first row in the whole job (for the message).
        skip: names already warned about.

    Returns:
        the names warned about.

    >>> meta = {"energy_range": [1000.0, 10000.0], "condition_ranges": {}}
    >>> warn_outside_training_range(meta, np.array([2000.0, 50000.0, 20000.0]), {})
    ['incident_energies']
    >>> warn_outside_training_range(meta, np.array([1000.0, 10000.0]), {})  # the edges are inside
    []
    """
    ranges = {"incident_energies": meta.get("energy_range"), **(meta.get("condition_ranges") or {})}
    values = {"incident_energies": energies, **conditions}
    warned = []
    for name, v in values.items():
        if ranges.get(name) is None or name in skip:
            continue
        lo, hi = (np.atleast_1d(np.asarray(r, dtype=float)) for r in ranges[name])
        v = np.asarray(v, dtype=float).reshape(len(energies), -1)
        tol = 1e-6 * np.maximum(np.abs(lo), np.abs(hi))  # float rounding of a log-uniform draw at the edges
        out = ((v < lo - tol) | (v > hi + tol)).any(axis=1)
        if out.any():
            first = int(np.flatnonzero(out)[0])
            unit = " MeV" if name == "incident_energies" else ""
            span = f"[{lo[0]:.6g}, {hi[0]:.6g}]{unit}" if lo.size == 1 else f"[{lo.tolist()}, {hi.tolist()}]"
            log.warning("sampling outside the training range of %s %s: %d of %d requested rows lie outside "
                        "(first: row %d, %s); the model extrapolates there", name, span, int(out.sum()), len(v),
                        row0 + first, np.array2string(v[first], precision=6))
            warned.append(name)
    return warned


def _range_guarded(gen: ShowerGenerator, sample_chunk, chunk_size: int):
    """``sample_chunk`` that first warns (once per condition and job) about rows outside the training range."""
    warned: list[str] = []

    def guarded(energies, conditions, index):
        if len(energies):
            warned.extend(warn_outside_training_range(gen.meta, energies, conditions, index * chunk_size, warned))
        return sample_chunk(energies, conditions, index)

    return guarded


def sample_to_file(
    gen: ShowerGenerator,
    path: str | os.PathLike,
    n: int,
    conditions,
    seed: int = 0,
    chunk_size: int = 10_000,
    batch_size: int = 1_000,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = False,
    compression: str | None = "gzip",
    fast: bool = True,
    device: str | torch.device | None = None,
    sampling_path: str = "fp32",
) -> dict:
    """Sample ``n`` showers into a CaloChallenge HDF5 file in chunks, resumably, with provenance.

    Arguments:
        gen: the trained generator.
        path: the output file (``<path>.partial`` until complete; see :mod:`hepgen.data.stream`).
        n: number of showers.
        conditions: a :class:`~hepgen.data.stream.ConditionSource`.
        seed: the job's seed; chunk ``i`` uses seeds derived from ``(seed, i)``.
        chunk_size: showers per chunk written (and held in memory).
        batch_size: showers per network call.
        checkpoint: the checkpoint file, hashed into ``hepgen_checkpoint_sha256``.
        resume: continue an interrupted job (same arguments) from ``<path>.partial``.
        progress: show a progress bar.
        compression: HDF5 compression of the showers.
        fast: use the pruned flow sampler where available (see :mod:`hepgen.domains.showers.inference`).
        device: where the network runs, e.g. ``"cuda"`` (None: where the model is).
        sampling_path: one of :data:`~hepgen.domains.showers.inference.SAMPLING_PATHS`
            (``fp32``, ``bf16``, ``fp16``, ``int8``, ``compile``, ``compile-bf16``; docs/inference.md
            gives their speed and fidelity), stored in the job description and the file's
            ``hepgen_job``.

    Returns:
        the summary dict of :func:`~hepgen.data.stream.stream_showers`.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size: expected >= 1, found {batch_size}")
    digest = file_sha256(checkpoint) if checkpoint is not None else None
    if device is not None:
        gen.model.to(device)
    sample_chunk, sampler_job = _chunk_sampler(gen, int(seed), int(batch_size), fast=fast, path=sampling_path)
    attrs = {
        "generator": f"hepgen {gen.model.family}",
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "seed": int(seed),
        "hepgen_checkpoint_sha256": digest,
        "hepgen_family": gen.model.family,
    }
    job = {"checkpoint_sha256": digest, "family": gen.model.family, **sampler_job}
    sample_chunk = _range_guarded(gen, sample_chunk, int(chunk_size))
    return stream_showers(path, n, sample_chunk, conditions, n_voxels=gen.preprocessor.n_voxels, seed=seed,
                          chunk_size=chunk_size, geometry=gen.geometry, job=job, attrs=attrs, resume=resume,
                          progress=progress, compression=compression)


def condition_source(gen: ShowerGenerator, n: int | None = None, energies=None, energy_range=None,
                     conditions_from=None, seed: int = 0) -> tuple[ConditionSource, int]:
    """Where the incident energies and extra conditions of a sampling job come from, and its N
    (what ``hepgen sample`` and :func:`hepgen.api.sample` do with their options).

    Arguments:
        gen: the generator (its ``meta`` gives the training ranges).
        n: number of showers; with ``conditions_from`` at most its rows (None: all of them).
        energies: incident energies in MeV to draw from, uniformly.
        energy_range: ``(lo, hi)`` MeV, log-uniform; default: the training range.
        conditions_from: a CaloChallenge HDF5 file or a :class:`~hepgen.data.formats.ShowerData`
            whose incident energies and conditions are taken row by row.
        seed: the job's seed (random conditions; extra conditions uniform in their training ranges).

    Returns:
        ``(source, n)``: a :class:`~hepgen.data.stream.ConditionSource` and the number of showers.
    """
    if n is not None and n < 1:
        raise ValueError(f"--n: expected a number of showers >= 1, found {n}")
    if conditions_from is not None:
        if isinstance(conditions_from, ShowerData):
            source = DataConditions(conditions_from, gen.condition_names)
        elif not isinstance(conditions_from, (str, os.PathLike)):
            raise ValueError(f"conditions: expected showers (ShowerData) or a CaloChallenge HDF5 file, found "
                             f"{type(conditions_from).__name__}")
        else:
            source = FileConditions(conditions_from, gen.condition_names)
        return source, source.n_available if n is None else min(n, source.n_available)
    if n is None:
        raise ValueError("give --n (number of showers) or --conditions-from FILE.h5")
    ranges = {name: gen.meta["condition_ranges"][name] for name in gen.condition_names}
    if energies is not None and len(energies):
        return EnergyListConditions(energies, seed, ranges), n
    lo, hi = energy_range or gen.meta.get("energy_range", [1e3, 1e5])
    if not 0 < lo <= hi:
        raise ValueError(f"--energy-range: expected 0 < LO <= HI (MeV), found {lo} {hi}")
    return EnergyRangeConditions(lo, hi, seed, ranges), n


def sample_showers(gen: ShowerGenerator, n: int, conditions: ConditionSource, seed: int = 0,
                   chunk_size: int = 10_000, batch_size: int = 1_000, progress: bool = False,
                   fast: bool = True) -> ShowerData:
    """Sample ``n`` showers in memory: the same showers that :func:`sample_to_file` writes with the
    same arguments (chunk by chunk, each chunk seeded from ``(seed, chunk index)``).

    Returns:
        :class:`~hepgen.data.formats.ShowerData` with the generator's geometry; ``attrs`` hold the
        family, the seed and how the conditions were chosen (JSON).
    """
    if int(batch_size) < 1 or int(chunk_size) < 1:
        raise ValueError(f"batch_size, chunk_size: expected >= 1, found {batch_size}, {chunk_size}")
    n, chunk_size = int(n), int(chunk_size)
    if conditions.n_available is not None:
        n = min(n, conditions.n_available)
    sample_chunk, _ = _chunk_sampler(gen, int(seed), int(batch_size), fast=fast)
    sample_chunk = _range_guarded(gen, sample_chunk, chunk_size)
    showers, energies, conds = [], [], {}
    for index in tqdm(range((n + chunk_size - 1) // chunk_size), desc="sampling", unit="chunk", disable=not progress):
        start, stop = index * chunk_size, min((index + 1) * chunk_size, n)
        e, c = conditions.chunk(start, stop, index)
        showers.append(np.asarray(sample_chunk(e, c, index), dtype=np.float32))
        energies.append(np.asarray(e, dtype=np.float64).reshape(-1, 1))
        for k, v in c.items():
            conds.setdefault(k, []).append(np.asarray(v, dtype=np.float64).reshape(stop - start, -1))
    attrs = {"generator": f"hepgen {gen.model.family}", "hepgen_family": gen.model.family, "seed": int(seed),
             "hepgen_conditions": json.dumps(conditions.describe())}
    return ShowerData(np.concatenate(showers) if showers else np.zeros((0, gen.preprocessor.n_voxels), np.float32),
                      np.concatenate(energies) if energies else np.zeros((0, 1)),
                      {k: np.concatenate(v) for k, v in conds.items()}, gen.geometry, attrs)
