"""Calorimeter showers: CaloChallenge voxel images with their incident energies and conditions.

The container and the file format are :class:`hepgen.data.formats.ShowerData` (in ``data/``
because the simulators write them); everything else a shower needs lives here:

============================  ======================================================================
``preprocessing``             :class:`ShowerPreprocessor`, CaloFlow-style invertible features
``generator``                 :class:`ShowerGenerator` (model + preprocessing + geometry) and
                              :func:`sample_to_file` (resumable chunked sampling)
``inference``                 :class:`ShowerSampler`, one torch module from inputs + noise to MeV
``score``                     :func:`separation_score`, the checkpoint-selection metric
``evaluate``                  real vs generated → ``metrics.json`` (:func:`evaluate_files`)
``plots``, ``report``         the figures and the HTML report
============================  ======================================================================

:data:`DOMAIN` is the registered :class:`ShowerDomain` (``kind = "showers"``).
"""

from __future__ import annotations

import dataclasses
import logging
import os

import h5py
import numpy as np

from hepgen.config import TrainConfig, preset
from hepgen.data.chunked import ShowerFileSet, expand_paths, fits_in_memory, showers_shape
from hepgen.data.formats import ShowerData, read_showers, write_showers
from hepgen.data.geometry import orientation_permutations
from hepgen.domains.base import register_domain
from hepgen.domains.showers.generator import ShowerGenerator, sample_to_file
from hepgen.domains.showers.preprocessing import ShowerPreprocessor
from hepgen.metrics.observables import orientation_asymmetry
from hepgen.models import build_model, check_family_kind, with_derived_hparams

_log = logging.getLogger(__name__)

#: showers read for the training data's symmetry check (:func:`orientation_asymmetry`)
SYMMETRY_CHECK_ROWS = 100_000

__all__ = ["DOMAIN", "ShowerDomain", "ShowerGenerator", "ShowerPreprocessor", "layer_sizes", "model_hparams",
           "sample_to_file"]


def layer_sizes(geometry) -> list[int]:
    """Voxels per active layer of ``geometry``, in depth order.

    >>> from hepgen.data.geometry import CartesianGrid
    >>> layer_sizes(CartesianGrid(nx=3, ny=2, nz=4))
    [6, 6, 6, 6]
    """
    return [s.stop - s.start for s in geometry.layer_slices]


def model_hparams(config, geometry) -> dict:
    """The family's constructor arguments (besides ``n_features``/``n_conditions``) for ``geometry``.

    ``config.model`` plus the geometry-derived hyper-parameters the family accepts and the
    user did not set: ``n_layers`` (the number of energy features at the start of the feature
    vector, e.g. the CaloFlow energy flow) and ``layer_sizes`` (layer-by-layer generators) follow
    from the data's geometry, so presets stay valid for any binning.
    """
    sizes = layer_sizes(geometry)
    # with occupancy the energy features are the layer fractions and the layers' lit-cell counts
    n_energy = len(sizes) * (2 if config.occupancy else 1)
    return with_derived_hparams(config.family, config.model, {"n_layers": n_energy, "layer_sizes": sizes})


class ShowerDomain:
    """Calorimeter showers (:class:`~hepgen.data.formats.ShowerData`); see the module docstring."""

    kind = "showers"
    data_type = ShowerData
    data_types = (ShowerData, ShowerFileSet)  # in memory, or files read in chunks
    # the best faithful family at equal CPU budget (README "Model zoo", benchmarks/bench_zoo.py)
    default_family = "caloflow"
    default_conditions: list = []

    def accepts_file(self, path: str | os.PathLike) -> bool:
        """An HDF5 file with ``showers`` and ``incident_energies`` datasets (CaloChallenge layout)."""
        try:
            with h5py.File(path, "r") as f:
                return "showers" in f and "incident_energies" in f
        except (OSError, ValueError):
            return False

    def read(self, path, binning=None, memory_budget_gb: float | None = None) -> ShowerData | ShowerFileSet:
        """Read and validate CaloChallenge file(s); ``binning``: a geometry or the path of a binning
        XML / geometry JSON (default: the file's own).

        ``path`` may be a list of files (and globs) of one data set (same geometry).  A data set
        that fits ``memory_budget_gb`` (:func:`hepgen.data.chunked.fits_in_memory`) is read into
        memory (:class:`ShowerData`); a larger one is opened as a :class:`ShowerFileSet`, read in
        chunks by training."""
        paths = expand_paths(path if isinstance(path, (list, tuple)) else [path])
        if len(paths) == 1:  # one file that fits: read whole, as always
            shape = showers_shape(paths[0])
            if shape is None or fits_in_memory(shape[0], shape[1], memory_budget_gb):
                return read_showers(paths[0], geometry=binning)  # (None: its reader says what is wrong)
        files = ShowerFileSet(paths, geometry=binning, memory_budget_gb=memory_budget_gb)
        return files.load() if fits_in_memory(len(files), files.n_voxels, memory_budget_gb) else files

    def write(self, path, data: ShowerData) -> None:
        write_showers(path, data)

    def check(self, data: ShowerData, config) -> None:
        check_family_kind(config.family, self.kind)
        if data.geometry is None:
            raise ValueError("training data has no geometry: pass a binning XML / geometry JSON")
        if len(data) < 2:
            raise ValueError(f"need at least 2 training showers, found {len(data)}")

    def fit_preprocessor(self, data: ShowerData | ShowerFileSet, config) -> ShowerPreprocessor:
        """Fitted on the training rows; a :class:`ShowerFileSet` in two streamed passes
        (:meth:`ShowerPreprocessor.fit_chunks`, equal to the in-memory fit up to rounding)."""
        perms = orientation_permutations(data.geometry, config.symmetry)
        pre = ShowerPreprocessor(layer_sizes(data.geometry), config.conditions, noise_level=config.noise_level,
                                 threshold=config.threshold, deposit_bound=config.deposit_bound,
                                 energy_bound=config.energy_bound,
                                 occupancy=config.occupancy, orientations=perms,
                                 augment_orientations=config.augment_symmetry)
        if perms is not None:  # does the training data have the symmetry the generated showers will get?
            sample = data if isinstance(data, ShowerData) else next(iter(data.iter_chunks()))
            chi2, ndof = orientation_asymmetry(sample.showers[:SYMMETRY_CHECK_ROWS], perms)
            ratio = chi2 / max(ndof, 1)
            (_log.warning if ratio > 2.0 else _log.info)(
                "symmetry %r (%d orientations): the cell means of %d training showers deviate from it by "
                "chi2/ndof = %.2f (ndof %d)%s", config.symmetry, len(perms), min(len(sample), SYMMETRY_CHECK_ROWS),
                ratio, ndof, "; the data do not look symmetric: check the symmetry key" if ratio > 2.0 else "")
        if isinstance(data, ShowerFileSet):
            return pre.fit_chunks(lambda: ((c.showers, c.incident_energies, c.conditions)
                                           for c in data.iter_chunks()), seed=config.seed)
        return pre.fit(data.showers, data.incident_energies, data.conditions, seed=config.seed)

    def streamed_batches(self, pre: ShowerPreprocessor, data: ShowerFileSet, *, seed: int, epoch: int,
                         batch_size: int, rank: int = 0, world: int = 1, start_batch: int = 0):
        """``(n_batches, iterator of (features, conditions) float32 arrays)`` of one epoch of a
        :class:`ShowerFileSet` (order, sharding and resume: :mod:`hepgen.data.chunked`)."""
        def tensors(buffer: ShowerData, rng):
            return self.features(pre, buffer, rng), self.conditions(pre, buffer)

        return data.batches(tensors, seed=seed, epoch=epoch, batch_size=batch_size, rank=rank, world=world,
                            start_batch=start_batch)

    def preprocessor_from_state(self, state: dict) -> ShowerPreprocessor:
        return ShowerPreprocessor.from_state(state)

    def build_model(self, config, data: ShowerData, pre: ShowerPreprocessor):
        n_cond = 1 + sum(np.asarray(data.conditions[k]).reshape(len(data), -1).shape[1] for k in config.conditions)
        return build_model(config.family, n_features=pre.n_features, n_conditions=n_cond,
                           **model_hparams(config, data.geometry))

    def meta(self, data: ShowerData, config) -> dict:
        e_inc = data.incident_energies.reshape(-1)
        return {
            "energy_range": [float(e_inc.min()), float(e_inc.max())],
            "condition_ranges": {
                k: [np.asarray(v).min(axis=0).tolist(), np.asarray(v).max(axis=0).tolist()]
                for k, v in data.conditions.items() if k in config.conditions
            },
        }

    def features(self, pre: ShowerPreprocessor, data: ShowerData, rng: np.random.Generator) -> np.ndarray:
        return pre.transform(data.showers, data.incident_energies, rng)

    def conditions(self, pre: ShowerPreprocessor, data: ShowerData) -> np.ndarray:
        return pre.transform_conditions(data.incident_energies, data.conditions)

    def generator(self, model, pre: ShowerPreprocessor, data: ShowerData, meta: dict) -> ShowerGenerator:
        return ShowerGenerator(model, pre, data.geometry, meta)

    def from_payload(self, payload: dict, source: str) -> ShowerGenerator:
        return ShowerGenerator.from_payload(payload, source=source)

    def selection_score(self, generator: ShowerGenerator, data: ShowerData, seed: int) -> float:
        # The evaluation stack (scipy.stats, scikit-learn) is loaded when a score is first
        # computed, not with the kind: processes that only train or sample (torchrun workers
        # selecting by the validation loss, hepgen sample) never pay for it.  Not a cycle:
        # score and evaluate import nothing of this package's __init__.
        from hepgen.domains.showers.score import separation_score

        return separation_score(generator, data, seed=seed)

    tune_objectives = ("sep_power", "ks_nll")  # = score.TUNE_OBJECTIVES (not imported: see selection_score)

    def tune_score(self, generator: ShowerGenerator, holdout: ShowerData, objective: str, seed: int,
                   n_bins: int = 30) -> float:
        """``hepgen tune``'s objective ``sep_power`` or ``ks_nll``: ``generator`` sampled at the held-out
        showers' incident energies and conditions, scored on the CaloChallenge high-level features
        (:func:`~hepgen.domains.showers.score.holdout_score`)."""
        from hepgen.domains.showers.score import holdout_score  # see selection_score

        conds = {k: holdout.conditions[k] for k in generator.condition_names}
        showers = generator.sample(holdout.incident_energies[:, 0], conds, seed=seed)
        return holdout_score(holdout, showers, objective, n_bins=n_bins)

    def prepare_holdout(self, data: ShowerData | ShowerFileSet, holdout: ShowerData | ShowerFileSet,
                        config) -> ShowerData:
        """``hepgen tune``'s held-out showers, checked against the training data and in memory.

        The training data need a geometry (the held-out showers take it when they have none),
        both the same voxels, and the held-out showers every condition ``config`` trains on.
        Training data above the memory budget arrive streamed and are trained on as ``hepgen
        train`` does; the held-out rows are read into memory to be sampled against and scored.
        """
        if data.geometry is None:
            raise ValueError("tune: the training data has no geometry: pass a binning XML / geometry JSON")
        n_data, n_held = (d.n_voxels if isinstance(d, ShowerFileSet) else int(d.showers.shape[1])
                          for d in (data, holdout))
        if n_held != n_data:
            raise ValueError(f"held-out showers have {n_held} voxels, training data {n_data}")
        if isinstance(holdout, ShowerFileSet):
            if not fits_in_memory(len(holdout), holdout.n_voxels):
                raise ValueError(f"held-out sample: {len(holdout)} showers x {holdout.n_voxels} voxels do not fit "
                                 "the memory budget; expected a smaller --holdout file or --holdout-fraction")
            holdout = holdout.load()
        if holdout.geometry is None:
            holdout = dataclasses.replace(holdout, geometry=data.geometry)
        missing = [k for k in config.conditions if k not in holdout.conditions]
        if missing:
            raise ValueError(f"held-out showers lack the conditions {missing} the config trains on; "
                             f"found {sorted(holdout.conditions)}")
        return holdout

    def evaluate_files(self, real, generated, out_dir, binning=None, seed: int = 0, no_classifier: bool = False,
                       metrics=None, train=None, sep_threshold: float = 0.1, p_threshold: float = 0.01,
                       max_points: int = 5000, classifier: str = "hepgen",
                       calochallenge_min_steps: int | None = None, progress=False,
                       memory_budget_gb: float | None = None) -> dict:
        """:func:`~hepgen.domains.showers.evaluate.evaluate_files` with the command line's option names
        (``classifier``: ``hepgen``, ``calochallenge`` or ``both``; ``calochallenge_min_steps``:
        the protocol's ``min_steps`` deviation; ``progress``: False, True (a bar on stderr) or a callable
        taking each stage's message; ``memory_budget_gb``: files above it are evaluated on a bounded
        sample with features streamed over all rows); ``real``, ``generated``, ``train``: paths or
        :class:`~hepgen.data.formats.ShowerData`."""
        from hepgen.domains.showers.evaluate import evaluate_files  # see selection_score

        return evaluate_files(real, generated, geometry=binning, out_dir=out_dir, seed=seed,
                              classifier=not no_classifier, groups=metrics, train_path=train,
                              sep_threshold=sep_threshold, p_threshold=p_threshold, max_points=max_points,
                              classifier_protocol=classifier,
                              calochallenge_kwargs=None if calochallenge_min_steps is None
                              else {"min_steps": calochallenge_min_steps}, progress=progress,
                              memory_budget_gb=memory_budget_gb)

    def default_config(self) -> TrainConfig:
        """``hepgen train SHOWERS.h5`` without options: the CaloFlow preset (``configs/caloflow.yaml``)."""
        return preset(self.default_family)

    def headline(self, metrics: dict) -> dict:
        """Mean separation power and the classifier AUCs (hepgen's and the CaloChallenge protocol's)."""
        head = {"separation_power_mean": metrics.get("separation_power_mean")}
        for level, res in (metrics.get("classifier") or {}).items():
            head[f"auc_{level}"] = res.get("auc")
        for level, res in (metrics.get("classifier_calochallenge") or {}).items():
            head[f"auc_calochallenge_{level}"] = res.get("auc")
        return head


DOMAIN = register_domain(ShowerDomain())
