"""Min-cost flow solve (OR-Tools) and shortest paths in its residual network.

The engine prices pool-slots with node potentials of the optimal flow: the lowest potentials
that support it are minus the shortest-path distances from the sink in the residual network
(see :mod:`suangu.core.clearing.engine`). With integer arc costs the distances are exact
integers, so prices need no float-to-fen rounding.
"""

from __future__ import annotations

import numpy as np
from ortools.graph.python import min_cost_flow

from suangu.core.clearing.model import IntArray
from suangu.core.errors import SolverError

#: Distance of a node the search cannot reach.
INF = np.iinfo(np.int64).max // 4


def solve_min_cost_flow(
    n_nodes: int,
    tail: IntArray,
    head: IntArray,
    cap: IntArray,
    cost: IntArray,
    supply: IntArray,
) -> tuple[IntArray, int]:
    """Optimal flow per arc and its total cost; ``supply`` per node sums to zero."""
    mcf = min_cost_flow.SimpleMinCostFlow()
    mcf.add_arcs_with_capacity_and_unit_cost(tail, head, cap, cost)
    mcf.set_nodes_supplies(np.arange(n_nodes, dtype=np.int64), supply)
    status = mcf.solve()
    if status != mcf.OPTIMAL:
        raise SolverError(f"min-cost flow ended with status {status}", fix="report this market")
    flow = np.asarray(mcf.flows(np.arange(tail.size, dtype=np.int64)), dtype=np.int64)
    return flow, int(mcf.optimal_cost())


def residual_arcs(
    tail: IntArray, head: IntArray, cap: IntArray, cost: IntArray, flow: IntArray
) -> tuple[IntArray, IntArray, IntArray]:
    """Arcs of the residual network: forward where flow < cap, backward where flow > 0."""
    fwd = flow < cap
    bwd = flow > 0
    r_tail = np.concatenate([tail[fwd], head[bwd]])
    r_head = np.concatenate([head[fwd], tail[bwd]])
    r_cost = np.concatenate([cost[fwd], -cost[bwd]])
    return r_tail, r_head, r_cost


def distances_to(
    n_nodes: int, tail: IntArray, head: IntArray, cost: IntArray, target: int
) -> IntArray:
    """Shortest-path distance from every node to ``target`` (Bellman-Ford, frontier-based).

    Costs may be negative; the residual network of an optimal flow has no negative cycle, so
    this terminates; a negative cycle (a non-optimal flow) raises :class:`SolverError`.
    Unreachable nodes get ``INF``.
    """
    dist = np.full(n_nodes, INF, np.int64)
    dist[target] = 0
    order = np.argsort(head, kind="stable")
    s_tail, s_head, s_cost = tail[order], head[order], cost[order]
    indptr = np.zeros(n_nodes + 1, np.int64)
    np.cumsum(np.bincount(s_head, minlength=n_nodes), out=indptr[1:])
    frontier = np.asarray([target], np.int64)
    for _ in range(n_nodes + 1):
        starts, ends = indptr[frontier], indptr[frontier + 1]
        counts = ends - starts
        total = int(counts.sum())
        if total == 0:
            return dist
        # Indices of all arcs entering the frontier, without a Python loop.
        offsets = np.repeat(starts - np.cumsum(counts) + counts, counts)
        idx = offsets + np.arange(total, dtype=np.int64)
        u = s_tail[idx]
        cand = s_cost[idx] + dist[s_head[idx]]
        better = cand < dist[u]
        if not better.any():
            return dist
        u, cand = u[better], cand[better]
        np.minimum.at(dist, u, cand)
        frontier = np.unique(u)
    raise SolverError(
        "negative cycle in the residual network: the flow is not optimal",
        fix="report this market; the solver's result could not be priced",
    )
