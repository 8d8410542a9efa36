"""Pure pooling functions over sets given by ``index`` or ``ptr``."""

from .attsets import attsets, attsets_linear
from .gnp import P_MAX, P_MIN, gnp

__all__ = ["attsets", "attsets_linear", "gnp", "P_MIN", "P_MAX"]
