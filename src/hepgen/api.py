"""hepgen from Python (a notebook, a script): the functions the command line is made of.

Every function here is re-exported from :mod:`hepgen` (``hepgen.sample(...)``) and works for
every kind of data through the domain layer (:mod:`hepgen.domains`), as the command line does:
the kind of a file is found from its contents, of a checkpoint from its ``kind``, of an
in-memory sample from its type.

=========================  ===================================================================
:func:`simulate_showers`   reference showers from the built-in GFlash simulator (in memory)
:func:`simulate_jets`      Pythia 8 + FastJet jets to a file (needs the ``jets`` extra)
:func:`read`, :func:`write` a file of any kind ↔ its container (ShowerData, JetData, …)
:func:`train_generator`    ``hepgen train``: fit a generator, checkpoints in a run folder
:func:`load_generator`     a trained generator from a checkpoint (``best.pt``)
:func:`sample`             ``hepgen sample`` / ``sample-jets``: generated data, in memory or a file
:func:`evaluate`           ``hepgen evaluate``: the metrics dict; with ``output`` also the report
=========================  ===================================================================

Example (a tiny calorimeter, a one-epoch model: seconds, not physics):

>>> import tempfile, hepgen
>>> from hepgen.data.geometry import CylindricalBinning
>>> run = tempfile.mkdtemp()
>>> geometry = CylindricalBinning.regular(3, [0.0, 8.0, 20.0, 60.0], n_alpha=2)
>>> real = hepgen.simulate_showers(300, geometry=geometry, energy_range=(5e3, 5e4), seed=1)
>>> gen = hepgen.train_generator(real, f"{run}/model", family="flow", epochs=1, progress=False,
...                              model={"hidden_features": 16, "transforms": 1}, tensorboard=False)
>>> fake = hepgen.sample(gen, like=real, seed=2)
>>> fake.showers.shape
(300, 18)
>>> metrics = hepgen.evaluate(real, fake, f"{run}/eval", metrics="fast")
>>> sorted(p.name for p in __import__("pathlib").Path(f"{run}/eval").glob("*.*"))
['hist_data.json', 'metrics.json', 'report.html']
>>> 0 <= metrics["separation_power_mean"] <= 1
True

Importing :mod:`hepgen` does not import this module (nor torch): the names are resolved on
first use (PEP 562), so ``import hepgen`` stays instant and leaves matplotlib's backend alone.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from hepgen.checkpoint import load_checkpoint
from hepgen.config import TrainConfig, preset, starting_config
from hepgen.data.stream import file_sha256
from hepgen.domains import call_with_options, domain_of_checkpoint, domain_of_data, domain_of_file, get_domain
from hepgen.domains import evaluation as _evaluation
from hepgen.domains.showers.generator import condition_source, sample_showers, sample_to_file
from hepgen.simulate.calorimeter import simulate_dataset as simulate_showers
from hepgen.simulate.pythia import JetGenConfig
from hepgen.simulate.pythia import simulate_jets as _simulate_jets  # pythia8mc, fastjet: imported on first use
from hepgen.train.trainer import train as _train

__all__ = ["TrainConfig", "evaluate", "load_generator", "preset", "read", "sample", "simulate_jets",
           "simulate_showers", "train_generator", "write"]

_PathLike = (str, os.PathLike)


def read(path: str | os.PathLike, kind: str | None = None, **options):
    """Read and validate a file of any kind: the container of its kind.

    Arguments:
        path: an HDF5 file (CaloChallenge showers, JetNet-layout jets, …).
        kind: the kind to read it as (default: the kind whose reader accepts the file; files no
            kind accepts are read as showers, whose reader says what is missing).
        options: the kind's reader options, e.g. ``binning`` (showers), ``n_particles`` (jets).

    Returns:
        :class:`~hepgen.data.formats.ShowerData`, :class:`~hepgen.data.jets.JetData`, …; showers
        beyond the memory budget (option ``memory_budget_gb``, default 4 GB: ``N × voxels × 16``
        bytes) come as a :class:`~hepgen.data.chunked.ShowerFileSet`, read in chunks by training
        (``.load()`` reads it whole; docs/large_data.md).

    >>> read("no-such-file.h5")
    Traceback (most recent call last):
        ...
    ValueError: no-such-file.h5: file not found
    """
    if not Path(path).is_file():
        raise ValueError(f"{path}: file not found")
    domain = get_domain(kind) if kind else domain_of_file(path, default="showers")
    return call_with_options(domain.kind, domain.read, path, **options)


def write(path: str | os.PathLike, data) -> Path:
    """Write ``data`` (a container of any kind) to the HDF5 file ``path``, atomically, with its ``kind``;
    returns the path.

    >>> import tempfile
    >>> data = simulate_showers(5, seed=0)
    >>> len(read(write(Path(tempfile.mkdtemp()) / "s.h5", data)))
    5
    """
    domain_of_data(data).write(path, data)
    return Path(path)


def load_generator(checkpoint: str | os.PathLike, device: str | None = None):
    """The trained generator of a checkpoint (``best.pt`` of :func:`train_generator` or ``hepgen train``).

    Arguments:
        checkpoint: the checkpoint file; its ``kind`` picks the kind of data.
        device: move the model there (``"cpu"``, ``"cuda"``); default: as loaded (CPU).

    Returns:
        the kind's generator (:class:`~hepgen.domains.showers.generator.ShowerGenerator`,
        :class:`~hepgen.domains.jets.generator.JetGenerator`, …) with ``.model``, ``.meta`` and
        ``.checkpoint`` (the path).
    """
    payload = load_checkpoint(checkpoint)
    gen = domain_of_checkpoint(payload, source=str(checkpoint)).from_payload(payload, source=str(checkpoint))
    if device is not None:
        gen.model.to(device)
    gen.checkpoint = str(checkpoint)
    return gen


def train_generator(data, output: str | os.PathLike, config: TrainConfig | str | os.PathLike | None = None,
                    progress: bool = True, resume: bool = False, **settings):
    """Train a generator on ``data`` (``hepgen train``); checkpoints and ``train_log.csv`` in ``output``.

    Arguments:
        data: a container of any kind (with a geometry for showers) or a file of any kind.
        output: the run folder (``best.pt``, ``last.pt``, ``train_log.csv``, ``config.yaml``).
        config: a :class:`~hepgen.config.TrainConfig`, a preset name (``"caloflow"``, ``"epic_fm"``,
            …) or a YAML file; default: the kind's default (what ``hepgen train FILE`` uses).
        progress: show the training bars.
        resume: continue from ``output/last.pt``.
        settings: TrainConfig fields to override, e.g. ``epochs=1, family="flow",
            model={"hidden_features": 16}`` (``model`` replaces the family's hyper-parameters).

    Returns:
        the trained generator, loaded from ``output/best.pt`` (see :func:`load_generator`).
    """
    source = None
    if isinstance(data, _PathLike):
        source = {"train_file": str(data), "train_file_sha256": file_sha256(data)}
        data = read(data)
    domain = domain_of_data(data)
    # the rule of hepgen train: file or preset; else the named family's preset; else the kind's default
    config = starting_config(config, family=settings.get("family"), default=domain.default_config)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"train_generator: unknown TrainConfig key(s) {unknown}; known: {sorted(known)}")
    config = dataclasses.replace(config, **settings)
    gen = _train(data, config, output, resume=resume, progress=progress, data_source=source)
    gen.checkpoint = str(Path(output) / "best.pt")
    return gen


def sample(generator, n: int | None = None, *, like=None, energies=None, energy_range=None,
           jet_type: str | None = None, output: str | os.PathLike | None = None, seed: int = 0,
           batch_size: int = 1_000, chunk_size: int = 10_000, progress: bool = False):
    """Generated data from a trained generator (``hepgen sample`` / ``hepgen sample-jets``).

    Arguments:
        generator: a trained generator (:func:`load_generator`, :func:`train_generator`) or a checkpoint path.
        n: how many (with ``like``: its first ``n`` entries; default all).
        like: sample at the conditions of this data (a container or a file of the generator's kind):
            showers at its incident energies and conditions, jets at its types, kinematics and
            multiplicities, other kinds entry by entry.
        energies: showers: incident energies in MeV to draw from (uniformly).
        energy_range: showers: ``(lo, hi)`` MeV, log-uniform; default: the training range.
        jet_type: jets without ``like``: the type (``"g"``, ``"q"``, ``"t"``, ``"w"``, ``"z"``); pT and η
            uniform in the training ranges.
        output: also write the file (showers: the chunked, resumable writer of ``hepgen sample``,
            with provenance; the same showers as ``hepgen sample`` with the same arguments).
        seed: the seed of the conditions drawn and of the model's noise.
        batch_size: entries per network call; chunk_size: showers per chunk (their seeds derive
            from ``(seed, chunk index)``, as in ``hepgen sample``).
        progress: show a progress bar.

    Returns:
        the container of the generator's kind (showers in MeV with the generator's geometry, …).
    """
    if isinstance(generator, _PathLike):
        generator = load_generator(generator)
    domain = get_domain(generator.kind)
    if generator.kind == "showers":
        if jet_type is not None:
            raise ValueError("sample: jet_type applies to jets, not to a showers generator")
        source, n = condition_source(generator, n, energies=energies, energy_range=energy_range,
                                     conditions_from=like, seed=seed)
        if output is None:
            return sample_showers(generator, n, source, seed=seed, chunk_size=chunk_size, batch_size=batch_size,
                                  progress=progress)
        sample_to_file(generator, output, n, source, seed=seed, chunk_size=chunk_size, batch_size=batch_size,
                       checkpoint=getattr(generator, "checkpoint", None), progress=progress)
        return read(output, kind="showers")
    for name, value in (("energies", energies), ("energy_range", energy_range)):
        if value is not None:
            raise ValueError(f"sample: {name} applies to showers, not to a {generator.kind} generator")
    if like is None and generator.kind == "jets":
        data = generator.sample_in_training_range(jet_type, n, seed=seed, batch_size=batch_size, progress=progress)
    elif like is None:
        raise ValueError(f"sample: a {generator.kind} generator samples at the conditions of data of its kind: "
                         "give like=FILE_OR_DATA")
    else:
        if isinstance(like, _PathLike):
            like = read(like, kind=generator.kind)
        if generator.kind == "jets" and like.n_particles != generator.n_particles:
            raise ValueError(f"sample: like holds {like.n_particles} particles per jet, the model generates "
                             f"{generator.n_particles}; read it with n_particles={generator.n_particles}")
        if n is not None:
            like = like.subset(np.arange(min(int(n), len(like))))
        kwargs = {"batch_size": batch_size, "progress": progress} if generator.kind == "jets" else {}
        data = generator.sample_like(like, seed=seed, **kwargs)
    if output is not None:
        domain.write(output, data)
    return data


def evaluate(real, generated, output: str | os.PathLike | None = None, *, kind: str | None = None,
             progress=False, **options) -> dict:
    """Compare generated with real data (``hepgen evaluate``): the metrics dict; with ``output``, the
    report too.

    Arguments:
        real, generated: files or containers of one kind (``generated`` from :func:`sample`).
        output: folder for ``metrics.json``, ``report.html`` (one self-contained file), ``figures/``
            (PNG and PDF) and ``hist_data.json``; None: metrics only.
        kind: the kind of data (default: ``real``'s).
        progress: False, True (a bar on stderr) or a callable taking each stage's message.
        options: the options of ``hepgen evaluate`` with ``_`` for ``-`` (showers: ``metrics="fast"``,
            ``no_classifier=True``, ``seed``, ``max_points``, …; jets: ``num_eval_samples``,
            ``num_batches``, ``no_efp``, ``no_classifier``, …).

    Returns:
        the metrics dict (keys in docs/metrics.md and docs/jets.md).
    """
    return _evaluation.evaluate(real, generated, output, kind=kind, progress=progress, **options)


def simulate_jets(output: str | os.PathLike, jet_types="g,q,t,w,z", n: int = 1_000, seed: int = 0,
                  n_particles: int = 30, workers: int = 1, progress: bool = True):
    """Jets from Pythia 8 + FastJet written to ``output`` (``hepgen simulate jets``; needs ``pip install
    hepgen[jets]``); returns the :class:`~hepgen.data.jets.JetData`.

    Arguments:
        output: the JetNet-layout HDF5 file.
        jet_types: comma-separated or a list of ``g, q, t, w, z``.
        n: jets per type.
        seed: the job's seed; n_particles: constituents kept per jet; workers: processes.
    """
    types = jet_types.split(",") if isinstance(jet_types, str) else list(jet_types)
    return _simulate_jets(output, types, n, seed=seed, config=JetGenConfig(n_particles=n_particles), workers=workers,
                          progress=progress)
