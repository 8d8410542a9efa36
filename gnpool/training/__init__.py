"""Training procedures: FASet two-stage training of a base network and its aggregator."""

from .faset import FASet, aggregator_parameter_names, default_aggregator_types
from .multiview import SetSizes, predict_multiview, single_view_batch, subset_batch

__all__ = [
    "FASet",
    "SetSizes",
    "aggregator_parameter_names",
    "default_aggregator_types",
    "predict_multiview",
    "single_view_batch",
    "subset_batch",
]
