"""The interface every generative model family implements.

A model works in the *preprocessed* feature space (see
:class:`hepgen.domains.showers.preprocessing.ShowerPreprocessor`): it never sees MeV, files or
geometries, so one model class serves showers, jets or tabular data alike.  The
conversion to physical showers is done by :class:`hepgen.domains.showers.generator.ShowerGenerator`.

A family subclasses :class:`GenerativeModel`, registers itself with
:func:`register`, and implements

* ``loss(x, c)`` — the scalar training loss on a batch (features ``x: (B, D)``,
  conditions ``c: (B, C)``); adversarial families override ``training_step`` instead;
* ``sample(c, generator)`` — one sample per row of ``c``: ``(B, D)``;
* ``log_prob(x, c)`` — exact log-density ``(B,)`` where the family has one.
* ``noise_dim`` and ``sample_from_noise(c, z)`` — the sample as a deterministic function
  of standard-normal noise ``z: (B, noise_dim)``, where the family has one; needed by
  ONNX export and the fast sampling paths (:mod:`hepgen.domains.showers.inference`, docs/inference.md).

The trainer (:mod:`hepgen.train.trainer`) talks to a model only through
``configure_optimizers``, ``training_step``, ``validation_loss`` and, for data-parallel
training, ``ddp_modules`` / ``wrapped``; ``docs/training.md`` describes the contract.

Constructor arguments must be JSON-able (``hparams``) so that a checkpoint can rebuild
the model with ``build_model(family, **hparams)`` without unpickling code.
"""

from __future__ import annotations

import inspect
import math
from typing import ClassVar

import torch
from torch import nn

__all__ = ["GenerativeModel", "register", "build_model", "check_family_kind", "with_derived_hparams",
           "MODEL_FAMILIES"]

MODEL_FAMILIES: dict[str, type["GenerativeModel"]] = {}


def register(cls: type["GenerativeModel"]) -> type["GenerativeModel"]:
    """Class decorator: make a family available to ``build_model`` under ``cls.family``.

    A second class under a name already taken is refused (a silent overwrite would change
    what every checkpoint of that family loads as).
    """
    if cls.family in MODEL_FAMILIES and MODEL_FAMILIES[cls.family] is not cls:
        raise ValueError(f"model family {cls.family!r} is already registered by "
                         f"{MODEL_FAMILIES[cls.family].__module__}.{MODEL_FAMILIES[cls.family].__qualname__}")
    MODEL_FAMILIES[cls.family] = cls
    return cls


def check_family_kind(family: str, kind: str) -> None:
    """Refuse a registered family that generates another kind of data than ``kind`` (unknown
    names are left to :func:`build_model`, which lists the known ones).

    >>> check_family_kind("epic_fm", "showers")
    Traceback (most recent call last):
        ...
    ValueError: TrainConfig: key 'family': 'epic_fm' generates jets, the data are showers; families for showers: ['caloflow', 'flow', 'flow_matching', 'gan', 'vae']
    """
    cls = MODEL_FAMILIES.get(family)
    if cls is not None and cls.data_kind is None:
        raise ValueError(f"TrainConfig: key 'family': {family!r} is distilled from a trained model, not trained on "
                         f"data: hepgen distill TEACHER.pt --data FILE -o DIR")
    if cls is not None and cls.data_kind != kind:
        fams = sorted(f for f, c in MODEL_FAMILIES.items() if c.data_kind == kind)
        raise ValueError(f"TrainConfig: key 'family': {family!r} generates {cls.data_kind}, the data are "
                         f"{kind}; families for {kind}: {fams}")


def with_derived_hparams(family: str, given: dict, derived: dict) -> dict:
    """``given`` hyper-parameters plus those of the data-derived ones ``derived`` that the
    family's constructor accepts and ``given`` leaves unset (missing or None).

    A kind of data fills in what follows from its data (a shower geometry's ``n_layers`` and
    ``layer_sizes``, a jet file's ``n_particles``) so that presets stay valid for any data.

    >>> with_derived_hparams("vae", {"latent_dim": 8}, {"n_layers": 5, "n_particles": 30})
    {'latent_dim': 8}
    >>> with_derived_hparams("caloflow", {"n_layers": None}, {"n_layers": 5})["n_layers"]
    5
    """
    given = dict(given)
    if family not in MODEL_FAMILIES:
        return given
    params = inspect.signature(MODEL_FAMILIES[family].__init__).parameters
    return {**given, **{k: v for k, v in derived.items() if k in params and given.get(k) is None}}


def build_model(family: str, **hparams) -> "GenerativeModel":
    """Instantiate the registered family ``family`` with constructor arguments ``hparams``.

    Raises:
        ValueError: ``family`` is not registered (the message lists the known ones).
    """
    if family not in MODEL_FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(MODEL_FAMILIES)}")
    return MODEL_FAMILIES[family](**hparams)


class GenerativeModel(nn.Module):
    """Base class of conditional generative models on ``(B, n_features)`` tensors.

    Arguments:
        n_features: dimension D of the preprocessed data.
        n_conditions: dimension C of the preprocessed conditions.
    """

    family: ClassVar[str] = "base"
    has_log_prob: ClassVar[bool] = False
    #: what the family generates: ``"showers"`` (flat voxel vectors) or ``"jets"`` (flattened
    #: particle clouds with the multiplicity in condition column 0, :mod:`hepgen.models.epic`);
    #: the trainer and the zoo tests pick data and preprocessing by it.  None: the family
    #: generates what its teacher generates and is not trained on data (``student``).
    data_kind: ClassVar[str | None] = "showers"

    def __init__(self, n_features: int, n_conditions: int) -> None:
        super().__init__()
        self.n_features = int(n_features)
        self.n_conditions = int(n_conditions)
        self.hparams: dict = {"n_features": self.n_features, "n_conditions": self.n_conditions}

    def loss(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, c: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"model family {self.family!r} has no exact log-likelihood")

    # --- training interface (used by hepgen.train.trainer) -----------------------------
    #: passed to DistributedDataParallel: set True in a family whose training step leaves
    #: some parameters of a wrapped module without gradient (costs an extra graph traversal).
    ddp_find_unused_parameters: ClassVar[bool] = False

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The training loss; going through ``forward`` lets DistributedDataParallel wrap the model."""
        return self.loss(x, c)

    def configure_optimizers(self, lr: float, weight_decay: float) -> dict[str, torch.optim.Optimizer]:
        """Optimisers by name; the trainer gives each its own cosine LR schedule and checkpoints them.

        Default: one AdamW over all parameters.  Adversarial families return e.g.
        ``{"generator": ..., "critic": ...}``.
        """
        params = list(self.parameters())
        # fused: one kernel over all parameter tensors instead of ~10 small operations per tensor (torch's
        # default on CPU); 2.1 against 13.1 ms per step for the demo's caloflow (60 tensors, 1.36 M
        # parameters, 2 threads, 2026-12-02).  A resumed run keeps its checkpoint's setting.
        fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        return {"model": torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)}

    def training_step(self, x: torch.Tensor, c: torch.Tensor, optimizers: dict, step: int,
                      grad_clip: float | None, scaler: "torch.amp.GradScaler | None" = None) -> dict[str, float]:
        """One optimisation step on a batch; returns the numbers to log (at least ``"loss"``).

        Default: ``loss = self.wrapped("model")(x, c)`` (i.e. :meth:`forward`, through the
        DistributedDataParallel wrapper when training data-parallel) → backward →
        gradient-norm clipping → step.  Families with several optimisers (GANs) override it
        and call the modules of :meth:`ddp_modules` through :meth:`wrapped`.

        Arguments:
            x: ``(B, D)`` preprocessed features; c: ``(B, C)`` preprocessed conditions.
            optimizers: the dict of :meth:`configure_optimizers`.
            step: global optimiser-step counter (0-based; resuming at ``step`` repeats it).
            grad_clip: maximum gradient norm (None / 0: no clipping).
            scaler: a ``torch.amp.GradScaler`` when the trainer runs fp16 mixed precision
                (CUDA without bf16); the loss is scaled before backward and the gradients
                unscaled before clipping.  An override that does not accept ``scaler`` simply
                cannot be trained in fp16 (the trainer says so).
        """
        (opt,) = optimizers.values()
        loss = self.wrapped("model")(x, c)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {step}: training loss became {loss.item()}; lower the lr")
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(self.parameters(), grad_clip)
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(self.parameters(), grad_clip)
            scaler.step(opt)  # skips the step if the unscaled gradients are not finite
            scaler.update()
        return {"loss": float(loss.detach())}

    def validation_loss(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Scalar loss on held-out data for checkpoint selection; NaN where a family has none."""
        return self.loss(x, c)

    @torch.no_grad()
    def sanity_metric(self, x: torch.Tensor, c: torch.Tensor, generator: torch.Generator) -> float:
        """A number that a few steps of training on data like ``(x, c)`` should lower.

        Used by the parametrised zoo test to check that every family learns.  Default: the
        validation loss where it is finite; otherwise (adversarial families) the squared
        distance between the feature means of samples drawn at ``c`` and of ``x``, per
        feature.  Families with a better notion of progress override it.

        Arguments:
            x: ``(B, D)`` preprocessed features; c: ``(B, C)`` their conditions.
            generator: source of the samples' noise.
        """
        value = float(self.validation_loss(x, c))
        if math.isfinite(value):
            return value
        fake = self.sample(c, generator)
        return float((fake.mean(0) - x.mean(0)).square().mean())

    @classmethod
    def tiny_hparams(cls) -> dict:
        """Small hyper-parameters for the parametrised zoo test (``tests/test_zoo.py``)."""
        return {}

    def compile_regions(self, batch_size: int | None) -> bool:
        """Compile this model's own hot regions for training batches of ``batch_size`` rows (None:
        back to eager); True when it has any (``TrainConfig.compile``: the trainer compiles the whole
        loss of a model without any).  Default: every submodule with a ``compile_for_batch`` method,
        i.e. the spline couplings of :mod:`hepgen.models.flow` (``flow`` with ``coupling: true`` and
        ``spline_bins``, ``caloflow``).

        >>> GenerativeModel(3, 1).compile_regions(256)
        False
        """
        regions = [m for m in self.modules() if callable(getattr(m, "compile_for_batch", None))]
        for m in regions:
            m.compile_for_batch(batch_size)
        return bool(regions)

    # --- data-parallel training (hepgen.train.trainer under torchrun) -------------------
    def ddp_modules(self) -> dict[str, nn.Module]:
        """The submodules data-parallel training wraps in ``DistributedDataParallel``, by name.

        DDP averages gradients across processes only for computations that go through the
        *wrapper's* ``forward``; so every module listed here must be called in
        :meth:`training_step` as ``self.wrapped(name)(...)``, never directly.  Default:
        ``{"model": self}`` — the whole model, called through :meth:`forward` (the loss),
        which is what the default :meth:`training_step` does.  A GAN returns e.g.
        ``{"generator": self.generator, "critic": self.critic}`` and calls
        ``self.wrapped("critic")(x, c)`` and ``self.wrapped("generator")(z, c)`` wherever
        gradients are needed.  The listed modules must together hold every trained
        parameter, and no two may share parameters.
        """
        return {"model": self}

    def wrapped(self, name: str) -> nn.Module:
        """Module ``name`` of :meth:`ddp_modules` as :meth:`training_step` must call it: its
        ``DistributedDataParallel`` wrapper during data-parallel training, else the module."""
        wrappers = self.__dict__.get("_ddp_wrappers") or {}
        if name in wrappers:
            return wrappers[name]
        modules = self.ddp_modules()
        if name not in modules:
            raise KeyError(f"{self.family}: no module {name!r} in ddp_modules(); known: {sorted(modules)}")
        return modules[name]

    def set_ddp_wrappers(self, wrappers: dict[str, nn.Module] | None) -> None:
        """Install (or with None remove) the DDP wrappers :meth:`wrapped` returns; the trainer's job.

        Kept outside the module tree (plain attribute), so ``state_dict`` and
        ``parameters`` are unchanged and checkpoints keep their keys.
        """
        object.__setattr__(self, "_ddp_wrappers", dict(wrappers) if wrappers else {})

    # --- deterministic sampling from explicit noise (ONNX export, streamed sampling) -----
    @property
    def noise_dim(self) -> int | None:
        """Length of the standard-normal noise vector that :meth:`sample_from_noise` maps to
        one sample, or ``None`` if the family has no such map (export and the fast sampling
        paths of :mod:`hepgen.domains.showers.inference` then refuse it).  Families override both."""
        return None

    def sample_from_noise(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """A sample as a deterministic function of conditions and noise.

        Arguments:
            c: ``(B, C)`` preprocessed conditions.
            z: ``(B, noise_dim)`` standard-normal noise.

        Returns:
            ``(B, D)`` features; ``sample(c, g)`` should equal
            ``sample_from_noise(c, torch.randn(B, noise_dim, generator=g))``.
        """
        raise NotImplementedError(
            f"model family {self.family!r} does not implement sample_from_noise (noise → sample map); "
            "ONNX export and hepgen.domains.showers.inference need it"
        )

    def student_spec(self) -> tuple[str, dict]:
        """``(family, hparams)`` of the one-pass student ``hepgen distill`` trains for this model:
        the family and the hyper-parameters that follow from the teacher (besides
        ``n_features`` and ``n_conditions``).  Default: the feed-forward ``student`` of flat
        features with the teacher's noise width; particle-cloud families name an equivariant one.

        >>> from hepgen.models import build_model
        >>> build_model("flow", n_features=4, n_conditions=1).student_spec()
        ('student', {'noise_dim': 4})
        >>> build_model("epic_fm", n_features=12, n_conditions=2, n_particles=4).student_spec()
        ('jet_student', {'n_particles': 4})
        """
        return "student", {"noise_dim": self.noise_dim}

    def distill_error(self, x: torch.Tensor, c: torch.Tensor, x_teacher: torch.Tensor) -> torch.Tensor:
        """Regression error of a student's output ``x: (B, D)`` against its teacher's on the same
        noise and conditions ``c: (B, C)``: the mean absolute deviation (students of particle
        clouds override it to count real particles only).

        >>> GenerativeModel.distill_error(None, torch.zeros(2, 2), None, torch.tensor([[1.0, -1.0], [3.0, 0.0]]))
        tensor(1.2500)
        """
        return (x - x_teacher).abs().mean()

    def distill_loss(self, z: torch.Tensor, c: torch.Tensor, x_teacher: torch.Tensor) -> torch.Tensor:
        """:meth:`distill_error` of the student's output on noise ``z: (B, noise_dim)``."""
        return self.distill_error(self.sample_from_noise(c, z), c, x_teacher)
