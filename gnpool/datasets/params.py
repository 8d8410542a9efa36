"""Task parameters: declaration, parsing (from Python values or command-line strings) and
normalisation to a canonical form that the cache key is computed from."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .graphs import FAMILIES

#: Parameter kinds and what each expects, for error messages.
KINDS = {
    "int": "an integer",
    "prob": "a probability in (0, 1]",
    "int_range": "two integers lo < hi (a half-open range [lo, hi))",
    "float_range": "two finite numbers lo < hi (a half-open range [lo, hi))",
    "families": f"a non-empty list of graph families from {', '.join(FAMILIES)}",
    "probs": "a non-empty list of probabilities in (0, 1]",
}


@dataclass(frozen=True)
class Param:
    """One task parameter.

    Attributes:
        name: keyword name.
        default: default value, already in canonical form.
        kind: one of :data:`KINDS`.
        doc: one-line description.
        minimum: smallest allowed integer (``int`` and ``int_range`` kinds).
    """

    name: str
    default: Any
    kind: str
    doc: str
    minimum: int = 1

    def convert(self, value: Any) -> Any:
        """Validate ``value`` (a Python value or a command-line string) and return it in
        canonical form: ``int``, ``float`` or a tuple of them, or a tuple of names."""
        try:
            out = _CONVERT[self.kind](value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"parameter {self.name}={value!r} is invalid: expected "
                             f"{KINDS[self.kind]} ({err})") from None
        low = out[0] if self.kind == "int_range" else out
        if self.kind in ("int", "int_range") and low < self.minimum:
            raise ValueError(f"parameter {self.name}={value!r} is invalid: expected "
                             f"{KINDS[self.kind]} of at least {self.minimum}")
        return out


def _items(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [v.strip() for v in value.replace(":", ",").split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise TypeError(f"got {type(value).__name__}")


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("got bool")
    if isinstance(value, str):
        return int(value.strip())
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{value} is not integral")
    if not isinstance(value, (int, float)) and not hasattr(value, "__index__"):
        raise TypeError(f"got {type(value).__name__}")
    return int(value)


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("got bool")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{value} is not finite")
    return out


def _prob(value: Any) -> float:
    out = _float(value)
    if not 0.0 < out <= 1.0:
        raise ValueError(f"{out} is outside (0, 1]")
    return out


def _range(conv: Any) -> Any:
    def convert(value: Any) -> tuple:
        items = _items(value)
        if len(items) != 2:
            raise ValueError(f"got {len(items)} values")
        lo, hi = conv(items[0]), conv(items[1])
        if not lo < hi:
            raise ValueError(f"lo={lo} is not below hi={hi}")
        return (lo, hi)
    return convert


def _families(value: Any) -> tuple[str, ...]:
    items = [str(v) for v in _items(value)]
    if not items:
        raise ValueError("empty")
    bad = [v for v in items if v not in FAMILIES]
    if bad:
        raise ValueError(f"unknown {', '.join(map(repr, bad))}")
    return tuple(items)


def _probs(value: Any) -> tuple[float, ...]:
    items = [_prob(v) for v in _items(value)]
    if not items:
        raise ValueError("empty")
    return tuple(items)


_CONVERT = {
    "int": _int, "prob": _prob, "int_range": _range(_int), "float_range": _range(_float),
    "families": _families, "probs": _probs,
}
