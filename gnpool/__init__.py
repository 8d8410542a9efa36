"""gnpool: learnable pooling that extrapolates, for PyTorch Geometric."""

from . import functional, nn, training
from .aggr import AttSetsAggregation, GNPAggregation, register
from .nn import AttSets
from .training import param_groups, pooling_parameters

__version__ = "0.2.0"

__all__ = [
    "AttSets", "AttSetsAggregation", "GNPAggregation", "functional", "nn", "param_groups",
    "pooling_parameters", "register", "training", "__version__",
]
