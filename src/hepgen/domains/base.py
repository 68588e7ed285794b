"""The domain layer: everything the trainer, the CLI and evaluation know about a kind of data.

A *kind of data* (calorimeter showers, jet particle clouds, event images, tabular event
variables, …) is served by one :class:`Domain` object registered under its ``kind`` name.
The trainer (:mod:`hepgen.train.trainer`), the command line and ``hepgen evaluate`` talk to
a kind only through this protocol and :class:`hepgen.models.GenerativeModel`: adding a kind
means adding one sub-package ``hepgen/domains/<kind>/`` that implements :class:`Domain` and
calls :func:`register_domain`, plus one import line in :mod:`hepgen.domains`.

Every checkpoint and every generated file carries its ``kind``; :func:`domain_of_checkpoint`
picks the domain from it (shower checkpoints written before kinds existed have none and are
showers).

Built-in kinds are *declared* (:func:`declare_domain`: kind, package, container class) and
their package is imported the first time the kind is needed, in the manner of plug-in entry
points: training showers does not import the event-image, tabular or anomaly code (nor the
libraries they pull in).

This module imports nothing from hepgen: it sits at the bottom of the domain layer.

Example:
    >>> class Toy:
    ...     kind = "toy"
    ...     data_type = list
    >>> _ = register_domain(Toy())
    >>> get_domain("toy").kind
    'toy'
    >>> register_domain(Toy())
    Traceback (most recent call last):
        ...
    ValueError: domain kind 'toy' is already registered (Toy)
    >>> unregister_domain("toy")
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import Any, Protocol, runtime_checkable

from hepgen._extras import MissingExtraError

__all__ = [
    "Domain",
    "TrainedGenerator",
    "Preprocessor",
    "register_domain",
    "unregister_domain",
    "get_domain",
    "kinds",
    "domain_of_data",
    "domain_of_file",
    "domain_of_checkpoint",
    "call_with_options",
    "check_kind",
    "declare_domain",
]



@runtime_checkable
class Preprocessor(Protocol):
    """A fitted, invertible map between physical data and model features.

    ``state_dict()`` must be JSON-able (lists, numbers, strings) so that a checkpoint can be
    read with ``torch.load(weights_only=True)``; ``<Class>.from_state(state)`` rebuilds it.
    """

    n_features: int

    def state_dict(self) -> dict: ...


@runtime_checkable
class TrainedGenerator(Protocol):
    """A trained model with the preprocessing that maps its samples to physical units.

    Attributes:
        kind: the domain kind it belongs to (stored in its checkpoint as ``kind``).
        model: the :class:`hepgen.models.GenerativeModel`.
        preprocessor: the fitted :class:`Preprocessor`.
        meta: JSON-able facts about training (ranges, config, epoch, …).
    """

    kind: str
    model: Any
    preprocessor: Any
    meta: dict

    def save(self, path: str | os.PathLike, trainer_state: dict | None = None) -> None:
        """Write a weights-only checkpoint with ``kind`` (atomically)."""
        ...

    def sample_like(self, data: Any, seed: int = 0) -> Any:
        """A generated sample of the domain's container type at ``data``'s conditions."""
        ...


@runtime_checkable
class Domain(Protocol):
    """What a kind of data provides to the trainer, the CLI and evaluation.

    Attributes:
        kind: short name, e.g. ``"showers"``; stored in checkpoints and generated files.
        data_type: the in-memory container class (e.g. :class:`hepgen.data.formats.ShowerData`).
        default_family: the model family ``hepgen train`` uses when none is named.
        default_conditions: condition names used when the config names none.

    Methods (``data`` is an instance of ``data_type``, ``config`` a
    :class:`hepgen.config.TrainConfig`, ``pre`` the domain's preprocessor):

    * ``accepts_file(path) -> bool``: does this file hold this kind (a cheap sniff)?
    * ``read(path, **options) -> data``: read and validate a file of this kind;
      ``write(path, data)``: write one atomically, with the attribute ``kind``.
    * ``check(data, config)``: refuse unusable training data or a family of another kind,
      with a one-line ``ValueError``.
    * ``fit_preprocessor(data, config) -> pre`` / ``preprocessor_from_state(state) -> pre``.
    * ``build_model(config, data, pre) -> GenerativeModel``: with data-derived
      hyper-parameters filled in.
    * ``meta(data, config) -> dict``: JSON-able training-data facts kept in the checkpoint.
    * ``features(pre, data, rng) -> (N, D) float32`` and ``conditions(pre, data) -> (N, C)
      float32``: the model tensors.
    * ``generator(model, pre, data, meta) -> TrainedGenerator`` and
      ``from_payload(payload, source) -> TrainedGenerator``.
    * ``selection_score(generator, data, seed) -> float``: the physics metric used to pick
      checkpoints (lower is better, 0 = identical samples).
    * ``evaluate_files(real, generated, out_dir, **options) -> dict``: metrics.json and
      report.html for a real and a generated file of this kind.
    * ``default_config() -> TrainConfig``: what ``hepgen train`` uses without ``--config``.
    * ``headline(metrics) -> dict``: the few numbers ``hepgen evaluate`` prints.

    Optional, for data larger than memory: ``data_types`` (every container class of the kind, e.g.
    in memory and read in chunks from files; default ``(data_type,)``) and
    ``streamed_batches(pre, data, *, seed, epoch, batch_size, rank, world, start_batch) ->
    (n_batches, iterator of (features, conditions))`` for a container with ``streamed = True``
    (and ``subset(idx)``, ``load()``); see :mod:`hepgen.data.chunked`.

    Optional, for ``hepgen tune`` (:mod:`hepgen.train.tune`): ``tune_objectives`` (names of the
    kind's own study objectives beyond ``selection``; the first is ``--objective auto``),
    ``tune_score(generator, held_out, objective, seed, n_bins) -> float`` (minimised), and
    ``prepare_holdout(data, held_out, config) -> held_out`` (check the held-out sample against
    the training data and return it ready to score, e.g. read into memory).

    Optional, for ``hepgen distill --observables`` and ``--data-observables`` (:mod:`hepgen.train.distill`):
    ``distill_observables(pre, x, c) -> (B, K) tensor``, physics observables of model-space
    samples ``x: (B, D)`` at conditions ``c: (B, C)``, differentiable in ``x``.

    Optional, for ``hepgen ensemble``: ``ensemble(generators, sources) -> TrainedGenerator``, one
    generator sampling each entry from one of ``generators`` (separately trained, same geometry).

    ``read`` and ``evaluate_files`` take keyword options named like the command-line options
    (``--n-particles`` → ``n_particles``); :func:`call_with_options` refuses one a kind does
    not take, so the CLI passes what the user gave without knowing the kind.
    """

    kind: str
    data_type: type
    default_family: str
    default_conditions: list

    def accepts_file(self, path: str | os.PathLike) -> bool: ...

    def read(self, path: str | os.PathLike, **options) -> Any: ...

    def write(self, path: str | os.PathLike, data: Any) -> None: ...

    def check(self, data: Any, config: Any) -> None: ...

    def fit_preprocessor(self, data: Any, config: Any) -> Any: ...

    def preprocessor_from_state(self, state: dict) -> Any: ...

    def build_model(self, config: Any, data: Any, pre: Any) -> Any: ...

    def meta(self, data: Any, config: Any) -> dict: ...

    def features(self, pre: Any, data: Any, rng: Any) -> Any: ...

    def conditions(self, pre: Any, data: Any) -> Any: ...

    def generator(self, model: Any, pre: Any, data: Any, meta: dict) -> TrainedGenerator: ...

    def from_payload(self, payload: dict, source: str) -> TrainedGenerator: ...

    def selection_score(self, generator: TrainedGenerator, data: Any, seed: int) -> float: ...

    def evaluate_files(self, real: str | os.PathLike, generated: str | os.PathLike, out_dir: str | os.PathLike,
                       **options) -> dict: ...

    def default_config(self) -> Any: ...

    def headline(self, metrics: dict) -> dict: ...


_DOMAINS: dict[str, Any] = {}
_DECLARED: dict[str, tuple[str, str]] = {}  # kind → (package, "module:Container"), imported on first use


def declare_domain(kind: str, package: str, container: str) -> None:
    """Declare a kind whose ``package`` registers its domain when imported; ``container`` is
    ``"module:Class"`` of its data type (a light import, used to recognise data of the kind).

    >>> declare_domain("toy2", "hepgen.domains.no_such_package", "builtins:dict")
    >>> "toy2" in kinds()
    True
    >>> get_domain("toy2")
    Traceback (most recent call last):
        ...
    ValueError: kind 'toy2': its package hepgen.domains.no_such_package cannot be imported (No module named 'hepgen.domains.no_such_package')
    >>> _ = _DECLARED.pop("toy2")
    """
    _DECLARED[kind] = (package, container)


def _load(kind: str) -> None:
    package = _DECLARED[kind][0]
    try:
        importlib.import_module(package)
    except MissingExtraError:  # already one line naming the extra and the pip command
        raise
    except ImportError as err:
        raise ValueError(f"kind {kind!r}: its package {package} cannot be imported ({err})") from None
    if kind not in _DOMAINS:
        raise ValueError(f"kind {kind!r}: importing {package} registered no domain of that kind")


def _container(spec: str) -> tuple[type, ...]:
    """The container classes of a declaration: ``"module:Class"``, several separated by commas."""
    out = []
    for one in spec.split(","):
        module, _, name = one.strip().partition(":")
        out.append(getattr(importlib.import_module(module), name))
    return tuple(out)


def register_domain(domain):
    """Make ``domain`` known under ``domain.kind``; a second domain of the same kind is refused.

    Returns ``domain`` (so that it can be used as ``DOMAIN = register_domain(ShowerDomain())``).
    """
    kind = getattr(domain, "kind", None)
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"register_domain: expected an object with a non-empty str 'kind', found {kind!r}")
    if kind in _DOMAINS:
        raise ValueError(f"domain kind {kind!r} is already registered ({type(_DOMAINS[kind]).__name__})")
    _DOMAINS[kind] = domain
    return domain


def unregister_domain(kind: str) -> None:
    """Forget the domain registered under ``kind`` (for tests and plug-in reloads)."""
    _DOMAINS.pop(kind, None)


def kinds() -> list[str]:
    """The declared and registered kinds (declaration order first)."""
    return list(dict.fromkeys([*_DECLARED, *_DOMAINS]))


def get_domain(kind: str):
    """The domain registered under ``kind``; an unknown kind is a ``ValueError`` listing the known ones."""
    if kind not in _DOMAINS and kind in _DECLARED:
        _load(kind)
    if kind not in _DOMAINS:
        raise ValueError(f"unknown kind of data {kind!r}; known: {kinds()}")
    return _DOMAINS[kind]


def domain_of_data(data):
    """The domain whose ``data_type`` ``data`` is an instance of."""
    for domain in _DOMAINS.values():
        # data_types (optional): every container of the kind, e.g. in memory and streamed from files
        if isinstance(data, getattr(domain, "data_types", domain.data_type)):
            return domain
    for kind, (_, container) in _DECLARED.items():
        if kind not in _DOMAINS and isinstance(data, _container(container)):
            return get_domain(kind)
    known = [_DOMAINS[k].data_type.__name__ if k in _DOMAINS else _DECLARED[k][1].split(",")[0].rpartition(":")[2]
             for k in kinds()]
    raise TypeError(f"expected data of a registered kind ({known}), found {type(data).__name__}")


def domain_of_file(path: str | os.PathLike, default: str | None = None):
    """The first domain, in declaration order, whose ``accepts_file(path)`` is true, else ``default``'s.

    Kinds are imported one at a time and the search stops at the first that accepts the file, so a
    showers file (the first kind declared) never imports the packages of the other kinds.

    Raises:
        ValueError: no domain accepts the file and no ``default`` is given.
    """
    for kind in kinds():
        domain = get_domain(kind)
        if domain.accepts_file(path):
            return domain
    if default is not None:
        return get_domain(default)
    raise ValueError(f"{path}: not a file of any known kind of data {kinds()}")


def domain_of_checkpoint(payload: dict, source: str = "<checkpoint>"):
    """The domain of a loaded checkpoint, from its ``kind`` (none: ``"showers"``, the only kind
    whose checkpoints were written before kinds were recorded)."""
    kind = payload.get("kind", "showers")
    try:
        return get_domain(kind)
    except ValueError as err:
        raise ValueError(f"{source}: key 'kind': {err}") from None


def check_kind(found: str | None, expected: str, source: str) -> None:
    """Refuse a checkpoint or file of another kind with a one-line ``ValueError``.

    >>> check_kind("jets", "jets", "a.pt")
    >>> check_kind("jets", "showers", "a.pt")
    Traceback (most recent call last):
        ...
    ValueError: a.pt: key 'kind': expected 'showers', found 'jets'
    """
    if found != expected:
        raise ValueError(f"{source}: key 'kind': expected {expected!r}, found {found!r}")


def call_with_options(kind: str, function, *args, **options):
    """``function(*args, **options)`` without the options that are None; an option the function
    does not take is a one-line ``ValueError`` naming it as a command-line option.

    >>> def read(path, binning=None):
    ...     return path, binning
    >>> call_with_options("showers", read, "a.h5", binning="b.xml", n_particles=None)
    ('a.h5', 'b.xml')
    >>> call_with_options("showers", read, "a.h5", n_particles=30)
    Traceback (most recent call last):
        ...
    ValueError: --n-particles does not apply to showers files
    """
    given = {k: v for k, v in options.items() if v is not None}
    params = inspect.signature(function).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for name in given:
        if name not in params and not takes_any:
            raise ValueError(f"--{name.replace('_', '-')} does not apply to {kind} files")
    return function(*args, **given)
