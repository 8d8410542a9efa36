"""PyTorch Geometric aggregation modules."""

from .gnp import GNPAggregation
from .registry import register

__all__ = ["GNPAggregation", "register"]
