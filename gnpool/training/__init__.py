"""Training procedures: FASet two-stage training of a base network and its aggregator, and
optimiser groups for pooling parameters."""

from .faset import FASet, aggregator_parameter_names, default_aggregator_types
from .multiview import SetSizes, predict_multiview, single_view_batch, subset_batch
from .optim import DEFAULT_POOL_LR, param_groups, pooling_parameters
from .snap import classic_prior, snap_parts_, snap_to_classic

__all__ = [
    "DEFAULT_POOL_LR",
    "FASet",
    "SetSizes",
    "aggregator_parameter_names",
    "classic_prior",
    "default_aggregator_types",
    "param_groups",
    "pooling_parameters",
    "snap_parts_",
    "snap_to_classic",
    "predict_multiview",
    "single_view_batch",
    "subset_batch",
]
