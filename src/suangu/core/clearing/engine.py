"""The clearing engine: picks the formulation, solves, prices, and returns a result.

* Batch and service orders only, no green minimums: a min-cost flow (OR-Tools), exact and
  integral, priced from the residual network (see :mod:`suangu.core.clearing.network`).
* Gang orders: a mixed-integer program (HiGHS) picks placements; then the placements are fixed
  and the rest is re-solved and priced as above. A gang whose bill at those prices would exceed
  its limit is rejected and the market re-cleared (paradoxical rejection, as in EUPHEMIA): no
  order is ever paradoxically accepted, so every order is individually rational and money
  balances exactly (everyone trades at the same pool-slot prices).
* Green-share minimums: side rows. Up to ``ClearingOptions.exact_green_columns`` bid columns
  the LP with those rows is solved exactly (HiGHS, column generation around the network
  optimum); larger markets price the rows into arc values by Lagrangian relaxation over
  network solves, with a certified upper bound. Green orders' GPU-slots are rounded to whole
  GPUs that keep every row, fixed, and the rest of the market is cleared as a network and
  priced as above; a green order that would pay above its limit on average gives up its
  dearest GPU-slots, and one with work left takes unsold capacity priced below its limit
  where its green share holds. ``ClearingResult.gap`` bounds the distance to the optimum.

Prices: the *lowest* prices that support the allocation (smallest dual solution, i.e. minus
the shortest-path distance from the sink in the residual network); a pool-slot where nothing
trades is quoted at the cheapest reserve offered there. Both are unique, so prices are
deterministic even when the LP is degenerate.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from suangu.core.clearing.lp import LpSolution, build_lp, solve_lp
from suangu.core.clearing.model import (
    ARC_BID,
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
    #: Gang placements stop at this relative gap (reported in ``ClearingResult.gap``).
    mip_rel_gap: float = 1e-4
    #: Markets with at most this many bid columns solve green minimums as an exact LP.
    exact_green_columns: int = 50_000
    #: Larger ones stop the Lagrangian search at this relative gap to its bound ...
    green_gap: float = 5e-4
    #: ... or after this many network solves.
    green_iterations: int = 3


@dataclass
class _Cleared:
    """An integral clearing of the network part plus chosen gang placements."""

    flow: IntArray  # per model arc
    potential: IntArray  # price per pool-slot (fen / GPU-hour)
    placements: IntArray  # indices of chosen placements
    optimal: bool
    price_s: float = 0.0
    bound: float = np.inf  # upper bound on the welfare (objective units) when not exact
    mip_gap: float = 0.0  # relative gap the gang placements were proven within


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
    gap = _gap(model, cleared)
    proven = cleared.optimal and gap <= 1e-9
    status = ClearingStatus.OPTIMAL if proven else ClearingStatus.FEASIBLE
    rejected_ids = tuple(sorted(model.gangs[g].id for g in rejected))
    t2 = time.perf_counter()
    result = _result(model, cleared, status, "", timings, rejected_ids, method)
    result.timings["assemble_s"] = time.perf_counter() - t2  # type: ignore[index]
    return dataclasses.replace(result, gap=gap)


def _objective(model: ClearingModel, flow: IntArray, chosen: IntArray) -> float:
    """Welfare per slot-hour of a flow plus the chosen gang placements."""
    pl = model.placements
    gangs = float((pl.value[chosen] * pl.gpus[chosen] * pl.duration[chosen]).sum())
    return float(-model.cost @ flow) + gangs if flow.size else gangs


def _gap(model: ClearingModel, cleared: _Cleared) -> float:
    """Relative distance of the clearing's welfare to a proven upper bound (0 when exact)."""
    if not np.isfinite(cleared.bound):
        return cleared.mip_gap
    value = _objective(model, cleared.flow, cleared.placements)
    return max(cleared.mip_gap, (cleared.bound - value) / max(abs(cleared.bound), 1.0))


# --- network path ---------------------------------------------------------------------------


def _placement_use(model: ClearingModel, chosen: IntArray) -> IntArray:
    """GPUs per pool-slot taken by the chosen gang placements."""
    use = np.zeros(model.n_pool_slots, np.int64)
    pl = model.placements
    for j in chosen:
        nodes = pl.pool[j] * model.n_slots + pl.start[j] + np.arange(pl.duration[j])
        use[nodes] += pl.gpus[j]
    return use


def _clear_network(
    model: ClearingModel,
    chosen: IntArray,
    fixed_bids: IntArray | None = None,
) -> _Cleared:
    """Exact integral min-cost flow and its prices, with the chosen gang placements and the
    ``fixed_bids`` (GPU-slots per BID arc of orders held out of the flow) taken as given."""
    use = _placement_use(model, chosen)
    cap = model.cap
    if fixed_bids is not None:
        held = np.unique(model.arc_order[: fixed_bids.size][fixed_bids > 0])
        held = np.union1d(held, _green_orders(model))
        cap = model.cap.copy()
        cap[(model.kind == ARC_WORK) & np.isin(model.arc_order, held)] = 0
        ps = model.head[: fixed_bids.size] - model.ps_base
        use = use + np.bincount(ps, weights=fixed_bids, minlength=model.n_pool_slots).astype(
            np.int64
        )
    supply = np.zeros(model.n_nodes, np.int64)
    supply[SOURCE] = model.total_supply
    supply[SINK] = -model.total_supply - int(use.sum())
    supply[model.ps_base : model.ps_base + model.n_pool_slots] += use
    flow, _ = solve_min_cost_flow(model.n_nodes, model.tail, model.head, cap, model.cost, supply)
    t0 = time.perf_counter()
    prices = _prices(model, flow, cap, use)
    if fixed_bids is not None:
        flow[: fixed_bids.size] += fixed_bids
    return _Cleared(flow, prices, chosen, optimal=True, price_s=time.perf_counter() - t0)


def _green_orders(model: ClearingModel) -> IntArray:
    return np.asarray([i for i, _, _ in model.green_rows], np.int64)


def _prices(model: ClearingModel, flow: IntArray, cap: IntArray, fixed_use: IntArray) -> IntArray:
    """Lowest supporting prices per pool-slot; the cheapest reserve where nothing trades."""
    r_tail, r_head, r_cost = residual_arcs(model.tail, model.head, cap, model.cost, flow)
    # Distance from the sink to u = distance from u to the sink in the reversed network.
    dist = distances_to(model.n_nodes, r_head, r_tail, r_cost, SINK)
    pot = -dist[model.ps_base : model.ps_base + model.n_pool_slots]
    sup = model.kind == ARC_SUPPLY
    sold = np.bincount(
        model.tail[sup] - model.ps_base, weights=flow[sup], minlength=model.n_pool_slots
    )
    traded = (sold > 0) | (fixed_use > 0)
    if (traded & (pot <= -INF // 2)).any():
        raise SolverError("a traded pool-slot could not be priced", fix="report this market")
    prices = np.where(traded, pot, model.min_reserve)
    return np.where(model.min_reserve >= NO_SUPPLY, 0, prices).astype(np.int64)


# --- gang and green-share path ---------------------------------------------------------------


def _clear_with_gangs(
    model: ClearingModel, options: ClearingOptions, rejected: list[int]
) -> _Cleared:
    """MIP for the placements and LP for green minimums, then the network on the rest at fixed
    placements and green allocations, priced.

    At those prices, a gang that would pay above its limit is rejected and the market
    cleared again; a green order that would pay above its limit on average gives up its
    dearest GPU-slots (keeping its green share) until it does not."""
    pl = model.placements
    deadline = time.perf_counter() + options.time_limit_s
    optimal = True
    for _ in range(len(model.gangs) + 1):
        remaining = max(deadline - time.perf_counter(), 1.0)
        if len(pl):
            chosen, placed_optimally, mip_gap = _place_gangs(model, rejected, remaining, options)
            optimal &= placed_optimally
        else:
            chosen, mip_gap = np.zeros(0, np.int64), 0.0
        if model.green_rows:
            fixed, green_optimal, bound = _green_bids(model, chosen, deadline, options)
            optimal &= green_optimal
            cleared = _settle_green(model, chosen, fixed)
            cleared.bound = bound
        else:
            cleared = _clear_network(model, chosen)
        losers = _gangs_above_limit(model, cleared)
        if not losers:
            cleared.optimal = optimal
            cleared.mip_gap = mip_gap
            return cleared
        rejected.append(losers[0])
    raise SolverError("pricing of gang orders did not settle", fix="report this market")


def _place_gangs(
    model: ClearingModel, rejected: list[int], time_limit_s: float, options: ClearingOptions
) -> tuple[IntArray, bool, float]:
    """Gang placements of the welfare optimum (within ``options.mip_rel_gap``), whether the
    search finished, and the relative gap it proved. The LP relaxation comes first: when its
    placements are already whole it is the MIP optimum (often, since gangs rarely compete
    for the same cells at the margin), and the branch-and-bound is skipped."""
    pl = model.placements
    excluded = np.nonzero(np.isin(pl.order, rejected))[0]
    relaxed = solve_lp(
        model, excluded_placements=excluded, integer=False, time_limit_s=time_limit_s
    )
    z = np.asarray(relaxed.placement_value)
    if relaxed.optimal and bool(np.all(np.minimum(z, 1.0 - z) <= 1e-9)):
        return np.nonzero(z > 0.5)[0], True, 0.0
    # A first incumbent: the relaxation's placements, most decided first, where they fit.
    fixed = np.zeros(len(pl))
    left = model.offered.copy()
    placed: set[int] = set()
    for j in np.argsort(-z, kind="stable"):
        nodes = pl.pool[j] * model.n_slots + pl.start[j] + np.arange(pl.duration[j])
        if z[j] <= 1e-9 or int(pl.order[j]) in placed or (left[nodes] < pl.gpus[j]).any():
            continue
        fixed[j] = 1.0
        left[nodes] -= pl.gpus[j]
        placed.add(int(pl.order[j]))
    start = solve_lp(model, fixed_placements=fixed, integer=False, time_limit_s=time_limit_s)
    sol = solve_lp(
        model,
        excluded_placements=excluded,
        time_limit_s=time_limit_s,
        mip_rel_gap=options.mip_rel_gap,
        start=start,
    )
    return np.nonzero(sol.placement > 0.5)[0], sol.optimal, sol.mip_gap


def _settle_green(model: ClearingModel, chosen: IntArray, fixed: IntArray) -> _Cleared:
    """Clear the rest of the market around the green orders' fixed bids, then adjust them
    to the prices: green orders that would pay above their limit on average shed their
    dearest GPU-slots, and (once) those with work left take unsold capacity priced below
    their limit; repeat until no green order is above its limit."""
    cleared = _clear_network(model, chosen, fixed)
    for round_ in range(int(fixed.sum()) + 2):
        over = _green_above_limit(model, cleared)
        adjusted = _shed_to_limit(model, fixed, cleared.potential, over) if over else fixed
        if round_ == 0:
            adjusted = _fill_green(model, adjusted, cleared)
        if np.array_equal(adjusted, fixed):
            return cleared
        fixed = adjusted
        cleared = _clear_network(model, chosen, fixed)
    return cleared


def _fill_green(model: ClearingModel, fixed: IntArray, cleared: _Cleared) -> IntArray:
    """Green orders with work left take unsold capacity priced below their limit, where
    their green share still holds: at the clearing prices they would want exactly that.
    ``fixed`` may hold fewer GPU-slots than ``cleared`` (units just shed): those are free."""
    nb = fixed.size
    ps = model.head[:nb] - model.ps_base
    sup = model.kind == ARC_SUPPLY
    sold = np.bincount(
        model.tail[sup] - model.ps_base, weights=cleared.flow[sup], minlength=model.n_pool_slots
    )
    shed = np.bincount(ps, weights=cleared.flow[:nb] - fixed, minlength=model.n_pool_slots)
    free = model.offered - np.round(sold - shed).astype(np.int64)
    used = np.bincount(model.arc_order[:nb], weights=fixed, minlength=len(model.orders))
    os_used = np.bincount(model.tail[:nb], weights=fixed, minlength=model.n_nodes)
    out = fixed.copy()
    for i, arcs, coef in model.green_rows:
        xa = out[arcs]
        gain = -model.cost[arcs] - cleared.potential[ps[arcs]]
        share = float(coef @ xa)
        for k in np.argsort(-gain, kind="stable"):
            if gain[k] <= 0:
                break
            a = int(arcs[k])
            while (
                used[i] < model.work[i]
                and os_used[model.tail[a]] < model.cap[a]
                and free[ps[a]] > 0
                and share + float(coef[k]) >= -1e-9
            ):
                xa[k] += 1
                share += float(coef[k])
                used[i] += 1
                os_used[model.tail[a]] += 1
                free[ps[a]] -= 1
        out[arcs] = xa
    return out


def _gangs_above_limit(model: ClearingModel, cleared: _Cleared) -> list[int]:
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


def _green_above_limit(model: ClearingModel, cleared: _Cleared) -> list[int]:
    """Rows of green orders whose average price is above their limit."""
    over = []
    for row, (_, arcs, _) in enumerate(model.green_rows):
        x = cleared.flow[arcs]
        bill = int((cleared.potential[model.head[arcs] - model.ps_base] * x).sum())
        if bill > int((-model.cost[arcs] * x).sum()):
            over.append(row)
    return over


def _shed_to_limit(
    model: ClearingModel, fixed: IntArray, prices: IntArray, rows: list[int]
) -> IntArray:
    """Drop the dearest GPU-slots of the given green orders until each pays at most its
    limit on average, shedding brown units as needed to keep its green share."""
    fixed = fixed.copy()
    for row in rows:
        _, arcs, coef = model.green_rows[row]
        price = prices[model.head[arcs] - model.ps_base]
        limit = -model.cost[arcs]
        xa = fixed[arcs]
        while int((price * xa).sum()) > int((limit * xa).sum()):
            live = np.nonzero(xa > 0)[0]
            xa[live[np.argmax(price[live] - limit[live])]] -= 1
            while float(coef @ xa) < -1e-9:
                live = np.nonzero(xa > 0)[0]
                xa[live[np.argmin(coef[live])]] -= 1
        fixed[arcs] = xa
    return fixed


#: A left-out column enters the restricted LP when its reduced profit exceeds this (fen).
ENTER_EPS = 1e-6


def _green_bids(
    model: ClearingModel,
    chosen: IntArray,
    deadline: float,
    options: ClearingOptions,
) -> tuple[IntArray, bool, float]:
    """Whole GPU-slots per BID arc for the orders with a green minimum (0 elsewhere), and an
    upper bound on the welfare (objective units) of any clearing with those placements.

    Small markets solve the LP with green rows exactly; large ones price the green rows by
    Lagrangian relaxation around the network (see :func:`_green_lagrangian`)."""
    use = _placement_use(model, chosen)
    if int((model.kind == ARC_BID).sum()) <= options.exact_green_columns:
        fixed = np.zeros(len(model.placements))
        fixed[chosen] = 1.0
        sol = _green_lp(model, chosen, fixed, deadline)
        bound = sol.objective if sol.optimal else np.inf
        return _repair_green(model, sol.bid, use), sol.optimal, bound
    bid, bound = _green_lagrangian(model, chosen, deadline, options)
    return _repair_green(model, bid, use), True, bound


def _repair_green(model: ClearingModel, bid: FloatArray, use: IntArray) -> IntArray:
    """Round green orders' bids to whole GPU-slots that keep every row: down, shed the
    brownest units until each green minimum holds, then back up where rows allow."""
    nb = bid.size
    x = np.zeros(nb, np.int64)
    row_of = np.full(nb, -1, np.int64)
    for row, (_, arcs, coef) in enumerate(model.green_rows):
        row_of[arcs] = row
        xa = np.floor(bid[arcs] + FLOW_EPS).astype(np.int64)
        while float(coef @ xa) < -1e-9:
            live = np.nonzero(xa > 0)[0]
            xa[live[np.argmin(coef[live])]] -= 1
        x[arcs] = xa
    frac = bid - np.floor(bid + FLOW_EPS)
    ups = [
        int(a) for a in np.argsort(-frac, kind="stable") if frac[a] > FLOW_EPS and row_of[a] >= 0
    ]
    if not ups:
        return x
    ps = model.head[:nb] - model.ps_base
    order_used = np.bincount(model.arc_order[:nb], weights=x, minlength=len(model.orders))
    os_used = np.bincount(model.tail[:nb], weights=x, minlength=model.n_nodes)
    ps_used = np.bincount(ps, weights=x, minlength=model.n_pool_slots) + use
    for a in ups:
        i, o, n = model.arc_order[a], model.tail[a], ps[a]
        if (
            order_used[i] >= model.work[i]
            or os_used[o] >= model.cap[a]
            or ps_used[n] >= model.offered[n]
        ):
            continue
        _, arcs, coef = model.green_rows[row_of[a]]
        if float(coef @ x[arcs]) + float(coef[int(np.searchsorted(arcs, a))]) < -1e-9:
            continue
        x[a] += 1
        order_used[i] += 1
        os_used[o] += 1
        ps_used[n] += 1
    return x


#: Integer scale of arc costs in the Lagrangian network (1/16 fen resolution).
LAGRANGE_SCALE = 16


def _green_lagrangian(
    model: ClearingModel, chosen: IntArray, deadline: float, options: ClearingOptions
) -> tuple[FloatArray, float]:
    """Price the green rows into the arc values (v + eta * (green - min)) and solve the
    network; adjust eta by subgradient steps until the repaired clearing is within
    ``options.green_gap`` of the Lagrangian bound, or the iterations run out.

    The first solve has eta = 0 (the market without green rows); orders whose row it breaks
    start from eta = 30% of their limit, then Polyak steps follow. The returned bids are the
    average of the iterates after the first (ergodic averaging, which converges to the LP
    optimum where single iterates oscillate). Every Lagrangian value is an upper bound on
    the LP optimum (weak duality over the network polytope, which is integral), so the
    returned bound is certified."""
    rows = list(model.green_rows)
    nb = int((model.kind == ARC_BID).sum())
    use = _placement_use(model, chosen)
    supply = np.zeros(model.n_nodes, np.int64)
    supply[SOURCE] = model.total_supply
    supply[SINK] = -model.total_supply - int(use.sum())
    supply[model.ps_base : model.ps_base + model.n_pool_slots] += use
    value = -model.cost.astype(np.float64)  # + limit on bids, - reserve on supply
    eta = np.zeros(len(rows))
    best_lower, upper = -np.inf, np.inf
    theta, stalls = 0.25, 0
    total, weight = np.zeros(nb), 0
    slack = float(model.total_supply + use.sum()) / LAGRANGE_SCALE  # rounding of costs
    fixed = _objective(model, np.zeros(0, np.int64), chosen)  # the gangs' welfare
    for it in range(options.green_iterations):
        adj = value.copy()
        for k, (_, arcs, coef) in enumerate(rows):
            adj[arcs] += eta[k] * coef
        scaled = -np.round(adj * LAGRANGE_SCALE).astype(np.int64)
        flow, _ = solve_min_cost_flow(
            model.n_nodes, model.tail, model.head, model.cap, scaled, supply
        )
        lagrangian = float(adj @ flow) + slack + fixed
        if lagrangian < upper - 1e-9:
            upper, stalls = lagrangian, 0
        else:
            stalls += 1
            if stalls >= 2:
                theta, stalls = theta / 2, 0
        g = np.asarray([float(coef @ flow[arcs]) for _, arcs, coef in rows])
        repaired = _repair_green(model, flow[:nb].astype(np.float64), use)
        lower = _repaired_value(model, flow, repaired, rows, value) + fixed
        best_lower = max(best_lower, lower)
        violated = np.minimum(g, 0.0)
        if it == 0:
            if not violated.any():
                return flow[:nb].astype(np.float64), upper  # green rows hold: optimal
            for k, (_, arcs, _) in enumerate(rows):
                if violated[k] < 0:
                    eta[k] = 0.3 * float(value[arcs].mean())
            continue
        total += flow[:nb]
        weight += 1
        norm = float(violated @ violated)
        gap_ok = upper - best_lower <= options.green_gap * abs(upper)
        if norm == 0.0 or gap_ok or time.perf_counter() > deadline:
            break
        step = theta * (upper - best_lower) / norm
        eta = np.maximum(0.0, eta - step * np.where(eta > 0, g, violated))
    if weight == 0:
        return flow[:nb].astype(np.float64), upper
    return total / weight, upper


def _repaired_value(
    model: ClearingModel,
    flow: IntArray,
    repaired: IntArray,
    rows: list[tuple[int, IntArray, FloatArray]],
    value: FloatArray,
) -> float:
    """Welfare (objective units) of the Lagrangian flow after shedding green orders' units:
    each shed unit loses its bid and frees its pool-slot's dearest sold supply."""
    nb = repaired.size
    total = float(value @ flow)
    shed = np.zeros(nb, np.int64)
    for _, arcs, _ in rows:
        shed[arcs] = flow[arcs] - repaired[arcs]
    total -= float(value[:nb] @ shed)
    ps = model.head[:nb] - model.ps_base
    freed = np.bincount(ps, weights=np.maximum(shed, 0), minlength=model.n_pool_slots)
    sup = np.nonzero((model.kind == ARC_SUPPLY) & (flow > 0))[0]
    dearest = np.zeros(model.n_pool_slots)
    np.maximum.at(dearest, model.tail[sup] - model.ps_base, model.cost[sup].astype(np.float64))
    return total + float(freed @ dearest)


def _green_lp(
    model: ClearingModel, chosen: IntArray, fixed: FloatArray, deadline: float
) -> LpSolution:
    """The LP with green rows by column generation around the network optimum.

    The network optimum without the green rows (exact, seconds) gives prices; the restricted
    LP starts from the bid columns that carry flow or whose limit reaches the pool-slot price,
    and left-out columns with a positive reduced profit enter until none is left, which
    proves the restricted optimum optimal for the whole LP."""
    arrays = build_lp(model, all_slot_rows=True)
    nb = arrays.n_bid
    base = _clear_network(model, chosen)
    limit = -model.cost[:nb]
    ps = model.head[:nb] - model.ps_base
    columns = (base.flow[:nb] > 0) | (limit >= base.potential[ps])
    for _, arcs, _ in model.green_rows:
        columns[arcs] = True
    while True:
        sol = solve_lp(
            model,
            fixed_placements=fixed,
            integer=False,
            time_limit_s=max(deadline - time.perf_counter(), 1.0),
            bid_columns=np.nonzero(columns)[0],
            arrays=arrays,
        )
        entering = ~columns & (sol.bid_reduced > ENTER_EPS)
        if not entering.any():
            return sol
        if not sol.optimal or time.perf_counter() > deadline:
            return dataclasses.replace(sol, optimal=False)
        columns |= entering


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
    for j in chosen:
        order = model.gangs[pl.order[j]]
        for k in range(int(pl.start[j]), int(pl.start[j] + pl.duration[j])):
            node = int(pl.pool[j]) * model.n_slots + k
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
