"""The CaloChallenge classifier test (``cls-low`` / ``cls-high``): the network and its training loop.

Re-implements the DNN classifier of the CaloChallenge 2022 evaluation script
(``code/evaluate.py`` of github.com/CaloChallenge/homepage; Krause, Faucci Giannelli et al.,
arXiv:2410.21611) so that hepgen's numbers can sit beside the published tables.  Protocol,
with the reference's defaults as this module's defaults (:data:`PROTOCOL`):

* network: ``Linear(D, 2048)``, then ``n_layers = 2`` times ``Linear(2048, 2048)``, each
  followed by ``LeakyReLU`` (torch's default slope 0.01, as the reference) and
  ``Dropout(0)``; one output logit.  (The reference's ``--cls_n_layer 2`` counts the
  hidden-to-hidden layers: three hidden activations of width 2048 in all.)
* the two samples are balanced (the larger is subsampled, seeded) and each is split
  60 / 20 / 20 % into train / val / test (:func:`~hepgen.metrics.calochallenge_classifier.split_sizes`);
* Adam, learning rate 2e-4, batches of 1000 drawn from the shuffled train split,
  ``BCEWithLogitsLoss``, 50 epochs; after every epoch the val accuracy is measured and the
  weights of the best epoch (strictly higher accuracy; the reference's rule) are kept;
  training stops early at val accuracy 1;
* the best network's sigmoid outputs are calibrated by isotonic regression on the val
  split and the AUC and JSD of the calibrated test predictions are reported
  (:func:`~hepgen.metrics.calochallenge_classifier.protocol_scores`).

Inputs are not standardised (the reference feeds voxel / E_inc and log10 E_inc as they are).

Two options change the protocol and are recorded in the result's ``deviations`` list:
``min_steps`` (train for at least this many optimiser steps: small samples give few steps
per epoch) and ``standardise`` (scale every input column to zero mean and unit variance on
the train split).  See docs/metrics.md for what they do to a 10k-shower test.

Runs on the caller's torch thread count (``torch.set_num_threads`` is not touched); for a
given seed, thread count and device the result is reproducible.  The global torch random
state is left as it was.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import nn

from hepgen.metrics.calochallenge_classifier import (
    SPLIT,
    cls_high_inputs,
    cls_low_inputs,
    protocol_scores,
    split_sizes,
)

__all__ = ["PROTOCOL", "CaloChallengeDNN", "calochallenge_classifier_test", "calochallenge_levels"]

log = logging.getLogger(__name__)

PROTOCOL = {"epochs": 50, "batch_size": 1000, "lr": 2e-4, "hidden": 2048, "n_layers": 2, "dropout": 0.0,
            "negative_slope": 0.01}
MIN_PER_CLASS = 10  # at least 2 showers per class in val and test
_EVAL_BATCH = 10_000


class CaloChallengeDNN(nn.Module):
    """The reference's ``DNN``: (B, D) inputs → (B, 1) logits (no sigmoid: use ``BCEWithLogitsLoss``).

    >>> net = CaloChallengeDNN(5, hidden=8, n_layers=2)
    >>> net(torch.zeros(3, 5)).shape
    torch.Size([3, 1])
    >>> sum(isinstance(m, nn.Linear) for m in net.modules())
    4
    """

    def __init__(self, input_dim: int, hidden: int = 2048, n_layers: int = 2, dropout: float = 0.0,
                 negative_slope: float = 0.01):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(input_dim, hidden), nn.LeakyReLU(negative_slope), nn.Dropout(dropout)]
        for _ in range(n_layers):
            layers += [nn.Linear(hidden, hidden), nn.LeakyReLU(negative_slope), nn.Dropout(dropout)]
        layers.append(nn.Linear(hidden, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _check_inputs(real, generated) -> tuple[np.ndarray, np.ndarray]:
    real, generated = np.asarray(real, dtype=np.float64), np.asarray(generated, dtype=np.float64)
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"calochallenge classifier: expected real (N, D) and generated (M, D) inputs, "
                         f"found {real.shape} and {generated.shape}")
    for name, arr in (("real", real), ("generated", generated)):
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        if bad:
            raise ValueError(f"calochallenge classifier: {name} inputs contain NaN or inf in {bad} rows")
    return real, generated


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i:i + _EVAL_BATCH]).reshape(-1) for i in range(0, len(x), _EVAL_BATCH)])


def _train(model, x_tr, y_tr, x_va, y_va, n_epochs: int, batch_size: int, lr: float, gen: torch.Generator,
           label: str, on_epoch=None) -> tuple[dict, int, int, dict]:
    """Adam on shuffled batches; keep the weights of the epoch with the best val accuracy (the reference's rule).

    Returns ``(best weights, best epoch (1-based), optimiser steps, history)``.
    """
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_accuracy": []}
    best_acc, best_epoch, best_state, steps = -math.inf, 0, None, 0
    for epoch in range(1, n_epochs + 1):
        if on_epoch is not None:
            on_epoch(epoch, n_epochs)
        model.train()
        order = torch.randperm(len(x_tr), generator=gen).to(x_tr.device)
        total = 0.0
        for i in range(0, len(x_tr), batch_size):
            idx = order[i:i + batch_size]
            loss = loss_fn(model(x_tr[idx]).reshape(-1), y_tr[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
            steps += 1
        logits = _predict(model, x_va)
        val_loss = float(loss_fn(logits, y_va))
        val_acc = float(((logits > 0).float() == y_va).float().mean())
        history["train_loss"].append(total / len(x_tr))
        history["val_loss"].append(val_loss)
        history["val_accuracy"].append(val_acc)
        log.info("calochallenge %s epoch %d/%d: train loss %.4f, val loss %.4f, val accuracy %.4f",
                 label, epoch, n_epochs, total / len(x_tr), val_loss, val_acc)
        if val_acc > best_acc:
            best_acc, best_epoch = val_acc, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if val_acc == 1.0:  # the reference stops here too
            break
    return best_state, best_epoch, steps, history


def calochallenge_classifier_test(real, generated, *, epochs: int = 50, batch_size: int = 1000, lr: float = 2e-4,
                                  hidden: int = 2048, n_layers: int = 2, dropout: float = 0.0,
                                  negative_slope: float = 0.01, seed: int = 0, max_samples: int | None = None,
                                  min_steps: int | None = None, standardise: bool = False, device: str = "cpu",
                                  label: str = "", on_epoch=None) -> dict:
    """Train the CaloChallenge DNN on real (label 1) vs generated (label 0) inputs; AUC and JSD on the test split.

    Arguments:
        real: (N_r, D) inputs of the reference showers, e.g. ``cls_low_inputs(...)``.
        generated: (N_g, D) inputs of the generated showers.
        epochs, batch_size, lr, hidden, n_layers, dropout, negative_slope: the protocol's
            settings (defaults: :data:`PROTOCOL`, the reference's).
        seed: seeds the subsampling, the split, the initial weights and the batch order.
        max_samples: use at most this many showers per class (seeded subsample).
        min_steps: DEVIATION from the protocol: train for ``max(epochs, ceil(min_steps /
            steps per epoch))`` epochs.
        standardise: DEVIATION: scale every column by the train split's mean and std.
        device: torch device.
        label: a name for the log lines (e.g. ``"low_level"``).
        on_epoch: called as ``on_epoch(epoch, n_epochs)`` (1-based) before every epoch (progress).

    Returns:
        JSON-serialisable dict: ``auc``, ``auc_uncalibrated``, ``jsd`` (bits; may be < 0),
        ``jsd_uncalibrated``, ``accuracy`` (see
        :func:`~hepgen.metrics.calochallenge_classifier.protocol_scores`), ``best_epoch``
        (1-based), ``val_loss_initial`` and ``val_loss_best_epoch`` (val BCE in nats after
        the first and the chosen epoch: ln 2 = 0.6931 is a network that learnt nothing),
        ``epochs`` (run), ``steps`` (optimiser steps run), ``n_train``,
        ``n_val``, ``n_test`` (showers of both classes), ``settings``, ``deviations`` (list
        of strings, empty for the protocol) and ``history`` = per-epoch ``train_loss``,
        ``val_loss`` and ``val_accuracy``.

    Example (a tiny network on two well separated Gaussians):
        >>> rng = np.random.default_rng(0)
        >>> res = calochallenge_classifier_test(rng.normal(size=(500, 3)) + 2, rng.normal(size=(500, 3)),
        ...                                     epochs=20, batch_size=50, lr=1e-2, hidden=16)
        >>> res["auc"] > 0.95, res["n_train"], res["n_val"], res["n_test"]
        (True, 600, 200, 200)
    """
    real, generated = _check_inputs(real, generated)
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("hidden", hidden)):
        if int(value) < 1:
            raise ValueError(f"calochallenge classifier: {name} must be at least 1, found {value}")
    if min_steps is not None and int(min_steps) < 1:
        raise ValueError(f"calochallenge classifier: min_steps must be at least 1, found {min_steps}")
    n = min(len(real), len(generated), int(max_samples) if max_samples is not None else len(real))
    if n < MIN_PER_CLASS:
        raise ValueError(f"calochallenge classifier: needs at least {MIN_PER_CLASS} showers per sample, found {n}")
    rng = np.random.default_rng(seed)
    n_tr, n_va, _ = split_sizes(n, SPLIT)
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    for y, data in ((1.0, real), (0.0, generated)):
        rows = data[rng.permutation(len(data))[:n]]
        for name, chunk in zip(parts, np.split(rows, [n_tr, n_tr + n_va])):
            parts[name].append((chunk, np.full(len(chunk), y)))
    dev = torch.device(device)
    tensors = {}
    for name, chunks in parts.items():
        x = np.concatenate([c[0] for c in chunks])
        y = np.concatenate([c[1] for c in chunks])
        tensors[name] = [x, y]
    deviations = []
    if standardise:
        mu, sd = tensors["train"][0].mean(axis=0), tensors["train"][0].std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        for name in tensors:
            tensors[name][0] = (tensors[name][0] - mu) / sd
        deviations.append("standardise: inputs scaled to zero mean, unit variance on the train split")
    x_tr, y_tr, x_va, y_va, x_te, y_te = (torch.as_tensor(a, dtype=torch.float32, device=dev)
                                          for name in ("train", "val", "test") for a in tensors[name])
    steps_per_epoch = math.ceil(len(x_tr) / batch_size)
    n_epochs = int(epochs)
    if min_steps is not None:
        n_epochs = max(n_epochs, math.ceil(int(min_steps) / steps_per_epoch))
        deviations.append(f"min_steps={int(min_steps)}: {n_epochs} epochs of {steps_per_epoch} steps "
                          f"instead of {int(epochs)}")
    log.info("calochallenge %s: %d train / %d val / %d test showers, %d inputs, up to %d epochs of %d steps",
             label, len(x_tr), len(x_va), len(x_te), x_tr.shape[1], n_epochs, steps_per_epoch)
    # the seeded global stream (initial weights, dropout masks) is forked: the caller's is left alone
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        model = CaloChallengeDNN(x_tr.shape[1], hidden, n_layers, dropout, negative_slope).to(dev)
        best_state, best_epoch, steps, history = _train(model, x_tr, y_tr, x_va, y_va, n_epochs, batch_size, lr,
                                                        torch.Generator().manual_seed(seed), label, on_epoch)
    model.load_state_dict(best_state)
    p_va = torch.sigmoid(_predict(model, x_va)).double().cpu().numpy()
    p_te = torch.sigmoid(_predict(model, x_te)).double().cpu().numpy()
    scores = protocol_scores(y_te.cpu().numpy(), p_te, y_va.cpu().numpy(), p_va)
    settings = {"epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr), "hidden": int(hidden),
                "n_layers": int(n_layers), "dropout": float(dropout), "negative_slope": float(negative_slope),
                "seed": int(seed), "max_samples": max_samples, "min_steps": min_steps, "standardise": bool(standardise)}
    return {**scores, "best_epoch": best_epoch, "val_loss_initial": history["val_loss"][0],
            "val_loss_best_epoch": history["val_loss"][best_epoch - 1], "epochs": len(history["val_loss"]), "steps": steps,
            "n_train": len(x_tr), "n_val": len(x_va), "n_test": len(x_te), "settings": settings,
            "deviations": deviations, "history": history}


def calochallenge_levels(real_showers, real_energies, generated_showers, generated_energies, geometry,
                         threshold: float = 0.0, levels=("low_level", "high_level"), stages=None,
                         **settings) -> dict:
    """Run the test on ``cls-low`` (``low_level``) and ``cls-high`` (``high_level``) inputs.

    Arguments:
        real_showers, generated_showers: (N, n_voxels) energies in MeV.
        real_energies, generated_energies: (N,) incident energies in MeV.
        geometry: the voxel geometry (for the high-level features).
        threshold: voxels below this (MeV) are set to zero first (the reference's readout
            threshold; 0 by default: hepgen's data have none).
        levels: which of ``low_level``, ``high_level`` to run.
        stages: a :class:`hepgen._progress.Stages` told of each level (``calochallenge LEVEL``) and epoch.
        settings: keyword arguments of :func:`calochallenge_classifier_test`.

    Returns:
        level → the result of :func:`calochallenge_classifier_test`.
    """
    out = {}
    for level in levels:
        if stages is not None:
            stages.stage(f"calochallenge {level}")
            settings["on_epoch"] = stages.epochs(f"calochallenge {level}")
        if level == "low_level":
            a = cls_low_inputs(real_showers, real_energies, threshold)
            b = cls_low_inputs(generated_showers, generated_energies, threshold)
        elif level == "high_level":
            a = cls_high_inputs(real_showers, real_energies, geometry, threshold)[0]
            b = cls_high_inputs(generated_showers, generated_energies, geometry, threshold)[0]
        else:
            raise ValueError(f"calochallenge classifier level: expected 'low_level' or 'high_level', found {level!r}")
        out[level] = calochallenge_classifier_test(a, b, label=level, **settings)
    return out
