"""Min-cost flow solve (OR-Tools) and locational prices from the residual network.

Prices are node potentials of the optimal flow. Among all optimal dual solutions we take, for
every pool-slot, the *marginal cost of one more GPU-slot of demand there*: the shortest-path
distance from the pool-slot node to the sink in the residual network (with the sink at 0).
That is the largest dual solution, it is unique, and so it is deterministic: an uncongested
pool-slot is priced at the reserve of its cheapest unsold offer, a congested one at the value
of the marginal bid it would displace. Because distances are shortest paths over integer
costs, prices are exact integers: no float-to-fen rounding.
"""

from __future__ import annotations

import numpy as np
from ortools.graph.python import min_cost_flow

from suangu.core.clearing.model import SINK, SOURCE, FloatArray, IntArray
from suangu.core.errors import SolverError

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
    tail: IntArray, head: IntArray, cap: IntArray, cost: IntArray | FloatArray, flow: IntArray
) -> tuple[IntArray, IntArray, IntArray | FloatArray]:
    """Arcs of the residual network: forward where flow < cap, backward where flow > 0."""
    fwd = flow < cap
    bwd = flow > 0
    r_tail = np.concatenate([tail[fwd], head[bwd]])
    r_head = np.concatenate([head[fwd], tail[bwd]])
    r_cost = np.concatenate([cost[fwd], -cost[bwd]])
    return r_tail, r_head, r_cost


def distances_to(
    n_nodes: int,
    tail: IntArray,
    head: IntArray,
    cost: IntArray | FloatArray,
    target: int,
    tolerance: float = 0.0,
) -> IntArray | FloatArray:
    """Shortest-path distance from every node to ``target`` (Bellman-Ford, frontier-based).

    Costs may be negative; the residual network of an optimal flow has no negative cycle, so
    this terminates; a negative cycle (a non-optimal flow) raises :class:`SolverError`.
    Unreachable nodes get ``INF`` (integers) or ``inf`` (floats).
    """
    is_float = np.issubdtype(np.asarray(cost).dtype, np.floating)
    dist: IntArray | FloatArray
    if is_float:
        dist = np.full(n_nodes, np.inf)
        dist[target] = 0.0
    else:
        dist = np.full(n_nodes, INF, np.int64)
        dist[target] = 0
    order = np.argsort(head, kind="stable")
    s_tail, s_head, s_cost = tail[order], head[order], cost[order]
    indptr = np.zeros(n_nodes + 1, np.int64)
    np.cumsum(np.bincount(s_head, minlength=n_nodes), out=indptr[1:])
    frontier = np.asarray([target], np.int64)
    for _ in range(n_nodes + 1):
        if frontier.size == 0:
            return dist
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
        better = cand < dist[u] - tolerance
        if not better.any():
            return dist
        u, cand = u[better], cand[better]
        np.minimum.at(dist, u, cand)
        frontier = np.unique(u)
    raise SolverError(
        "negative cycle in the residual network: the flow is not optimal",
        fix="report this market; the solver's result could not be priced",
    )


def sink_potentials(
    n_nodes: int,
    tail: IntArray,
    head: IntArray,
    cap: IntArray,
    cost: IntArray | FloatArray,
    flow: IntArray,
    tolerance: float = 0.0,
) -> IntArray | FloatArray:
    """Largest node potentials with the sink at 0: distance to the sink in the residual net."""
    r_tail, r_head, r_cost = residual_arcs(tail, head, cap, cost, flow)
    return distances_to(n_nodes, r_tail, r_head, r_cost, SINK, tolerance)


__all__ = [
    "INF",
    "SINK",
    "SOURCE",
    "distances_to",
    "residual_arcs",
    "sink_potentials",
    "solve_min_cost_flow",
]
