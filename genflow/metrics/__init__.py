"""Metrics: distances between sample sets."""

from genflow.metrics.distribution import sliced_wasserstein

__all__ = ["sliced_wasserstein"]
