"""The ``"tabular"`` kind of data: event-level variables (e.g. ttH vs ttbb) as a table.

Files: :mod:`hepgen.data.tabular` (``TabularData``, HDF5 with ``kind = "tabular"``), made by
``hepgen simulate tth`` (:mod:`hepgen.simulate.tth`).  Features: every column through its
smoothed CDF and Φ⁻¹ (:class:`~hepgen.domains.tabular.preprocessing.CDFGaussianiser`);
conditions: the one-hot process label (one model for all processes; a model "per process" is
trained on the events of one process, whose condition column is then constant).  Families
with ``data_kind = "tabular"``: ``tabular_wgan`` (the study's WGAN, default) and
``tabular_flow`` (spline-flow baseline).  Checkpoint selection: :meth:`TabularDomain.
selection_score`, the mean over columns of W₁(real, generated)/σ_real.  Evaluation:
:mod:`~hepgen.domains.tabular.evaluate` and :mod:`~hepgen.domains.tabular.report`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import numpy as np
from scipy.stats import wasserstein_distance

from hepgen._io import json_safe, write_metrics
from hepgen.config import TrainConfig
from hepgen.data.tabular import KIND, TabularData, is_tabular_file, read_tabular, write_tabular
from hepgen.domains.base import register_domain
from hepgen.domains.tabular.evaluate import evaluate_tabular
from hepgen.domains.tabular.generator import TabularGenerator
from hepgen.domains.tabular.preprocessing import CDFGaussianiser
from hepgen.domains.tabular.report import write_tabular_report
from hepgen.models import build_model, check_family_kind

__all__ = ["DOMAIN", "CDFGaussianiser", "TabularDomain", "TabularGenerator"]

_CONDITIONS = ("process",)


class TabularDomain:
    """What the trainer, ``hepgen evaluate`` and the CLI need for tabular data (see
    :class:`hepgen.domains.base.Domain`)."""

    kind = KIND
    data_type = TabularData
    default_family = "tabular_wgan"
    default_conditions: ClassVar[list[str]] = ["process"]
    #: knots of the CDF transform per column
    n_quantiles = 1000

    def accepts_file(self, path: str | os.PathLike) -> bool:
        """An HDF5 file with the attribute ``kind = "tabular"``."""
        return is_tabular_file(path)

    def read(self, path: str | os.PathLike) -> TabularData:
        """:func:`hepgen.data.tabular.read_tabular`."""
        return read_tabular(path)

    def write(self, path: str | os.PathLike, data: TabularData) -> None:
        """:func:`hepgen.data.tabular.write_tabular` (atomic; the file carries ``kind``)."""
        write_tabular(path, data)

    def check(self, data: TabularData, config) -> None:
        check_family_kind(config.family, KIND)
        bad = [c for c in (config.conditions or []) if c not in _CONDITIONS]
        if bad:
            raise ValueError(f"TrainConfig: key 'conditions': expected a subset of {list(_CONDITIONS)} for tabular "
                             f"data, found {bad}")
        if len(data) < 10:
            raise ValueError(f"need at least 10 training events, found {len(data)}")

    def fit_preprocessor(self, data: TabularData, config) -> CDFGaussianiser:
        return CDFGaussianiser(self.n_quantiles, data.process_names, conditional=True).fit(data.values, data.columns)

    def preprocessor_from_state(self, state: dict) -> CDFGaussianiser:
        return CDFGaussianiser.from_state(state)

    def build_model(self, config, data: TabularData, pre: CDFGaussianiser):
        return build_model(config.family, n_features=pre.n_features, n_conditions=pre.n_conditions,
                           **(config.model or {}))

    def meta(self, data: TabularData, config) -> dict:
        v = data.values
        return {"family": config.family, "columns": data.columns, "units": data.units,
                "process_names": data.process_names, "n_events": len(data),
                "process_counts": {n: int((data.process == i).sum()) for i, n in enumerate(data.process_names)},
                "ranges": {c: [float(v[:, i].min()), float(v[:, i].max())] for i, c in enumerate(data.columns)}}

    def generator(self, model, pre: CDFGaussianiser, data: TabularData, meta: dict) -> TabularGenerator:
        return TabularGenerator(model, pre, meta)

    def from_payload(self, payload: dict, source: str) -> TabularGenerator:
        return TabularGenerator.from_payload(payload, source)

    def features(self, pre: CDFGaussianiser, data: TabularData, rng: np.random.Generator) -> np.ndarray:
        """``(N, V)`` float32 Gaussianised columns (``rng`` unused: the transform is deterministic)."""
        if data.columns != pre.columns:
            raise ValueError(f"features: key 'columns': expected {pre.columns}, found {data.columns}")
        return pre.transform(data.values).astype(np.float32)

    def conditions(self, pre: CDFGaussianiser, data: TabularData) -> np.ndarray:
        """``(N, P)`` float32 one-hot process labels (in the preprocessor's process order)."""
        unknown = [n for n in data.process_names if n not in pre.process_names]
        if unknown:
            raise ValueError(f"conditions: key 'process': expected processes among {pre.process_names}, "
                             f"found unknown {unknown}")
        idx = np.asarray([pre.process_names.index(n) for n in data.process_names], dtype=np.int64)[data.process]
        return pre.conditions(idx)

    def selection_score(self, generator: TabularGenerator, data: TabularData, seed: int) -> float:
        """Mean over columns of W₁(real, generated) / σ_real (lower is better, 0 = identical)."""
        fake = generator.sample_like(data, seed=seed)
        terms = []
        for i in range(data.n_columns):
            a, b = data.values[:, i], fake.values[:, i]
            terms.append(wasserstein_distance(a, b) / (a.std() or 1.0))
        return float(np.mean(terms))

    def evaluate_files(self, real: str | os.PathLike, generated: str | os.PathLike, out_dir: str | os.PathLike,
                       seed: int = 0, n_permutations: int = 100, critic_steps: int = 1000,
                       classifiers: tuple[str, ...] = ("hgb", "mlp")) -> dict:
        """Read both files, run :func:`~hepgen.domains.tabular.evaluate.evaluate_tabular` (whose
        arguments the others are), write ``metrics.json`` (strict JSON) and ``report.html``."""
        r, g = read_tabular(real), read_tabular(generated)
        metrics, arrays = evaluate_tabular(r, g, seed=seed, n_permutations=n_permutations, critic_steps=critic_steps,
                                           classifiers=classifiers)
        metrics = json_safe({**metrics, "real": str(real), "generated": str(generated)})
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_metrics(metrics, out / "metrics.json")
        write_tabular_report(metrics, arrays, out)
        return metrics

    def default_config(self) -> TrainConfig:
        """The study's WGAN, conditioned on the process label (one model for ttH and ttbb)."""
        return TrainConfig(family=self.default_family, conditions=list(self.default_conditions))

    def headline(self, metrics: dict) -> dict:
        """Mean separation and Fisher-z χ²/ndof, each beside its real-vs-real value, and the two-sample AUC."""
        fz = metrics.get("fisher_z") or {}
        return {"mean_separation": metrics.get("mean_separation"),
                "mean_separation_floor": metrics.get("mean_separation_floor"),
                "fisher_z_chi2_ndof": (fz.get("generated") or {}).get("chi2_ndof"),
                "fisher_z_chi2_ndof_floor": (fz.get("real_vs_real") or {}).get("chi2_ndof"),
                "two_sample_auc": metrics.get("two_sample_auc")}


DOMAIN = register_domain(TabularDomain())
