"""Pure pooling functions over sets given by ``index`` or ``ptr``."""

from .attsets import attsets, attsets_linear
from .gnp import gnp, gnp_unit

__all__ = ["attsets", "attsets_linear", "gnp", "gnp_unit"]
