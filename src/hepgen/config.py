"""Typed configurations with YAML load/dump: the home of hepgen's defaults.

:class:`TrainConfig` holds the defaults every kind of data shares; what differs by kind (the
default family and conditions, a preset) comes from that kind's domain
(``default_family``, ``default_conditions``, ``default_config()`` in ``hepgen.domains``).
``noise_level`` and ``threshold`` configure the shower preprocessing; other kinds ignore them.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable, Union

import yaml

from hepgen._io import atomic_path
from hepgen.data.geometry import SYMMETRIES


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's floats: ``1e-5`` is a number, not the string
    ``'1e-5'`` (PyYAML follows YAML 1.1, whose floats need a dot: ``1.0e-5``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*)\.?[0-9_]*(?:[eE][-+]?[0-9]+)$"""),
    list("-+0123456789"),
)


def _yaml(text: str):
    """``text`` as YAML (see :class:`_Loader`).

    >>> _yaml("lr: 1e-3")["lr"] * 2
    0.002
    """
    return yaml.load(text, Loader=_Loader)

__all__ = ["TrainConfig", "DemoConfig", "apply_overrides", "key_values", "load_config", "dump_config", "preset"]


@dataclass
class TrainConfig:
    """How to train a model.

    Arguments:
        family: model family (see ``hepgen.models.MODEL_FAMILIES``); must generate the data's kind.
        model: family hyper-parameters (constructor keyword arguments).
        conditions: extra condition datasets to condition on besides the incident energy.
        epochs: number of passes over the training set (the LR schedule spans them).
        max_minutes: stop after this much wall-clock training time (None: no limit).
        fit_epochs_to_time: with ``max_minutes``: after the first whole epoch, shorten the run to
            the epochs that fit into 90 % of the time limit at that epoch's pace (never more than
            ``epochs``), and the cosine schedule with it, so that a timed run ends with a decayed
            learning rate instead of being cut early in its schedule.  The number is chosen once,
            saved in ``last.pt`` (a resumed run keeps it) and logged; it depends on the machine's
            speed, so two runs on different machines may train different numbers of epochs.  Off
            by default (the run is then a function of the config and the data alone).
        batch_size, lr, weight_decay, grad_clip: optimiser settings (AdamW, cosine LR).
        val_fraction: held-out fraction for the validation loss and best-checkpoint choice.
        seed: seeds the split, initialisation, dequantisation noise and batch order.
        threads: torch CPU threads (None: torch default).
        noise_level, threshold: dequantisation noise width and zero-suppression threshold (MeV)
            of the :class:`~hepgen.domains.showers.preprocessing.ShowerPreprocessor`.
        deposit_bound: the preprocessor's ``deposit_bound`` (None: plain standardisation;
            B: no training deposit standardised above B — keeps sparse outer voxels inside
            the splines' ``[-5, 5]``; issue 14).
        energy_bound: the preprocessor's ``energy_bound`` (None: off; B_e: the 10⁻⁴ and 1 − 10⁻⁴
            quantiles of each energy feature standardised within ±B_e — keeps the heavy tails
            of deep layers' energy fractions inside the energy flow's splines; issue 14).
        occupancy: the preprocessor's ``occupancy`` (True: each layer's lit-cell count is a
            feature beside the energy fractions, and sampled showers keep that many cells per
            layer; issue 14).  False keeps the feature vector of earlier checkpoints.
        symmetry: a symmetry of the showers' distribution that generated showers are given
            exactly: ``none`` (default), ``rotations`` (the binning's azimuthal rotations) or
            ``dihedral`` (rotations and mirror images α → −α); each generated shower is turned
            to an orientation drawn uniformly (the preprocessor's ``orientations``; cylindrical
            binnings only).  Right for a particle along the axis without a magnetic field
            (GFlash, CaloChallenge data sets 2 and 3); the training log says how far the
            training showers' cell means are from the symmetry.  Issue 14: on the demo's data
            it took the low-level classifier AUC from 0.55-0.60 to 0.51-0.52.
        augment_symmetry: with ``symmetry``, also turn each training shower to a random
            orientation every epoch (data augmentation).
        ema: decay of an exponential moving average of the weights (e.g. 0.999); the averaged
            weights are the ones validated, selected and written to ``best.pt``.  None: off.
        amp: mixed precision — bf16 autocast on CPU, fp16 autocast with a gradient scaler on
            CUDA.  Off by default: on CPUs without native bf16 it is slower, not faster.
        compile: ``torch.compile`` (inductor; needs a C++ compiler on CPU) for full training batches,
            compiled once, at the first step, within ``max_minutes``; the epoch's short last batch and
            the validation run eagerly.  A model with its own compiled regions
            (:meth:`~hepgen.models.GenerativeModel.compile_regions`: the spline couplings of ``flow``
            and ``caloflow``) compiles those; any other model, its whole training loss.  Families
            with the default
            :meth:`~hepgen.models.GenerativeModel.training_step` only (likelihood and flow-matching
            families; adversarial steps need double backward for their gradient penalty), and not
            with data-parallel training.  If the compilation fails the run goes on eagerly and logs
            why.  Off by default: the compilation costs ~1 min, which pays off in runs of several
            minutes (docs/training.md); the demo turns it on.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).
        select_by: checkpoint selection — ``"val_loss"`` (validation loss, lower is better),
            ``"physics"`` (mean separation power of the CaloChallenge high-level features of
            ``n_eval`` showers generated at the validation conditions against the validation
            showers), or ``"auto"``: val_loss for families with a likelihood, physics otherwise.
        eval_every: compute the physics metric every this many epochs (and at the last one).
        n_eval: showers generated for the physics metric.
        patience: stop after this many evaluations without improvement (None: never).
        max_steps: stop after this many optimiser steps (None: no limit).
        lr_scaling: learning-rate rule for data-parallel training with W processes:
            ``"none"``, ``"linear"`` (lr × W) or ``"sqrt"`` (lr × √W).
        tensorboard: also write the per-epoch numbers as TensorBoard events (``out_dir/tb``).
    """

    family: str = "flow"
    model: dict[str, Any] = field(default_factory=dict)
    conditions: list[str] = field(default_factory=list)
    epochs: int = 60
    max_minutes: float | None = None
    fit_epochs_to_time: bool = False
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    val_fraction: float = 0.1
    seed: int = 0
    threads: int | None = None
    noise_level: float = 1e-3
    threshold: float = 1e-2
    deposit_bound: float | None = None
    energy_bound: float | None = None
    occupancy: bool = False
    symmetry: str = "none"
    augment_symmetry: bool = False
    ema: float | None = None
    amp: bool = False
    compile: bool = False
    device: str = "cpu"
    select_by: str = "auto"
    eval_every: int = 1
    n_eval: int = 2000
    patience: int | None = None
    max_steps: int | None = None
    lr_scaling: str = "none"
    tensorboard: bool = True

    def __post_init__(self) -> None:
        choices = {"select_by": ("auto", "val_loss", "physics"), "device": ("cpu", "cuda", "auto"),
                   "lr_scaling": ("none", "linear", "sqrt"), "symmetry": SYMMETRIES}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"TrainConfig: key {key!r}: expected one of {allowed}, found {getattr(self, key)!r}")
        if self.ema is not None and not 0.0 < float(self.ema) < 1.0:
            raise ValueError(f"TrainConfig: key 'ema': expected a decay in (0, 1) or None, found {self.ema!r}")
        if self.augment_symmetry and self.symmetry == "none":
            raise ValueError("TrainConfig: key 'augment_symmetry': expected a symmetry to augment with, "
                             "found symmetry 'none'")
        if self.fit_epochs_to_time and self.max_minutes is None:
            raise ValueError("TrainConfig: key 'fit_epochs_to_time': expected a time limit 'max_minutes' to fit "
                             "the epochs to, found max_minutes None")
        for key in ("eval_every", "n_eval", "batch_size"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"TrainConfig: key {key!r}: expected an integer >= 1, found {getattr(self, key)!r}")


def preset(name: str) -> "TrainConfig":
    """A packaged training preset, ``src/hepgen/configs/<name>.yaml`` (e.g. ``"caloflow"``, ``"gan"``)."""
    res = files("hepgen") / "configs" / f"{name}.yaml"
    if not res.is_file():
        known = sorted(p.name[:-5] for p in (files("hepgen") / "configs").iterdir() if p.name.endswith(".yaml"))
        raise ValueError(f"unknown preset {name!r}; known: {known}")
    return _from_dict(TrainConfig, _yaml(res.read_text()) or {}, f"preset {name}.yaml")


def preset_names() -> list[str]:
    """The packaged presets' names (``src/hepgen/configs/*.yaml``).

    >>> "caloflow" in preset_names() and "gan" in preset_names()
    True
    """
    return sorted(p.name[:-5] for p in (files("hepgen") / "configs").iterdir() if p.name.endswith(".yaml"))


def family_config(family: str) -> "TrainConfig":
    """What ``hepgen train --family FAMILY`` starts from: the family's packaged preset when there
    is one (``configs/<family>.yaml``, tuned hyper-parameters), else the family's code defaults.

    >>> family_config("caloflow").model["shape_flow"]["coupling"], family_config("flow").model
    (True, {})
    """
    return preset(family) if family in preset_names() else TrainConfig(family=family)


def starting_config(config: Union["TrainConfig", str, os.PathLike, None] = None, *, family: str | None = None,
                    default: Callable[[], "TrainConfig"] = lambda: TrainConfig()) -> "TrainConfig":
    """The configuration a training run starts from, the one rule of ``hepgen train`` and
    :func:`hepgen.api.train_generator`.

    In order: a :class:`TrainConfig` as given; a YAML file (a name ending in ``.yaml``/``.yml``
    or containing a path separator); a packaged preset's name; with no ``config``, the named
    ``family``'s preset (or its code defaults, :func:`family_config`); else ``default()``, the
    kind of data's default (``domain.default_config``).

    >>> starting_config("gan").family, starting_config(family="epic_fm").family
    ('gan', 'epic_fm')
    >>> starting_config(default=lambda: TrainConfig(family="vae")).family
    'vae'
    """
    if isinstance(config, TrainConfig):
        return config
    if config is not None:
        text = str(config)
        return load_config(config) if text.endswith((".yaml", ".yml")) or os.sep in text else preset(text)
    return family_config(family) if family else default()


def _demo_train() -> "TrainConfig":
    # The CaloFlow two-stage flow with spline coupling layers: at equal CPU budget it beat every
    # other family of the zoo by far (benchmarks/bench_zoo.py; README "Model zoo").  One epoch
    # of 54k showers took 34 s on 2 idle cores (10 epochs: AUC 0.594 / 0.589, demo 6.7 min);
    # max_minutes (checked after every batch) is the safety stop.  fit_epochs_to_time: on a machine
    # where 16 epochs do not fit into 90 % of the limit (2026-12-02 on this 2-core machine: 43 s per
    # epoch, the limit cut the run after 11 epochs with the learning rate at 22 % of the start: AUC
    # 0.664 / 0.585), the run and its cosine are shortened to the epochs that fit; where they fit
    # (≤ 32 s per epoch) nothing changes.  A smaller shape flow (hidden 128, 4 spline bins) with
    # the lit-cell counts (occupancy): on a 2-core AMD EPYC without AVX-512 (2026-12-02; the
    # preset's shape flow: 58-65 s per epoch, 7 fitted epochs, fp32 `compile` sampling 5.0k/s,
    # AUC 0.581 / 0.565, 4.5x the simulator) it fitted 10 epochs, sampled 9.4k showers/s and gave
    # 0.572 / 0.540 (mean over classifier seeds 1-3: 0.569 / 0.558 against 0.589 / 0.573; in one
    # benchmark run 12.0x against 4.2x the simulator; docs/models.md, "On a CPU without AVX-512").
    # The 4-bin spline is what makes an epoch cheaper (the spline, not the matrix products,
    # dominates training: width 128 left an epoch at 53-56 s, 4 bins brought it to 40-45 s); width
    # 128 halves the sampler's matrix products; the counts cost ~10 ms per 1000 showers (kept_largest).
    # compile: the spline couplings' training pass fused by torch.compile (FusedRQSTransform): on that
    # machine an epoch took 30-32 s against 42-52, after a one-off compilation of 57 s, so 15 epochs
    # fitted instead of 10 (AUC means over classifier seeds 1-3: 0.566 / 0.529 against 0.569 / 0.558;
    # a fresh-clone make demo, 14 epochs: 0.571 / 0.547; docs/training.md, "Compiled training").
    # symmetry dihedral + augment_symmetry: every generated shower turned to a random one of the
    # binning's 12 orientations, every training shower too (the GFlash reference is symmetric; the
    # flow broke the symmetry in the cells' joint distribution): on a faster day of the same machine
    # (15-17 s per compiled epoch, all 20 fitted) AUC means 0.521 / 0.534 against 0.566 / 0.529 before;
    # 40 epochs (a 15-minute budget) 0.519 / 0.526 (docs/models.md, "Orientation").  epochs 40 is a
    # ceiling: where an epoch takes 16 s about 32 fit into the 9.5 minutes, at 30 s about 17.
    # shape_flow mix 4: a learned linear map of all 384 shape features before every coupling layer
    # (LinearMix), so a shower that is wider in one layer can stay wider in the next (the coupling
    # layers on random halves kept the radial centres' cross-layer correlation only in part).  On
    # 2026-12-03 (50k test showers per side): 12 fixed epochs AUC 0.519 / 0.557 against 0.535 / 0.622
    # without; the demo fitted 27 epochs (18 s each, against 14 s: 36 without) and gave 0.513 / 0.548
    # against 0.538 / 0.566, val loss 0.355 against 0.368, 11.4x the simulator (docs/models.md,
    # "Mixing all features between coupling layers").  spline_bins 6 (was 4): in three pairs of demo
    # runs 6 bins gave the lower AUCs (high-level -0.009, -0.006, -0.014), but cost 15 % of the fp32
    # sampling rate, which took a CPU without bf16 below 10x; since the spline sampler keeps its
    # features in working orders (2026-12-07) the fp32 rate has room (docs/models.md, "Six spline bins").
    base = preset("caloflow")
    model = copy.deepcopy(base.model)
    model["shape_flow"].update(hidden_features=128, spline_bins=6, mix=4)
    return dataclasses.replace(base, model=model, epochs=40, max_minutes=9.5, fit_epochs_to_time=True,
                               occupancy=True, compile=True, symmetry="dihedral", augment_symmetry=True)


@dataclass
class DemoConfig:
    """The ``hepgen demo`` job: simulate → train → sample → evaluate → report."""

    n_train: int = 60_000
    #: 50k test showers (and as many generated): hepgen's classifier is starved at 10k per side.
    #: Issue 14, 2026-12-03, a model of the demo's settings (lr 2e-3, 36 epochs) against 10k / 20k
    #: / 50k reference showers per side: AUC low 0.507 / 0.518 / 0.526, high 0.513 / 0.534 / 0.563,
    #: while two independent reference samples stay at 0.495-0.498 / 0.504-0.509 (docs/models.md,
    #: "How many showers the classifier needs").  `hepgen evaluate` on 50k + 50k: 70 s, 2.4 GB here.
    n_test: int = 50_000
    energy_range: tuple[float, float] = (1_000.0, 100_000.0)
    seed: int = 1
    train: TrainConfig = field(default_factory=_demo_train)
    #: keyword arguments of :func:`hepgen.train.distill.distill` for a one-pass student to
    #: sample with (e.g. ``{minutes: 3}``); None (default) samples with the trained model.
    distill: dict | None = None
    #: how the demo samples (and times) its showers: a path of
    #: :func:`hepgen.domains.showers.inference.prepare_path` (``fp32``, ``bf16``, ``fp16``, ``int8``,
    #: ``compile``, ``compile-bf16``) through the fast
    #: :class:`~hepgen.domains.showers.inference.ShowerSampler`, or ``auto`` (default):
    #: ``compile-bf16`` on CPUs with native bf16 (AVX512-BF16/AMX), else ``compile`` (the same
    #: function as fp32).  The showers evaluated are the ones that path produced, so the report's
    #: AUCs include the path's rounding (docs/inference.md, "Sampling paths").  The one-off
    #: compilation is timed apart; if inductor cannot compile (no C++ compiler) the demo samples
    #: with fp32 and records why.
    sampling_path: str = "auto"
    #: Geant4 showers timed in the demo calorimeter's Geant4 twin (preset ``demo``) for
    #: ``speedup_vs_geant4``, stratified over ``energy_range`` (needs ``hepgen[geant4]``; 0: skip).
    geant4_n: int = 20
    #: stop the Geant4 timing after this many seconds of showers (the estimate then uses fewer).
    geant4_max_seconds: float = 25.0


def _from_dict(cls, data: dict, source: str):
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{source}: unknown {cls.__name__} keys {unknown}; known: {sorted(names)}")
    kwargs = dict(data)
    if cls is DemoConfig and isinstance(kwargs.get("train"), dict):
        kwargs["train"] = _from_dict(TrainConfig, kwargs["train"], source)
    if "energy_range" in kwargs:
        kwargs["energy_range"] = tuple(float(x) for x in kwargs["energy_range"])
    return cls(**kwargs)


def _key_value(item: str, option: str):
    """``(KEY, VALUE)`` of one ``KEY=VALUE`` string, ``VALUE`` read as YAML; a malformed item is a
    ``ValueError`` naming ``option`` and the item."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ValueError(f"{option} {item}: expected KEY=VALUE")
    try:
        return key, _yaml(text)
    except yaml.YAMLError as err:
        raise ValueError(f"{option} {item}: VALUE is not valid YAML ({err})") from None


def key_values(items, option: str = "--set") -> dict:
    """``KEY=VALUE`` strings as a dict, each ``VALUE`` read as YAML; a malformed item is a
    ``ValueError`` naming ``option``.

    >>> key_values(["network=transformer", "global_dim=8"])
    {'network': 'transformer', 'global_dim': 8}
    >>> key_values(["hidden"], "--student-hparam")
    Traceback (most recent call last):
        ...
    ValueError: --student-hparam hidden: expected KEY=VALUE
    """
    return dict(_key_value(item, option) for item in items)


def apply_overrides(config: TrainConfig, overrides) -> TrainConfig:
    """``config`` with ``KEY=VALUE`` overrides applied (``VALUE`` read as YAML); ``model.X`` sets a
    family hyper-parameter.  An unknown key is a ``ValueError`` naming it.

    >>> c = apply_overrides(TrainConfig(), ["epochs=5", "model.hidden_features=128", "conditions=[incident_theta]"])
    >>> c.epochs, c.model, c.conditions
    (5, {'hidden_features': 128}, ['incident_theta'])
    >>> apply_overrides(TrainConfig(), ["epoch=5"])
    Traceback (most recent call last):
        ...
    ValueError: --set epoch=5: unknown TrainConfig key 'epoch'
    """
    data = dataclasses.asdict(config)
    for item in overrides:
        key, value = _key_value(item, "--set")
        head, _, sub = key.partition(".")
        if head not in data:
            raise ValueError(f"--set {item}: unknown TrainConfig key {head!r}")
        if sub:
            if head != "model":
                raise ValueError(f"--set {item}: only model.* takes a sub-key, found {head!r}")
            # model.a.b=V sets a nested key (e.g. model.shape_flow.transforms=6)
            node = data["model"] = dict(data["model"])
            *parents, leaf = sub.split(".")
            for name in parents:
                child = node.get(name)
                if child is not None and not isinstance(child, dict):
                    raise ValueError(f"--set {item}: model key {name!r} is {child!r}, not a mapping")
                node[name] = dict(child or {})
                node = node[name]
            node[leaf] = value
        else:
            data[head] = value
    return _from_dict(TrainConfig, data, "--set")


def load_config(path: Union[str, os.PathLike], cls=TrainConfig):
    """Read a YAML file into ``cls``; unknown keys are an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        data = _yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of {cls.__name__} keys, found {type(data).__name__}")
    return _from_dict(cls, data, str(path))


def dump_config(config, path: Union[str, os.PathLike]) -> None:
    data = dataclasses.asdict(config)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(yaml.safe_dump(data, sort_keys=False))
