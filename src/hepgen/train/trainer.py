"""Model-agnostic training loop: validation, checkpoint selection, EMA, AMP, resume, DDP.

The loop only talks to a model through :class:`hepgen.models.GenerativeModel`'s training
interface — ``configure_optimizers`` (named optimisers), ``training_step`` (one
optimisation step on a batch, returning the numbers to log), ``validation_loss`` and, for
data-parallel training, ``ddp_modules`` / ``wrapped`` — so likelihood models and
adversarial models with several optimisers train with the same code.

Every epoch writes ``last.pt`` (raw weights + every optimiser and scheduler state + EMA
state + gradient-scaler state + RNG states: an interrupted run continues from it with
``resume=True``, and a run resumed after a clean stop ends with the same weights as an
uninterrupted one) and, when the selection metric improved, ``best.pt`` (the weights used
for sampling: the EMA weights when ``config.ema`` is set).  Per-epoch numbers go to
``train_log.csv`` and, if ``config.tensorboard``, to TensorBoard event files in ``tb/``.

The kind of data is known only through the :class:`hepgen.domains.Domain` protocol, picked
by the data's type: it checks the input, fits the preprocessing, builds the model with
data-derived hyper-parameters, turns data into tensors and wraps the trained generator.
Checkpoints are selected by the validation loss for families with a likelihood and by the
domain's physics score otherwise (``config.select_by``; for showers the mean separation
power of the CaloChallenge high-level features at the validation conditions).

The run is a sequence of named steps over a :class:`TrainState` (epoch, step, best metric):
set-up (split, preprocessing, model, optimisers, DDP wrappers, restored state, generators,
tensors), then per epoch ``_train_epoch`` → ``_end_epoch`` (``_validate``, ``_log``,
``last.pt``, callbacks).

The time limit ``config.max_minutes`` is checked after every optimiser step (under DDP rank
0's clock decides and every process follows).  When it is reached with batches of the epoch
left, the run stops at once and writes ``last.pt`` holding the position inside the epoch
(``TrainState.batch``, the partial sums of the logged numbers and the RNG states); the epoch is
neither validated nor logged, and ``best.pt`` keeps the best *completed* epoch (a run stopped
before its first epoch ended keeps its current weights, as for a NaN metric).  Resuming
continues with the next batch of that epoch — its noise and batch order are functions of
``(seed, epoch)`` — and ends with exactly the weights of an uninterrupted run.  Within an
epoch a second progress bar shows batches done and the running training loss.

Data-parallel training: started under ``torchrun`` (environment ``WORLD_SIZE > 1``) or
inside an initialised ``torch.distributed`` process group, every process trains on its
shard of each epoch's permutation (``DistributedSampler`` semantics: the permutation is
padded to a multiple of the world size by wrapping around and process ``r`` takes
positions ``r, r + W, r + 2W, …``), the modules of ``model.ddp_modules()`` are wrapped in
``DistributedDataParallel`` (gloo on CPU, NCCL on CUDA), and only rank 0 validates,
writes files and runs callbacks.  ``docs/training.md`` has the details.

Data read in chunks (a container with ``streamed = True``, e.g. showers larger than memory):
each epoch's batches come from the domain's ``streamed_batches`` — a seeded chunk order, each
process reading its shard of the chunks, rows shuffled within buffers of a few chunks — so the
order is again a function of ``(seed, epoch, rank, world size)`` and resuming inside an epoch
stays exact; validation uses a seeded sample of at most ``n_eval`` held-out rows, in memory.
The equivalence of W processes at batch size B with one at W·B holds for in-memory data only.
``docs/large_data.md`` has the details.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import inspect
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from hepgen._extras import have
from hepgen._io import atomic_path, error_line, provenance
from hepgen.checkpoint import load_checkpoint
from hepgen.config import TrainConfig, dump_config
from hepgen.domains import domain_of_data
from hepgen.models import GenerativeModel

__all__ = ["StopTraining", "TrainState", "scaled_lr", "shard_indices", "train"]

log = logging.getLogger(__name__)

Callback = Callable[[int, dict], None]

# the clock of the time limit; a module attribute so that tests can replace it with a fake
_clock = time.monotonic
#: times the first two optimiser steps of an epoch (their difference is the one-off warm-up that
#: ``fit_epochs_to_time`` leaves out of an epoch's pace); apart from ``_clock`` so that the tests'
#: fake clock keeps its one-second-per-reading arithmetic
_step_clock = time.perf_counter


class StopTraining(Exception):
    """Raise from a callback to end training cleanly (after the epoch's checkpoint is written)."""


def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(val_fraction * n))) if n > 1 else 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def shard_indices(perm: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Process ``rank``'s share of an epoch permutation, with ``DistributedSampler`` semantics.

    The permutation is padded to a multiple of ``world_size`` by wrapping around (so every
    process gets the same number of batches, which DDP needs), then process ``r`` takes
    positions ``r, r + W, r + 2W, …``.  With per-process batch size ``B``, batch ``i`` of all
    processes together is exactly batch ``i`` of a single process at batch size ``W·B``.

    Arguments:
        perm: ``(N,)`` the epoch's permutation of the training indices.
        rank: this process's rank, ``0 <= rank < world_size``.
        world_size: number of processes W.

    Returns:
        ``(ceil(N / W),)`` indices.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), found {rank}")
    total = -(-len(perm) // world_size) * world_size
    return np.resize(perm, total)[rank::world_size]


def scaled_lr(lr: float, rule: str, world_size: int) -> float:
    """The learning rate for ``world_size`` data-parallel processes under ``rule``.

    ``"none"``: ``lr``; ``"linear"``: ``lr · W`` (Goyal et al., arXiv:1706.02677: the global
    batch grows W-fold, so does the step); ``"sqrt"``: ``lr · √W`` (keeps the variance of
    the update fixed; often preferred for Adam, Hoffer et al. arXiv:1705.08741).
    """
    factors = {"none": 1.0, "linear": float(world_size), "sqrt": math.sqrt(world_size)}
    if rule not in factors:
        raise ValueError(f"TrainConfig: key 'lr_scaling': expected one of {sorted(factors)}, found {rule!r}")
    return float(lr) * factors[rule]


class _Dist:
    """This process's place in a (possibly trivial) data-parallel group.

    Joins the process group that ``torchrun`` describes in the environment when
    ``WORLD_SIZE > 1``, or uses one that is already initialised (by the caller or by an
    earlier ``train`` call).  A group created here lives until the process exits: creating
    and destroying groups repeatedly in one launch races on the rendezvous store's keys.
    """

    def __init__(self, device_name: str) -> None:
        import atexit

        import torch.distributed as tdist

        want_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
        if device_name == "cuda" and not torch.cuda.is_available():
            raise ValueError("TrainConfig: key 'device': 'cuda' requested but torch sees no CUDA device")
        if not tdist.is_available() or not (tdist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) > 1):
            self.world, self.rank, self.local_rank = 1, 0, 0
        else:
            if not tdist.is_initialized():
                tdist.init_process_group(backend="nccl" if want_cuda else "gloo")
                atexit.register(_destroy_group)
            self.world, self.rank = tdist.get_world_size(), tdist.get_rank()
            self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))
        if want_cuda:
            self.device = torch.device("cuda", self.local_rank % torch.cuda.device_count())
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (picklable objects; tensors come back on the CPU)."""
        if self.world == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        if self.world == 1:
            return [obj]
        out: list = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()



def _destroy_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _tensorboard(out_dir: Path, enabled: bool, start_epoch: int):
    if not enabled:
        return None
    if not have("tensorboard"):  # the optional extra hepgen[tensorboard]: the CSV log is written anyway
        log.info("tensorboard is not installed (pip install 'hepgen[tensorboard]'); the training curves go to "
                 "train_log.csv only")
        return None
    try:  # lazy import of an optional extra
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:  # installed but broken: keep training
        log.warning("tensorboard is not importable (%s); not writing event files", err)
        return None
    # purge_step: a resumed run drops events of epochs after its checkpoint (a kill can
    # come after an epoch's events were written and before its last.pt was)
    return SummaryWriter(log_dir=str(out_dir / "tb"), purge_step=start_epoch + 1 if start_epoch else None)


class FullBatchCompiled:
    """``module(x, *args)`` through ``torch.compile`` for batches of ``batch_size`` rows, eagerly otherwise.

    Every full training batch has one shape, so the graph compiles once (``dynamic=False``:
    a dynamic-shape graph compiled ~2x slower and ran slower here); the epoch's short last
    batch runs eagerly instead of compiling a second graph.  If the first compiled call
    fails (no C++ compiler for inductor, an operation dynamo cannot trace) the warning says
    why and every later call runs eagerly: a run never stops because of the speed-up.

    Arguments:
        module: the module the training step calls (``GenerativeModel.wrapped("model")``).
        batch_size: the rows of a full batch.

    >>> net = torch.nn.Linear(3, 1)
    >>> f = FullBatchCompiled(net, batch_size=4)
    >>> f(torch.ones(2, 3)).shape            # a short batch: eager, nothing compiled
    torch.Size([2, 1])
    >>> f.compiled_calls
    0
    """

    def __init__(self, module: torch.nn.Module, batch_size: int) -> None:
        self.module, self.batch_size = module, int(batch_size)
        self.compiled = None  # torch.compile at the first full batch (it imports inductor)
        self.failed: str | None = None
        self.compiled_calls = 0

    def __call__(self, x: torch.Tensor, *args, **kwargs):
        if self.failed is not None or x.shape[0] != self.batch_size:
            return self.module(x, *args, **kwargs)
        if self.compiled_calls == 0:
            t0 = time.perf_counter()
            try:
                if self.compiled is None:
                    self.compiled = torch.compile(self.module, dynamic=False)
                out = self.compiled(x, *args, **kwargs)
            except Exception as err:  # noqa: BLE001 - any compiler failure: go on eagerly, say why
                self.failed = error_line(err)
                log.warning("compile: torch.compile failed (%s); training eagerly", self.failed)
                return self.module(x, *args, **kwargs)
            log.info("compile: the training loss compiled in %.1f s", time.perf_counter() - t0)
            self.compiled_calls = 1
            return out
        self.compiled_calls += 1
        return self.compiled(x, *args, **kwargs)


def _amp_setup(enabled: bool, device: torch.device, model) -> tuple[torch.dtype | None, Any]:
    """``(autocast dtype or None, GradScaler or None)`` for ``TrainConfig.amp``.

    bf16 has float32's exponent range, so it needs no loss scaling: used on CPUs and on
    GPUs that support it.  fp16 (older GPUs) needs a ``GradScaler``, which the family's
    ``training_step`` must accept as ``scaler``.
    """
    if not enabled:
        return None, None
    if device.type != "cuda" or torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    if "scaler" not in inspect.signature(model.training_step).parameters:
        raise ValueError(
            f"TrainConfig: key 'amp': this GPU has no bf16, and fp16 needs loss scaling, but the "
            f"training_step of family {model.family!r} takes no 'scaler'; set amp: false"
        )
    return torch.float16, torch.amp.GradScaler("cuda")


def _fingerprint(model: torch.nn.Module) -> tuple[float, float]:
    """Two float64 sums over all parameters: equal on every rank iff DDP kept them in sync."""
    flat = torch.cat([p.detach().reshape(-1).double().cpu() for p in model.parameters()])
    weights = torch.linspace(1.0, 2.0, len(flat), dtype=torch.float64)
    return float(flat.sum()), float((flat * weights).sum())


def _check_ddp_modules(model) -> dict[str, torch.nn.Module]:
    modules = model.ddp_modules()
    seen: dict[int, str] = {}
    for name, module in modules.items():
        for p in module.parameters():
            if id(p) in seen:
                raise ValueError(f"{model.family}: ddp_modules() {seen[id(p)]!r} and {name!r} share parameters")
            seen[id(p)] = name
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        raise ValueError(
            f"{model.family}: ddp_modules() leaves trained parameters unwrapped ({missing[:3]}...); "
            "their gradients would not be averaged across processes"
        )
    return modules


@dataclasses.dataclass
class TrainState:
    """What changes from epoch to epoch: saved in ``last.pt`` and restored by ``resume``.

    Attributes:
        epoch: epochs completed.
        step: optimiser steps taken.
        best_val: the best selection metric so far (lower is better).
        best_epoch: the epoch ``best.pt`` holds (None until a finite metric was seen).
        since_best: evaluations since the metric last improved (for ``patience``).
        batch: batches of epoch ``epoch`` (0-based, the unfinished one) already trained; non-zero
            only in the ``last.pt`` of a run stopped inside an epoch by ``max_minutes``.
        fitted_epochs: the run's length chosen by ``fit_epochs_to_time`` (None: ``config.epochs``).
    """

    epoch: int = 0
    step: int = 0
    best_val: float = math.inf
    best_epoch: int | None = None
    since_best: int = 0
    batch: int = 0
    fitted_epochs: int | None = None

    @classmethod
    def from_checkpoint(cls, tstate: dict) -> TrainState:
        return cls(epoch=tstate["epoch"], step=tstate["step"], best_val=tstate["best_val"],
                   best_epoch=tstate.get("best_epoch"), since_best=tstate.get("since_best", 0),
                   batch=tstate.get("batch", 0), fitted_epochs=tstate.get("fitted_epochs"))

    def epochs(self, config) -> int:
        """The run's length: ``config.epochs``, or fewer when fitted to the time limit."""
        return config.epochs if self.fitted_epochs is None else min(config.epochs, self.fitted_epochs)


def train(
    data,
    config: TrainConfig,
    out_dir,
    resume: bool = False,
    init_from=None,
    progress: bool = True,
    callbacks: Iterable[Callback] = (),
    data_source: dict | None = None,
):
    """Train ``config.family`` on ``data``; returns the trained generator of the selected checkpoint.

    Arguments:
        data: training data of any registered kind (:mod:`hepgen.domains`): showers
            (:class:`~hepgen.data.formats.ShowerData`, with a geometry attached), jets
            (:class:`~hepgen.data.jets.JetData`), …; the kind's domain is picked by the data's
            type and must match the family's ``data_kind``.
        config: the training configuration.
        out_dir: folder for ``last.pt``, ``best.pt``, ``train_log.csv``, ``config.yaml``, ``tb/``.
        resume: continue from ``out_dir/last.pt`` if it exists.
        init_from: a checkpoint whose weights initialise the model (transfer learning, e.g.
            fine-tuning on an extended energy range); the preprocessing is refitted to ``data``.
        progress: show a progress bar (rank 0 only).
        callbacks: callables ``f(epoch, record)`` run (on rank 0) after every epoch's
            checkpoint, with the epoch's CSV row as a dict; raising :class:`StopTraining`
            ends training cleanly (used by ``hepgen tune`` for pruning).
        data_source: JSON-able facts about where ``data`` came from (``hepgen train`` gives the
            file and its SHA-256), kept in the checkpoint's ``meta`` (``hepgen info``).

    Returns:
        the domain's trained generator (e.g. a
        :class:`~hepgen.domains.showers.generator.ShowerGenerator`), loaded from ``best.pt``.

    Under ``torchrun`` every process calls ``train`` with the same arguments; see the module
    docstring.
    """
    domain = domain_of_data(data)
    domain.check(data, config)
    run = _Run(data, config, domain, Path(out_dir), _Dist(config.device), dict(data_source or {}))
    state = run.setup(resume, init_from)
    return run.fit(state, progress, tuple(callbacks))


class _Run:
    """One training run: the fixed parts (data, model, optimisers, generators) and its steps."""

    def __init__(self, data, config: TrainConfig, domain, out_dir: Path, dist: _Dist, data_source: dict) -> None:
        self.data, self.config, self.domain, self.out_dir, self.dist = data, config, domain, out_dir, dist
        self.data_source = data_source
        self.device = dist.device
        self.last_path, self.best_path = out_dir / "last.pt", out_dir / "best.pt"
        self.log_path = out_dir / "train_log.csv"
        # a container read in chunks (e.g. showers larger than memory): batches come from the domain
        self.streamed = bool(getattr(data, "streamed", False))

    # --- set-up ---------------------------------------------------------------------------
    def setup(self, resume: bool, init_from) -> TrainState:
        """Split the data, build (or restore) preprocessing, model, optimisers; returns the state to start from."""
        config, dist = self.config, self.dist
        if dist.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        if config.threads:
            torch.set_num_threads(int(config.threads))
        torch.manual_seed(config.seed)
        tr_idx, va_idx = _split(len(self.data), config.val_fraction, config.seed)
        self.train_data = self.data.subset(tr_idx)
        if self.streamed:
            if not hasattr(self.domain, "streamed_batches"):
                raise ValueError(f"data of kind {self.domain.kind!r} read in chunks cannot be trained on: "
                                 "the kind has no streamed_batches")
            # validation in memory: a seeded sample of at most n_eval held-out rows
            if len(va_idx) > config.n_eval:
                va_idx = np.sort(np.random.default_rng([config.seed, 3]).choice(va_idx, config.n_eval, replace=False))
            self.val_data = self.data.subset(va_idx).load()
        else:
            self.val_data = self.data.subset(va_idx)
        payload = self._resume_payload(resume)
        self._build(payload, init_from)
        self._optimisation()
        self._wrap_ddp()
        self._compile()
        state = TrainState()
        if payload is not None:
            state = self._restore(payload["trainer"])
        self._generators()
        self._tensors()
        return state

    def _resume_payload(self, resume: bool) -> dict | None:
        # rank 0 reads the files and hands their content to the others: out_dir need only exist
        # on rank 0's machine
        dist, path = self.dist, self.last_path
        payload = dist.broadcast(load_checkpoint(path) if dist.main and resume and path.is_file() else None)
        if payload is not None and payload.get("trainer") is None:
            raise ValueError(f"{path}: key 'trainer': expected the trainer state of an interrupted run, found none")
        return payload

    def _build(self, payload: dict | None, init_from) -> None:
        domain, config, dist = self.domain, self.config, self.dist
        if payload is not None:
            generator = domain.from_payload(payload, source=str(self.last_path))
            self.pre, self.model = generator.preprocessor, generator.model
            if dist.main:
                log.info("resuming from %s (epoch %d)", self.last_path, payload["trainer"]["epoch"])
        else:
            pre = domain.fit_preprocessor(self.train_data, config)
            self.pre = domain.preprocessor_from_state(dist.broadcast(pre.state_dict()))
            self.model = domain.build_model(config, self.train_data, self.pre)
            if init_from is not None and dist.main:  # transfer learning; DDP copies rank 0's weights to the others
                _load_weights(self.model, init_from, config.family)
        self.model.to(self.device).train()
        self.select_by = config.select_by
        if self.select_by == "auto":
            self.select_by = "val_loss" if self.model.has_log_prob else "physics"

    def _optimisation(self) -> None:
        config, model = self.config, self.model
        self.lr = scaled_lr(config.lr, config.lr_scaling, self.dist.world)
        self.optimizers = model.configure_optimizers(self.lr, config.weight_decay)
        self.schedulers = {k: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=max(config.epochs, 1))
                           for k, o in self.optimizers.items()}
        self.amp_dtype, self.scaler = _amp_setup(config.amp, self.device, model)
        self.ema = None
        if config.ema:
            self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(float(config.ema)), use_buffers=True)

    def _wrap_ddp(self) -> None:
        dist, model = self.dist, self.model
        if dist.world == 1:
            return
        # after the EMA copy (a deep copy must not see the wrappers); DDP broadcasts rank 0's
        # weights, so all processes start equal
        ids = [self.device.index] if self.device.type == "cuda" else None
        model.set_ddp_wrappers({
            name: DistributedDataParallel(m, device_ids=ids, find_unused_parameters=model.ddp_find_unused_parameters)
            for name, m in _check_ddp_modules(model).items()
        })
        # different noise per process for families that draw from the global RNG
        torch.manual_seed(int(np.random.SeedSequence([self.config.seed, dist.rank]).generate_state(1)[0]))

    def _compile(self) -> None:
        """``config.compile``: the loss of full batches through ``torch.compile`` (after the EMA copy,
        like the DDP wrappers, so that no deep copy sees the compiled graph)."""
        config, model = self.config, self.model
        if not config.compile:
            return
        if self.dist.world > 1:
            raise ValueError("TrainConfig: key 'compile': expected false with data-parallel training, found true")
        if type(model).training_step is not GenerativeModel.training_step:
            raise ValueError(f"TrainConfig: key 'compile': family {model.family!r} has its own training step "
                             "(adversarial families: the gradient penalty needs double backward, which "
                             "torch.compile does not support); expected false, found true")
        if model.compile_regions(config.batch_size):
            log.info("compile: %s compiles its own regions (the spline couplings) for batches of %d rows",
                     model.family, config.batch_size)
            return
        model.set_ddp_wrappers({"model": FullBatchCompiled(model, config.batch_size)})

    def _restore(self, tstate: dict) -> TrainState:
        """Optimiser, scheduler, EMA, scaler and RNG states of an interrupted run."""
        dist, device = self.dist, self.device
        for k, o in self.optimizers.items():
            o.load_state_dict(tstate["optimizers"][k])
            self.schedulers[k].load_state_dict(tstate["schedulers"][k])
        if self.ema is not None and tstate.get("ema") is not None:
            self.ema.load_state_dict(tstate["ema"])
        if self.scaler is not None and tstate.get("scaler"):
            self.scaler.load_state_dict(tstate["scaler"])
        state = TrainState.from_checkpoint(tstate)
        self.partial_sums = None  # (sums, counts) of the unfinished epoch's steps on this rank
        if state.batch:
            partial = tstate.get("epoch_partial_by_rank") or []
            if len(partial) == dist.world:
                self.partial_sums = (dict(partial[dist.rank]["sums"]), dict(partial[dist.rank]["counts"]))
            else:  # another number of processes shards the epoch differently: start it again
                if dist.main:
                    log.warning("%s was stopped inside epoch %d by %s processes; resumed by %d, that epoch "
                                "restarts from its first batch", self.last_path, state.epoch + 1, len(partial),
                                dist.world)
                state.batch = 0
        by_rank, cuda_by_rank = tstate.get("torch_rng_by_rank"), tstate.get("cuda_rng_by_rank")
        if dist.world == 1:
            cpu_rng, cuda_rng = tstate["torch_rng"], tstate.get("cuda_rng")
        elif by_rank is not None and len(by_rank) == dist.world:
            cpu_rng, cuda_rng = by_rank[dist.rank], (cuda_by_rank or [None] * dist.world)[dist.rank]
        else:  # resumed with another number of processes: a fresh, still reproducible stream
            torch.manual_seed(int(np.random.SeedSequence([self.config.seed, dist.rank, state.epoch])
                                  .generate_state(1)[0]))
            cpu_rng = cuda_rng = None
        if cpu_rng is not None:
            torch.set_rng_state(cpu_rng)
        if device.type == "cuda" and cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, device)
        return state

    def _generators(self) -> None:
        meta = {
            **self.data_source,
            **self.domain.meta(self.data, self.config),
            "train_config": dataclasses.asdict(self.config),
            "n_train": len(self.train_data),
            "selected_by": self.select_by,
            "world_size": self.dist.world,
            "lr_effective": self.lr,
            # seed, versions and command line of this run (logged once, by rank 0)
            "provenance": provenance(self.config.seed, what="training" if self.dist.main else None),
        }
        self.raw_generator = self.domain.generator(self.model, self.pre, self.data, meta)
        self.eval_model = self.ema.module if self.ema is not None else self.model
        self.eval_generator = self.domain.generator(self.eval_model, self.pre, self.data, dict(meta))
        if self.dist.main:
            dump_config(self.config, self.out_dir / "config.yaml")

    def _tensors(self) -> None:
        domain, pre, device, config = self.domain, self.pre, self.device, self.config
        if not self.streamed:
            self.c_train = torch.from_numpy(domain.conditions(pre, self.train_data)).to(device)
        self.c_val = torch.from_numpy(domain.conditions(pre, self.val_data)).to(device)
        self.x_val = torch.from_numpy(domain.features(pre, self.val_data, np.random.default_rng(config.seed + 1))).to(device)
        self.phys_data = self.val_data.subset(np.arange(min(config.n_eval, len(self.val_data))))

    # --- the loop -------------------------------------------------------------------------
    def fit(self, state: TrainState, progress: bool, callbacks: tuple) -> Any:
        """Train from ``state`` to ``config.epochs`` (or an earlier stop); returns the selected generator."""
        config, dist = self.config, self.dist
        writer = _tensorboard(self.out_dir, config.tensorboard, state.epoch) if dist.main else None
        self.columns = _truncate_log(self.log_path, state.epoch) \
            if dist.main and state.epoch > 0 and self.log_path.exists() else None
        self.t0 = _clock()
        self._t_epoch_start = 0.0  # seconds after t0 at which the current epoch began (epoch fitting)
        self._warmup_s = 0.0  # the current epoch's one-off warm-up in its first step (epoch fitting)
        bar = tqdm(range(state.epoch, config.epochs), desc=f"training {config.family}", unit="epoch",
                   disable=not (progress and dist.main), initial=state.epoch, total=state.epochs(config))
        try:
            for epoch in bar:
                if epoch >= state.epochs(config):
                    if dist.main:
                        log.info("stopping: the %d epochs fitted to max_minutes=%s are done", state.epochs(config),
                                 config.max_minutes)
                    break
                self._whole_epoch = state.batch == 0
                means, stop_reason, partial = self._train_epoch(epoch, state, progress)
                if partial is not None:  # the time limit, inside the epoch
                    self._save_partial(state, partial)
                    if dist.main:
                        log.info("stopping: %s; last.pt holds the position (--resume continues there)",
                                 stop_reason)
                    break
                stop_reason = self._end_epoch(epoch, state, means, stop_reason, writer, bar, callbacks)
                if stop_reason:
                    if dist.main:
                        log.info("stopping: %s", stop_reason)
                    break
        finally:
            bar.close()
            if writer is not None:
                writer.close()
            self.model.set_ddp_wrappers(None)
            self.model.compile_regions(None)
        if dist.main and state.best_epoch is None:
            # no finite selection metric in this run (e.g. NaN validation loss): keep the last
            # weights — never a best.pt left in out_dir by an earlier run
            self.eval_generator.meta.update(epoch=self.raw_generator.meta.get("epoch"), step=state.step)
            self.eval_generator.save(self.best_path)
        payload = dist.broadcast(load_checkpoint(self.best_path) if dist.main else None)
        return self.domain.from_payload(payload, source=str(self.best_path))

    def _train_epoch(self, epoch: int, state: TrainState, progress: bool = False
                     ) -> tuple[dict[str, float] | None, str | None, tuple[dict, dict] | None]:
        """One pass over this process's shard, from batch ``state.batch`` on.

        Returns the mean of each logged number, a stop reason, and — only when the time limit
        stopped the epoch before its last batch — this rank's ``(sums, counts)`` so far (the means
        are then None)."""
        dist, model = self.dist, self.model
        n_batches, batches = self._batches(epoch, state.batch)
        step_kwargs = {"scaler": self.scaler} if self.scaler is not None else {}
        model.train()
        # per logged key: sum and number of steps that reported it (restored inside a resumed epoch)
        sums, counts = getattr(self, "partial_sums", None) or ({}, {})
        self.partial_sums = None
        inner = tqdm(total=n_batches, initial=state.batch, desc=f"epoch {epoch + 1}", unit="batch", leave=False,
                     disable=not (progress and dist.main))
        try:
            result = self._steps(epoch, state, n_batches, batches, inner, sums, counts, step_kwargs)
        finally:
            batches.close()  # stops a streamed epoch's reading thread
        if result is not None:
            return result
        inner.close()
        state.batch = 0
        for sched in self.schedulers.values():
            sched.step()
        if dist.world > 1:  # the logged training numbers are averages over all processes
            _check_sync(model, dist)
            gathered = dist.gather((sums, counts))
            keys = list(dict.fromkeys(k for g, _ in gathered for k in g))  # rank 0's order first
            sums = {k: sum(g.get(k, 0.0) for g, _ in gathered) for k in keys}
            counts = {k: sum(n.get(k, 0) for _, n in gathered) for k in keys}
        return {k: v / counts[k] for k, v in sums.items()}, self._stop_reason, None

    def _batches(self, epoch: int, start: int):
        """``(n_batches, generator of (x, c) tensors for batches start … n_batches - 1)`` of this
        process's shard of the epoch.

        In memory: the features of every training row (fresh dequantisation noise every epoch,
        CaloFlow) and a permutation, both from ``default_rng([seed, epoch])``, sharded by
        :func:`shard_indices`.  Streamed: the domain's ``streamed_batches`` (chunk order, buffers and
        noise are functions of ``(seed, epoch, rank, world)``; see :mod:`hepgen.data.chunked`)."""
        config, dist, device = self.config, self.dist, self.device
        if self.streamed:
            n_batches, stream = self.domain.streamed_batches(
                self.pre, self.train_data, seed=config.seed, epoch=epoch, batch_size=config.batch_size,
                rank=dist.rank, world=dist.world, start_batch=start)

            def tensors():
                try:
                    for x, c in stream:
                        yield torch.from_numpy(x).to(device), torch.from_numpy(c).to(device)
                finally:
                    stream.close()

            return n_batches, tensors()
        rng = np.random.default_rng([config.seed, epoch])
        x_train = torch.from_numpy(self.domain.features(self.pre, self.train_data, rng)).to(device)
        perm = torch.from_numpy(shard_indices(rng.permutation(len(x_train)), dist.rank, dist.world)).to(device)
        n_batches = -(-len(perm) // config.batch_size)

        def tensors():
            for b in range(start, n_batches):
                idx = perm[b * config.batch_size : (b + 1) * config.batch_size]
                yield x_train[idx], self.c_train[idx]

        return n_batches, tensors()

    def _steps(self, epoch, state, n_batches, batches, inner, sums, counts, step_kwargs):
        """The optimiser steps of batches ``state.batch … n_batches - 1``; returns None at the end of
        the epoch (``self._stop_reason`` set by ``max_steps``), or ``_train_epoch``'s result when the
        time limit stops it inside."""
        config, dist, model = self.config, self.dist, self.model
        self._stop_reason = None
        first = state.batch
        step_s = []  # the durations of this call's first two steps of the epoch (the warm-up, below)
        for b, (x, c) in zip(range(state.batch, n_batches), batches):
            t_step = _step_clock() if b < first + 2 else None
            with self._autocast():
                logs = model.training_step(x, c, self.optimizers, state.step, config.grad_clip, **step_kwargs)
            if t_step is not None:
                step_s.append(_step_clock() - t_step)
                # the first step's excess over the second: torch.compile's compilation (config.compile,
                # 35-90 s for caloflow on 2 CPU cores) and first-touch allocations, paid once
                self._warmup_s = max(0.0, step_s[0] - step_s[1]) if len(step_s) == 2 else 0.0
            for k, v in logs.items():
                if not math.isfinite(v):
                    raise FloatingPointError(f"epoch {epoch}, step {state.step}: {k} became {v}; lower the lr")
                sums[k] = sums.get(k, 0.0) + float(v)
                counts[k] = counts.get(k, 0) + 1
            state.step += 1
            state.batch = b + 1
            if self.ema is not None:
                self.ema.update_parameters(model)
            if dist.world > 1 and state.step == 1:
                _check_sync(model, dist)
            inner.update(1)
            if not inner.disable:  # the running numbers of this step (the first two keys)
                inner.set_postfix({k: f"{float(v):.4f}" for k, v in list(logs.items())[:2]}, refresh=False)
            if config.max_steps is not None and state.step >= config.max_steps:
                self._stop_reason = f"max_steps={config.max_steps} reached"
                break
            if b + 1 < n_batches and self._time_up():
                inner.close()
                return None, (f"max_minutes={config.max_minutes} reached in epoch {epoch + 1} after "
                              f"{b + 1}/{n_batches} batches"), (sums, counts)
        return None

    def _time_up(self) -> bool:
        """Whether ``config.max_minutes`` has passed (rank 0's clock decides for every process)."""
        if self.config.max_minutes is None:
            return False
        up = _clock() - self.t0 > 60 * self.config.max_minutes
        return bool(self.dist.broadcast(up)) if self.dist.world > 1 else up

    def _save_partial(self, state: TrainState, partial: tuple[dict, dict]) -> None:
        """``last.pt`` of a run stopped inside an epoch: ``state.batch`` and every rank's partial sums."""
        dist, device = self.dist, self.device
        cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        rng_by_rank = dist.gather((torch.get_rng_state(), cuda_rng)) if dist.world > 1 else None
        sums_by_rank = dist.gather({"sums": partial[0], "counts": partial[1]})
        if dist.main:
            self.raw_generator.meta.update(epoch=state.epoch, step=state.step)
            tstate = self._trainer_state(state, cuda_rng, rng_by_rank)
            tstate["epoch_partial_by_rank"] = sums_by_rank
            self.raw_generator.save(self.last_path, trainer_state=tstate)

    def _autocast(self):
        # the whole step runs under autocast: backward ops take the dtype autocast chose for
        # their forward op anyway, and training_step owns both
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _end_epoch(self, epoch: int, state: TrainState, means: dict, stop_reason: str | None, writer, bar,
                   callbacks: tuple) -> str | None:
        """Validate, select, log, write ``last.pt`` and run the callbacks (rank 0); returns the stop reason
        every rank agrees on."""
        dist, device = self.dist, self.device
        state.epoch = epoch + 1
        cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        rng_by_rank = dist.gather((torch.get_rng_state(), cuda_rng)) if dist.world > 1 else None
        local_stop = None
        if dist.main:
            record, local_stop = self._validate(epoch, state, means, stop_reason)
            self._fit_epochs(epoch, state, bar, record)
            self._log(record, writer)
            bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k in ("train_loss", "val_loss", "val_physics")})
            self.raw_generator.meta.update(epoch=epoch + 1, step=state.step)
            self.raw_generator.save(self.last_path, trainer_state=self._trainer_state(state, cuda_rng, rng_by_rank))
            try:
                for callback in callbacks:
                    callback(epoch + 1, dict(record))
            except StopTraining as stop:
                local_stop = f"stopped by callback ({stop})"
            local_stop = stop_reason or local_stop
        local_stop, fitted = dist.broadcast((local_stop, state.fitted_epochs))
        if fitted is not None and fitted != state.fitted_epochs:  # the other ranks follow rank 0's choice
            state.fitted_epochs = fitted
            self._shorten_schedules(fitted)
        return local_stop

    def _fit_epochs(self, epoch: int, state: TrainState, bar, record: dict) -> None:
        """``config.fit_epochs_to_time``: after the first whole epoch of this call, the run's length at
        that epoch's pace (training, validation and physics metric), within 90 % of ``max_minutes``."""
        config = self.config
        if not config.fit_epochs_to_time or config.max_minutes is None:
            return
        now = _clock() - self.t0
        pace, self._t_epoch_start = now - self._t_epoch_start, now
        if state.fitted_epochs is not None or not self._whole_epoch or pace <= 0:
            return
        # a one-off warm-up (the compilation) is not part of the pace of the epochs to come; it is
        # part of the time already spent (now)
        warmup = min(self._warmup_s, 0.9 * pace)
        pace -= warmup
        left = 0.9 * 60 * config.max_minutes - now
        fitted = min(config.epochs, epoch + 1 + max(0, int(left // pace)))
        state.fitted_epochs = fitted
        if fitted < config.epochs:
            self._shorten_schedules(fitted)
            record["lr"] = next(iter(self.optimizers.values())).param_groups[0]["lr"]
        bar.total = state.epochs(config)
        bar.refresh()
        log.info("fit_epochs_to_time: %.1f s per epoch%s → %d of %d epochs in 90 %% of max_minutes=%s "
                 "(the cosine schedule spans them)", pace,
                 f" (after a warm-up of {warmup:.1f} s in its first step)" if warmup >= 0.05 * pace else "",
                 state.epochs(config), config.epochs, config.max_minutes)

    def _shorten_schedules(self, epochs: int) -> None:
        """The cosine schedules end at ``epochs``; the current learning rates jump to the closed form
        of the shorter cosine at the current epoch, so that the recursive updates follow it."""
        for sched in self.schedulers.values():
            sched.T_max = max(int(epochs), 1)
            k = min(sched.last_epoch, sched.T_max)
            for group, base in zip(sched.optimizer.param_groups, sched.base_lrs):
                group["lr"] = sched.eta_min + (base - sched.eta_min) * (1 + math.cos(math.pi * k / sched.T_max)) / 2
            sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]  # what get_last_lr() reports

    def _validate(self, epoch: int, state: TrainState, means: dict, stop_reason: str | None) -> tuple[dict, str | None]:
        """Rank 0's validation: the epoch's record, ``best.pt`` when the metric improved, early stopping."""
        config, eval_model = self.config, self.eval_model
        eval_model.eval()
        with torch.no_grad():
            vals = [float(eval_model.validation_loss(self.x_val[s : s + 4096], self.c_val[s : s + 4096]))
                    for s in range(0, len(self.x_val), 4096)]
        val = float(np.mean(vals)) if vals else float("nan")
        record: dict = {"epoch": epoch + 1, "step": state.step}
        # each logged key averaged over the steps that reported it (a GAN's generator loss
        # exists on every n_critic-th step only)
        record.update({f"train_{k}": v for k, v in means.items()})
        record["val_loss"] = val
        # the time limit is read before the physics evaluation: an epoch that ends the run is always
        # scored (with eval_every > 1 a timed run used to stop on unscored epochs)
        elapsed = _clock() - self.t0
        time_up = config.max_minutes is not None and elapsed > 60 * config.max_minutes
        last_epoch = epoch + 1 >= state.epochs(config) or stop_reason is not None or time_up
        if self.select_by == "physics" and ((epoch + 1) % config.eval_every == 0 or last_epoch):
            record["val_physics"] = self.domain.selection_score(self.eval_generator, self.phys_data, seed=config.seed)
        record["lr"] = next(iter(self.optimizers.values())).param_groups[0]["lr"]
        record["seconds"] = round(elapsed, 1)

        metric = record.get("val_physics") if self.select_by == "physics" else val
        if metric is not None and math.isfinite(metric) and metric < state.best_val:
            state.best_val, state.since_best, state.best_epoch = float(metric), 0, epoch + 1
            self.eval_generator.meta.update(epoch=epoch + 1, step=state.step)
            self.eval_generator.save(self.best_path)
        elif metric is not None:
            state.since_best += 1
        stop = None
        if config.patience is not None and state.since_best >= config.patience:
            stop = f"no improvement of {self.select_by} in {config.patience} evaluations"
        if time_up:
            stop = stop or f"max_minutes={config.max_minutes} reached after {elapsed / 60:.1f} min"
        self.raw_generator.meta.update(best_epoch=state.best_epoch)
        return record, stop

    def _log(self, record: dict, writer) -> None:
        """Append the epoch's row to ``train_log.csv`` (and TensorBoard)."""
        if self.columns is None:
            self.columns = list(record) + (["val_physics"] if self.select_by == "physics"
                                           and "val_physics" not in record else [])
            with self.log_path.open("w", newline="") as fh:
                csv.writer(fh).writerow(self.columns)
        with self.log_path.open("a", newline="") as fh:
            csv.writer(fh).writerow([_fmt(record.get(c, "")) for c in self.columns])
        if writer is not None:
            for k, v in record.items():
                if k not in ("epoch", "seconds") and isinstance(v, float) and math.isfinite(v):
                    writer.add_scalar(k, v, record["epoch"])
            writer.flush()

    def _trainer_state(self, state: TrainState, cuda_rng, rng_by_rank) -> dict:
        """The ``trainer`` entry of ``last.pt``: :class:`TrainState` plus optimiser, EMA and RNG states."""
        return {
            **dataclasses.asdict(state),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: sc.state_dict() for k, sc in self.schedulers.items()},
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "torch_rng": torch.get_rng_state(),
            "torch_rng_by_rank": [r[0] for r in rng_by_rank] if rng_by_rank else None,
            "cuda_rng": cuda_rng,
            "cuda_rng_by_rank": [r[1] for r in rng_by_rank] if rng_by_rank and cuda_rng is not None else None,
            "world_size": self.dist.world,
        }


def _load_weights(model, init_from, family: str) -> None:
    """Initialise ``model`` with the weights of the checkpoint ``init_from`` (transfer learning)."""
    source = load_checkpoint(init_from)
    try:
        model.load_state_dict(source["model"])
    except RuntimeError as err:
        raise ValueError(
            f"{init_from}: key 'model': expected weights of a {family} model with "
            f"{model.hparams}, found family {source['family']!r} with {source['hparams']} "
            f"({str(err).splitlines()[0]})"
        ) from None


def _check_sync(model, dist: _Dist) -> None:
    prints = dist.gather(_fingerprint(model))
    if any(p != prints[0] for p in prints):
        raise RuntimeError(
            f"data-parallel training of {model.family!r}: the processes' weights differ after an "
            f"optimiser step ({prints}); its training_step must call every module of ddp_modules() "
            "through self.wrapped(name) so that DistributedDataParallel averages the gradients"
        )


def _truncate_log(path: Path, epochs: int) -> list[str] | None:
    """Keep the header and the rows of epochs ``<= epochs`` of a resumed run's CSV log (rows
    written after the checkpoint by a killed run would otherwise appear twice); returns the header."""
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return None
    header, body = rows[0], rows[1:]
    col = header.index("epoch") if "epoch" in header else None
    keep = [r for r in body if col is None or (r[col].isdigit() and int(r[col]) <= epochs)]
    if len(keep) != len(body):
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            csv.writer(fh).writerows([header, *keep])
    return header


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
