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

Checkpoints are selected by the validation loss for families with a likelihood and by a
physics metric otherwise (``config.select_by``): the mean separation power of the
CaloChallenge high-level features of showers generated at the validation conditions.

Data-parallel training: started under ``torchrun`` (environment ``WORLD_SIZE > 1``) or
inside an initialised ``torch.distributed`` process group, every process trains on its
shard of each epoch's permutation (``DistributedSampler`` semantics: the permutation is
padded to a multiple of the world size by wrapping around and process ``r`` takes
positions ``r, r + W, r + 2W, …``), the modules of ``model.ddp_modules()`` are wrapped in
``DistributedDataParallel`` (gloo on CPU, NCCL on CUDA), and only rank 0 validates,
writes files and runs callbacks.  ``docs/training.md`` has the details.
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
from tqdm.auto import tqdm

from hepgen._io import atomic_path
from hepgen.config import TrainConfig, dump_config
from hepgen.data.formats import ShowerData
from hepgen.data.jets import JetData
from hepgen.pipeline import ShowerGenerator
from hepgen.checkpoint import load_checkpoint
from hepgen.train.domains import domain_for

__all__ = ["StopTraining", "layer_sizes", "model_hparams", "physics_score", "scaled_lr", "shard_indices", "train",
           "with_derived_hparams"]

log = logging.getLogger(__name__)

Callback = Callable[[int, dict], None]


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


def layer_sizes(geometry) -> list[int]:
    """Voxels per active layer of ``geometry``, in depth order."""
    return [s.stop - s.start for s in geometry.layer_slices]


def model_hparams(config: TrainConfig, geometry) -> dict:
    """The family's constructor arguments (besides ``n_features``/``n_conditions``) for ``geometry``.

    ``config.model`` plus the geometry-derived hyper-parameters the family accepts and the
    user did not set: ``n_layers`` (the number of energy features at the start of the feature
    vector, e.g. the CaloFlow energy flow) and ``layer_sizes`` (layer-by-layer generators) follow
    from the data's geometry, so presets stay valid for any binning.
    """
    sizes = layer_sizes(geometry)
    return with_derived_hparams(config, {"n_layers": len(sizes), "layer_sizes": sizes})


def with_derived_hparams(config: TrainConfig, derived: dict) -> dict:
    """``config.model`` plus those of the data-derived hyper-parameters ``derived`` that the
    family's constructor accepts and the user left unset (missing or None).

    Used for the shower geometry (:func:`model_hparams`) and for the jets' ``n_particles``
    (:class:`hepgen.train.domains.JetDomain`).
    """
    from hepgen.models import MODEL_FAMILIES

    given = dict(config.model)
    if config.family not in MODEL_FAMILIES:
        return given
    params = inspect.signature(MODEL_FAMILIES[config.family].__init__).parameters
    return {**given, **{k: v for k, v in derived.items() if k in params and given.get(k) is None}}


def physics_score(generator: ShowerGenerator, real: ShowerData, seed: int = 0) -> float:
    """Mean separation power of the high-level features: ``generator`` sampled at ``real``'s
    conditions against ``real`` (0 = identical histograms, 1 = disjoint).  Lower is better.

    Arguments:
        generator: the model + preprocessing to sample from.
        real: reference showers ``(N, n_voxels)`` with their incident energies / conditions.
        seed: seeds the generated sample (and the metric's own randomness).
    """
    from hepgen.evaluate import evaluate  # lazy: evaluate pulls in the metrics stack

    showers = generator.sample(real.incident_energies, real.conditions, seed=seed)
    fake = ShowerData(showers, real.incident_energies, dict(real.conditions), real.geometry)
    metrics = evaluate(real, fake, real.geometry, seed=seed, classifier=False, groups="features")
    return float(metrics["separation_power_mean"])


def _tensorboard(out_dir: Path, enabled: bool, start_epoch: int):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but keep training if it is broken
        log.warning("tensorboard is not importable; not writing event files")
        return None
    # purge_step: a resumed run drops events of epochs after its checkpoint (a kill can
    # come after an epoch's events were written and before its last.pt was)
    return SummaryWriter(log_dir=str(out_dir / "tb"), purge_step=start_epoch + 1 if start_epoch else None)


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


def train(
    data: ShowerData | JetData,
    config: TrainConfig,
    out_dir,
    resume: bool = False,
    init_from=None,
    progress: bool = True,
    callbacks: Iterable[Callback] = (),
) -> ShowerGenerator:
    """Train ``config.family`` on ``data``; returns the generator of the selected checkpoint.

    Arguments:
        data: training showers (a geometry must be attached or given to ``read_showers``),
            or training jets (:class:`~hepgen.data.jets.JetData`, for the families with
            ``data_kind == "jets"``; a :class:`~hepgen.jet_pipeline.JetGenerator` is returned).
        config: the training configuration.
        out_dir: folder for ``last.pt``, ``best.pt``, ``train_log.csv``, ``config.yaml``, ``tb/``.
        resume: continue from ``out_dir/last.pt`` if it exists.
        init_from: a checkpoint whose weights initialise the model (transfer learning, e.g.
            fine-tuning on an extended energy range); the preprocessing is refitted to ``data``.
        progress: show a progress bar (rank 0 only).
        callbacks: callables ``f(epoch, record)`` run (on rank 0) after every epoch's
            checkpoint, with the epoch's CSV row as a dict; raising :class:`StopTraining`
            ends training cleanly (used by ``hepgen tune`` for pruning).

    Under ``torchrun`` every process calls ``train`` with the same arguments; see the module
    docstring.
    """
    domain = domain_for(data)
    domain.check(data, config)
    return _train(data, config, Path(out_dir), resume, init_from, progress, tuple(callbacks), _Dist(config.device),
                  domain)


def _train(data, config: TrainConfig, out_dir: Path, resume, init_from, progress, callbacks, dist: _Dist, domain):
    if dist.main:
        out_dir.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    device = dist.device
    torch.manual_seed(config.seed)
    tr_idx, va_idx = _split(len(data), config.val_fraction, config.seed)
    train_data, val_data = data.subset(tr_idx), data.subset(va_idx)

    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    # rank 0 reads the files and hands their content to the others: out_dir need only exist
    # on rank 0's machine
    state = dist.broadcast(load_checkpoint(last_path) if dist.main and resume and last_path.is_file() else None)
    if state is not None and state.get("trainer") is None:
        raise ValueError(f"{last_path}: key 'trainer': expected the trainer state of an interrupted run, found none")
    if state is not None:
        generator = domain.from_payload(state, source=str(last_path))
        pre, model = generator.preprocessor, generator.model
        if dist.main:
            log.info("resuming from %s (epoch %d)", last_path, state["trainer"]["epoch"])
    else:
        pre = domain.fit_preprocessor(train_data, config)
        pre = domain.preprocessor_from_state(dist.broadcast(pre.state_dict()))
        model = domain.build_model(config, train_data, pre)
        if init_from is not None and dist.main:  # transfer learning; DDP copies rank 0's weights to the others
            source = load_checkpoint(init_from)
            try:
                model.load_state_dict(source["model"])
            except RuntimeError as err:
                raise ValueError(
                    f"{init_from}: key 'model': expected weights of a {config.family} model with "
                    f"{model.hparams}, found family {source['family']!r} with {source['hparams']} "
                    f"({str(err).splitlines()[0]})"
                ) from None
    model.to(device).train()
    select_by = config.select_by
    if select_by == "auto":
        select_by = "val_loss" if model.has_log_prob else "physics"

    lr = scaled_lr(config.lr, config.lr_scaling, dist.world)
    optimizers = model.configure_optimizers(lr, config.weight_decay)
    schedulers = {k: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=max(config.epochs, 1))
                  for k, o in optimizers.items()}
    amp_dtype, scaler = _amp_setup(config.amp, device, model)
    ema = None
    if config.ema:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(float(config.ema)), use_buffers=True)
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # after the EMA copy (a deep copy must not see the wrappers); DDP broadcasts rank 0's
        # weights, so all processes start equal
        ids = [device.index] if device.type == "cuda" else None
        model.set_ddp_wrappers({
            name: DistributedDataParallel(m, device_ids=ids, find_unused_parameters=model.ddp_find_unused_parameters)
            for name, m in _check_ddp_modules(model).items()
        })
        # different noise per process for families that draw from the global RNG
        torch.manual_seed(int(np.random.SeedSequence([config.seed, dist.rank]).generate_state(1)[0]))
    start_epoch, best_val, step, since_best, best_epoch = 0, math.inf, 0, 0, None
    if state is not None:
        tstate = state["trainer"]
        for k, o in optimizers.items():
            o.load_state_dict(tstate["optimizers"][k])
            schedulers[k].load_state_dict(tstate["schedulers"][k])
        if ema is not None and tstate.get("ema") is not None:
            ema.load_state_dict(tstate["ema"])
        if scaler is not None and tstate.get("scaler"):
            scaler.load_state_dict(tstate["scaler"])
        start_epoch, best_val, step = tstate["epoch"], tstate["best_val"], tstate["step"]
        since_best, best_epoch = tstate.get("since_best", 0), tstate.get("best_epoch")
        by_rank, cuda_by_rank = tstate.get("torch_rng_by_rank"), tstate.get("cuda_rng_by_rank")
        if dist.world == 1:
            cpu_rng, cuda_rng = tstate["torch_rng"], tstate.get("cuda_rng")
        elif by_rank is not None and len(by_rank) == dist.world:
            cpu_rng, cuda_rng = by_rank[dist.rank], (cuda_by_rank or [None] * dist.world)[dist.rank]
        else:  # resumed with another number of processes: a fresh, still reproducible stream
            torch.manual_seed(int(np.random.SeedSequence([config.seed, dist.rank, start_epoch]).generate_state(1)[0]))
            cpu_rng = cuda_rng = None
        if cpu_rng is not None:
            torch.set_rng_state(cpu_rng)
        if device.type == "cuda" and cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, device)

    meta = {
        **domain.meta(data, config),
        "train_config": dataclasses.asdict(config),
        "n_train": len(train_data),
        "selected_by": select_by,
        "world_size": dist.world,
        "lr_effective": lr,
    }
    raw_generator = domain.generator(model, pre, data, meta)
    eval_model = ema.module if ema is not None else model
    eval_generator = domain.generator(eval_model, pre, data, dict(meta))
    if dist.main:
        dump_config(config, out_dir / "config.yaml")

    c_train = torch.from_numpy(domain.conditions(pre, train_data)).to(device)
    c_val = torch.from_numpy(domain.conditions(pre, val_data)).to(device)
    x_val = torch.from_numpy(domain.features(pre, val_data, np.random.default_rng(config.seed + 1))).to(device)
    phys_data = val_data.subset(np.arange(min(config.n_eval, len(val_data))))
    log_path = out_dir / "train_log.csv"
    writer = _tensorboard(out_dir, config.tensorboard, start_epoch) if dist.main else None
    step_kwargs = {"scaler": scaler} if scaler is not None else {}

    def amp():
        # the whole step runs under autocast: backward ops take the dtype autocast chose for
        # their forward op anyway, and training_step owns both
        return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()

    columns: list[str] | None = None
    if dist.main and start_epoch > 0 and log_path.exists():
        columns = _truncate_log(log_path, start_epoch)

    t0 = time.monotonic()
    bar = tqdm(range(start_epoch, config.epochs), desc=f"training {config.family}", unit="epoch",
               disable=not (progress and dist.main), initial=start_epoch, total=config.epochs)
    stop_reason = None
    try:
        for epoch in bar:
            # fresh dequantisation noise every epoch (CaloFlow), seeded by epoch for resumability
            rng = np.random.default_rng([config.seed, epoch])
            x_train = torch.from_numpy(domain.features(pre, train_data, rng)).to(device)
            perm = torch.from_numpy(shard_indices(rng.permutation(len(x_train)), dist.rank, dist.world)).to(device)
            model.train()
            sums: dict[str, float] = {}  # per logged key: sum and number of steps that reported it
            counts: dict[str, int] = {}
            for s in range(0, len(perm), config.batch_size):
                idx = perm[s : s + config.batch_size]
                with amp():
                    logs = model.training_step(x_train[idx], c_train[idx], optimizers, step, config.grad_clip,
                                               **step_kwargs)
                for k, v in logs.items():
                    if not math.isfinite(v):
                        raise FloatingPointError(f"epoch {epoch}, step {step}: {k} became {v}; lower the lr")
                    sums[k] = sums.get(k, 0.0) + float(v)
                    counts[k] = counts.get(k, 0) + 1
                step += 1
                if ema is not None:
                    ema.update_parameters(model)
                if dist.world > 1 and step == 1:
                    _check_sync(model, dist)
                if config.max_steps is not None and step >= config.max_steps:
                    stop_reason = f"max_steps={config.max_steps} reached"
                    break
            for sched in schedulers.values():
                sched.step()
            if dist.world > 1:  # the logged training numbers are averages over all processes
                _check_sync(model, dist)
                gathered = dist.gather((sums, counts))
                keys = list(dict.fromkeys(k for g, _ in gathered for k in g))  # rank 0's order first
                sums = {k: sum(g.get(k, 0.0) for g, _ in gathered) for k in keys}
                counts = {k: sum(n.get(k, 0) for _, n in gathered) for k in keys}
            cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
            rng_by_rank = dist.gather((torch.get_rng_state(), cuda_rng)) if dist.world > 1 else None

            local_stop = None
            if dist.main:
                means = {k: v / counts[k] for k, v in sums.items()}
                record, local_stop, best_val, since_best, best_epoch = _end_of_epoch(
                    epoch, step, means, stop_reason, config, select_by, eval_model, eval_generator,
                    raw_generator, x_val, c_val, phys_data, optimizers, best_val, since_best, best_epoch, t0,
                    best_path, domain,
                )
                if columns is None:
                    columns = list(record) + (["val_physics"] if select_by == "physics" and "val_physics" not in record else [])
                    with log_path.open("w", newline="") as fh:
                        csv.writer(fh).writerow(columns)
                with log_path.open("a", newline="") as fh:
                    csv.writer(fh).writerow([_fmt(record.get(c, "")) for c in columns])
                if writer is not None:
                    for k, v in record.items():
                        if k not in ("epoch", "seconds") and isinstance(v, float) and math.isfinite(v):
                            writer.add_scalar(k, v, epoch + 1)
                    writer.flush()
                bar.set_postfix({k: f"{v:.4f}" for k, v in record.items() if k in ("train_loss", "val_loss", "val_physics")})

                tstate = {
                    "epoch": epoch + 1,
                    "step": step,
                    "best_val": best_val,
                    "best_epoch": best_epoch,
                    "since_best": since_best,
                    "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                    "schedulers": {k: sc.state_dict() for k, sc in schedulers.items()},
                    "ema": ema.state_dict() if ema is not None else None,
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "torch_rng": torch.get_rng_state(),
                    "torch_rng_by_rank": [r[0] for r in rng_by_rank] if rng_by_rank else None,
                    "cuda_rng": cuda_rng,
                    "cuda_rng_by_rank": [r[1] for r in rng_by_rank] if rng_by_rank and cuda_rng is not None else None,
                    "world_size": dist.world,
                }
                raw_generator.meta.update(epoch=epoch + 1, step=step)
                raw_generator.save(last_path, trainer_state=tstate)

                try:
                    for callback in callbacks:
                        callback(epoch + 1, dict(record))
                except StopTraining as stop:
                    local_stop = f"stopped by callback ({stop})"
                local_stop = stop_reason or local_stop
            stop_reason = dist.broadcast(local_stop)
            if stop_reason:
                if dist.main:
                    log.info("stopping: %s", stop_reason)
                break
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        model.set_ddp_wrappers(None)
    if dist.main and best_epoch is None:
        # no finite selection metric in this run (e.g. NaN validation loss): keep the last
        # weights — never a best.pt left in out_dir by an earlier run
        eval_generator.meta.update(epoch=raw_generator.meta.get("epoch"), step=step)
        eval_generator.save(best_path)
    payload = dist.broadcast(load_checkpoint(best_path) if dist.main else None)
    return domain.from_payload(payload, source=str(best_path))


def _check_sync(model, dist: _Dist) -> None:
    prints = dist.gather(_fingerprint(model))
    if any(p != prints[0] for p in prints):
        raise RuntimeError(
            f"data-parallel training of {model.family!r}: the processes' weights differ after an "
            f"optimiser step ({prints}); its training_step must call every module of ddp_modules() "
            "through self.wrapped(name) so that DistributedDataParallel averages the gradients"
        )


def _end_of_epoch(epoch, step, means, stop_reason, config, select_by, eval_model, eval_generator,
                  raw_generator, x_val, c_val, phys_data, optimizers, best_val, since_best, best_epoch, t0,
                  best_path, domain):
    """Rank 0's part of an epoch's end: validate, select, and decide about stopping early.

    Returns ``(record, stop_reason, best_val, since_best, best_epoch)``.
    """
    eval_model.eval()
    with torch.no_grad():
        vals = [float(eval_model.validation_loss(x_val[s : s + 4096], c_val[s : s + 4096]))
                for s in range(0, len(x_val), 4096)]
    val = float(np.mean(vals)) if vals else float("nan")
    record: dict = {"epoch": epoch + 1, "step": step}
    # each logged key averaged over the steps that reported it (a GAN's generator loss
    # exists on every n_critic-th step only)
    record.update({f"train_{k}": v for k, v in means.items()})
    record["val_loss"] = val
    last_epoch = epoch + 1 == config.epochs or stop_reason is not None
    if select_by == "physics" and ((epoch + 1) % config.eval_every == 0 or last_epoch):
        record["val_physics"] = domain.physics_score(eval_generator, phys_data, seed=config.seed)
    record["lr"] = next(iter(optimizers.values())).param_groups[0]["lr"]
    elapsed = time.monotonic() - t0
    record["seconds"] = round(elapsed, 1)

    metric = record.get("val_physics") if select_by == "physics" else val
    if metric is not None and math.isfinite(metric) and metric < best_val:
        best_val, since_best, best_epoch = float(metric), 0, epoch + 1
        eval_generator.meta.update(epoch=epoch + 1, step=step)
        eval_generator.save(best_path)
    elif metric is not None:
        since_best += 1
    stop = None
    if config.patience is not None and since_best >= config.patience:
        stop = f"no improvement of {select_by} in {config.patience} evaluations"
    if config.max_minutes is not None and elapsed > 60 * config.max_minutes:
        stop = stop or f"max_minutes={config.max_minutes} reached after {elapsed / 60:.1f} min"
    raw_generator.meta.update(best_epoch=best_epoch)
    return record, stop, best_val, since_best, best_epoch


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
