"""Pure numpy/scipy/scikit-learn metrics: they score a Geant4 file and a model's output alike."""

from hepgen.metrics.cas import classification_accuracy_score
from hepgen.metrics.classifier import (
    classifier_two_sample_test,
    hanley_mcneil_error,
    high_level_inputs,
    jsd_from_probabilities,
    low_level_inputs,
)
from hepgen.metrics.correlation import fisher_z_test
from hepgen.metrics.distances import (
    binning_for,
    histogram,
    jensen_shannon,
    ks_statistic,
    ks_test,
    separation_power,
    wasserstein_1d,
)
from hepgen.metrics.diversity import (
    birthday_support_size,
    mean_pairwise_ssim,
    mode_collapse_indicators,
    nearest_neighbour_memorisation,
    ssim_by_scale,
    ssim_matrix,
)
from hepgen.metrics.multivariate import fpd, frechet_distance, kpd, mmd_gaussian, prdc
from hepgen.metrics.observables import (
    cell_energies,
    depth_observables,
    feature_label,
    feature_matrix,
    high_level_features,
    incident_energy_edges,
    layer_correlation,
    layer_energies,
    longitudinal_profile,
    radial_profile,
    response_resolution,
)
from hepgen.metrics.regression import condition_regression, condition_targets, regression_inputs

__all__ = [
    "binning_for",
    "birthday_support_size",
    "cell_energies",
    "classification_accuracy_score",
    "classifier_two_sample_test",
    "condition_regression",
    "condition_targets",
    "depth_observables",
    "feature_label",
    "feature_matrix",
    "fisher_z_test",
    "fpd",
    "frechet_distance",
    "hanley_mcneil_error",
    "high_level_features",
    "high_level_inputs",
    "histogram",
    "incident_energy_edges",
    "jensen_shannon",
    "jsd_from_probabilities",
    "kpd",
    "ks_statistic",
    "ks_test",
    "layer_correlation",
    "layer_energies",
    "longitudinal_profile",
    "low_level_inputs",
    "mean_pairwise_ssim",
    "mmd_gaussian",
    "mode_collapse_indicators",
    "nearest_neighbour_memorisation",
    "prdc",
    "radial_profile",
    "regression_inputs",
    "response_resolution",
    "separation_power",
    "ssim_by_scale",
    "ssim_matrix",
    "wasserstein_1d",
]
