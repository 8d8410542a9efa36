"""gnpool: learnable pooling that extrapolates, for PyTorch Geometric."""

from . import functional, nn, training
from .aggr import AttSetsAggregation, GNPAggregation, register
from .nn import AttSets

__version__ = "0.1.0"

__all__ = [
    "AttSets", "AttSetsAggregation", "GNPAggregation", "functional", "nn", "register", "training",
    "__version__",
]
