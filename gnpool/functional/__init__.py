"""Pure pooling functions over sets given by ``index`` or ``ptr``."""

from .attsets import attsets
from .gnp import P_MAX, P_MIN, gnp

__all__ = ["attsets", "gnp", "P_MIN", "P_MAX"]
