"""Pure pooling functions over sets given by ``index`` or ``ptr``."""

from .gnp import P_MAX, P_MIN, gnp

__all__ = ["gnp", "P_MIN", "P_MAX"]
