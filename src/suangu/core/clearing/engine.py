"""The clearing engine: picks the formulation, solves, prices, and returns a result.

* Batch and service orders only, no green minimums: a min-cost flow (OR-Tools), exact and
  integral, priced from the residual network (see :mod:`suangu.core.clearing.network`).
* Gang orders: a mixed-integer program (HiGHS) picks placements; then the placements are fixed
  and the rest is re-solved and priced as above. A gang whose bill at those prices would exceed
  its limit is rejected and the market re-cleared (paradoxical rejection, as in EUPHEMIA): no
  order is ever paradoxically accepted, so every order is individually rational and money
  balances exactly (everyone trades at the same pool-slot prices).
* Green-share minimums: side rows of an LP (HiGHS); the LP's duals on those rows fold into the
  arc costs (Lagrangian), and prices come from the residual network of that Lagrangian network.
  Fractional GPU-slots are rounded down and repaired so that every row still holds.

Prices: the *lowest* prices that support the allocation (smallest dual solution, i.e. minus
the shortest-path distance from the sink in the residual network); a pool-slot where nothing
trades is quoted at the cheapest reserve offered there. Both are unique, so prices are
deterministic even when the LP is degenerate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from suangu.core.clearing.lp import LpSolution, solve_lp
from suangu.core.clearing.model import (
    ARC_BID,
    ARC_BYPASS,
    ARC_SLOT,
    ARC_SUPPLY,
    ARC_WORK,
    NO_SUPPLY,
    SINK,
    SOURCE,
    ClearingModel,
    FloatArray,
    IntArray,
    build_model,
)
from suangu.core.clearing.network import INF, distances_to, residual_arcs, solve_min_cost_flow
from suangu.core.errors import SolverError
from suangu.core.types import (
    Allocation,
    ClearingResult,
    ClearingStatus,
    Market,
    OfferFill,
    PoolPrice,
)

#: Flow below this is zero when reading an LP solution.
FLOW_EPS = 1e-7


@dataclass(frozen=True)
class ClearingOptions:
    time_limit_s: float = 60.0
    mip_rel_gap: float = 1e-7


@dataclass
class _Cleared:
    """An integral clearing of the network part plus chosen gang placements."""

    flow: IntArray  # per model arc
    potential: IntArray  # price per pool-slot (fen / GPU-hour)
    placements: IntArray  # indices of chosen placements
    optimal: bool
    message: str = ""
    price_s: float = 0.0


def clear(market: Market, options: ClearingOptions | None = None) -> ClearingResult:
    """Clear ``market``: welfare-maximising allocations and locational prices."""
    options = options or ClearingOptions()
    t0 = time.perf_counter()
    model = build_model(market)
    timings = {"build_s": time.perf_counter() - t0}
    has_bids = bool((model.kind == ARC_BID).any()) or len(model.placements) > 0
    if not has_bids:
        return _result(model, None, ClearingStatus.EMPTY, "no order can trade", timings, ())

    t1 = time.perf_counter()
    rejected: list[int] = []
    method = "network"
    try:
        if len(model.placements) == 0 and not model.green_rows:
            cleared = _clear_network(model, np.zeros(0, np.int64))
        else:
            method = "mip" if len(model.placements) else "lp"
            cleared = _clear_with_gangs(model, options, rejected)
    except SolverError as err:
        timings["solve_s"] = time.perf_counter() - t1
        return _result(model, None, ClearingStatus.FAILED, str(err), timings, (), method)
    timings["solve_s"] = time.perf_counter() - t1 - cleared.price_s
    timings["price_s"] = cleared.price_s
    status = ClearingStatus.OPTIMAL if cleared.optimal else ClearingStatus.FEASIBLE
    rejected_ids = tuple(sorted(model.gangs[g].id for g in rejected))
    t2 = time.perf_counter()
    result = _result(model, cleared, status, cleared.message, timings, rejected_ids, method)
    result.timings["assemble_s"] = time.perf_counter() - t2  # type: ignore[index]
    return result


# --- network path ---------------------------------------------------------------------------


def _gang_use(model: ClearingModel, chosen: IntArray) -> IntArray:
    """GPUs per pool-slot taken by the chosen gang placements."""
    use = np.zeros(model.n_pool_slots, np.int64)
    pl = model.placements
    for j in chosen:
        nodes = pl.pool[j] * model.n_slots + pl.start[j] + np.arange(pl.duration[j])
        use[nodes] += pl.gpus[j]
    return use


def _clear_network(model: ClearingModel, chosen: IntArray) -> _Cleared:
    """Exact integral min-cost flow with the chosen gangs' use fixed, and its prices."""
    supply = np.zeros(model.n_nodes, np.int64)
    supply[SOURCE] = model.total_supply
    supply[SINK] = -model.total_supply
    use = _gang_use(model, chosen)
    supply[model.ps_base : model.ps_base + model.n_pool_slots] += use
    supply[SINK] -= int(use.sum())
    flow, _ = solve_min_cost_flow(
        model.n_nodes, model.tail, model.head, model.cap, model.cost, supply
    )
    t0 = time.perf_counter()
    prices = _prices(model, flow, model.cost, use)
    return _Cleared(flow, prices, chosen, optimal=True, price_s=time.perf_counter() - t0)


def _prices(
    model: ClearingModel,
    flow: IntArray | FloatArray,
    cost: IntArray | FloatArray,
    gang_use: IntArray,
    tolerance: float = 0.0,
) -> IntArray:
    """Lowest supporting prices per pool-slot; the cheapest reserve where nothing trades."""
    r_tail, r_head, r_cost = _residual(model, flow, cost, tolerance)
    # Distance from the sink to u = distance from u to the sink in the reversed network.
    dist = distances_to(model.n_nodes, r_head, r_tail, r_cost, SINK, tolerance)
    ps = slice(model.ps_base, model.ps_base + model.n_pool_slots)
    pot = -np.asarray(dist[ps], dtype=np.float64)
    sup = model.kind == ARC_SUPPLY
    sold = np.bincount(
        model.tail[sup] - model.ps_base, weights=flow[sup], minlength=model.n_pool_slots
    )
    traded = (sold > FLOW_EPS) | (gang_use > 0)
    unreachable = ~np.isfinite(pot) | (pot <= -INF / 2)
    if (traded & unreachable).any():
        raise SolverError("a traded pool-slot could not be priced", fix="report this market")
    prices = np.where(traded, np.round(pot + 0.0), model.min_reserve.astype(np.float64))
    prices = np.where(model.min_reserve >= NO_SUPPLY, 0, prices)
    return prices.astype(np.int64)


def _residual(
    model: ClearingModel, flow: IntArray | FloatArray, cost: IntArray | FloatArray, tol: float
) -> tuple[IntArray, IntArray, IntArray | FloatArray]:
    if tol == 0.0:
        return residual_arcs(model.tail, model.head, model.cap, cost, flow)  # type: ignore[arg-type]
    fwd = flow < model.cap - tol
    bwd = flow > tol
    return (
        np.concatenate([model.tail[fwd], model.head[bwd]]),
        np.concatenate([model.head[fwd], model.tail[bwd]]),
        np.concatenate([cost[fwd], -cost[bwd]]),
    )


# --- gang and green-share path ---------------------------------------------------------------


def _clear_with_gangs(
    model: ClearingModel, options: ClearingOptions, rejected: list[int]
) -> _Cleared:
    """MIP for the placements, then fixed-placement pricing; reject paradoxical gangs."""
    pl = model.placements
    deadline = time.perf_counter() + options.time_limit_s
    optimal = True
    for _ in range(len(model.gangs) + 1):
        excluded = np.nonzero(np.isin(pl.order, rejected))[0]
        remaining = max(deadline - time.perf_counter(), 1.0)
        if len(pl):
            sol = solve_lp(
                model,
                excluded_placements=excluded,
                time_limit_s=remaining,
                mip_rel_gap=options.mip_rel_gap,
            )
            optimal &= sol.optimal
            chosen = np.nonzero(sol.placement > 0.5)[0]
        else:
            chosen = np.zeros(0, np.int64)
        if model.green_rows:
            cleared = _clear_green(model, chosen, max(deadline - time.perf_counter(), 1.0))
            optimal &= cleared.optimal
        else:
            cleared = _clear_network(model, chosen)
        losers = _paradoxical(model, cleared)
        if not losers:
            cleared.optimal = optimal
            return cleared
        rejected.append(losers[0])
    raise SolverError("gang pricing did not settle", fix="report this market")


def _paradoxical(model: ClearingModel, cleared: _Cleared) -> list[int]:
    """Accepted gangs whose bill at the clearing prices exceeds their limit, worst first."""
    pl = model.placements
    worst: list[tuple[float, str, int]] = []
    for j in cleared.placements:
        nodes = pl.pool[j] * model.n_slots + pl.start[j] + np.arange(pl.duration[j])
        bill = int(cleared.potential[nodes].sum())
        limit = int(pl.value[j] * pl.duration[j])
        if bill > limit:
            g = int(pl.order[j])
            worst.append((-(bill - limit) / limit, model.gangs[g].id, g))
    return [g for _, _, g in sorted(worst)]


def _clear_green(model: ClearingModel, chosen: IntArray, time_limit_s: float) -> _Cleared:
    """LP with green rows (placements fixed), Lagrangian prices, integral repair."""
    fixed = np.zeros(len(model.placements))
    fixed[chosen] = 1.0
    sol = solve_lp(model, fixed_placements=fixed, integer=False, time_limit_s=time_limit_s)
    flow_f = _network_flow(model, sol.bid, sol.supply)
    cost = model.cost.astype(np.float64)
    for row, (_, arcs, coef) in enumerate(model.green_rows):
        cost[arcs] -= sol.green_dual[row] * coef
    use = _gang_use(model, chosen)
    t0 = time.perf_counter()
    prices = _prices(model, flow_f, cost, use, tolerance=1e-6)
    price_s = time.perf_counter() - t0
    flow = _integral_flow(model, sol, use, prices)
    return _Cleared(flow, prices, chosen, optimal=sol.optimal, price_s=price_s)


def _network_flow(model: ClearingModel, bid: FloatArray, supply: FloatArray) -> FloatArray:
    """Per-arc flow of the whole network from bid and supply flows."""
    flow = np.zeros(model.n_arcs)
    flow[model.kind == ARC_BID] = bid
    flow[model.kind == ARC_SUPPLY] = supply
    bid_idx = np.nonzero(model.kind == ARC_BID)[0]
    slot_idx = np.nonzero(model.kind == ARC_SLOT)[0]
    work_idx = np.nonzero(model.kind == ARC_WORK)[0]
    per_os = np.bincount(model.tail[bid_idx], weights=bid, minlength=model.n_nodes)
    flow[slot_idx] = per_os[model.head[slot_idx]]
    per_order = np.bincount(model.tail[slot_idx], weights=flow[slot_idx], minlength=model.n_nodes)
    flow[work_idx] = per_order[model.head[work_idx]]
    flow[model.kind == ARC_BYPASS] = model.total_supply - flow[work_idx].sum()
    return flow


def _integral_flow(
    model: ClearingModel, sol: LpSolution, gang_use: IntArray, prices: IntArray
) -> IntArray:
    """Round the LP's bids down, restore green minimums and limits, dispatch supply by merit."""
    bid_idx = np.nonzero(model.kind == ARC_BID)[0]
    x = np.floor(sol.bid + FLOW_EPS).astype(np.int64)
    ps = model.head[bid_idx] - model.ps_base
    green_of: dict[int, tuple[IntArray, FloatArray]] = {}
    for _, arcs, coef in model.green_rows:
        for a in arcs:
            green_of[int(a)] = (arcs, coef)
        # Shed the brownest GPU-slots until the order's green share holds again.
        while float(coef @ x[arcs]) < -1e-9:
            live = arcs[x[arcs] > 0]
            worst = live[np.argmin(coef[np.searchsorted(arcs, live)])]
            x[worst] -= 1
    # Round back up where every row still holds, largest fractions first.
    frac = sol.bid - x
    ups = [int(a) for a in np.argsort(-frac, kind="stable") if frac[a] > FLOW_EPS]
    if ups:
        order_of = model.arc_order[bid_idx]
        os_of = model.tail[bid_idx]
        work = np.zeros(len(model.orders), np.int64)
        w_arcs = np.nonzero(model.kind == ARC_WORK)[0]
        work[model.arc_order[w_arcs]] = model.cap[w_arcs]
        order_used = np.bincount(order_of, weights=x, minlength=len(model.orders))
        os_used = np.bincount(os_of, weights=x, minlength=model.n_nodes)
        ps_used = np.bincount(ps, weights=x, minlength=model.n_pool_slots) + gang_use
        for a in ups:
            i, o, n = order_of[a], os_of[a], ps[a]
            if (
                order_used[i] + 1 > work[i]
                or os_used[o] + 1 > model.cap[a]
                or ps_used[n] + 1 > model.offered[n]
            ):
                continue
            if a in green_of:
                arcs, coef = green_of[a]
                if float(coef @ x[arcs]) + float(coef[np.searchsorted(arcs, a)]) < -1e-9:
                    continue
            x[a] += 1
            order_used[i] += 1
            os_used[o] += 1
            ps_used[n] += 1
    # Individual rationality per order after rounding: never above the limit on average.
    limit = -model.cost[bid_idx]
    bill = np.bincount(
        model.arc_order[bid_idx], weights=prices[ps] * x, minlength=len(model.orders)
    )
    worth = np.bincount(model.arc_order[bid_idx], weights=limit * x, minlength=len(model.orders))
    over = np.nonzero(bill > worth)[0]
    if over.size:
        x[np.isin(model.arc_order[bid_idx], over)] = 0
    demand = np.bincount(ps, weights=x, minlength=model.n_pool_slots).astype(np.int64) + gang_use
    flow = np.zeros(model.n_arcs, np.int64)
    flow[bid_idx] = x
    sup_idx = np.nonzero(model.kind == ARC_SUPPLY)[0]
    merit = sup_idx[np.lexsort((sup_idx, model.cost[sup_idx], model.tail[sup_idx]))]
    left = demand.copy()
    for a in merit:
        n = model.tail[a] - model.ps_base
        take = min(int(left[n]), int(model.cap[a]))
        flow[a] = take
        left[n] -= take
    return flow


# --- result assembly -------------------------------------------------------------------------


def _result(
    model: ClearingModel,
    cleared: _Cleared | None,
    status: ClearingStatus,
    message: str,
    timings: dict[str, float],
    rejected: tuple[str, ...],
    method: str = "network",
) -> ClearingResult:
    market = model.market
    hours = market.grid.slot_hours
    first = market.first_slot
    n_ps = model.n_pool_slots
    if cleared is None:
        prices = np.where(model.min_reserve >= NO_SUPPLY, 0, model.min_reserve)
        flow = np.zeros(model.n_arcs, np.int64)
        chosen = np.zeros(0, np.int64)
    else:
        prices, flow, chosen = cleared.potential, cleared.flow, cleared.placements

    allocations: list[Allocation] = []
    bid_idx = np.nonzero((model.kind == ARC_BID) & (flow > 0))[0]
    for a in bid_idx:
        order = model.orders[model.arc_order[a]]
        p, k = model.pool_slot(int(model.head[a]))
        allocations.append(
            Allocation(
                order.id,
                order.buyer_id,
                model.pools[p].id,
                first + k,
                int(flow[a]),
                int(prices[p * model.n_slots + k]),
            )
        )
    pl = model.placements
    gang_use = np.zeros(n_ps, np.int64)
    for j in chosen:
        order = model.gangs[pl.order[j]]
        for k in range(int(pl.start[j]), int(pl.start[j] + pl.duration[j])):
            node = int(pl.pool[j]) * model.n_slots + k
            gang_use[node] += int(pl.gpus[j])
            allocations.append(
                Allocation(
                    order.id,
                    order.buyer_id,
                    model.pools[pl.pool[j]].id,
                    first + k,
                    int(pl.gpus[j]),
                    int(prices[node]),
                )
            )
    allocations.sort(key=lambda a: (a.order_id, a.slot, a.pool_id))

    fills: list[OfferFill] = []
    sold = np.zeros(n_ps, np.int64)
    for a in np.nonzero((model.kind == ARC_SUPPLY) & (flow > 0))[0]:
        offer = market.offers[model.arc_offer[a]]
        node = int(model.tail[a]) - model.ps_base
        p, k = divmod(node, model.n_slots)
        sold[node] += int(flow[a])
        fills.append(
            OfferFill(
                offer.id,
                offer.provider_id,
                model.pools[p].id,
                first + k,
                int(flow[a]),
                int(prices[node]),
                int(model.cost[a]),
            )
        )
    fills.sort(key=lambda f: (f.offer_id, f.slot))

    price_rows = [
        PoolPrice(
            model.pools[p].id,
            first + k,
            int(prices[node]),
            int(sold[node]),
            int(model.offered[node]),
        )
        for node in np.nonzero(model.offered > 0)[0]
        for p, k in [divmod(int(node), model.n_slots)]
    ]
    limits = {o.id: o.limit_fen for o in market.orders}
    value = sum(limits[a.order_id] * a.gpus for a in allocations)
    cost = sum(f.reserve_fen * f.gpus for f in fills)
    return ClearingResult(
        status=status,
        method=method,
        allocations=tuple(allocations),
        fills=tuple(fills),
        prices=tuple(price_rows),
        welfare_fen=(value - cost) * hours,
        timings=dict(timings),
        message=message,
        rejected_gangs=rejected,
        slot_hours=hours,
    )


__all__ = ["ClearingOptions", "clear"]
