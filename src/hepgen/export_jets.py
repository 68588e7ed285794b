"""Export a trained jet generator to ONNX, and check onnxruntime against PyTorch (issue 21).

The exported graph is the whole :class:`JetSampler`: the physical jet conditions are
preprocessed as :meth:`~hepgen.domains.jets.preprocessing.JetPreprocessor.transform_conditions`
does, the network maps noise to a particle cloud (for flow-matching families the ODE solver
is unrolled with a fixed number of steps, recorded in the metadata; for ``epic_gan`` it is
one generator pass), and the inverse preprocessing of
:meth:`~hepgen.domains.jets.preprocessing.JetPreprocessor.inverse` (de-standardisation,
``pt_rel = exp(·)``, the momentum closure of jets with ``n < P`` where the preprocessor learnt
it, sorting by ``pt_rel``, zero padding) is part of the graph, so a C++
caller needs no Python and no hepgen state (docs/jets.md, "Export and speed"):

* inputs (``B`` dynamic):

  - ``n`` ``(B,)`` int64: real particles per jet, ``1 … P`` (``hepgen_n_particles``); draw
    it from ``hepgen_multiplicity`` (JSON: per jet type ``P(n = 1 … P)``) or take it from
    the event;
  - ``jet_type`` ``(B,)`` int64: JetNet type index (0 g, 1 q, 2 t, 3 w, 4 z), only for
    models conditioned on the type; only the indices of ``hepgen_jet_types`` are defined
    (another index gives an all-zero one-hot, an input the model never saw);
  - ``jet_kinematics`` ``(B, K)`` float32: the jet-level conditions in the order of
    ``hepgen_kinematics`` (a subset of ``pt`` GeV, ``eta``, ``mass`` GeV), only when ``K > 0``;
  - ``noise`` ``(B, noise_dim)`` float32 independent standard normals drawn by the caller
    (layout in ``hepgen_noise``);

* outputs:

  - ``particle_features`` ``(B, P, 4)`` float32: JetNet layout ``[eta_rel, phi_rel, pt_rel,
    mask]``, real particles first, sorted by decreasing ``pt_rel``, padding slots all zero —
    what :meth:`~hepgen.domains.jets.generator.JetGenerator.sample` returns for the same noise;
  - ``mask`` ``(B, P)`` bool: ``slot < n``, the same as column 3.

:func:`check_jets_onnx` runs both on the same inputs: every feature agrees within
``JET_ONNX_RTOL · |value| + JET_ONNX_ATOL``, masks are equal and padding is exactly zero in
both.  Two particles whose ``pt_rel`` agree to float rounding may be sorted in the other order
by one runtime: such slots are counted as ``n_order_swaps`` (they match a slot of the same jet
within the tolerance) and are not errors.

Example (an untrained toy model; the ONNX part needs ``hepgen[onnx]``):

>>> import numpy as np, torch
>>> from hepgen.data.jets import JetData
>>> from hepgen.domains.jets import JetGenerator, JetPreprocessor
>>> from hepgen.models import build_model
>>> rng = np.random.default_rng(0)
>>> pf = np.zeros((8, 4, 4), np.float32); pf[:, :2, :2] = rng.normal(0, 0.1, (8, 2, 2))
>>> pf[:, :2, 2] = [0.7, 0.3]; pf[:, :2, 3] = 1
>>> jets = JetData(pf, np.tile([1000.0, 0.0, 50.0, 2.0], (8, 1)), np.zeros(8, np.int64))
>>> pre = JetPreprocessor(4, ["type", "pt"]).fit(jets)
>>> model = build_model("epic_gan", n_features=12, n_conditions=pre.n_conditions, n_particles=4,
...                     hidden=8, global_dim=4, n_layers=1, latent_local=2, latent_global=2)
>>> sampler = JetSampler(JetGenerator(model, pre)).eval()
>>> sampler.input_names, sampler.noise_dim
(['n', 'jet_type', 'jet_kinematics', 'noise'], 10)
>>> out, mask = sampler(torch.tensor([1, 3]), torch.randn(2, 10), torch.tensor([0, 0]), torch.tensor([[900.0], [1100.0]]))
>>> out.shape, mask.tolist(), bool((out[0, 1:] == 0).all())
(torch.Size([2, 4, 4]), [[True, False, False, False], [True, True, True, False]], True)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hepgen._version import __version__
from hepgen.data.jets import JET_TYPES
from hepgen.domains.jets.preprocessing import LOG_CONDITIONS, LOG_PT_REL_MAX
from hepgen.export import ort_session, write_onnx

__all__ = [
    "JET_ONNX_ATOL",
    "JET_ONNX_RTOL",
    "JetSampler",
    "check_jets_onnx",
    "export_jets_onnx",
    "random_jet_conditions",
]

JET_ONNX_RTOL = 1e-3  #: relative tolerance of onnxruntime vs PyTorch particle features
JET_ONNX_ATOL = 1e-4  #: absolute tolerance (eta_rel, phi_rel in units of the jet radius scale, pt_rel a fraction)


class JetSampler(nn.Module):
    """The jet generator as one module: physical conditions + noise → JetNet particle features.

    Arguments:
        generator: a :class:`~hepgen.domains.jets.generator.JetGenerator` whose family has a
            noise → sample map (``sample_from_noise``, ``noise_dim``).
        steps: solver steps for flow-matching families (default: the model's
            ``sample_steps``); ignored otherwise.
        method: solver for flow-matching families (default: the model's ``sample_method``).

    ``forward(n, noise, jet_type=None, jet_kinematics=None)`` with the shapes of the module
    docstring returns ``(particle_features (B, P, 4), mask (B, P) bool)``.  The pre- and
    post-processing repeat :class:`~hepgen.domains.jets.preprocessing.JetPreprocessor`'s
    numpy code in torch (float32) so that they become part of the graph;
    ``tests/test_jets_export.py`` checks both give the same jets.
    """

    def __init__(self, generator, steps: int | None = None, method: str | None = None) -> None:
        super().__init__()
        if getattr(generator, "kind", None) != "jets":
            raise ValueError(f"jet export/bench: expected a jets generator (kind 'jets'), found kind "
                             f"{getattr(generator, 'kind', None)!r}; showers go through hepgen.export / hepgen.bench")
        model, pre = generator.model, generator.preprocessor
        if getattr(model, "noise_dim", None) is None or not hasattr(model, "sample_from_noise"):
            raise ValueError(f"model family {model.family!r} has no noise → sample map "
                             "(GenerativeModel.sample_from_noise / noise_dim); it cannot be exported")
        self.model = model
        self.family = model.family
        self.n_particles = int(pre.n_particles)
        self.noise_dim = int(model.noise_dim)
        self.condition_names = list(pre.condition_names)
        self.kinematics = [k for k in self.condition_names if k != "type"]
        self.uses_type = "type" in self.condition_names
        self.jet_types = [int(t) for t in pre.types]
        self.multiplicity = {JET_TYPES[int(t)] if int(t) >= 0 else "unknown": list(p)
                             for t, p in pre.multiplicity.items()}
        self.solves_ode = hasattr(model, "sample_steps")
        self.steps = int(steps if steps is not None else model.sample_steps) if self.solves_ode else None
        self.method = (method or model.sample_method) if self.solves_ode else None
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps: expected an integer >= 1, found {steps!r}")
        self.register_buffer("types", torch.tensor(self.jet_types or [0], dtype=torch.int64))
        self.register_buffer("feature_mean", torch.tensor(np.asarray(pre.feature_mean), dtype=torch.float32))
        self.register_buffer("feature_std", torch.tensor(np.asarray(pre.feature_std), dtype=torch.float32))
        self.register_buffer("cond_mean", torch.tensor([pre.cond_mean[k] for k in self.kinematics] or [0.0]))
        self.register_buffer("cond_std", torch.tensor([pre.cond_std[k] for k in self.kinematics] or [1.0]))
        self.register_buffer("slots", torch.arange(self.n_particles, dtype=torch.int64))
        self.closes_momentum = bool(pre.momentum_closure)

    @property
    def input_names(self) -> list[str]:
        """The graph's inputs in order: ``n``, [``jet_type``,] [``jet_kinematics``,] ``noise``."""
        return ["n", *(["jet_type"] if self.uses_type else []), *(["jet_kinematics"] if self.kinematics else []),
                "noise"]

    def conditions(self, n: torch.Tensor, jet_type: torch.Tensor | None = None,
                   jet_kinematics: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C)`` model conditions, the columns of ``JetPreprocessor.transform_conditions``."""
        cols = [n.reshape(-1, 1).to(torch.float32)]
        k = 0
        for name in self.condition_names:
            if name == "type":
                cols.append((jet_type.reshape(-1, 1) == self.types[None, :]).to(torch.float32))
            else:
                v = jet_kinematics[:, k : k + 1].to(torch.float32)
                if LOG_CONDITIONS[name]:
                    v = torch.log(v.clamp_min(1e-6))
                cols.append((v - self.cond_mean[k]) / self.cond_std[k])
                k += 1
        return torch.cat(cols, dim=1)

    def particles(self, x: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Model-space ``(B, P·3)`` → ``(particle_features (B, P, 4), mask (B, P))``, as
        ``JetPreprocessor.inverse`` (hand-written in torch so that it is part of the graph)."""
        b = x.shape[0]
        f = x.reshape(b, self.n_particles, 3) * self.feature_std + self.feature_mean
        pt = torch.exp(f[..., 2].clamp_max(LOG_PT_REL_MAX))
        mask = self.slots[None, :] < n.reshape(-1, 1).to(torch.int64)
        if self.closes_momentum:  # JetPreprocessor.inverse's close_momentum, for jets with n < P
            along = (pt * torch.cos(f[..., 1]) * mask).sum(dim=1, keepdim=True)
            complete = n.reshape(-1, 1).to(torch.int64) < self.n_particles
            pt = pt * torch.where(complete & (along > 0), 1.0 / torch.where(along > 0, along, 1.0), 1.0)
        key = torch.where(mask, -pt, torch.full_like(pt, float("inf")))
        # not stable=True (no ONNX kernel for the stable sort): only exact pt_rel ties may come out
        # in another order than JetPreprocessor.inverse's stable numpy sort
        order = torch.argsort(key, dim=1)
        feats = torch.stack([f[..., 0], f[..., 1], pt, mask.to(torch.float32)], dim=-1)
        feats = torch.gather(feats, 1, order[..., None].expand(-1, -1, 4))
        # after sorting, the first n slots hold the real particles: the mask is slot < n again
        out = torch.where(mask[..., None], feats, torch.zeros((), dtype=feats.dtype))
        return out, mask

    def forward(self, n: torch.Tensor, noise: torch.Tensor, jet_type: torch.Tensor | None = None,
                jet_kinematics: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.conditions(n, jet_type, jet_kinematics)
        if self.solves_ode:
            x = self.model.sample_from_noise(c, noise, steps=self.steps, method=self.method)
        else:
            x = self.model.sample_from_noise(c, noise)
        return self.particles(x, n)

    def call(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` with the inputs by graph name (``n``, ``noise``, ``jet_type``, ``jet_kinematics``)."""
        return self(inputs["n"], inputs["noise"], inputs.get("jet_type"), inputs.get("jet_kinematics"))

    def metadata(self) -> dict[str, str]:
        """The ONNX metadata entries (strings) that describe the graph's inputs and outputs."""
        model = self.model
        if "latent_local" not in model.hparams:  # flow matching and its one-pass student
            noise = (f"P*3 = {self.noise_dim} standard normals, slot-major (slot i: noise[3i:3i+3]); "
                     "padding slots are ignored")
        else:
            lat = int(model.hparams.get("latent_local", 0))
            noise = (f"P*latent_local = {self.n_particles}*{lat} standard normals, slot-major, then "
                     f"latent_global = {self.noise_dim - self.n_particles * lat} for the jet; padding slots ignored")
        return {
            "hepgen_version": __version__,
            "hepgen_kind": "jets",
            "hepgen_family": self.family,
            "hepgen_inputs": json.dumps(self.input_names),
            "hepgen_outputs": json.dumps(["particle_features", "mask"]),
            "hepgen_n_particles": str(self.n_particles),
            "hepgen_noise_dim": str(self.noise_dim),
            "hepgen_noise": noise,
            "hepgen_jet_types": json.dumps([JET_TYPES[t] for t in self.jet_types]),
            "hepgen_jet_type_indices": json.dumps(self.jet_types),
            "hepgen_kinematics": json.dumps(self.kinematics),
            "hepgen_multiplicity": json.dumps(self.multiplicity),
            "hepgen_steps": "" if self.steps is None else str(self.steps),
            "hepgen_solver": self.method or "",
            "hepgen_units": ("n whole number 1..P; jet_type JetNet index; pt, mass GeV; noise standard normal; "
                             "particle_features [eta_rel, phi_rel, pt_rel, mask] (JetNet layout), sorted by pt_rel, "
                             "padding 0"),
        }


class _Export(nn.Module):
    """A :class:`JetSampler` with a fixed positional signature (the exporter names inputs by
    position and needs one argument per input): ``(n, noise)``; the subclasses add the
    optional inputs in graph order."""

    def __init__(self, sampler: JetSampler) -> None:
        super().__init__()
        self.sampler = sampler

    def forward(self, n: torch.Tensor, noise: torch.Tensor):
        return self.sampler(n, noise)


class _ExportType(_Export):
    def forward(self, n: torch.Tensor, jet_type: torch.Tensor, noise: torch.Tensor):  # type: ignore[override]
        return self.sampler(n, noise, jet_type=jet_type)


class _ExportKinematics(_Export):
    def forward(self, n: torch.Tensor, jet_kinematics: torch.Tensor, noise: torch.Tensor):  # type: ignore[override]
        return self.sampler(n, noise, jet_kinematics=jet_kinematics)


class _ExportBoth(_Export):
    def forward(self, n: torch.Tensor, jet_type: torch.Tensor, jet_kinematics: torch.Tensor,  # type: ignore[override]
                noise: torch.Tensor):
        return self.sampler(n, noise, jet_type, jet_kinematics)


_EXPORTS = {(False, False): _Export, (True, False): _ExportType, (False, True): _ExportKinematics,
            (True, True): _ExportBoth}


def random_jet_conditions(generator, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Inputs of a :class:`JetSampler` for ``n`` jets, by graph name, without the noise.

    Jet types uniform over the training types; multiplicities from the training distribution
    of each type (:meth:`~hepgen.domains.jets.preprocessing.JetPreprocessor.sample_multiplicity`);
    pT and η uniform in the training ranges (``meta['pt_range']``, ``meta['eta_range']``; else
    ``exp(mean ± std)`` of the standardisation), the mass log-uniform within ``exp(mean ± std)``.
    """
    pre = generator.preprocessor
    types = np.asarray(pre.types or sorted(pre.multiplicity), dtype=np.int64)
    jt = rng.choice(types, size=int(n))
    out = {"n": pre.sample_multiplicity(jt, rng).astype(np.int64)}
    if "type" in pre.condition_names:
        out["jet_type"] = jt
    cols = []
    for k in pre.condition_names:
        if k == "type":
            continue
        mean, std = pre.cond_mean[k], pre.cond_std[k]
        rng_key = {"pt": "pt_range", "eta": "eta_range"}.get(k)
        if rng_key in generator.meta:
            lo, hi = generator.meta[rng_key]
        elif LOG_CONDITIONS[k]:
            lo, hi = np.exp(mean - std), np.exp(mean + std)
        else:
            lo, hi = mean - std, mean + std
        cols.append(rng.uniform(lo, hi, size=int(n)))
    if cols:
        out["jet_kinematics"] = np.stack(cols, axis=1).astype(np.float32)
    return out


def export_jets_onnx(generator, path: str | os.PathLike, checkpoint_sha256: str | None = None,
                     steps: int | None = None, method: str | None = None, opset: int | None = None) -> dict:
    """Write ``generator``'s :class:`JetSampler` as a single-file ONNX model, atomically.

    Arguments:
        generator: a :class:`~hepgen.domains.jets.generator.JetGenerator`.
        path: the ``.onnx`` file.
        checkpoint_sha256: recorded in the metadata (provenance).
        steps, method: solver steps and method of flow-matching families, unrolled into the
            graph (default: the model's); the graph's size and cost grow linearly with the steps.
        opset: ONNX opset (default: the exporter's).

    Returns:
        ``{"path", "inputs", "outputs", "noise_dim", "n_particles", "steps", "solver", "export_s"}``.

    Raises:
        ValueError: the family has no noise → sample map.
        MissingExtraError: no ``hepgen[onnx]`` extra.
    """
    path = Path(path)
    sampler = JetSampler(generator, steps=steps, method=method).eval()
    example = random_jet_conditions(generator, 2, np.random.default_rng(0))
    example["noise"] = np.zeros((2, sampler.noise_dim), np.float32)
    args = tuple(torch.from_numpy(example[k]) for k in sampler.input_names)
    meta = {**sampler.metadata(), "hepgen_checkpoint_sha256": checkpoint_sha256 or ""}
    t0 = time.perf_counter()
    write_onnx(_EXPORTS[sampler.uses_type, bool(sampler.kinematics)](sampler).eval(), args, path, sampler.input_names, ["particle_features", "mask"], meta,
               opset=opset)
    return {"path": str(path), "inputs": sampler.input_names, "outputs": ["particle_features", "mask"],
            "noise_dim": sampler.noise_dim, "n_particles": sampler.n_particles, "steps": sampler.steps,
            "solver": sampler.method, "export_s": time.perf_counter() - t0}


def _order_swaps(got: np.ndarray, ref: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Of the slots ``bad (B, P)`` outside tolerance, those whose particle equals (within the
    tolerance) another real particle of the same jet in ``ref``: a sort of near-equal ``pt_rel``."""
    swapped = np.zeros_like(bad)
    for j, s in zip(*np.nonzero(bad)):
        close = np.abs(got[j, s, None, :3] - ref[j, :, :3]) <= JET_ONNX_RTOL * np.abs(ref[j, :, :3]) + JET_ONNX_ATOL
        swapped[j, s] = bool((close.all(axis=-1) & (ref[j, :, 3] > 0)).any())
    return swapped


def check_jets_onnx(path: str | os.PathLike, generator, n: int = 1000, seed: int = 0, steps: int | None = None,
                    method: str | None = None, threads: int | None = 1) -> dict:
    """Run the ONNX file with onnxruntime and the PyTorch :class:`JetSampler` on the same inputs; compare.

    Arguments:
        path: the exported model.
        generator: the :class:`~hepgen.domains.jets.generator.JetGenerator` it was exported from.
        n: jets compared (conditions from :func:`random_jet_conditions`, one seeded noise draw).
        seed: seeds the inputs.
        steps, method: as given to :func:`export_jets_onnx`.
        threads: onnxruntime intra-op threads (None: its default).

    Returns:
        ``{"n", "max_abs_diff", "max_rel_diff" (pt_rel >= 1e-3), "n_order_swaps", "n_outside_tolerance",
        "mask_equal", "padding_zero", "rtol", "atol", "ok"}``.
    """
    sampler = JetSampler(generator, steps=steps, method=method).eval()
    rng = np.random.default_rng(seed)
    feeds = random_jet_conditions(generator, n, rng)
    feeds["noise"] = rng.standard_normal((n, sampler.noise_dim)).astype(np.float32)
    feeds = {k: feeds[k] for k in sampler.input_names}
    got, got_mask = ort_session(path, threads).run(["particle_features", "mask"], feeds)
    with torch.no_grad():
        ref_t, ref_mask_t = sampler.call({k: torch.from_numpy(v) for k, v in feeds.items()})
    ref, ref_mask = ref_t.numpy().astype(np.float64), ref_mask_t.numpy()
    got = got.astype(np.float64)
    diff = np.abs(got - ref)
    bad = (diff > JET_ONNX_RTOL * np.abs(ref) + JET_ONNX_ATOL).any(axis=-1)
    swaps = _order_swaps(got, ref, bad)
    big = ref[..., 2] >= 1e-3
    rel = diff[..., 2][big] / ref[..., 2][big]
    mask_equal = bool(np.array_equal(got_mask.astype(bool), ref_mask)
                      and np.array_equal(got[..., 3] > 0, ref_mask))
    padding_zero = bool(np.all(got[~ref_mask] == 0) and np.all(ref[~ref_mask] == 0))
    outside = int((bad & ~swaps).sum())
    return {
        "n": int(n),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "max_rel_diff": float(rel.max()) if rel.size else 0.0,
        "n_order_swaps": int(swaps.sum()),
        "n_outside_tolerance": outside,
        "mask_equal": mask_equal,
        "padding_zero": padding_zero,
        "rtol": JET_ONNX_RTOL,
        "atol": JET_ONNX_ATOL,
        "ok": bool(outside == 0 and mask_equal and padding_zero),
    }
