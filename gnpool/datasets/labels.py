"""Label computations on undirected edge lists (numpy, plus a small Dijkstra)."""

from __future__ import annotations

import heapq
import math

import numpy as np


def degrees(n: int, edges: np.ndarray) -> np.ndarray:
    """Degree of each of the ``n`` nodes for undirected ``edges`` [m, 2]."""
    return np.bincount(edges.ravel(), minlength=n)


def adjacency(n: int, edges: np.ndarray, weights: np.ndarray) -> list[list[tuple[int, float]]]:
    """Adjacency lists ``[(neighbour, weight), ...]`` of an undirected weighted graph."""
    adj: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    for (a, b), w in zip(edges.tolist(), weights.tolist(), strict=True):
        adj[a].append((b, w))
        adj[b].append((a, w))
    return adj


def dijkstra(adj: list[list[tuple[int, float]]], source: int
             ) -> tuple[list[float], list[int], list[int]]:
    """Shortest paths from ``source`` with positive weights.

    Returns:
        ``(dist, count, hops)``: the distance of every node, its number of distinct
        shortest paths and the fewest edges among them. Equal lengths are ties only when
        the float sums are exactly equal, as in networkx.
    """
    n = len(adj)
    dist = [math.inf] * n
    count = [0] * n
    hops = [0] * n
    dist[source], count[source] = 0.0, 1
    done = [False] * n
    heap = [(0.0, source)]
    while heap:
        d, u = heapq.heappop(heap)
        if done[u]:
            continue
        done[u] = True
        for v, w in adj[u]:
            nd = d + w
            if nd < dist[v]:
                dist[v], count[v], hops[v] = nd, count[u], hops[u] + 1
                heapq.heappush(heap, (nd, v))
            elif nd == dist[v]:
                # Positive weights: v is not final yet, so every tie is counted.
                count[v] += count[u]
                hops[v] = min(hops[v], hops[u] + 1)
    return dist, count, hops


def hop_ball(adj: list[list[tuple[int, float]]], source: int, radius: int) -> list[int]:
    """Nodes within ``radius`` unweighted hops of ``source`` (``source`` included), sorted."""
    seen = {source}
    frontier = [source]
    for _ in range(radius):
        nxt = []
        for u in frontier:
            for v, _w in adj[u]:
                if v not in seen:
                    seen.add(v)
                    nxt.append(v)
        frontier = nxt
    return sorted(seen)


def neighbour_max(n: int, edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per node and channel, the max of ``x`` [n, d] over its neighbours (not itself)."""
    src = np.concatenate([edges[:, 0], edges[:, 1]])
    dst = np.concatenate([edges[:, 1], edges[:, 0]])
    out = np.full((n, x.shape[1]), -np.inf)
    np.maximum.at(out, dst, x[src])
    return out


def neighbour_mean(n: int, edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per node and channel, the mean of ``x`` [n, d] over its neighbours (not itself)."""
    src = np.concatenate([edges[:, 0], edges[:, 1]])
    dst = np.concatenate([edges[:, 1], edges[:, 0]])
    out = np.zeros((n, x.shape[1]))
    np.add.at(out, dst, x[src])
    return out / degrees(n, edges)[:, None]
