"""Make gnpool's aggregations resolvable from PyG aggregation strings."""

from __future__ import annotations

import torch_geometric.nn.aggr as pyg_aggr


def _aggregations() -> list[type]:
    from ..baselines import GenAggAggregation, GenAggPowerAggregation, LAFAggregation
    from .attsets import AttSetsAggregation
    from .gnp import GNPAggregation
    return [GNPAggregation, AttSetsAggregation, LAFAggregation, GenAggAggregation,
            GenAggPowerAggregation]


def register() -> None:
    """Let PyG resolve ``'gnp'`` and ``'attsets'`` by name, and the baselines of
    :mod:`gnpool.baselines` as ``'laf'``, ``'genagg'`` and ``'genaggpower'``.

    PyG's ``aggregation_resolver`` scans the classes of ``torch_geometric.nn.aggr``
    when a string is resolved, so this adds gnpool's classes there. Afterwards
    ``GraphConv(16, 16, aggr='gnp')``, ``MultiAggregation(['sum', 'gnp'])`` and
    ``SAGEConv(16, 16, aggr='attsets')`` work (AttSets then infers its ``in_channels``
    on the first call; ``aggr_kwargs={'in_channels': 16}`` builds it at once).
    Calling it again changes nothing; importing gnpool alone never touches PyG.
    """
    for cls in _aggregations():
        setattr(pyg_aggr, cls.__name__, cls)
        if cls.__name__ not in pyg_aggr.__all__:
            pyg_aggr.__all__.append(cls.__name__)
