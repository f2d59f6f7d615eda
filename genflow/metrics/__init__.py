"""Metrics: distances between sample sets and between feature distributions; calibration and ensemble metrics."""

from genflow.metrics.calibration import (
    ReliabilityBins,
    accuracy,
    brier,
    check_labels,
    check_probabilities,
    ece,
    fit_temperature,
    nll,
    reliability_bins,
    reliability_diagram,
    temperature_scaled_metrics,
)
from genflow.metrics.digits_features import (
    DigitsFeatureNet,
    WeightsFormatError,
    default_digits_weights_path,
    digits_fd,
    digits_fd_floor,
    digits_features,
    load_digits_feature_net,
    resolve_value_range,
)
from genflow.metrics.distribution import sliced_wasserstein
from genflow.metrics.fidelity import agreement, deep_ensemble_equivalent, disagreement, kl
from genflow.metrics.frechet import frechet_distance, frechet_distance_from_statistics, gaussian_statistics
from genflow.metrics.inception import inception_fid
from genflow.metrics.mmd import gaussian_mmd2, median_bandwidth
from genflow.metrics.straightness import chord_deviation, straightness

__all__ = [
    "sliced_wasserstein",
    "inception_fid",
    "gaussian_statistics",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "gaussian_mmd2",
    "median_bandwidth",
    "DigitsFeatureNet",
    "WeightsFormatError",
    "default_digits_weights_path",
    "resolve_value_range",
    "load_digits_feature_net",
    "digits_features",
    "digits_fd",
    "digits_fd_floor",
    "straightness",
    "chord_deviation",
    "accuracy",
    "nll",
    "brier",
    "ece",
    "ReliabilityBins",
    "reliability_bins",
    "reliability_diagram",
    "fit_temperature",
    "temperature_scaled_metrics",
    "check_probabilities",
    "check_labels",
    "agreement",
    "kl",
    "disagreement",
    "deep_ensemble_equivalent",
]
