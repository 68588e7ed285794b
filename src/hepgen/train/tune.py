"""Hyper-parameter search over :class:`~hepgen.config.TrainConfig` with Optuna (``hepgen tune``).

A *search space* is a YAML mapping from a config key to a distribution, applied onto a
base ``TrainConfig``; keys are ``TrainConfig`` fields (``lr``, ``batch_size``, ...) or
``model.<name>`` for a constructor argument of the model family::

    lr:                    {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
    batch_size:            {type: int, low: 128, high: 512, step: 128}
    model.hidden_features: {type: categorical, choices: [128, 256]}

Every trial trains a model into ``<out>/trial_<number>/`` and is scored by a *physics
objective* on a held-out sample (never seen by the trainer), through the kind's domain
(:class:`hepgen.domains.base.Domain`):

* ``selection`` — every kind: ``Domain.selection_score(generator, held_out, seed)``, the
  number the trainer selects checkpoints by (for event images the paper's ``Σ −log p`` of
  KS tests on jet multiplicity, jet pT and summed jet mass; for showers the separation power);
* the kind's own ``Domain.tune_objectives``, scored by ``Domain.tune_score(generator,
  held_out, objective, seed)``: for showers ``sep_power`` (mean separation power of the
  CaloChallenge high-level features, what ``hepgen evaluate`` reports as
  ``separation_power_mean``) and ``ks_nll`` (``Σ −log p`` of KS tests on those features, the
  figure of merit used to tune whole-event GANs at NERSC), :mod:`hepgen.domains.showers.score`.

All are minimised; ``auto`` (the default of :func:`run_study` and ``hepgen tune``) is the
kind's first own objective, else ``selection`` (:func:`objectives_of`).  A kind may also check
and prepare the held-out sample (``Domain.prepare_holdout``: showers need the same voxels,
every trained condition, and are read into memory when the training files are streamed).
After every epoch the trainer's callback reports an intermediate
value (the validation loss, or the validation physics score when the trainer selects
by physics) to ``trial.report``; when the pruner says so the callback raises
:class:`~hepgen.train.trainer.StopTraining` and the trial ends as ``PRUNED``.

The study lives in a storage shared by all workers: SQLite (``sqlite:///<out>/study.db``)
by default, or any SQLAlchemy URL (``postgresql://user@host/db``), or ``journal:PATH``
(Optuna's journal file, safer than SQLite on network filesystems).  Workers open it with
``load_if_exists=True``, so the same ``hepgen tune`` command started on many machines
adds trials to one study; Optuna's storage hands out distinct trial numbers.

References:
    T. Akiba et al., "Optuna: A Next-generation Hyperparameter Optimization Framework",
    KDD 2019, arXiv:1907.10902.
    J. Bergstra et al., "Algorithms for Hyper-Parameter Optimization" (TPE), NeurIPS 2011.
    L. Li et al., "Hyperband", JMLR 18 (2018), arXiv:1603.06560.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hepgen._extras import needs_extra
from hepgen._io import atomic_path
from hepgen.config import TrainConfig
from hepgen.domains import domain_of_data
from hepgen.models import MODEL_FAMILIES
from hepgen.train import trainer

with needs_extra("tune", "hepgen tune (Optuna)"):  # the optional extra hepgen[tune]: without it this
    import optuna  # module stops with the one-line message (hepgen.cli imports it only for `hepgen tune`)

__all__ = [
    "SELECTION",
    "objectives_of",
    "PRUNERS",
    "PRUNE_ON",
    "SAMPLERS",
    "ParamSpec",
    "apply_params",
    "best_summary",
    "check_space",
    "load_space",
    "make_pruner",
    "make_sampler",
    "make_storage",
    "open_study",
    "parse_space",
    "run_study",
    "split_holdout",
    "storage_url_for_display",
    "suggest_params",
    "write_best",
]

log = logging.getLogger(__name__)

SELECTION = "selection"  # every kind: Domain.selection_score
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "hyperband", "none")
PRUNE_ON = ("auto", "val_loss", "val_physics")

_TYPES = ("float", "int", "categorical")
_SPEC_KEYS = {"float": {"type", "low", "high", "log", "step"},
              "int": {"type", "low", "high", "log", "step"},
              "categorical": {"type", "choices"}}
_ATTR_OBJECTIVE, _ATTR_SPACE = "hepgen_objective", "hepgen_space"


# --- search space ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamSpec:
    """One dimension of the search space.

    Arguments:
        name: the config key: a ``TrainConfig`` field or ``model.<argument>``.
        type: ``float``, ``int`` or ``categorical``.
        low, high: bounds (inclusive) for ``float`` / ``int``.
        log: sample uniformly in log space (needs ``low > 0``).
        step: discretisation step (not together with ``log``).
        choices: the values of a ``categorical`` parameter (None, bool, int, float or str).
    """

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None

    def suggest(self, trial: optuna.trial.BaseTrial):
        """Draw this parameter from ``trial`` (``suggest_float`` / ``suggest_int`` / ``suggest_categorical``)."""
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))

    def to_dict(self) -> dict:
        """The YAML form of this spec (what :func:`parse_space` reads back)."""
        if self.type == "categorical":
            return {"type": self.type, "choices": list(self.choices)}
        d = {"type": self.type, "low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            d["step"] = self.step
        return d


def _config_fields() -> dict[str, Any]:
    """Tunable ``TrainConfig`` fields → their default (dict/list fields are not scalars)."""
    out = {}
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if not isinstance(default, (dict, list)):
            out[f.name] = default
    return out


def _number(value, where: str, integer: bool) -> float:
    """A bound from YAML → float/int.  PyYAML reads ``1e-4`` (no dot) as a string: accept it."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{where}: expected a number, found {value!r}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{where}: expected a number, found {value!r}") from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, found {value!r}")
    if integer:
        if float(value) != int(value):
            raise ValueError(f"{where}: expected an integer, found {value!r}")
        return int(value)
    return float(value)


def _parse_one(name: str, spec, source: str, fields: dict[str, Any]) -> ParamSpec:
    where = f"{source}: key {name!r}"
    if not isinstance(name, str) or not name:
        raise ValueError(f"{source}: expected string keys, found {name!r}")
    if name.startswith("model."):
        if not name[len("model."):] or "." in name[len("model."):]:
            raise ValueError(f"{where}: expected 'model.<argument>' (one level), found {name!r}")
    elif name not in fields:
        raise ValueError(f"{where}: not a tunable TrainConfig field or 'model.<argument>'; "
                         f"known fields: {sorted(fields)}")
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected a mapping like {{type: float, low: ..., high: ...}}, "
                         f"found {spec!r}")
    kind = spec.get("type")
    if kind not in _TYPES:
        raise ValueError(f"{where}: 'type' must be one of {list(_TYPES)}, found {kind!r}")
    unknown = sorted(set(spec) - _SPEC_KEYS[kind])
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown} for type {kind}; allowed: {sorted(_SPEC_KEYS[kind])}")
    default = fields.get(name)
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, (list, tuple)) or len(choices) == 0:
            raise ValueError(f"{where}: 'choices' must be a non-empty list, found {choices!r}")
        for c in choices:
            if c is not None and not isinstance(c, (bool, int, float, str)):
                raise ValueError(f"{where}: choices must be None, bool, int, float or str "
                                 f"(Optuna stores them), found {c!r}")
        if len(set(map(repr, choices))) != len(choices):
            raise ValueError(f"{where}: 'choices' has duplicates: {list(choices)}")
        return ParamSpec(name, kind, choices=tuple(choices))
    if isinstance(default, bool):
        raise ValueError(f"{where}: {name} is a bool field; use type: categorical, choices: [true, false]")
    if kind == "float" and isinstance(default, int):
        raise ValueError(f"{where}: {name} is an integer field, found type: float; use type: int")
    integer = kind == "int"
    for key in ("low", "high"):
        if key not in spec:
            raise ValueError(f"{where}: type {kind} needs '{key}'")
    low = _number(spec["low"], f"{where}: 'low'", integer)
    high = _number(spec["high"], f"{where}: 'high'", integer)
    if not low <= high:
        raise ValueError(f"{where}: expected low <= high, found low={low}, high={high}")
    use_log = spec.get("log", False)
    if not isinstance(use_log, bool):
        raise ValueError(f"{where}: 'log' must be true or false, found {use_log!r}")
    step = spec.get("step")
    if step is not None:
        step = _number(step, f"{where}: 'step'", integer)
        if not step > 0:
            raise ValueError(f"{where}: 'step' must be > 0, found {step}")
        if use_log:
            raise ValueError(f"{where}: 'step' and 'log: true' cannot be combined")
        n_steps = (high - low) / step
        if abs(n_steps - round(n_steps)) > 1e-9 * max(1.0, n_steps):
            raise ValueError(f"{where}: high - low = {high - low} is not a multiple of step = {step}")
    if use_log and not low > 0:
        raise ValueError(f"{where}: 'log: true' needs low > 0, found low={low}")
    return ParamSpec(name, kind, low=low, high=high, log=use_log, step=step)


def parse_space(spec: Mapping, source: str = "<search space>") -> dict[str, ParamSpec]:
    """Validate a search-space mapping (see the module docstring) into ``{key: ParamSpec}``.

    Arguments:
        spec: ``{config key: {type: float|int|categorical, ...}}``.
        source: named in error messages (the YAML file's path).

    Raises:
        ValueError naming ``source`` and the key: unknown config keys, unknown spec keys,
        missing or non-numeric bounds, ``low > high``, ``log`` with ``low <= 0``, ``log``
        with ``step``, a float range for an integer field, empty or unstorable choices.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"{source}: expected a mapping of config keys to distributions, "
                         f"found {type(spec).__name__}")
    if not spec:
        raise ValueError(f"{source}: the search space is empty")
    fields = _config_fields()
    return {name: _parse_one(name, value, source, fields) for name, value in spec.items()}


def load_space(path: str | os.PathLike) -> dict[str, ParamSpec]:
    """Read a search-space YAML file (see :func:`parse_space`); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: search-space file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    return parse_space(data if data is not None else {}, source=str(path))


def check_space(space: Mapping[str, ParamSpec], config: TrainConfig) -> None:
    """Check the ``model.<argument>`` keys against the constructor of ``config.family``.

    Raises:
        ValueError naming the key and the family's arguments.
    """
    families = {config.family}
    if "family" in space and space["family"].type == "categorical":
        families = set(space["family"].choices)
    for family in sorted(map(str, families)):
        if family not in MODEL_FAMILIES:
            raise ValueError(f"search space / config: unknown model family {family!r}; "
                             f"known: {sorted(MODEL_FAMILIES)}")
        params = inspect.signature(MODEL_FAMILIES[family].__init__).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        allowed = sorted(set(params) - {"self", "n_features", "n_conditions"})
        for name in space:
            arg = name[len("model."):] if name.startswith("model.") else None
            if arg is not None and not takes_any and arg not in allowed:
                raise ValueError(f"search space: key {name!r}: family {family!r} has no argument "
                                 f"{arg!r}; its arguments: {allowed}")


def suggest_params(trial: optuna.trial.BaseTrial, space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """Draw every parameter of ``space`` from ``trial`` → ``{key: value}``."""
    return {name: p.suggest(trial) for name, p in space.items()}


def apply_params(base: TrainConfig, params: Mapping[str, Any]) -> TrainConfig:
    """A copy of ``base`` with ``params`` set (``model.<argument>`` keys go into ``config.model``).

    Example:
        >>> apply_params(TrainConfig(lr=1e-3), {"lr": 2e-3, "model.transforms": 4}).model
        {'transforms': 4}
    """
    config = copy.deepcopy(base)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for name, value in params.items():
        if name.startswith("model."):
            config.model[name[len("model."):]] = value
        elif name in fields:
            setattr(config, name, value)
        else:
            raise ValueError(f"apply_params: unknown key {name!r}; expected a TrainConfig field or model.<argument>")
    return config


def objectives_of(domain) -> tuple[str, ...]:
    """The objectives a kind's data can be tuned on: the kind's own ``tune_objectives`` (the
    first is ``auto``'s choice; showers: ``sep_power``, ``ks_nll``), then ``selection``."""
    return (*tuple(getattr(domain, "tune_objectives", ())), SELECTION)


def split_holdout(data, fraction: float, seed: int):
    """Seeded split of a container of any kind (``len`` and ``subset``) into ``(train, held-out)``;
    the held-out part scores trials and is never trained on."""
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction: expected 0 < f < 1, found {fraction}")
    n_hold = round(fraction * len(data))
    if n_hold < 2 or len(data) - n_hold < 2:
        raise ValueError(f"holdout fraction {fraction} of {len(data)} entries leaves {n_hold} held-out and "
                         f"{len(data) - n_hold} training entries; need at least 2 of each")
    perm = np.random.default_rng(seed).permutation(len(data))
    return data.subset(np.sort(perm[n_hold:])), data.subset(np.sort(perm[:n_hold]))


# --- study plumbing -------------------------------------------------------------------------
def make_sampler(name: str = "tpe", seed: int | None = 0) -> optuna.samplers.BaseSampler:
    """``tpe`` (multivariate, constant liar for parallel workers) or ``random``, seeded.

    Workers sharing a study should get different seeds (e.g. the Slurm array index), or
    they draw the same random start-up points.
    """
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"sampler: expected one of {list(SAMPLERS)}, found {name!r}")


def make_pruner(name: str = "median", n_startup_trials: int = 3, n_warmup_steps: int = 2,
                max_resource: int | str = "auto") -> optuna.pruners.BasePruner:
    """``median`` (MedianPruner), ``hyperband`` (HyperbandPruner over epochs) or ``none``.

    Arguments:
        n_startup_trials: median: trials that run to the end before any is pruned.
        n_warmup_steps: median: the first epoch at which a trial can be pruned (the trainer
            reports epochs from 1, so 2 lets every trial finish its first epoch).
        max_resource: hyperband: epochs of a full trial (``auto``: from the first finished trial).
    """
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_resource)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"pruner: expected one of {list(PRUNERS)}, found {name!r}")


def storage_url_for_display(url: str) -> str:
    """The storage URL with any password masked (for logs and ``best.json``)."""
    if url.startswith("journal:"):
        return url
    import sqlalchemy.engine

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display
        return "<unparsable storage URL>"


def make_storage(url: str | None, out_dir: str | os.PathLike, heartbeat: int | None = None,
                 sqlite_timeout: float = 120.0):
    """Open (creating tables if needed) the study storage.

    Arguments:
        url: ``None`` → ``sqlite:///<out_dir>/study.db``; any SQLAlchemy URL
            (``postgresql://user:pw@host/db`` needs ``pip install psycopg2-binary``);
            ``journal:PATH`` → Optuna's append-only journal file (file locks that also work
            on NFS).
        out_dir: the tune output folder.
        heartbeat: seconds between worker heartbeats (RDB storages only): a trial whose
            worker died (e.g. a pre-empted Slurm job) is marked FAIL after 2 missed beats
            instead of staying RUNNING forever.  Optuna marks this feature experimental.
        sqlite_timeout: seconds a SQLite writer waits for the file lock before failing.

    Returns:
        ``(storage, url)`` with the URL actually used.
    """
    out_dir = Path(out_dir)
    if url is None:
        out_dir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(out_dir / 'study.db').resolve()}"
    if url.startswith("journal:"):
        path = Path(url[len("journal:"):])
        if not path.name:
            raise ValueError(f"--storage: expected journal:PATH, found {url!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend), url
    import sqlalchemy.engine
    import sqlalchemy.exc

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise ValueError(f"--storage: expected an SQLAlchemy URL (sqlite:///PATH, postgresql://USER@HOST/DB) "
                         f"or journal:PATH, found {url!r}") from None
    engine_kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # several processes write one file: wait for the lock instead of "database is locked"
        engine_kwargs["connect_args"] = {"timeout": sqlite_timeout}
    kwargs: dict[str, Any] = {}
    if heartbeat:
        kwargs = {"heartbeat_interval": int(heartbeat), "grace_period": 2 * int(heartbeat)}
    # Two workers starting together may both try to create the tables; the loser sees an
    # OperationalError / IntegrityError.  Retry a few times (the second attempt finds them).
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs), url
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as err:
            if attempt == 4:
                raise ValueError(f"--storage {storage_url_for_display(url)}: cannot open ({err.orig})") from None
            time.sleep(0.5 * (attempt + 1))
        except ImportError as err:
            raise ValueError(f"--storage {storage_url_for_display(url)}: database driver missing ({err})") from None
    raise AssertionError("unreachable")  # pragma: no cover


def open_study(storage, study_name: str, sampler: optuna.samplers.BaseSampler,
               pruner: optuna.pruners.BasePruner, objective: str,
               space: Mapping[str, ParamSpec] | None = None) -> optuna.Study:
    """Create or join (``load_if_exists=True``) the study; refuse to join one with another objective.

    The objective and the search space are stored as study attributes by whichever
    worker comes first.  A worker started with another objective raises ``ValueError``
    (mixing scores of two objectives in one study would make "best" meaningless).  A
    search space with other bounds or keys logs a warning and goes on (narrowing a range
    during a study is legitimate); one that changes a key's type, its ``log`` flag or its
    categorical choices raises ``ValueError``, since Optuna refuses such a parameter at the
    first trial.
    """
    if not isinstance(objective, str) or not objective:
        raise ValueError(f"objective: expected a name, found {objective!r}")
    study = optuna.create_study(storage=storage, study_name=study_name, sampler=sampler, pruner=pruner,
                                direction="minimize", load_if_exists=True)
    wanted = {_ATTR_OBJECTIVE: objective}
    if space is not None:
        wanted[_ATTR_SPACE] = {k: p.to_dict() for k, p in space.items()}
    attrs = study.user_attrs
    for key, value in wanted.items():
        if key not in attrs:
            study.set_user_attr(key, value)
        elif attrs[key] != json.loads(json.dumps(value)):
            if key == _ATTR_SPACE:
                _check_compatible(attrs[key], json.loads(json.dumps(value)), study_name)
                log.warning("study %r was created with the search space %s; this worker samples %s",
                            study_name, attrs[key], value)
                continue
            raise ValueError(f"study {study_name!r}: was created with {key} = {attrs[key]!r}, this worker "
                             f"asks for {value!r}; use another --study-name")
    return study


def _check_compatible(old: dict, new: dict, study_name: str) -> None:
    """Raise if ``new`` changes what Optuna cannot change within a study (type, log, choices)."""
    for name in sorted(set(old) & set(new)):
        a, b = old[name], new[name]
        for field_name in ("type", "log", "choices"):
            if a.get(field_name) != b.get(field_name):
                raise ValueError(f"study {study_name!r}: search-space key {name!r}: was created with "
                                 f"{field_name} = {a.get(field_name)!r}, this worker has {b.get(field_name)!r}; "
                                 f"Optuna cannot change that within a study: use another --study-name")


class _TrialObjective:
    """The callable handed to ``study.optimize``: train, prune via the trainer callback, score."""

    def __init__(self, domain, data, holdout, space, base, out_dir, objective, prune_on, train_fn, n_bins, seed):
        self.domain = domain
        self.train_fn = train_fn or trainer.train
        self.stop = trainer.StopTraining
        self.data, self.holdout, self.space, self.base = data, holdout, space, base
        self.out_dir, self.objective, self.n_bins, self.seed = Path(out_dir), objective, n_bins, seed
        self.prune_on = prune_on

    def _prune_key(self, config: TrainConfig) -> str:
        """The record key reported to the pruner: ``auto`` follows the trainer's checkpoint selection."""
        if self.prune_on != "auto":
            return self.prune_on
        select_by = config.select_by
        if select_by == "auto":  # as the trainer resolves it
            family = MODEL_FAMILIES.get(config.family)
            select_by = "val_loss" if family is not None and family.has_log_prob else "physics"
        return "val_physics" if select_by == "physics" else "val_loss"

    def __call__(self, trial: optuna.Trial) -> float:
        params = suggest_params(trial, self.space)
        config = apply_params(self.base, params)
        trial_dir = self.out_dir / f"trial_{trial.number}"
        if trial_dir.is_dir() and any(trial_dir.iterdir()):
            # a study never reuses a number: these files belong to another study in this folder
            raise ValueError(f"{trial_dir} already holds files of another study's trial {trial.number}; "
                             f"give each study its own output folder (-o)")
        trial.set_user_attr("out_dir", str(trial_dir))
        log.info("trial %d: training into %s with %s", trial.number, trial_dir, params)
        t0 = time.monotonic()
        pruned: dict[str, Any] = {}
        key = self._prune_key(config)

        def report(epoch: int, record: dict) -> None:
            value = record.get(key)
            if value is None or not math.isfinite(float(value)):
                return
            trial.report(float(value), step=int(epoch))
            if trial.should_prune():
                pruned.update(epoch=int(epoch), value=float(value))
                raise self.stop(f"pruned by Optuna at epoch {epoch} ({key} = {float(value):.4g})")

        generator = self.train_fn(self.data, config, trial_dir, progress=False, callbacks=(report,))
        if pruned:
            log.info("trial %d: pruned at epoch %d (%s = %.4g) after %.1f s", trial.number, pruned["epoch"],
                     key, pruned["value"], time.monotonic() - t0)
            self._write_trial(trial_dir, trial.number, params, "PRUNED", None, {**pruned, "pruned_on": key})
            raise optuna.TrialPruned(f"{key} = {pruned['value']:.4g} at epoch {pruned['epoch']}")
        ho = self.holdout
        if self.objective == SELECTION:
            score = float(self.domain.selection_score(generator, ho, self.seed))
        else:
            score = float(self.domain.tune_score(generator, ho, self.objective, self.seed, n_bins=self.n_bins))
        checkpoint = trial_dir / "best.pt"
        if not checkpoint.is_file():
            checkpoint = trial_dir / "last.pt"
        trial.set_user_attr("checkpoint", str(checkpoint))
        log.info("trial %d: %s = %.5g on %d held-out %s (%.1f s)", trial.number, self.objective, score,
                 len(ho), self.domain.kind, time.monotonic() - t0)
        self._write_trial(trial_dir, trial.number, params, "COMPLETE", score, {"checkpoint": str(checkpoint)})
        return score

    def _write_trial(self, trial_dir: Path, number: int, params, state, value, extra) -> None:
        record = {"number": number, "state": state, "objective": self.objective, "value": value,
                  "params": params, **extra}
        with atomic_path(trial_dir / "trial.json") as tmp:
            Path(tmp).write_text(json.dumps(record, indent=2) + "\n")


def best_summary(study: optuna.Study, storage_url: str | None = None) -> dict | None:
    """The best finished trial as a JSON-able dict, or None when no trial has completed yet."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    counts = {s.name: states.count(s) for s in optuna.trial.TrialState if states.count(s)}
    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if not complete:
        return None
    best = study.best_trial
    return {
        "study_name": study.study_name,
        "storage": storage_url_for_display(storage_url) if storage_url else None,
        "objective": study.user_attrs.get(_ATTR_OBJECTIVE),
        "direction": "minimize",
        "best_trial": best.number,
        "value": best.value,
        "params": best.params,
        "checkpoint": best.user_attrs.get("checkpoint"),
        "out_dir": best.user_attrs.get("out_dir"),
        "n_trials": counts,
    }


def write_best(study: optuna.Study, path: str | os.PathLike, storage_url: str | None = None) -> dict | None:
    """Write :func:`best_summary` to ``path`` atomically (nothing when no trial has completed)."""
    summary = best_summary(study, storage_url)
    if summary is not None:
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def run_study(
    data,
    space: Mapping[str, ParamSpec],
    base_config: TrainConfig,
    out_dir: str | os.PathLike,
    n_trials: int | None = 10,
    *,
    timeout: float | None = None,
    total_trials: int | None = None,
    storage: str | None = None,
    study_name: str = "hepgen",
    sampler: str = "tpe",
    sampler_seed: int | None = 0,
    pruner: str = "median",
    pruner_kwargs: Mapping[str, Any] | None = None,
    objective: str = "auto",
    prune_on: str = "auto",
    holdout=None,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    n_bins: int = 30,
    heartbeat: int | None = None,
    catch: Sequence[type[Exception]] = (FloatingPointError,),
    train_fn: Callable | None = None,
) -> tuple[optuna.Study, dict | None]:
    """Run (or join) a study: ``n_trials`` trials in this process, then write ``<out>/best.json``.

    Arguments:
        data: the training data, a container of any registered kind (showers need a geometry
            attached).
        space: from :func:`load_space` / :func:`parse_space`.
        base_config: the config the sampled parameters are applied onto.
        out_dir: trials train into ``out_dir/trial_<number>/``; ``best.json`` (and the default
            SQLite ``study.db``) go here.  Workers on several machines need it on a shared filesystem.
        n_trials: trials run by *this* worker (None: until ``timeout`` / ``total_trials``).
        timeout: seconds after which this worker starts no new trial.
        total_trials: stop this worker once the study holds this many COMPLETE + PRUNED trials
            (counting all workers' trials).
        storage: see :func:`make_storage` (default ``sqlite:///<out_dir>/study.db``).
        study_name: workers with the same name and storage share one study.
        sampler, sampler_seed: see :func:`make_sampler`.
        pruner, pruner_kwargs: see :func:`make_pruner`.
        objective: one of :func:`objectives_of` the data's kind (``selection`` for any kind;
            ``sep_power``, ``ks_nll`` for showers) or ``auto`` (the kind's first), on the
            held-out sample (minimised).
        prune_on: record key reported to the pruner after each epoch: ``val_loss``,
            ``val_physics`` or ``auto`` (what the trainer selects checkpoints by:
            ``val_physics`` for ``select_by: physics`` and, with ``select_by: auto``, for
            families without a likelihood).  Validation losses of trials that change the
            preprocessing (``noise_level``, ``threshold``, ``deposit_bound``, ``energy_bound``, ``occupancy``) or the family are not comparable:
            prune on ``val_physics`` for those.
        holdout: held-out data of the same kind; default: a seeded ``holdout_fraction`` split of ``data``.
        seed: seeds the held-out split and the sampling of generated showers.
        n_bins: histogram bins for ``sep_power``.
        heartbeat: see :func:`make_storage`.
        catch: exceptions that mark a trial FAIL and let the study go on (a diverging lr).
        train_fn: replaces :func:`hepgen.train.trainer.train` (tests); same signature.

    Returns:
        ``(study, best summary or None)``.
    """
    domain = domain_of_data(data)
    choices = objectives_of(domain)
    if objective == "auto":
        objective = choices[0]
    if objective not in choices:
        raise ValueError(f"objective {objective!r}: {domain.kind} data are scored by one of {choices} "
                         "(or auto)")
    if prune_on not in PRUNE_ON:
        raise ValueError(f"prune_on: expected one of {list(PRUNE_ON)}, found {prune_on!r}")
    if n_trials is not None and n_trials < 1:
        raise ValueError(f"n_trials: expected >= 1, found {n_trials}")
    check_space(space, base_config)
    out_dir = Path(out_dir).resolve()  # trial paths in the study and best.json do not depend on a worker's cwd
    out_dir.mkdir(parents=True, exist_ok=True)
    if holdout is None:
        data, holdout = split_holdout(data, holdout_fraction, seed)
    elif (held_kind := domain_of_data(holdout).kind) != domain.kind:
        raise ValueError(f"held-out data: expected {domain.kind} like the training data, found {held_kind}")
    prepare = getattr(domain, "prepare_holdout", None)
    if prepare is not None:  # the kind's own checks, e.g. same voxels, conditions present, in memory
        holdout = prepare(data, holdout, base_config)
    store, url = make_storage(storage, out_dir, heartbeat=heartbeat)
    study = open_study(store, study_name, make_sampler(sampler, sampler_seed),
                       make_pruner(pruner, **dict(pruner_kwargs or {})), objective, space)
    log.info("study %r in %s: %d trials so far; this worker runs %s trial(s) (sampler %s, seed %s; pruner %s)",
             study_name, storage_url_for_display(url), len(study.trials), n_trials, sampler, sampler_seed, pruner)
    callbacks = []
    if total_trials is not None:
        callbacks.append(optuna.study.MaxTrialsCallback(
            total_trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)))
    fn = _TrialObjective(domain, data, holdout, space, base_config, out_dir, objective, prune_on, train_fn, n_bins,
                         seed)
    study.optimize(fn, n_trials=n_trials, timeout=timeout, catch=tuple(catch), callbacks=callbacks)
    summary = write_best(study, out_dir / "best.json", url)
    return study, summary
