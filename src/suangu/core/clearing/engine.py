"""The clearing engine: picks the formulation, solves, prices, and returns a result.

* Batch and service orders only, no green minimums: a min-cost flow (OR-Tools), exact and
  integral, priced from the residual network (see :mod:`suangu.core.clearing.network`).
* Gang orders (no side rows): the greedy clearing's placements are the incumbent from the
  start; a Lagrangian relaxation of the pool-slot balance (:mod:`suangu.core.clearing.dual`)
  gives a certified upper bound and an estimate of the LP relaxation's placements, rounded
  into a second candidate; small markets then run HiGHS's branch and bound from the best
  candidate. Every candidate's placements are fixed and the rest is cleared and priced as a
  network. A gang whose bill at those prices would exceed its limit is rejected and the
  market re-cleared (paradoxical rejection, as in EUPHEMIA): no order is ever paradoxically
  accepted, so every order is individually rational and money balances exactly (everyone
  trades at the same pool-slot prices). The best candidate wins; ``ClearingResult.gap`` is
  its distance to the lowest bound proven, ``method`` says which candidate it is
  (``greedy``, ``lagrangian``, ``mip``) and ``status`` whether it is proven ``optimal``
  (gap <= :data:`OPTIMAL_GAP`), ``feasible`` (the search ended above it), or stopped at
  the ``time_limit``, which is wall-clock for the whole call.
* Gang orders with side rows: a mixed-integer program (HiGHS) picks placements, then as
  above.
* Side rows (green-share minimums, the work of orders whose classes differ in speed, link
  bandwidth; see :mod:`suangu.core.clearing.model`): the network is solved first, and when
  every row holds there its optimum is the answer (congestion prices 0). Otherwise, up to
  ``ClearingOptions.exact_green_columns`` bid columns the LP with those rows is solved
  exactly (HiGHS, column generation around the network optimum; link prices are the duals
  of the link rows); larger markets price the rows into arc values by Lagrangian relaxation
  over network solves, with a certified upper bound (link prices: the multipliers). The
  held orders' GPU-slots (orders in a row) are rounded to whole GPUs that keep every row,
  fixed, and the rest of the market is cleared as a network and priced as above; a held
  order that would pay above its value on average (congestion included) gives up its
  dearest GPU-slots, and one with work left takes unsold capacity priced below its value
  where every row holds. ``ClearingResult.gap`` bounds the distance to the optimum.

Prices: the *lowest* prices that support the allocation (smallest dual solution, i.e. minus
the shortest-path distance from the sink in the residual network); a pool-slot where nothing
trades is quoted at the cheapest reserve offered there. Both are unique, so prices are
deterministic even when the LP is degenerate.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from suangu.core.clearing.dual import GangDual, rounded_placements
from suangu.core.clearing.greedy import greedy_clear
from suangu.core.clearing.lp import LpArrays, LpSolution, build_lp, solve_lp
from suangu.core.clearing.model import (
    ARC_BID,
    ARC_SUPPLY,
    ARC_WORK,
    NO_SUPPLY,
    ROW_GREEN,
    ROW_LINK,
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
    LinkPrice,
    Market,
    OfferFill,
    PoolPrice,
    Transfer,
)

#: Flow below this is zero when reading an LP solution.
FLOW_EPS = 1e-7


#: A clearing whose welfare is proven within this relative distance of the optimum (or of
#: the bound of the problem it solved, see :attr:`ClearingResult.gap`) is ``optimal``.
OPTIMAL_GAP = 1e-6


@dataclass(frozen=True)
class ClearingOptions:
    #: Wall-clock limit of the whole :func:`clear` call, seconds. The greedy incumbent and
    #: its pricing always run (greedy, a min-cost flow per round of the pricing rule, and
    #: with side rows the held orders' pricing rounds); every search that improves on it
    #: gets the time left, and one whose network solve (as long as the last one) could not
    #: end before the limit is not started. HiGHS may overrun it by its presolve.
    time_limit_s: float = 60.0
    #: Gang placements stop at this relative gap (reported in ``ClearingResult.gap``).
    mip_rel_gap: float = 1e-4
    #: Markets with at most this many bid columns solve side rows (green minimums, work of
    #: mixed-speed orders, link bandwidth) as an exact LP; larger ones by Lagrangian pricing.
    exact_green_columns: int = 50_000
    #: Larger ones stop the Lagrangian search at this relative gap to its bound ...
    green_gap: float = 5e-4
    #: ... or after this many network solves.
    green_iterations: int = 3
    #: Gang markets with at most this many columns (bid arcs plus placements) run HiGHS's
    #: branch and bound from the best heuristic clearing when the heuristics leave a gap
    #: above ``mip_rel_gap``; larger ones stop at the heuristics' certified gap (the MIP's
    #: root LP alone takes longer than the whole heuristic search there).
    mip_max_columns: int = 60_000
    #: Subgradient steps of the Lagrangian bound of gang markets (each a few milliseconds).
    dual_iterations: int = 200
    #: Gang markets above ``mip_max_columns`` (no branch and bound follows) stop tightening
    #: the Lagrangian bound once the certified gap is below this.
    bound_gap: float = 2e-3


#: Subgradient steps before a large gang market rounds its placements (see
#: :func:`_clear_gangs`).
ROUNDING_STEPS = 50


@dataclass
class _Cleared:
    """An integral clearing of the network part plus chosen gang placements."""

    flow: IntArray  # per model arc
    potential: IntArray  # price per pool-slot (fen / GPU-hour)
    placements: IntArray  # indices of chosen placements
    optimal: bool
    price_s: float = 0.0
    #: Seconds its min-cost flow took: what the next solve of this market will cost.
    flow_s: float = 0.0
    #: A search behind it stopped at the time limit.
    stopped: bool = False
    bound: float = np.inf  # upper bound on the welfare (objective units) when not exact
    mip_gap: float = 0.0  # relative gap the gang placements were proven within
    #: Congestion price per link (objective units per GB), 0 where the link is not congested.
    link_price: FloatArray = dataclasses.field(default_factory=lambda: np.zeros(0))


@dataclass
class _Outcome:
    """What a solve path hands back to :func:`clear`."""

    cleared: _Cleared
    method: str
    rejected: list[int]
    #: The search stopped at the time limit (rather than at its gap target or its end).
    stopped: bool = False
    notes: list[str] = dataclasses.field(default_factory=list)
    #: Whether ``gap`` is proven against a bound (False: heuristic only).
    bounded: bool = True


def clear(market: Market, options: ClearingOptions | None = None) -> ClearingResult:
    """Clear ``market``: welfare-maximising allocations and locational prices.

    The time limit is wall-clock for the whole call. Gang markets start from the greedy
    clearing (:mod:`suangu.core.clearing.greedy`) as the incumbent and keep the best
    clearing found, so the result is never worse than greedy's placements with the rest of
    the market cleared optimally around them (before the gang pricing rule, which may
    reject a gang and so give up welfare: ``ClearingResult.rejected_gangs``)."""
    options = options or ClearingOptions()
    if any(o.complete_or_nothing for o in market.orders):
        from suangu.core.clearing.complete import clear_complete

        return clear_complete(market, options, clear)
    t0 = time.perf_counter()
    deadline = t0 + options.time_limit_s
    model = build_model(canonical(market))
    timings = {"build_s": time.perf_counter() - t0}
    has_bids = bool((model.kind == ARC_BID).any()) or len(model.placements) > 0
    if not has_bids:
        return _result(model, None, ClearingStatus.EMPTY, "no order can trade", timings, ())

    t1 = time.perf_counter()
    method = "network"
    try:
        outcome: _Outcome | None = None
        base = None
        if len(model.placements) == 0:
            cleared = _clear_network(model, np.zeros(0, np.int64))
            if len(model.side) and _rows_broken(model, cleared.flow, cleared.placements):
                base = cleared  # a side row breaks: solve with the rows
            else:
                outcome = _Outcome(cleared, "network", [])
        if outcome is None and len(model.placements) and not len(model.side):
            outcome = _clear_gangs(model, options, deadline, timings)
        if outcome is None:
            method = "mip" if len(model.placements) else "lp"
            rejected: list[int] = []
            try:
                cleared = _clear_with_gangs(model, options, rejected, base, deadline)
                outcome = _Outcome(cleared, method, rejected)
                outcome.stopped = cleared.stopped or (
                    not cleared.optimal and time.perf_counter() >= deadline
                )
            except SolverError as err:
                if not len(model.placements) and time.perf_counter() < deadline:
                    raise
                # Side rows, and the exact method found nothing in time: the greedy
                # clearing's placements and held orders' GPUs, the rest cleared.
                outcome = _greedy_with_rows(model)
                outcome.notes.append(f"exact method: {err}")
                outcome.stopped = time.perf_counter() >= deadline
    except SolverError as err:
        timings["solve_s"] = time.perf_counter() - t1
        return _result(model, None, ClearingStatus.FAILED, str(err), timings, (), method)
    cleared = outcome.cleared
    timings["solve_s"] = time.perf_counter() - t1 - cleared.price_s
    timings["price_s"] = cleared.price_s
    gap = _gap(model, cleared)
    status, message = _status(model, outcome, gap, options)
    rejected_ids = tuple(sorted(model.gangs[g].id for g in outcome.rejected))
    t2 = time.perf_counter()
    result = _result(model, cleared, status, message, timings, rejected_ids, outcome.method)
    result.timings["assemble_s"] = time.perf_counter() - t2  # type: ignore[index]
    return dataclasses.replace(result, gap=gap)


def _status(
    model: ClearingModel, outcome: _Outcome, gap: float, options: ClearingOptions
) -> tuple[ClearingStatus, str]:
    """The status of a clearing and a sentence that says what it is."""
    cleared = outcome.cleared
    notes = list(outcome.notes)
    if outcome.rejected:
        notes.append(f"{len(outcome.rejected)} gang(s) rejected by the pricing rule")
    tail = "; ".join(notes)
    if not outcome.bounded:
        return ClearingStatus.HEURISTIC, _join("heuristic clearing, no bound", tail)
    if cleared.optimal and gap <= OPTIMAL_GAP:
        return ClearingStatus.OPTIMAL, _join(f"optimal ({outcome.method})", tail)
    where = f"within {100 * gap:.4g}% of the bound"
    if outcome.stopped:
        return ClearingStatus.TIME_LIMIT, _join(f"time limit reached, {where}", tail)
    return ClearingStatus.FEASIBLE, _join(f"{outcome.method}: {where}", tail)


def _join(head: str, tail: str) -> str:
    return f"{head}; {tail}" if tail else head


def canonical(market: Market) -> Market:
    """``market`` with its sites, pools, offers, orders and links in id order: among equally
    good allocations the solvers' choice depends on the order of their inputs, so the same
    market read from a database or a file clears to the same allocations."""

    def in_order(items: tuple[Any, ...], key: Callable[[Any], Any]) -> bool:
        return all(key(a) <= key(b) for a, b in itertools.pairwise(items))

    def by_id(x: Any) -> Any:
        return x.id

    def by_key(x: Any) -> Any:
        return x.key

    changes: dict[str, tuple[Any, ...]] = {}
    for name in ("sites", "pools", "offers", "orders"):
        items = getattr(market, name)
        if not in_order(items, by_id):
            changes[name] = tuple(sorted(items, key=by_id))
    if not in_order(market.links, by_key):
        changes["links"] = tuple(sorted(market.links, key=by_key))
    return dataclasses.replace(market, **changes) if changes else market  # type: ignore[arg-type]


def _objective(model: ClearingModel, flow: IntArray, chosen: IntArray) -> float:
    """Welfare per slot-hour (times ``model.scale``) of a flow plus the chosen placements."""
    gangs = float(model.placements.value[chosen].sum())
    return float(-model.cost @ flow) + gangs if flow.size else gangs


def _row_rhs(model: ClearingModel, chosen: IntArray) -> FloatArray:
    """Right-hand sides of the side rows left to BID arcs by the chosen placements."""
    side = model.side
    if not len(side):
        return side.rhs
    z = np.zeros(len(model.placements))
    z[chosen] = 1.0
    return np.asarray(side.rhs - side.pl_matrix @ z, np.float64)


def _rows_broken(model: ClearingModel, flow: IntArray, chosen: IntArray) -> bool:
    """Whether ``flow`` with the chosen placements breaks a side row."""
    nb = model.side.matrix.shape[1]
    activity = model.side.matrix @ flow[:nb].astype(np.float64)
    return bool((activity > _row_rhs(model, chosen) + ROW_EPS).any())


#: Tolerance of side rows (their coefficients are fractions: shares, speeds, GB).
ROW_EPS = 1e-9


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
        held = np.union1d(held, model.held)
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
    t_flow = time.perf_counter()
    flow, _ = solve_min_cost_flow(model.n_nodes, model.tail, model.head, cap, model.cost, supply)
    t0 = time.perf_counter()
    prices = _prices(model, flow, cap, use)
    if fixed_bids is not None:
        flow[: fixed_bids.size] += fixed_bids
    done = time.perf_counter()
    return _Cleared(flow, prices, chosen, optimal=True, price_s=done - t0, flow_s=done - t_flow)


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
    prices = np.where(
        traded, pot, model.min_reserve * (model.min_reserve < NO_SUPPLY) * model.scale
    )
    return np.where(model.min_reserve >= NO_SUPPLY, 0, prices).astype(np.int64)


# --- gang markets without side rows: incumbent, Lagrangian bound, branch and bound ----------


def _clear_gangs(
    model: ClearingModel, options: ClearingOptions, deadline: float, timings: dict[str, float]
) -> _Outcome:
    """Best clearing found within the time limit, with a certified gap.

    1. The incumbent: greedy's gang placements (:func:`greedy_clear`), the rest of the
       market cleared optimally around them; settled (:func:`_settle`) at the end only if
       no other candidate beats its welfare before settlement.
    2. The Lagrangian bound from the incumbent's prices (:class:`GangDual`), and a second
       candidate: the LP relaxation's placements it estimates, rounded
       (:func:`rounded_placements`), settled.
    3. While the gap to the bound is above ``mip_rel_gap`` and the market is small enough,
       HiGHS's branch and bound from the best candidate (:func:`_mip_candidate`).

    Every search step is started only if the last network solve says that settling its
    candidate can end before ``deadline``.

    The best settled candidate wins (ties: the later one, from the more exact method). Its
    gap is to the lowest bound proven for the problem it solved (the Lagrangian bound holds
    for every clearing; the MIP's for clearings without the gangs it rejected)."""
    t0 = time.perf_counter()
    candidates: list[_Outcome] = []  # settled candidates besides the incumbent
    chosen = _greedy_placements(model)
    timings["greedy_s"] = time.perf_counter() - t0
    # Greedy's placements with the rest of the market cleared around them. Its pricing rule
    # (rejections, each round a network solve) is applied only if it is needed: when a
    # better candidate is found, that one's welfare is above this clearing's, which is
    # above greedy's own, and the incumbent is not settled at all.
    first = _clear_network(model, chosen)
    # What settling one more candidate costs (a min-cost flow and its prices): a search
    # that would leave less than that before the deadline is not started.
    settle_s = first.flow_s
    dual = GangDual(model)
    lower = _objective(model, first.flow, first.placements)
    greedy_value = lower
    n_columns = int((model.kind == ARC_BID).sum()) + len(model.placements)
    small = n_columns <= options.mip_max_columns
    t1 = time.perf_counter()
    stopped = False
    pi = first.potential.astype(np.float64)
    # Markets too large for branch and bound round the placements after the first
    # ``ROUNDING_STEPS`` steps (later steps tighten the bound but rarely change the
    # rounding), then spend the rest of the steps on the bound, up to ``bound_gap``.
    steps = options.dual_iterations if small else min(ROUNDING_STEPS, options.dual_iterations)
    if time.perf_counter() + settle_s < deadline:
        bound, pi, share = dual.minimise(
            pi,
            lower,
            deadline - settle_s,  # leave the time to settle the candidate it rounds to
            iterations=steps,
            rel_gap=options.mip_rel_gap,
        )
    else:  # no time to search: one evaluation at the incumbent's prices still bounds
        bound = dual.evaluate(pi).bound
        share = np.zeros(len(model.placements))
    arrays = None
    for method in ("lagrangian", "lp"):
        if bound - lower <= options.mip_rel_gap * max(abs(bound), 1.0):
            break
        if time.perf_counter() + settle_s >= deadline:
            stopped = True
            break
        if method == "lp":  # the LP relaxation itself, where it is cheap
            if not small:
                break
            arrays = build_lp(model)
            try:
                relaxed = solve_lp(
                    model,
                    integer=False,
                    arrays=arrays,
                    time_limit_s=_left(deadline - settle_s),
                    deadline=deadline - settle_s,  # then settle the candidate it rounds to
                )
            except SolverError:  # interrupted before HiGHS had a solution
                relaxed = None
            if relaxed is None or not relaxed.optimal:
                stopped = True
                break
            bound = min(bound, relaxed.objective)
            share = relaxed.placement_value
        rounded = _settle(
            model, rounded_placements(model, dual, share, pi), method, deadline=deadline
        )
        if rounded is None:  # its pricing rule needed more rounds than the time allowed
            stopped = True
            break
        candidates.append(rounded)
        lower = max(lower, _value(model, rounded))
    more = options.dual_iterations - steps
    target = max(options.mip_rel_gap, options.bound_gap)
    if more > 0 and bound - lower > target * max(abs(bound), 1.0):
        if time.perf_counter() < deadline:
            tighter, _, _ = dual.minimise(pi, lower, deadline, iterations=more, rel_gap=target)
            bound = min(bound, tighter)
        else:
            stopped = True
    timings["dual_s"] = time.perf_counter() - t1
    best: _Outcome | None = None
    for other in candidates:
        if best is None or _value(model, other) >= _value(model, best):
            best = other
    if best is None or _value(model, best) < greedy_value:
        incumbent = _settle(model, chosen, "greedy", first=first)
        if incumbent is None:  # cannot happen without a deadline
            raise SolverError("the incumbent could not be settled", fix="report this market")
        if best is None or _value(model, incumbent) > _value(model, best):
            best = incumbent
    best.cleared.bound = min(best.cleared.bound, bound)
    value = _objective(model, best.cleared.flow, best.cleared.placements)
    open_gap = best.cleared.bound - value > options.mip_rel_gap * max(abs(bound), 1.0)
    if open_gap and not small:
        best.notes.append(f"branch and bound skipped: {n_columns:,} columns above mip_max_columns")
    elif open_gap and time.perf_counter() + settle_s < deadline:
        t2 = time.perf_counter()
        # The branch and bound stops in time to settle what it found.
        exact = _mip_candidate(model, options, deadline - settle_s, best, bound, arrays)
        timings["mip_s"] = time.perf_counter() - t2
        if exact is not None and _value(model, exact) >= _value(model, best):
            best = exact
        elif exact is not None:
            best.cleared.bound = min(best.cleared.bound, exact.cleared.bound)
            stopped = stopped or exact.stopped
    elif open_gap:
        stopped = True
    best.stopped = stopped or best.stopped
    value = _objective(model, best.cleared.flow, best.cleared.placements)
    best.cleared.optimal = True
    best.cleared.mip_gap = 0.0
    if best.cleared.bound - value < 1.0:  # welfare of whole placements is integral
        best.cleared.bound = value
    return best


def _value(model: ClearingModel, outcome: _Outcome) -> float:
    return _objective(model, outcome.cleared.flow, outcome.cleared.placements)


def _greedy_placements(model: ClearingModel, result: ClearingResult | None = None) -> IntArray:
    """The placements greedy gives the gangs (greedy runs on the model's own market, so it
    sees the same orders in the same order); gangs it places where the model has no
    placement (none can: the model keeps every placement that can pay) are left out."""
    result = result if result is not None else greedy_clear(model.market)
    gang_index = {order.id: g for g, order in enumerate(model.gangs)}
    pool_index = {pool.id: p for p, pool in enumerate(model.pools)}
    first: dict[int, tuple[int, int]] = {}
    for a in result.allocations:
        g = gang_index.get(a.order_id)
        if g is None:
            continue
        cell = (pool_index[a.pool_id], a.slot - model.market.first_slot)
        if g not in first or cell[1] < first[g][1]:
            first[g] = cell
    pl = model.placements
    where = {
        (int(g), int(p), int(k)): j
        for j, (g, p, k) in enumerate(zip(pl.order, pl.pool, pl.start, strict=True))
        if int(g) in first
    }
    found = [where.get((g, p, k)) for g, (p, k) in first.items()]
    return np.asarray(sorted(j for j in found if j is not None), np.int64)


def _greedy_with_rows(model: ClearingModel) -> _Outcome:
    """Greedy's clearing in a market with side rows: its gang placements and the GPU-slots
    of the orders in a side row are fixed (greedy keeps every row: green shares cell by
    cell, whole data within each link's bandwidth, work in reference GPU-hours), the rest
    of the market is cleared around them and priced (:func:`_settle_held`); gangs priced
    out are rejected as in :func:`_settle`. No bound: a heuristic clearing."""
    result = greedy_clear(model.market)
    chosen = _greedy_placements(model, result)
    nb = model.side.matrix.shape[1]
    order_index = {order.id: i for i, order in enumerate(model.orders)}
    pool_index = {pool.id: p for p, pool in enumerate(model.pools)}
    pool_of = (model.head[:nb] - model.ps_base) // model.n_slots
    arc_of = {
        (int(i), int(p), int(k)): a
        for a, (i, p, k) in enumerate(
            zip(model.arc_order[:nb], pool_of, model.arc_slot[:nb], strict=True)
        )
    }
    fixed = np.zeros(nb, np.int64)
    held = set(model.held.tolist())
    for a in result.allocations:
        i = order_index.get(a.order_id)
        if i is None or i not in held:
            continue
        arc = arc_of.get((i, pool_index[a.pool_id], a.slot - model.market.first_slot))
        if arc is not None:
            fixed[arc] += a.gpus
    _fix_rows(model, fixed, _row_rhs(model, chosen), model.side.matrix.tocsc())
    rejected: list[int] = []
    no_links = np.zeros(len(model.market.links))
    while True:
        cleared = _settle_held(model, chosen, fixed, no_links)
        losers = _gangs_above_limit(model, cleared)
        if not losers:
            return _Outcome(cleared, "greedy", rejected, bounded=False)
        rejected.extend(losers)
        chosen = chosen[~np.isin(model.placements.order[chosen], losers)]


def _settle(
    model: ClearingModel,
    chosen: IntArray,
    method: str,
    rejected: list[int] | None = None,
    deadline: float | None = None,
    first: _Cleared | None = None,
) -> _Outcome | None:
    """Clear the network around ``chosen`` placements and price it; every gang that would
    pay above its value at those prices is rejected (all at once) and the rest cleared
    again, until none does. With a ``deadline`` (a candidate besides the incumbent), give
    up (``None``) rather than start a round that its last one says cannot end in time.
    ``first``: the first round's clearing, when the caller has it."""
    rejected = list(rejected or [])
    price_s = 0.0
    while True:
        cleared = first if first is not None else _clear_network(model, chosen)
        first = None
        price_s += cleared.price_s
        losers = _gangs_above_limit(model, cleared)
        if not losers:
            cleared.price_s = price_s
            return _Outcome(cleared, method, rejected)
        if deadline is not None and time.perf_counter() + cleared.flow_s > deadline:
            return None
        rejected.extend(losers)
        chosen = chosen[~np.isin(model.placements.order[chosen], losers)]


def _mip_candidate(
    model: ClearingModel,
    options: ClearingOptions,
    deadline: float,
    start: _Outcome,
    bound: float,
    arrays: LpArrays | None = None,
) -> _Outcome | None:
    """HiGHS's branch and bound from ``start``'s clearing, within the time left. A gang the
    MIP accepts but the prices of its clearing price out is rejected and the MIP run again
    without it (paradoxical rejection, as in EUPHEMIA), while time remains. ``None`` when
    HiGHS found nothing in the time."""
    arrays = arrays if arrays is not None else build_lp(model)
    sup = np.nonzero(model.kind == ARC_SUPPLY)[0]
    rejected: list[int] = []
    incumbent: _Cleared | None = start.cleared
    stopped = False
    for _ in range(len(model.gangs) + 1):
        left = deadline - time.perf_counter()
        if left <= 0:
            return None
        excluded = np.nonzero(np.isin(model.placements.order, rejected))[0]
        guess = None
        if incumbent is not None:
            z = np.zeros(len(model.placements))
            z[incumbent.placements] = 1.0
            if not bool(z[excluded].any()):
                nb = arrays.n_bid
                guess = LpSolution(
                    incumbent.flow[:nb].astype(np.float64),
                    incumbent.flow[sup].astype(np.float64),
                    z,
                    z,
                    np.zeros(nb),
                    np.zeros(0),
                    0.0,
                    True,
                    0.0,
                )
        try:
            sol = solve_lp(
                model,
                excluded_placements=excluded,
                time_limit_s=left,
                mip_rel_gap=options.mip_rel_gap,
                arrays=arrays,
                start=guess,
                deadline=deadline,
                presolve=False,  # the limit holds (see solve_lp); these MIPs are small
            )
        except SolverError:
            return None
        stopped = not sol.optimal
        chosen = np.nonzero(sol.placement > 0.5)[0]
        cleared = _clear_network(model, chosen)
        losers = _gangs_above_limit(model, cleared)
        if not losers:
            cleared.bound = min(sol.bound, bound) if not rejected else sol.bound
            outcome = _Outcome(cleared, "mip", rejected, stopped=stopped)
            if sol.optimal and sol.bound - sol.objective < 1.0:
                cleared.bound = _objective(model, cleared.flow, cleared.placements)
            return outcome
        rejected.append(losers[0])
        incumbent = None
    return None


# --- gang and green-share path ---------------------------------------------------------------


def _clear_with_gangs(
    model: ClearingModel,
    options: ClearingOptions,
    rejected: list[int],
    base: _Cleared | None = None,
    deadline: float | None = None,
) -> _Cleared:
    """MIP for the placements and LP for side rows, then the network on the rest at fixed
    placements and held orders' allocations, priced.

    At those prices, a gang that would pay above its limit is rejected and the market
    cleared again; a held order (one in a side row) that would pay above its value on
    average gives up its dearest GPU-slots (keeping every side row) until it does not.
    ``base`` is the network optimum when the caller already has it (a market without gangs)."""
    pl = model.placements
    if deadline is None:
        deadline = time.perf_counter() + options.time_limit_s
    optimal = True
    for _ in range(len(model.gangs) + 1):
        if len(pl) and time.perf_counter() >= deadline:
            raise SolverError("time limit reached before the gang placements were solved")
        if len(pl):
            chosen, placed_optimally, mip_gap = _place_gangs(model, rejected, deadline, options)
            optimal &= placed_optimally
        else:
            chosen, mip_gap = np.zeros(0, np.int64), 0.0
        cleared = base if base is not None and not len(pl) else _clear_network(model, chosen)
        if len(model.side) and _rows_broken(model, cleared.flow, chosen):
            fixed, side_optimal, bound, mu, stopped = _side_bids(
                model, chosen, cleared, deadline, options
            )
            optimal &= side_optimal
            cleared = _settle_held(model, chosen, fixed, mu, deadline)
            cleared.bound = bound
            cleared.stopped = stopped
        losers = _gangs_above_limit(model, cleared)
        if not losers:
            cleared.optimal = optimal
            cleared.mip_gap = mip_gap
            return cleared
        rejected.append(losers[0])
    raise SolverError("pricing of gang orders did not settle", fix="report this market")


def _place_gangs(
    model: ClearingModel, rejected: list[int], deadline: float, options: ClearingOptions
) -> tuple[IntArray, bool, float]:
    """Gang placements of the welfare optimum (within ``options.mip_rel_gap``), whether the
    search finished, and the relative gap it proved. The LP relaxation comes first: when its
    placements are already whole it is the MIP optimum (often, since gangs rarely compete
    for the same cells at the margin), and the branch-and-bound is skipped."""
    pl = model.placements
    excluded = np.nonzero(np.isin(pl.order, rejected))[0]
    relaxed = solve_lp(
        model,
        excluded_placements=excluded,
        integer=False,
        time_limit_s=_left(deadline),
        deadline=deadline,
    )
    z = np.asarray(relaxed.placement_value)
    if relaxed.optimal and bool(np.all(np.minimum(z, 1.0 - z) <= 1e-9)):
        return np.nonzero(z > 0.5)[0], True, 0.0
    # A first incumbent: the relaxation's placements, most decided first, where they fit.
    fixed = np.zeros(len(pl))
    left = model.offered.copy()
    room = model.side.rhs.copy()
    pl_cols = model.side.pl_matrix.tocsc()
    placed: set[int] = set()
    for j in np.argsort(-z, kind="stable"):
        nodes = pl.pool[j] * model.n_slots + pl.start[j] + np.arange(pl.duration[j])
        if z[j] <= 1e-9 or int(pl.order[j]) in placed or (left[nodes] < pl.gpus[j]).any():
            continue
        col = pl_cols[:, [int(j)]].toarray().ravel()
        if len(model.side) and bool((col > room + ROW_EPS).any()):
            continue
        fixed[j] = 1.0
        left[nodes] -= pl.gpus[j]
        room -= col
        placed.add(int(pl.order[j]))
    start = solve_lp(
        model,
        fixed_placements=fixed,
        integer=False,
        time_limit_s=_left(deadline),
        deadline=deadline,
    )
    sol = solve_lp(
        model,
        excluded_placements=excluded,
        time_limit_s=_left(deadline),
        mip_rel_gap=options.mip_rel_gap,
        start=start,
        deadline=deadline,
    )
    return np.nonzero(sol.placement > 0.5)[0], sol.optimal, sol.mip_gap


def _left(deadline: float) -> float:
    """Seconds left before ``deadline`` (what every solver call is given)."""
    return max(deadline - time.perf_counter(), 0.0)


def _held_arcs(model: ClearingModel) -> npt.NDArray[np.bool_]:
    """BID arcs of the orders held out of the network when side rows bind."""
    nb = model.side.matrix.shape[1]
    return np.isin(model.arc_order[:nb], model.held)


def _link_cost(model: ClearingModel, mu: FloatArray) -> FloatArray:
    """Congestion charge per BID arc and GPU-slot (objective units) at link prices ``mu``."""
    nb = model.side.matrix.shape[1]
    link = model.arc_link[:nb]
    if not mu.size or not bool((mu > 0).any()):
        return np.zeros(nb)
    return np.where(link >= 0, mu[np.maximum(link, 0)], 0.0) * model.arc_gb[:nb]


def _settle_held(
    model: ClearingModel,
    chosen: IntArray,
    fixed: IntArray,
    mu: FloatArray,
    deadline: float | None = None,
) -> _Cleared:
    """Clear the rest of the market around the held orders' fixed bids, then adjust them
    to the prices: held orders that would pay above their value on average shed their
    dearest GPU-slots, and (once, if one more network solve can end before ``deadline``)
    those with work left take unsold capacity priced below their value where every side
    row holds; repeat until no held order is above its value.
    A link whose row ends up slack by more than one unit of its largest coefficient is not
    congested: its price is 0."""
    cleared = _clear_network(model, chosen, fixed)
    cleared.link_price = mu
    for round_ in range(int(fixed.sum()) + 2):
        over = _held_above_limit(model, cleared)
        adjusted = _shed_to_limit(model, fixed, cleared, over, chosen) if over else fixed
        in_time = deadline is None or time.perf_counter() + cleared.flow_s < deadline
        if round_ == 0 and in_time:
            adjusted = _fill_held(model, adjusted, cleared, chosen)
        if np.array_equal(adjusted, fixed):
            break
        fixed = adjusted
        cleared = _clear_network(model, chosen, fixed)
        cleared.link_price = mu
    side = model.side
    if mu.size and bool((mu > 0).any()):
        nb = side.matrix.shape[1]
        slack = _row_rhs(model, chosen) - side.matrix @ cleared.flow[:nb].astype(np.float64)
        mu = mu.copy()
        for r in np.nonzero(side.kind == ROW_LINK)[0]:
            row = side.matrix.getrow(int(r))
            widest = float(row.data.max()) if row.nnz else 0.0
            if slack[r] > widest + ROW_EPS:
                mu[side.link[r]] = 0.0
        cleared.link_price = mu
    return cleared


def _column(csc: sp.csc_matrix, a: int) -> tuple[IntArray, FloatArray]:
    """Side rows of BID arc ``a`` and its coefficients there (no scipy indexing: fast)."""
    lo, hi = int(csc.indptr[a]), int(csc.indptr[a + 1])
    return csc.indices[lo:hi], csc.data[lo:hi]


def _fix_rows(model: ClearingModel, x: IntArray, rhs: FloatArray, csc: sp.csc_matrix) -> None:
    """Shed whole units of ``x`` (GPU-slots per BID arc) until every side row holds: in the
    first broken row, one live arc gives up as many units as the row needs (in a green row
    the brownest; in a work or link row the one with the least value per unit of work or
    GB, e.g. work away from home that pays for its data), and so on. Every step lowers the
    total, so this ends."""
    side = model.side
    act = side.matrix @ x.astype(np.float64)
    while True:
        broken = np.nonzero(act > rhs + ROW_EPS)[0]
        if not broken.size:
            return
        r = int(broken[0])
        lo, hi = side.matrix.indptr[r], side.matrix.indptr[r + 1]
        arcs, coef = side.matrix.indices[lo:hi], side.matrix.data[lo:hi]
        live = (x[arcs] > 0) & (coef > 0)
        if not live.any():  # cannot happen for a row a placement-free fill could break
            raise SolverError("a side row could not be repaired", fix="report this market")
        if side.kind[r] == ROW_GREEN:
            k = int(np.argmax(np.where(live, coef, -np.inf)))
        else:  # the least value per unit of the row (work, GB) goes first
            per = -model.cost[arcs].astype(np.float64) / np.where(live, coef, 1.0)
            k = int(np.argmin(np.where(live, per, np.inf)))
        a = int(arcs[k])
        need = int(np.ceil((act[r] - rhs[r]) / coef[k] - ROW_EPS))
        n = max(1, min(int(x[a]), need))
        x[a] -= n
        rows, vals = _column(csc, a)
        act[rows] -= n * vals


def _fill_held(
    model: ClearingModel, fixed: IntArray, cleared: _Cleared, chosen: IntArray
) -> IntArray:
    """Held orders with work left take unsold capacity priced below their value, where
    every side row still holds: at the clearing prices they would want exactly that.
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
    csc = model.side.matrix.tocsc()
    rhs = _row_rhs(model, chosen)
    act = model.side.matrix @ out.astype(np.float64)
    gain_all = -model.cost[:nb] - cleared.potential[ps] - _link_cost(model, cleared.link_price)
    bid_order = model.arc_order[:nb]
    # Candidates: held orders' arcs that gain at the prices, in free pool-slots; by order,
    # then best gain first.
    cand = np.nonzero(_held_arcs(model) & (gain_all > 0) & (free[ps] > 0))[0]
    cand = cand[np.lexsort((-gain_all[cand], bid_order[cand]))]
    for a in cand.tolist():
        i = int(bid_order[a])
        if used[i] >= model.work[i]:
            continue
        n = min(
            int(model.work[i] - used[i]),
            int(model.cap[a] - os_used[model.tail[a]]),
            int(free[ps[a]]),
        )
        if n <= 0:
            continue
        rows, vals = _column(csc, a)
        pos = vals > 0
        if pos.any():
            r = rows[pos]
            room = np.floor((rhs[r] - act[r]) / vals[pos] + ROW_EPS)
            n = min(n, int(max(room.min(), 0)))
        if n <= 0:
            continue
        out[a] += n
        act[rows] += n * vals
        used[i] += n
        os_used[model.tail[a]] += n
        free[ps[a]] -= n
    return out


def _arcs_of(model: ClearingModel, i: int) -> IntArray:
    """BID arcs of divisible order ``i`` (BID arcs are sorted by order)."""
    nb = model.side.matrix.shape[1]
    bid_order = model.arc_order[:nb]
    a0 = int(np.searchsorted(bid_order, i, side="left"))
    a1 = int(np.searchsorted(bid_order, i, side="right"))
    return np.arange(a0, a1, dtype=np.int64)


def _gangs_above_limit(model: ClearingModel, cleared: _Cleared) -> list[int]:
    """Accepted gangs whose bill at the clearing prices (GPU-slots plus congestion on their
    data link) exceeds their value, worst first."""
    pl = model.placements
    mu = cleared.link_price
    worst: list[tuple[float, str, int]] = []
    for j in cleared.placements:
        nodes = pl.pool[j] * model.n_slots + pl.start[j] + np.arange(pl.duration[j])
        bill = float(int(cleared.potential[nodes].sum()) * int(pl.gpus[j]))
        if pl.link[j] >= 0 and mu.size:
            bill += float(mu[pl.link[j]]) * float(pl.gb[j])
        value = float(pl.value[j])
        if bill > value + 1e-6:
            g = int(pl.order[j])
            worst.append((-(bill - value) / max(value, 1.0), model.gangs[g].id, g))
    return [g for _, _, g in sorted(worst)]


def _held_above_limit(model: ClearingModel, cleared: _Cleared) -> list[int]:
    """Held orders whose bill (prices plus congestion) is above their value on average."""
    nb = model.side.matrix.shape[1]
    ps = model.head[:nb] - model.ps_base
    charge = cleared.potential[ps] + _link_cost(model, cleared.link_price)
    x = cleared.flow[:nb].astype(np.float64)
    n = len(model.orders)
    bill = np.bincount(model.arc_order[:nb], weights=charge * x, minlength=n)
    worth = np.bincount(model.arc_order[:nb], weights=-model.cost[:nb] * x, minlength=n)
    over = model.held[bill[model.held] > worth[model.held] + 1e-6]
    return [int(i) for i in over]


def _shed_to_limit(
    model: ClearingModel,
    fixed: IntArray,
    cleared: _Cleared,
    orders: list[int],
    chosen: IntArray,
) -> IntArray:
    """Drop the dearest GPU-slots of the given held orders until each pays at most its
    value on average, shedding more as needed to keep every side row."""
    fixed = fixed.copy()
    nb = fixed.size
    ps = model.head[:nb] - model.ps_base
    charge = cleared.potential[ps] + _link_cost(model, cleared.link_price)
    value = -model.cost[:nb].astype(np.float64)
    csc = model.side.matrix.tocsc()
    rhs = _row_rhs(model, chosen)
    for i in orders:
        arcs = _arcs_of(model, i)
        while float(charge[arcs] @ fixed[arcs]) > float(value[arcs] @ fixed[arcs]) + 1e-6:
            live = arcs[fixed[arcs] > 0]
            fixed[live[np.argmax(charge[live] - value[live])]] -= 1
            _fix_rows(model, fixed, rhs, csc)
    return fixed


#: A left-out column enters the restricted LP when its reduced profit exceeds this (fen).
ENTER_EPS = 1e-6


def _side_bids(
    model: ClearingModel,
    chosen: IntArray,
    base: _Cleared,
    deadline: float,
    options: ClearingOptions,
) -> tuple[IntArray, bool, float, FloatArray, bool]:
    """Whole GPU-slots per BID arc for the held orders (0 elsewhere), whether they are the
    LP optimum's, an upper bound on the welfare (objective units) of any clearing with
    those placements, the congestion price of every link (objective units per GB), and
    whether the search stopped at the time limit.

    Small markets solve the LP with side rows exactly (link prices: the duals of the link
    rows); large ones price the rows by Lagrangian relaxation around the network (link
    prices: the multipliers), see :func:`_side_lagrangian`."""
    use = _placement_use(model, chosen)
    mu = np.zeros(len(model.market.links))
    side = model.side
    if int((model.kind == ARC_BID).sum()) <= options.exact_green_columns:
        fixed = np.zeros(len(model.placements))
        fixed[chosen] = 1.0
        sol = _side_lp(model, base, fixed, deadline)
        bound = sol.objective if sol.optimal else np.inf
        dual = np.maximum(sol.side_dual, 0.0)
        links = side.kind == ROW_LINK
        mu[side.link[links]] = dual[links]
        stopped = not sol.optimal
        return _repair_held(model, sol.bid, use, chosen), sol.optimal, bound, mu, stopped
    bid, bound, eta, stopped = _side_lagrangian(
        model, chosen, deadline, options, base.flow, base.flow_s
    )
    links = side.kind == ROW_LINK
    mu[side.link[links]] = eta[links]
    return _repair_held(model, bid, use, chosen), True, bound, mu, stopped


def _repair_held(
    model: ClearingModel, bid: FloatArray, use: IntArray, chosen: IntArray
) -> IntArray:
    """Round held orders' bids to whole GPU-slots that keep every row: down, shed units
    until each side row holds (:func:`_fix_rows`), then back up where the rows allow."""
    nb = bid.size
    held = _held_arcs(model)
    x = np.where(held, np.floor(bid + FLOW_EPS), 0).astype(np.int64)
    rhs = _row_rhs(model, chosen)
    csc = model.side.matrix.tocsc()
    _fix_rows(model, x, rhs, csc)
    frac = np.where(held, bid - np.floor(bid + FLOW_EPS), 0.0)
    ups = [int(a) for a in np.argsort(-frac, kind="stable") if frac[a] > FLOW_EPS]
    if not ups:
        return x
    ps = model.head[:nb] - model.ps_base
    order_used = np.bincount(model.arc_order[:nb], weights=x, minlength=len(model.orders))
    os_used = np.bincount(model.tail[:nb], weights=x, minlength=model.n_nodes)
    ps_used = np.bincount(ps, weights=x, minlength=model.n_pool_slots) + use
    act = model.side.matrix @ x.astype(np.float64)
    for a in ups:
        i, o, n = model.arc_order[a], model.tail[a], ps[a]
        if (
            order_used[i] >= model.work[i]
            or os_used[o] >= model.cap[a]
            or ps_used[n] >= model.offered[n]
        ):
            continue
        rows, vals = _column(csc, a)
        if bool((act[rows] + vals > rhs[rows] + ROW_EPS).any()):
            continue
        x[a] += 1
        act[rows] += vals
        order_used[i] += 1
        os_used[o] += 1
        ps_used[n] += 1
    return x


#: Integer scale of arc costs in the Lagrangian network (1/16 of a cost unit).
LAGRANGE_SCALE = 16


def _side_lagrangian(
    model: ClearingModel,
    chosen: IntArray,
    deadline: float,
    options: ClearingOptions,
    base: IntArray | None = None,
    flow_s: float = 0.0,
) -> tuple[FloatArray, float, FloatArray, bool]:
    """Price the side rows into the arc values (v - eta^T row coefficients) and solve the
    network; adjust eta by subgradient steps until the repaired clearing is within
    ``options.green_gap`` of the Lagrangian bound, or the iterations run out.

    The first solve has eta = 0 (the market without side rows); rows it breaks start from
    eta = 30% of the mean value of their arcs per unit of coefficient (a green row: per unit
    of share), then Polyak steps follow. The returned bids are the average of the iterates
    after the first (ergodic averaging, which converges to the LP optimum where single
    iterates oscillate). Every Lagrangian value is an upper bound on the LP optimum (weak
    duality over the network polytope, which is integral), so the returned bound is
    certified. Also returns the final multipliers (a link row's: its congestion price).
    ``base``, the network optimum at eta = 0 when the caller has it, saves the first solve;
    ``flow_s``, what it took, says whether the next one can end before ``deadline``: a solve
    that cannot is not started."""
    side = model.side
    matrix = side.matrix
    nb = matrix.shape[1]
    rhs = _row_rhs(model, chosen)
    use = _placement_use(model, chosen)
    supply = np.zeros(model.n_nodes, np.int64)
    supply[SOURCE] = model.total_supply
    supply[SINK] = -model.total_supply - int(use.sum())
    supply[model.ps_base : model.ps_base + model.n_pool_slots] += use
    value = -model.cost.astype(np.float64)  # + value on bids, - reserve on supply
    eta = np.zeros(len(side))
    best_lower, upper = -np.inf, np.inf
    theta, stalls = 0.25, 0
    total, weight = np.zeros(nb), 0
    slack = float(model.total_supply + use.sum()) / LAGRANGE_SCALE  # rounding of costs
    fixed = _objective(model, np.zeros(0, np.int64), chosen)  # the gangs' welfare
    held = _held_arcs(model)
    stopped = False
    for it in range(options.green_iterations):
        adj = value.copy()
        adj[:nb] -= matrix.T @ eta
        if it == 0 and base is not None:
            flow = base  # eta = 0: the network optimum itself
        else:
            if it and time.perf_counter() + flow_s > deadline:
                stopped = True
                break
            scaled = -np.round(adj * LAGRANGE_SCALE).astype(np.int64)
            t_flow = time.perf_counter()
            flow, _ = solve_min_cost_flow(
                model.n_nodes, model.tail, model.head, model.cap, scaled, supply
            )
            flow_s = time.perf_counter() - t_flow
        lagrangian = float(adj @ flow) + float(eta @ rhs) + slack + fixed
        if lagrangian < upper - 1e-9:
            upper, stalls = lagrangian, 0
        else:
            stalls += 1
            if stalls >= 2:
                theta, stalls = theta / 2, 0
        g = rhs - matrix @ flow[:nb].astype(np.float64)
        repaired = _repair_held(model, flow[:nb].astype(np.float64), use, chosen)
        lower = _repaired_value(model, flow, repaired, held, value) + fixed
        best_lower = max(best_lower, lower)
        violated = np.minimum(g, 0.0)
        if it == 0:
            if not (violated < -ROW_EPS).any():
                return flow[:nb].astype(np.float64), upper, eta, False  # rows hold: optimal
            for r in np.nonzero(violated < -ROW_EPS)[0]:
                lo, hi = matrix.indptr[r], matrix.indptr[r + 1]
                arcs, coef = matrix.indices[lo:hi], matrix.data[lo:hi]
                per = 1.0 if side.kind[r] == ROW_GREEN else float(np.abs(coef).mean())
                eta[r] = 0.3 * float(value[arcs].mean()) / max(per, 1e-12)
            continue
        total += flow[:nb]
        weight += 1
        norm = float(violated @ violated)
        gap_ok = upper - best_lower <= options.green_gap * abs(upper)
        if norm == 0.0 or gap_ok:
            break
        if time.perf_counter() > deadline:
            stopped = True
            break
        step = theta * (upper - best_lower) / norm
        eta = np.maximum(0.0, eta - step * np.where(eta > 0, g, violated))
    if weight == 0:
        return flow[:nb].astype(np.float64), upper, eta, stopped
    return total / weight, upper, eta, stopped


def _repaired_value(
    model: ClearingModel,
    flow: IntArray,
    repaired: IntArray,
    held: npt.NDArray[np.bool_],
    value: FloatArray,
) -> float:
    """Welfare (objective units) of the Lagrangian flow after shedding held orders' units:
    each shed unit loses its bid and frees its pool-slot's dearest sold supply."""
    nb = repaired.size
    total = float(value @ flow)
    shed = np.where(held, flow[:nb] - repaired, 0)
    total -= float(value[:nb] @ shed)
    ps = model.head[:nb] - model.ps_base
    freed = np.bincount(ps, weights=np.maximum(shed, 0), minlength=model.n_pool_slots)
    sup = np.nonzero((model.kind == ARC_SUPPLY) & (flow > 0))[0]
    dearest = np.zeros(model.n_pool_slots)
    np.maximum.at(dearest, model.tail[sup] - model.ps_base, model.cost[sup].astype(np.float64))
    return total + float(freed @ dearest)


def _side_lp(
    model: ClearingModel, base: _Cleared, fixed: FloatArray, deadline: float
) -> LpSolution:
    """The LP with side rows by column generation around the network optimum.

    The network optimum without the side rows (``base``, exact) gives prices; the
    restricted LP starts from the bid columns that carry flow or whose value reaches the
    pool-slot price, plus every column of the held orders, and left-out columns with a
    positive reduced profit enter until none is left, which proves the restricted optimum
    optimal for the whole LP."""
    arrays = build_lp(model, all_slot_rows=True)
    nb = arrays.n_bid
    value = -model.cost[:nb]
    ps = model.head[:nb] - model.ps_base
    columns = (base.flow[:nb] > 0) | (value >= base.potential[ps]) | _held_arcs(model)
    while True:
        sol = solve_lp(
            model,
            fixed_placements=fixed,
            integer=False,
            time_limit_s=_left(deadline),
            bid_columns=np.nonzero(columns)[0],
            arrays=arrays,
            deadline=deadline,
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
    n_links = len(market.links)
    if cleared is None:
        prices = np.where(model.min_reserve >= NO_SUPPLY, 0, model.min_reserve)
        flow = np.zeros(model.n_arcs, np.int64)
        chosen = np.zeros(0, np.int64)
        link_fen = np.zeros(n_links, np.int64)
    else:
        # The one place where the solver's numbers become fen: scaled potentials and
        # congestion duals are rounded down, so that no buyer pays above its value.
        prices = cleared.potential // model.scale
        flow, chosen = cleared.flow, cleared.placements
        mu = cleared.link_price if cleared.link_price.size else np.zeros(n_links)
        link_fen = np.floor(np.maximum(mu, 0.0) * hours / model.scale + 1e-9).astype(np.int64)

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
                int(model.cost[a]) // model.scale,
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
    # Welfare: the objective in whole fen (values net of carrier transfer costs).
    bids = model.kind == ARC_BID
    objective = int(-(model.cost[bids] @ flow[bids])) + int(model.placements.value[chosen].sum())
    # The time preference is a tie-break, not a cost anyone bears: welfare leaves it out.
    objective += int(model.arc_delay @ flow[bids]) + int(model.placements.delay[chosen].sum())
    objective -= int(sum(f.reserve_fen * f.gpus for f in fills)) * model.scale
    transfers, link_rows = _transfers(model, flow, chosen, link_fen)
    return ClearingResult(
        status=status,
        method=method,
        allocations=tuple(allocations),
        fills=tuple(fills),
        prices=tuple(price_rows),
        welfare_fen=(objective * hours) // model.scale,
        timings=dict(timings),
        message=message,
        rejected_gangs=rejected,
        slot_hours=hours,
        link_prices=link_rows,
        transfers=transfers,
    )


def _transfers(
    model: ClearingModel, flow: IntArray, chosen: IntArray, link_fen: IntArray
) -> tuple[tuple[Transfer, ...], tuple[LinkPrice, ...]]:
    """Data each order moves over each link, and what it is charged: the carrier's price
    and the link's congestion price per GB, each rounded down to whole fen per record."""
    market = model.market
    moved: dict[tuple[int, int], float] = {}  # (order row, link) -> GB; gangs after orders
    nb = model.side.matrix.shape[1]
    arcs = np.nonzero((flow[:nb] > 0) & (model.arc_link[:nb] >= 0))[0]
    for a in arcs:
        key = (int(model.arc_order[a]), int(model.arc_link[a]))
        moved[key] = moved.get(key, 0.0) + float(flow[a]) * float(model.arc_gb[a])
    pl = model.placements
    n_div = len(model.orders)
    for j in chosen:
        if pl.link[j] >= 0:
            key = (n_div + int(pl.order[j]), int(pl.link[j]))
            moved[key] = moved.get(key, 0.0) + float(pl.gb[j])
    records = []
    per_link = np.zeros(len(market.links))
    for (row, k), gb in moved.items():
        order = model.orders[row] if row < n_div else model.gangs[row - n_div]
        link = market.links[k]
        carrier = int(np.floor(gb * link.price_fen_per_gb + 1e-9))
        congestion = int(np.floor(gb * int(link_fen[k]) + 1e-9))
        per_link[k] += gb
        records.append(
            Transfer(
                order.id,
                order.buyer_id,
                link.from_region,
                link.to_region,
                gb,
                link.price_fen_per_gb,
                int(link_fen[k]),
                carrier,
                congestion,
            )
        )
    records.sort(key=lambda t: (t.order_id, t.from_region, t.to_region))
    links = tuple(
        LinkPrice(
            link.from_region,
            link.to_region,
            int(link_fen[k]),
            link.price_fen_per_gb,
            float(per_link[k]),
            link.gb_per_slot(market.grid.slot_seconds) * market.n_slots,
        )
        for k, link in enumerate(market.links)
    )
    return tuple(records), links


__all__ = ["ClearingOptions", "clear"]
