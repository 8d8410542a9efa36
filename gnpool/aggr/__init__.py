"""PyTorch Geometric aggregation modules."""

from .attsets import AttSetsAggregation
from .gnp import GNPAggregation
from .registry import register

__all__ = ["AttSetsAggregation", "GNPAggregation", "register"]
