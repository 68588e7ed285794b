"""Refine a simulation towards data: adversarial refiner, DCTR reweighting and their proof.

* :mod:`hepgen.refine.refiner` — residual refiner + Wasserstein critic (arXiv:1802.03325),
  training with resumable checkpoints, application to files;
* :mod:`hepgen.refine.adapters` — how each kind of data (showers, surface-detector traces)
  becomes ``(N, D)`` features and ``(N, L)`` labels and back;
* :mod:`hepgen.refine.reweight` — classifier-based reweighting (DCTR, arXiv:1907.08209);
* :mod:`hepgen.refine.proof` — does it help? regression trained on sim / refined sim /
  data and evaluated on held-out data, classifier AUC, per-feature separation power.

The refine layer sits above the domains; only the command line imports it.  The names below
are imported from their modules on first use (PEP 562 module ``__getattr__``, as ``hepgen``
itself does), so that ``import hepgen.refine.options`` (the command line's flags of the
refiner options, at parse time) does not import torch.

>>> import hepgen.refine
>>> hepgen.refine.RefinerConfig.__module__
'hepgen.refine.refiner'
"""

import importlib

#: where each public name lives
_NAMES = {
    "get_adapter": "adapters", "kind_of_file": "adapters", "read_pair": "adapters", "register_adapter": "adapters",
    "RefinerConfig": "refiner", "ResidualRefiner": "refiner", "apply_file": "refiner", "load_refiner": "refiner",
    "refine_arrays": "refiner", "refine_data": "refiner", "train_files": "refiner", "train_refiner": "refiner",
    "dctr_weights": "reweight", "effective_sample_size": "reweight",
}
__all__ = sorted(_NAMES)


def __getattr__(name: str):
    """A public name, imported from its module the first time it is used (PEP 562)."""
    if name in _NAMES:
        value = getattr(importlib.import_module(f"hepgen.refine.{_NAMES[name]}"), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'hepgen.refine' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES})
