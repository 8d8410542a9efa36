"""Graph and set models whose aggregation and readout are constructor arguments.

Usage::

    from gnpool.models import DeepSets, MessageMLPGNN
    gnn = MessageMLPGNN(3, 1, hidden_channels=64, num_layers=2, aggr="gnp", readout="gnp")
    sets = DeepSets(1, 1, pooling="attsets")
"""

from .deepsets import DeepSets
from .gnn import MessageMLPConv, MessageMLPGNN
from .mlp import MLP
from .multiview import MultiViewReconstructor, ViewEncoder, VoxelDecoder
from .pooling import Pooling, aggregation_class, gnp_parameters, per_layer, resolve_pooling
from .view_pooling import VIEW_AGGREGATORS, ViewGNP, ViewGRU, ViewPooling, view_aggregator

__all__ = [
    "MLP", "VIEW_AGGREGATORS", "DeepSets", "MessageMLPConv", "MessageMLPGNN",
    "MultiViewReconstructor", "Pooling", "ViewEncoder", "ViewGNP", "ViewGRU", "ViewPooling",
    "VoxelDecoder", "aggregation_class", "gnp_parameters", "per_layer", "resolve_pooling",
    "view_aggregator",
]
