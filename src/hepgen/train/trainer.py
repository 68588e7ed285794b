"""Model-agnostic training loop with validation, best-checkpoint selection and resume.

Every epoch writes ``last.pt`` (model + optimiser + scheduler + RNG state: an
interrupted run continues from it with ``resume=True``) and, when the validation loss
improved, ``best.pt``.  Per-epoch losses go to ``train_log.csv``.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from hepgen.config import TrainConfig, dump_config
from hepgen.data.formats import ShowerData
from hepgen.data.transforms import ShowerPreprocessor
from hepgen.models import build_model
from hepgen.pipeline import ShowerGenerator
from hepgen.train.checkpoint import load_checkpoint

__all__ = ["train"]

log = logging.getLogger(__name__)


def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(val_fraction * n))) if n > 1 else 0
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def train(
    data: ShowerData,
    config: TrainConfig,
    out_dir,
    resume: bool = False,
    init_from=None,
    progress: bool = True,
) -> ShowerGenerator:
    """Train ``config.family`` on ``data``; returns the generator with the best validation loss.

    Arguments:
        data: training showers (a geometry must be attached or given to ``read_showers``).
        config: the training configuration.
        out_dir: folder for ``last.pt``, ``best.pt``, ``train_log.csv`` and ``config.yaml``.
        resume: continue from ``out_dir/last.pt`` if it exists.
        progress: show a progress bar.
    """
    if data.geometry is None:
        raise ValueError("training data has no geometry: pass a binning XML / geometry JSON")
    if len(data) < 2:
        raise ValueError(f"need at least 2 training showers, found {len(data)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    torch.manual_seed(config.seed)
    layer_sizes = [s.stop - s.start for s in data.geometry.layer_slices]
    tr_idx, va_idx = _split(len(data), config.val_fraction, config.seed)
    train_data, val_data = data.subset(tr_idx), data.subset(va_idx)

    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    state = load_checkpoint(last_path) if resume and last_path.is_file() else None
    if state is not None:
        generator = ShowerGenerator.from_payload(state, source=str(last_path))
        pre, model = generator.preprocessor, generator.model
        log.info("resuming from %s (epoch %d)", last_path, state["trainer"]["epoch"])
    else:
        pre = ShowerPreprocessor(
            layer_sizes, config.conditions, noise_level=config.noise_level, threshold=config.threshold
        ).fit(train_data.showers, train_data.incident_energies, train_data.conditions, seed=config.seed)
        n_cond = 1 + sum(np.asarray(train_data.conditions[k]).reshape(len(train_data), -1).shape[1] for k in config.conditions)
        model = build_model(config.family, n_features=pre.n_features, n_conditions=n_cond, **config.model)
        if init_from is not None:  # transfer learning: start from another run's weights
            source = load_checkpoint(init_from)
            try:
                model.load_state_dict(source["model"])
            except RuntimeError as err:
                raise ValueError(
                    f"{init_from}: key 'model': expected weights of a {config.family} model with "
                    f"{model.hparams}, found family {source['family']!r} with {source['hparams']} "
                    f"({str(err).splitlines()[0]})"
                ) from None
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(config.epochs, 1))
    start_epoch, best_val, step = 0, math.inf, 0
    if state is not None:
        tstate = state["trainer"]
        opt.load_state_dict(tstate["optimizer"])
        sched.load_state_dict(tstate["scheduler"])
        start_epoch, best_val, step = tstate["epoch"], tstate["best_val"], tstate["step"]
        torch.set_rng_state(tstate["torch_rng"])

    e_inc = data.incident_energies.reshape(-1)
    meta = {
        "energy_range": [float(e_inc.min()), float(e_inc.max())],
        "condition_ranges": {
            k: [np.asarray(v).min(axis=0).tolist(), np.asarray(v).max(axis=0).tolist()]
            for k, v in data.conditions.items()
            if k in config.conditions
        },
        "train_config": dataclasses.asdict(config),
        "n_train": int(len(train_data)),
    }
    generator = ShowerGenerator(model, pre, data.geometry, meta)
    dump_config(config, out_dir / "config.yaml")

    c_train = torch.from_numpy(pre.transform_conditions(train_data.incident_energies, train_data.conditions))
    c_val = torch.from_numpy(pre.transform_conditions(val_data.incident_energies, val_data.conditions))
    x_val = torch.from_numpy(
        pre.transform(val_data.showers, val_data.incident_energies, np.random.default_rng(config.seed + 1))
    )
    log_path = out_dir / "train_log.csv"
    if start_epoch == 0 or not log_path.exists():
        with log_path.open("w", newline="") as fh:
            csv.writer(fh).writerow(["epoch", "step", "train_loss", "val_loss", "lr", "seconds"])

    t0 = time.monotonic()
    bar = tqdm(range(start_epoch, config.epochs), desc=f"training {config.family}", unit="epoch",
               disable=not progress, initial=start_epoch, total=config.epochs)
    for epoch in bar:
        # fresh dequantisation noise every epoch (CaloFlow), seeded by epoch for resumability
        rng = np.random.default_rng([config.seed, epoch])
        x_train = torch.from_numpy(pre.transform(train_data.showers, train_data.incident_energies, rng))
        perm = torch.from_numpy(rng.permutation(len(x_train)))
        model.train()
        losses = []
        for s in range(0, len(perm), config.batch_size):
            idx = perm[s : s + config.batch_size]
            loss = model.loss(x_train[idx], c_train[idx])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch}: training loss became {loss.item()}; lower the lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            losses.append(loss.item())
            step += 1
        sched.step()
        model.eval()
        with torch.no_grad():
            val = float(np.mean([model.loss(x_val[s : s + 4096], c_val[s : s + 4096]).item()
                                 for s in range(0, len(x_val), 4096)]))
        train_loss = float(np.mean(losses))
        elapsed = time.monotonic() - t0
        with log_path.open("a", newline="") as fh:
            csv.writer(fh).writerow([epoch + 1, step, f"{train_loss:.6f}", f"{val:.6f}", f"{opt.param_groups[0]['lr']:.3e}", f"{elapsed:.1f}"])
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val:.4f}")
        if val < best_val:
            best_val = val
            generator.save(best_path)
        tstate = {
            "epoch": epoch + 1,
            "step": step,
            "best_val": best_val,
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        generator.save(last_path, trainer_state=tstate)
        if config.max_minutes is not None and elapsed > 60 * config.max_minutes:
            log.info("stopping after %.1f min (max_minutes=%s)", elapsed / 60, config.max_minutes)
            break
    bar.close()
    if best_path.is_file():
        return ShowerGenerator.load(best_path)
    return generator
