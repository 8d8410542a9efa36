"""Connected random graph families, drawn with numpy from a ``numpy.random.Generator``.

Every generator returns the undirected edges of a connected graph on exactly ``n`` nodes
as an ``int64`` array of shape ``[m, 2]``, one row per edge. The generators are written
with numpy rather than networkx's so that the graphs depend only on the seed, not on the
networkx release; :func:`sample_graph` also relabels the nodes at random so that node ids
carry no information about the structure.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

import numpy as np

#: Families the training splits draw from by default (those of Xu et al., 2021).
TRAIN_FAMILIES = (
    "path", "cycle", "ladder", "4regular", "complete", "tree", "expander", "general",
)
#: Families never used for training by default: they give the structure shift.
HELDOUT_FAMILIES = ("barabasi_albert", "grid")
#: Every family; the position of a name is its stable family id.
FAMILIES = TRAIN_FAMILIES + HELDOUT_FAMILIES

#: Edge probabilities of the ``general`` family, used in equal shares.
GENERAL_P = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

# Attempts before a rejection sampler gives up; reaching it means the parameters
# make connected graphs practically impossible (e.g. tiny p with many nodes).
_MAX_TRIES = 100_000


def min_nodes(family: str, ba_m: int = 2) -> int:
    """Smallest node count ``family`` can be drawn with."""
    if family == "barabasi_albert":
        return ba_m + 1
    return {"cycle": 3, "ladder": 4, "4regular": 5, "grid": 4}.get(family, 2)


def is_connected(n: int, edges: np.ndarray) -> bool:
    """Whether the graph on ``n`` nodes with undirected ``edges`` [m, 2] is connected."""
    if n <= 1:
        return True
    if len(edges) < n - 1 or np.bincount(edges.ravel(), minlength=n).min() == 0:
        return False
    adj = np.zeros((n, n), dtype=bool)
    adj[edges[:, 0], edges[:, 1]] = True
    adj[edges[:, 1], edges[:, 0]] = True
    seen = np.zeros(n, dtype=bool)
    seen[0] = True
    frontier = seen.copy()
    while frontier.any():
        frontier = adj[frontier].any(axis=0) & ~seen
        seen |= frontier
    return bool(seen.all())


def path(n: int, rng: np.random.Generator) -> np.ndarray:
    i = np.arange(n - 1)
    return np.stack([i, i + 1], axis=1)


def cycle(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([path(n, rng), [[n - 1, 0]]])


def ladder(n: int, rng: np.random.Generator) -> np.ndarray:
    """Ladder with ``n // 2`` rungs; for odd ``n`` the last node caps the end as a triangle.

    ``networkx.ladder_graph(k)`` has ``2k`` nodes; this one has exactly ``n`` so that
    every family shares the same size distribution.
    """
    k = n // 2
    i = np.arange(k - 1)
    parts = [np.stack([i, i + 1], 1), np.stack([k + i, k + i + 1], 1),
             np.stack([np.arange(k), k + np.arange(k)], 1)]
    if n % 2:
        parts.append(np.array([[k - 1, 2 * k], [2 * k - 1, 2 * k]]))
    return np.concatenate(parts)


def complete(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.stack(np.triu_indices(n, k=1), axis=1)


def regular4(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform connected 4-regular graph: configuration model, rejecting non-simple pairings."""
    stubs = np.repeat(np.arange(n), 4)
    for _ in range(_MAX_TRIES):
        pairs = rng.permutation(stubs).reshape(-1, 2)
        lo, hi = pairs.min(1), pairs.max(1)
        if (lo == hi).any():
            continue
        code = lo * n + hi
        if np.unique(code).size != code.size:
            continue
        edges = np.stack([lo, hi], 1)
        if is_connected(n, edges):
            return edges
    raise RuntimeError(f"no connected 4-regular graph on n={n} nodes found")


def random_tree(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform random labelled tree, decoded from a random Pruefer sequence."""
    if n == 2:
        return np.array([[0, 1]])
    seq = rng.integers(0, n, n - 2).tolist()
    degree = [1] * n
    for s in seq:
        degree[s] += 1
    leaves = [i for i in range(n) if degree[i] == 1]
    heapq.heapify(leaves)
    edges = []
    for s in seq:
        edges.append((heapq.heappop(leaves), s))
        degree[s] -= 1
        if degree[s] == 1:
            heapq.heappush(leaves, s)
    edges.append((leaves[0], leaves[1]))
    return np.array(edges)


_TRIU: dict[int, np.ndarray] = {}


def erdos_renyi(n: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """G(n, p) resampled until connected."""
    if n not in _TRIU:
        _TRIU[n] = complete(n, rng)
    pairs = _TRIU[n]
    for _ in range(_MAX_TRIES):
        edges = pairs[rng.random(len(pairs)) < p]
        if is_connected(n, edges):
            return edges
    raise RuntimeError(f"no connected G(n, p) graph found for n={n}, p={p}")


def barabasi_albert(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """Preferential attachment: a star on ``m + 1`` nodes, then each new node links to
    ``m`` distinct nodes chosen with probability proportional to their degree."""
    edges = [(0, i) for i in range(1, m + 1)]
    ends = [0] * m + list(range(1, m + 1))  # every node once per incident edge
    for new in range(m + 1, n):
        targets: set[int] = set()
        while len(targets) < m:
            targets.add(ends[int(rng.integers(len(ends)))])
        for t in sorted(targets):
            edges.append((t, new))
            ends += [t, new]
    return np.array(edges)


def grid(n: int, rng: np.random.Generator) -> np.ndarray:
    """2-d grid filled row by row with ``n`` nodes (the last row may be partial).

    The column count is drawn from ``[isqrt(n), 2 isqrt(n)]`` so aspect ratios vary.
    """
    r = math.isqrt(n)
    cols = int(rng.integers(r, 2 * r + 1))
    i = np.arange(n)
    right = i[(i % cols != cols - 1) & (i + 1 < n)]
    down = i[i + cols < n]
    return np.concatenate([np.stack([right, right + 1], 1), np.stack([down, down + cols], 1)])


_SIMPLE: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "path": path, "cycle": cycle, "ladder": ladder, "complete": complete,
    "4regular": regular4, "tree": random_tree, "grid": grid,
}


def sample_graph(family: str, n: int, rng: np.random.Generator, *, p: float = 0.5,
                 ba_m: int = 2) -> np.ndarray:
    """Draw a connected graph of ``family`` on ``n`` nodes with randomly permuted labels.

    Args:
        family: one of :data:`FAMILIES`.
        n: number of nodes, at least :func:`min_nodes` of the family.
        rng: source of randomness.
        p: edge probability for ``expander`` and ``general`` (Erdos-Renyi) graphs.
        ba_m: edges added per new node for ``barabasi_albert``.

    Returns:
        ``int64`` array [m, 2] of undirected edges, each edge once.
    """
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is unknown; expected one of {', '.join(FAMILIES)}")
    if n < min_nodes(family, ba_m):
        raise ValueError(f"n={n} is too small for family {family!r}; "
                         f"expected n >= {min_nodes(family, ba_m)}")
    if family in ("expander", "general"):
        edges = erdos_renyi(n, p, rng)
    elif family == "barabasi_albert":
        edges = barabasi_albert(n, ba_m, rng)
    else:
        edges = _SIMPLE[family](n, rng)
    perm = rng.permutation(n)
    return perm[np.asarray(edges, dtype=np.int64)]
