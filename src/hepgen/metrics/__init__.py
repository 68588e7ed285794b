"""Pure numpy/scipy/scikit-learn metrics: they score a Geant4 file and a model's output alike."""

from hepgen.metrics.classifier import (
    classifier_two_sample_test,
    hanley_mcneil_error,
    high_level_inputs,
    jsd_from_probabilities,
    low_level_inputs,
)
from hepgen.metrics.distances import (
    binning_for,
    histogram,
    ks_statistic,
    ks_test,
    separation_power,
    wasserstein_1d,
)
from hepgen.metrics.observables import (
    feature_label,
    high_level_features,
    layer_energies,
    longitudinal_profile,
    radial_profile,
)

__all__ = [
    "binning_for",
    "classifier_two_sample_test",
    "feature_label",
    "hanley_mcneil_error",
    "high_level_features",
    "high_level_inputs",
    "histogram",
    "jsd_from_probabilities",
    "ks_statistic",
    "ks_test",
    "layer_energies",
    "longitudinal_profile",
    "low_level_inputs",
    "radial_profile",
    "separation_power",
    "wasserstein_1d",
]
