"""Training procedures: FASet two-stage training of a base network and its aggregator,
optimiser groups for pooling parameters, classic-pooling snapping and a prior, and the
transfer of searched poolings into a freshly initialised model, and the whole of search,
then retrain (:func:`search_then_retrain`)."""

from .faset import FASet, aggregator_parameter_names, default_aggregator_types
from .multiview import SetSizes, predict_multiview, single_view_batch, subset_batch
from .optim import DEFAULT_POOL_LR, param_groups, pooling_parameters, transfer_pooling_
from .recipe import (
    apply_plan_,
    choose_model,
    classic_end_plans,
    conjugate_sets,
    head_parts_,
    search_then_retrain,
)
from .snap import classic_prior, mirror_idle_parts_, snap_parts_, snap_to_classic

__all__ = [
    "DEFAULT_POOL_LR",
    "FASet",
    "SetSizes",
    "aggregator_parameter_names",
    "apply_plan_",
    "choose_model",
    "classic_end_plans",
    "classic_prior",
    "conjugate_sets",
    "default_aggregator_types",
    "head_parts_",
    "mirror_idle_parts_",
    "param_groups",
    "pooling_parameters",
    "search_then_retrain",
    "snap_parts_",
    "snap_to_classic",
    "predict_multiview",
    "single_view_batch",
    "subset_batch",
    "transfer_pooling_",
]
