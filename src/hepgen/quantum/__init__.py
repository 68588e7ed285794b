"""Quantum GAN (optional extra ``hepgen[quantum]``, PennyLane): the CERN openlab qGAN table.

A 3-qubit generator whose Born-rule probabilities are the 8-bin longitudinal energy
profile of hepgen showers, trained against the talk's classical discriminator with
AMSGrad (Zoufal et al., arXiv:1904.00043).  Modules:

* :mod:`~hepgen.quantum.circuits` — initial-state loaders, RY + CZ variational form,
  Born probabilities, noise model;
* :mod:`~hepgen.quantum.profiles` — the target distribution from GFlash showers;
* :mod:`~hepgen.quantum.qgan` — discriminator, training, classical baselines;
* :mod:`~hepgen.quantum.table` — the talk's table rerun, noise study, 8×8 case.

The table lives in :mod:`hepgen.quantum.table` (``python -m hepgen.quantum.table``), not
re-exported here so that ``-m`` runs it cleanly.  Every module imports without PennyLane; calling a circuit without it raises
``ImportError("... needs the optional extra: pip install 'hepgen[quantum]'")``.
See ``docs/quantum.md``.
"""

from hepgen.quantum.circuits import (
    HAVE_PENNYLANE,
    TORINO_NOISE,
    NoiseModel,
    born_probabilities,
    initial_distribution,
)
from hepgen.quantum.profiles import sample_bins, shower_profile
from hepgen.quantum.qgan import QGANResult, kl_divergence, train_qgan

__all__ = [
    "HAVE_PENNYLANE",
    "TORINO_NOISE",
    "NoiseModel",
    "QGANResult",
    "born_probabilities",
    "initial_distribution",
    "kl_divergence",
    "sample_bins",
    "shower_profile",
    "train_qgan",
]
