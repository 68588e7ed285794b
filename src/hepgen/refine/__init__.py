"""Refine a simulation towards data: adversarial refiner, DCTR reweighting and their proof.

* :mod:`hepgen.refine.refiner` — residual refiner + Wasserstein critic (arXiv:1802.03325),
  training with resumable checkpoints, application to files;
* :mod:`hepgen.refine.adapters` — how each kind of data (showers, surface-detector traces)
  becomes ``(N, D)`` features and ``(N, L)`` labels and back;
* :mod:`hepgen.refine.reweight` — classifier-based reweighting (DCTR, arXiv:1907.08209);
* :mod:`hepgen.refine.proof` — does it help? regression trained on sim / refined sim /
  data and evaluated on held-out data, classifier AUC, per-feature separation power.

The refine layer sits above the domains; only the command line imports it.
"""

from hepgen.refine.adapters import get_adapter, kind_of_file, read_pair, register_adapter
from hepgen.refine.refiner import (
    RefinerConfig,
    ResidualRefiner,
    apply_file,
    load_refiner,
    refine_arrays,
    refine_data,
    train_files,
    train_refiner,
)
from hepgen.refine.reweight import dctr_weights, effective_sample_size

__all__ = [
    "RefinerConfig",
    "ResidualRefiner",
    "apply_file",
    "dctr_weights",
    "effective_sample_size",
    "get_adapter",
    "kind_of_file",
    "load_refiner",
    "read_pair",
    "refine_arrays",
    "refine_data",
    "register_adapter",
    "train_files",
    "train_refiner",
]
