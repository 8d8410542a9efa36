"""Hyperparameters of one benchmark run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HParams:
    """Model and training settings (defaults: a small version of Xu et al.'s setup).

    Attributes:
        hidden: width of every hidden layer and of the pooled features.
        layers: message-passing layers (graph and node tasks).
        mlp_layers: linear layers of each message MLP.
        node_mlp_layers: layers of the node MLP before the readout (0: none).
        output_layers: layers of the output head (last one linear).
        encoder_layers, decoder_layers: DeepSets encoder and decoder depth.
        last_activation: message MLPs, node MLP and set encoder end in a ReLU, so the
            poolings see non-negative inputs (Xu et al.); ``False`` ends them linearly.
        epochs, batch_size, lr, weight_decay: Adam on the MSE loss.
        lr_step, lr_gamma: multiply the learning rate by ``lr_gamma`` every ``lr_step``
            epochs (Xu et al.: 50, 0.5); ``lr_step = 0`` keeps it constant.
        pool_lr: learning rate of the pooling parameters (GNP's p and q, PowerMean's p,
            Softmax's t, LAF's exponents and weights, GenAgg's alpha, beta and f), which
            get no weight decay; ``None`` uses ``lr``.
        gnp_kwargs: keyword arguments of every :class:`~gnpool.GNPAggregation`
            (``p``, ``q``, ``p_neg``, ``q_neg``, ``p_min``, ``p_max``).
        gnp_readout_kwargs: merged over ``gnp_kwargs`` for a GNP readout or set pooling.
        gnp_negative_share: share of each GNP's channels whose exponents ``p`` and
            ``p_neg`` start negative (same magnitude). The sign of an exponent never
            changes in training, and only a negative one can become min on non-negative
            inputs.
        gnp_p_spread: if set, the channels' initial ``|p|`` run geometrically from the
            initial ``|p|`` to this value (within each sign), so that every GNP starts
            as a bank of poolings from sum- or mean-like to max- or min-like.
        eval_batch_size: batch size of evaluation.
        size_bins: bins of the test sizes the per-size MAPE is reported in.
    """

    hidden: int = 64
    layers: int = 2
    mlp_layers: int = 2
    node_mlp_layers: int = 0
    output_layers: int = 1
    encoder_layers: int = 2
    decoder_layers: int = 1
    last_activation: bool = True
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.01
    weight_decay: float = 1e-5
    lr_step: int = 0
    lr_gamma: float = 0.5
    pool_lr: float | None = None
    gnp_kwargs: dict[str, Any] = field(default_factory=dict)
    gnp_readout_kwargs: dict[str, Any] = field(default_factory=dict)
    gnp_negative_share: float = 0.0
    gnp_p_spread: float | None = None
    eval_batch_size: int = 256
    size_bins: int = 5

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def updated(self, values: Mapping[str, Any]) -> HParams:
        """A copy with ``values`` applied (unknown names raise ``ValueError``)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"hyperparameters {unknown} are unknown; expected some of "
                             f"{', '.join(sorted(known))}")
        return dataclasses.replace(self, **dict(values))


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses (numbers, true, null, {...}), else text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """``["epochs=5", "gnp_kwargs={\\"p_max\\": 50}"]`` -> ``{"epochs": 5, ...}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set value {item!r} is invalid; expected KEY=VALUE")
        out[key.strip()] = parse_value(value)
    return out


def digest(obj: Any) -> str:
    """A short stable hash of a JSON-ready object."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
