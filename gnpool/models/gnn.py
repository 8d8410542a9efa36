"""A message-passing GNN in the style of Xu et al. (ICLR 2021) with pluggable pooling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

import torch
from torch import Tensor
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.aggr import Aggregation
from torch_geometric.typing import PairTensor

from .mlp import MLP
from .pooling import Pooling, per_layer, resolve_pooling


class MessageMLPConv(MessagePassing):
    r"""One layer of Xu et al.'s GNN: an MLP of each edge's endpoints and weight,
    pooled at the target node.

    .. math::
        h_v' = \mathrm{AGG}_{u \in N(v)}\ \mathrm{MLP}([h_u, h_v, w_{uv}])

    Args:
        in_channels, out_channels: node feature widths before and after the layer.
        aggr: an :class:`Aggregation` module (used as is) or a PyG aggregation name.
        edge_dim: columns of ``edge_attr`` appended to the message input (0: none).
        mlp_layers: linear layers of the message MLP.
        last_activation: end the message MLP in a ReLU (Xu et al.: messages >= 0);
            ``False`` ends it linearly, ``"softplus"`` in a softplus (messages > 0).
        factorized: compute the message MLP's first linear layer per node rather than per
            edge. With ``W = [W_u, W_v, W_w]`` split by input,
            ``W [h_u, h_v, w_uv] + b = (W_u h_u) + (W_v h_v + b) + W_w w_uv``: the two
            node terms are computed once per node (``[num_nodes, out_channels]`` each)
            and gathered to the edges, so the first layer costs ``num_nodes`` rows of
            ``2 * in_channels`` instead of ``num_edges`` rows, and the per-edge
            concatenation is not built. The same function and parameters
            (``state_dict`` unchanged), equal up to float rounding; ``False`` computes
            ``MLP(cat([h_u, h_v, w_uv]))`` per edge as written.

    Raises:
        ValueError: ``edge_dim`` not a non-negative int; at call time, ``x`` not of shape
            ``[num_nodes, in_channels]`` or ``edge_attr`` not of shape
            ``[num_edges, edge_dim]``.
    """

    # propagate()'s arguments, for the propagate() PyG generates (TorchScript reads it):
    # x is (source-side, target-side) node features, the same tensor unless factorized.
    propagate_type = {"x": PairTensor, "edge_attr": Optional[Tensor]}  # noqa: UP045, RUF012

    def __init__(self, in_channels: int, out_channels: int, aggr: str | Aggregation = "sum",
                 edge_dim: int = 0, mlp_layers: int = 2,
                 last_activation: bool | str = True, factorized: bool = True) -> None:
        if isinstance(edge_dim, bool) or not isinstance(edge_dim, int) or edge_dim < 0:
            raise ValueError(f"edge_dim must be a non-negative int (0: no edge features), "
                             f"got {edge_dim!r}")
        if not isinstance(factorized, bool):
            raise ValueError(f"factorized must be true or false, got {factorized!r}")
        super().__init__(aggr=aggr)
        self.in_channels = in_channels
        self.edge_dim = edge_dim
        self.factorized = factorized
        self.mlp = MLP(2 * in_channels + edge_dim, out_channels, out_channels, mlp_layers,
                       last_activation)

    def __setstate__(self, state: dict) -> None:
        # A layer pickled before `factorized` existed computed its messages per edge.
        super().__setstate__(state)
        if "factorized" not in self.__dict__:
            self.factorized = False
            self.in_channels = (self.mlp.linears[0].in_features - self.edge_dim) // 2

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        if x.dim() != 2 or x.size(-1) != self.in_channels:
            raise ValueError(f"x must have shape [num_nodes, in_channels={self.in_channels}], "
                             f"got shape {list(x.shape)}")
        if self.edge_dim and (edge_attr is None or edge_attr.dim() != 2
                              or edge_attr.size(-1) != self.edge_dim
                              or edge_attr.size(0) != edge_index.size(-1)):
            # (str of a list: also what a scripted layer can build; the factorized form would
            # broadcast a row too few or a dimension too many instead of failing)
            got = "None" if edge_attr is None else f"shape {list(edge_attr.shape)}"
            raise ValueError(f"edge_attr must have edge_dim={self.edge_dim} columns and one "
                             f"row per edge, shape [{edge_index.size(-1)}, {self.edge_dim}], "
                             f"got {got}")
        if self.factorized:
            first, c = self.mlp.linears[0], self.in_channels
            pair = (torch.nn.functional.linear(x, first.weight[:, :c]),
                    torch.nn.functional.linear(x, first.weight[:, c:2 * c], first.bias))
        else:
            pair = (x, x)
        return self.propagate(edge_index, x=pair, edge_attr=edge_attr if self.edge_dim else None,
                              size=(x.size(0), x.size(0)))

    def message(self, x_i: Tensor, x_j: Tensor, edge_attr: Optional[Tensor]) -> Tensor:  # noqa: UP045
        # (Optional[...], not "| None": PyG's generated propagate() for TorchScript reads it.)
        # x_j is the source u, x_i the target v of the edge u -> v; factorized, they are
        # W_u h_u and W_v h_v + b, the node terms of the first layer (forward()).
        if self.factorized:
            z = x_j + x_i
            if edge_attr is not None:
                weight = self.mlp.linears[0].weight[:, 2 * self.in_channels:]
                z = z + torch.nn.functional.linear(edge_attr.to(z.dtype), weight)
            return self.mlp.forward_after_first(z)
        parts = [x_j, x_i] if edge_attr is None else [x_j, x_i, edge_attr.to(x_j.dtype)]
        return self.mlp(torch.cat(parts, dim=-1))


class MessageMLPGNN(torch.nn.Module):
    """Xu et al.'s GNN: ``num_layers`` :class:`MessageMLPConv` layers, an optional
    node MLP, a readout (graph-level) and a linear output head.

    ``aggr`` and ``readout`` take any PyG aggregation name or module, ``'gnp'`` and
    ``'attsets'`` included; a name is resolved, and a module deep-copied, once per layer
    (see :func:`~gnpool.models.pooling.resolve_pooling`), so no two layers share
    parameters, unless ``share_aggr``. ``aggr`` may also be a list with one pooling per
    layer.

    Args:
        in_channels: node feature width.
        out_channels: target width.
        hidden_channels: width of every hidden layer.
        num_layers: message-passing layers.
        aggr, aggr_kwargs: neighbourhood aggregation and keyword arguments for a name.
        readout, readout_kwargs: graph readout, or ``None`` for a node-level model.
        edge_dim: columns of ``edge_attr`` fed to every message MLP.
        mlp_layers: linear layers of each message MLP (Xu et al.: 2).
        node_mlp_layers: layers of an MLP applied to every node before the readout
            (Xu et al.: 2 for graphs without edge weights, 0 with; 0 disables it).
        output_layers: layers of the output head; its last layer is linear.
        last_activation: message and node MLPs end in a ReLU, so every pooling sees
            non-negative inputs (Xu et al.). ``False`` ends them linearly,
            ``"softplus"`` in a softplus (strictly positive inputs).
        share_aggr: one aggregation module, and so one set of pooling parameters (a
            learnable pooling's exponents), for every message-passing layer, as a fixed
            aggregation name is the same pooling in every layer (Xu et al.'s
            configurations). ``aggr`` must then be one pooling, not a list. A shared
            ``'gnp'`` trains in eager mode, compiled and scripted alike (not in a compiled
            region with activation checkpointing inside it or an activation memory budget
            below 1: :class:`~gnpool.GNPAggregation`).
        factorized: each layer computes its message MLP's first linear layer per node
            (:class:`MessageMLPConv` ``factorized``: the same function, fewer operations);
            ``False`` per edge, as written.

    Raises:
        ValueError: a width or ``num_layers`` that is not a positive int; ``aggr`` given
            per layer with the wrong length, or as a list with ``share_aggr``.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int = 64,
                 num_layers: int = 2, aggr: Pooling | Sequence[Pooling] = "sum",
                 readout: Pooling | None = "sum", *, aggr_kwargs: Mapping[str, Any] | None = None,
                 readout_kwargs: Mapping[str, Any] | None = None, edge_dim: int = 0,
                 mlp_layers: int = 2, node_mlp_layers: int = 0, output_layers: int = 1,
                 last_activation: bool | str = True, share_aggr: bool = False,
                 factorized: bool = True) -> None:
        super().__init__()
        for arg, value in (("in_channels", in_channels), ("out_channels", out_channels),
                           ("hidden_channels", hidden_channels), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be a positive int, got {value!r}")
        self.convs = torch.nn.ModuleList()
        width = in_channels
        if share_aggr and not isinstance(aggr, (str, Aggregation)):
            raise ValueError("share_aggr=True needs one pooling for every layer (a name or an "
                             f"Aggregation module), got aggr={aggr!r}")
        shared = resolve_pooling(aggr, hidden_channels, aggr_kwargs) if share_aggr else None
        for pooling in per_layer(aggr, num_layers, "aggr"):
            # Resolved layer by layer, between the layers' MLPs: a learnable pooling's
            # random initial weights are drawn in the order the stored runs were made with.
            module = (shared if shared is not None
                      else resolve_pooling(pooling, hidden_channels, aggr_kwargs))
            self.convs.append(MessageMLPConv(width, hidden_channels, module, edge_dim,
                                             mlp_layers, last_activation, factorized))
            width = hidden_channels
        self.node_mlp = (MLP(hidden_channels, hidden_channels, hidden_channels, node_mlp_layers,
                             last_activation) if node_mlp_layers else None)
        self.readout = (resolve_pooling(readout, hidden_channels, readout_kwargs)
                        if readout is not None else None)
        self.head = MLP(hidden_channels, hidden_channels, out_channels, output_layers,
                        last_activation=False)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                batch: Tensor | None = None, num_graphs: int | None = None) -> Tensor:
        """Node-level: ``[num_nodes, out_channels]``; graph-level:
        ``[num_graphs, out_channels]`` (one graph when ``batch`` is ``None``)."""
        h = x
        for conv in self.convs:
            h = conv(h, edge_index, edge_attr)
        if self.node_mlp is not None:
            h = self.node_mlp(h)
        if self.readout is not None:    # PyG's Aggregation: no batch is one graph
            h = self.readout(h, batch, dim_size=num_graphs)
        return self.head(h)
