"""The clearing as a linear or mixed-integer program in HiGHS, built in bulk.

Used when the market has what a plain network cannot express: gang orders (binary placement
columns) and minimum green shares (side rows). Columns: bid arcs (GPU-slots of an order in a
pool-slot), supply arcs (GPU-slots of an offer) and gang placements. The matrix is assembled
from numpy arrays with scipy.sparse, never row by row.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import highspy
import numpy as np
import scipy.sparse as sp

from suangu.core.clearing.model import (
    ARC_BID,
    ARC_SUPPLY,
    ClearingModel,
    FloatArray,
    IntArray,
)
from suangu.core.errors import SolverError

_BANNER_SHOWN = False


def _new_highs() -> highspy.Highs:
    """A silent HiGHS instance. The C++ library prints a banner on stdout the first time one
    is created in a process, before any option can be set: swallow that one line."""
    global _BANNER_SHOWN
    if _BANNER_SHOWN:
        return highspy.Highs()  # type: ignore[no-untyped-call]
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            h = highspy.Highs()  # type: ignore[no-untyped-call]
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        _BANNER_SHOWN = True
    return h


@dataclass(frozen=True)
class LpSolution:
    bid: FloatArray  # GPU-slots per BID arc (model arc order); 0 for columns left out
    supply: FloatArray  # GPU-slots per SUPPLY arc
    placement: FloatArray  # 0/1 per gang placement (rounded)
    placement_value: FloatArray  # the solver's values, fractional in an LP relaxation
    bid_reduced: FloatArray  # reduced profit of every BID column (LP only; 0 for a MIP)
    side_dual: FloatArray  # dual of every side row (LP only; >= 0 when binding)
    objective: float
    optimal: bool
    mip_gap: float
    #: Proven upper bound on the objective (a MIP's dual bound; the objective of an LP).
    bound: float = np.inf


@dataclass(frozen=True)
class LpArrays:
    """The whole program as arrays: columns are BID arcs, SUPPLY arcs, then placements."""

    matrix: sp.csc_matrix
    cost: FloatArray
    col_lower: FloatArray
    col_upper: FloatArray
    row_lower: FloatArray
    row_upper: FloatArray
    n_bid: int
    n_supply: int
    n_placement: int
    side_row0: int  # first side row
    n_side: int


def build_lp(model: ClearingModel, *, all_slot_rows: bool = False) -> LpArrays:
    """Assemble the program. ``all_slot_rows`` gives every order-slot a row of its own (even
    with one arc) so that its dual prices columns left out of a restricted program."""
    bid_idx = np.nonzero(model.kind == ARC_BID)[0]
    sup_idx = np.nonzero(model.kind == ARC_SUPPLY)[0]
    nb, ns, npl = bid_idx.size, sup_idx.size, len(model.placements)
    n_col = nb + ns + npl
    pl = model.placements

    rows: list[IntArray] = []
    cols: list[IntArray] = []
    vals: list[FloatArray] = []
    lower: list[FloatArray] = []
    upper: list[FloatArray] = []
    r = 0

    def add(block_rows: IntArray, block_cols: IntArray, block_vals: FloatArray) -> None:
        rows.append(np.asarray(block_rows, np.int64))
        cols.append(np.asarray(block_cols, np.int64))
        vals.append(np.asarray(block_vals, np.float64))

    # Work rows: sum of an order's bid arcs <= its work.
    bid_order = model.arc_order[bid_idx]
    orders_used, order_row = np.unique(bid_order, return_inverse=True)
    add(r + order_row, np.arange(nb), np.ones(nb))
    lower.append(np.full(orders_used.size, -np.inf))
    upper.append(model.work[orders_used].astype(np.float64))
    r += orders_used.size

    # Order-slot rows: bid arcs from one order-slot node <= the order's GPUs per slot.
    os_nodes, os_row, os_count = np.unique(
        model.tail[bid_idx], return_inverse=True, return_counts=True
    )
    keep = np.ones(nb, bool) if all_slot_rows else os_count[os_row] > 1
    if keep.any():
        used, compact = np.unique(os_row[keep], return_inverse=True)
        add(r + compact, np.nonzero(keep)[0], np.ones(int(keep.sum())))
        lower.append(np.full(used.size, -np.inf))
        first_arc = np.zeros(os_nodes.size, np.int64)
        first_arc[os_row[::-1]] = np.arange(nb)[::-1]
        upper.append(model.cap[bid_idx][first_arc[used]].astype(np.float64))
        r += used.size

    # Pool-slot balance: bids + gang use - supply = 0.
    ps_of_bid = model.head[bid_idx] - model.ps_base
    ps_of_sup = model.tail[sup_idx] - model.ps_base
    pl_nodes = [
        (pl.pool[j] * model.n_slots + pl.start[j] + np.arange(pl.duration[j]), j)
        for j in range(npl)
    ]
    pl_ps = np.concatenate([n for n, _ in pl_nodes]) if npl else np.zeros(0, np.int64)
    pl_col = np.concatenate([np.full(n.size, j) for n, j in pl_nodes]) if npl else pl_ps
    all_ps = np.unique(np.concatenate([ps_of_bid, ps_of_sup, pl_ps]))
    ps_row = np.full(model.n_pool_slots, -1, np.int64)
    ps_row[all_ps] = r + np.arange(all_ps.size)
    add(ps_row[ps_of_bid], np.arange(nb), np.ones(nb))
    add(ps_row[ps_of_sup], nb + np.arange(ns), -np.ones(ns))
    if npl:
        add(ps_row[pl_ps], nb + ns + pl_col, pl.gpus[pl_col].astype(np.float64))
    lower.append(np.zeros(all_ps.size))
    upper.append(np.zeros(all_ps.size))
    r += all_ps.size

    # Side rows (green, work, link): coef @ bids + pl_coef @ placements <= rhs.
    side = model.side
    side_row0 = r
    if len(side):
        coo = side.matrix.tocoo()
        add(r + coo.row, coo.col, coo.data)
        pcoo = side.pl_matrix.tocoo()
        if pcoo.nnz:
            add(r + pcoo.row, nb + ns + pcoo.col, pcoo.data)
        lower.append(np.full(len(side), -np.inf))
        upper.append(side.rhs.astype(np.float64))
        r += len(side)

    # Gang rows: at most one placement per gang order.
    if npl:
        add(r + pl.order, nb + ns + np.arange(npl), np.ones(npl))
        lower.append(np.full(len(model.gangs), -np.inf))
        upper.append(np.ones(len(model.gangs)))
        r += len(model.gangs)

    matrix = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(r, n_col)
    )
    matrix.sum_duplicates()
    cost = np.concatenate(
        [
            -model.cost[bid_idx].astype(np.float64),  # limit per GPU-slot
            -model.cost[sup_idx].astype(np.float64),  # minus reserve
            pl.value.astype(np.float64),
        ]
    )
    col_upper = np.concatenate([model.cap[bid_idx], model.cap[sup_idx], np.ones(npl)])
    return LpArrays(
        matrix=matrix,
        cost=cost,
        col_lower=np.zeros(n_col),
        col_upper=col_upper.astype(np.float64),
        row_lower=np.concatenate(lower),
        row_upper=np.concatenate(upper),
        n_bid=nb,
        n_supply=ns,
        n_placement=npl,
        side_row0=side_row0,
        n_side=len(side),
    )


def solve_lp(
    model: ClearingModel,
    *,
    excluded_placements: IntArray | None = None,
    fixed_placements: FloatArray | None = None,
    integer: bool = True,
    time_limit_s: float = 60.0,
    mip_rel_gap: float = 1e-7,
    bid_columns: IntArray | None = None,
    arrays: LpArrays | None = None,
    start: LpSolution | None = None,
    deadline: float | None = None,
    presolve: bool = True,
) -> LpSolution:
    """Solve the clearing; placements in ``excluded_placements`` are forced to 0, those in
    ``fixed_placements`` (a 0/1 vector) are fixed, which turns the MIP into an LP.

    ``bid_columns`` restricts the program to those BID arcs (the others stay at 0); the
    solution's ``bid_reduced`` then tells which left-out columns would improve it.

    ``deadline`` (a ``time.perf_counter()`` instant) interrupts the simplex and the branch
    and bound when it passes: HiGHS's own ``time_limit`` is only checked at some points of
    its search (a branch and bound was seen to run 2.6 times past it), so the clearing's
    wall-clock limit is enforced through its interrupt callbacks as well. ``presolve=False``
    turns HiGHS's presolve off: with a start solution it was seen to run four times past a
    one-second limit (the callbacks are not called there), without it the limit held."""
    a = arrays if arrays is not None else build_lp(model)
    nb, ns, npl = a.n_bid, a.n_supply, a.n_placement
    col_lower = a.col_lower.copy()
    col_upper = a.col_upper.copy()
    if excluded_placements is not None and excluded_placements.size:
        col_upper[nb + ns + excluded_placements] = 0.0
    if fixed_placements is not None:
        col_lower[nb + ns :] = fixed_placements
        col_upper[nb + ns :] = fixed_placements
    is_mip = integer and npl > 0 and fixed_placements is None
    if bid_columns is None:
        keep = np.arange(nb + ns + npl)
    else:
        keep = np.concatenate([np.sort(bid_columns), np.arange(nb, nb + ns + npl)])
    matrix = a.matrix[:, keep] if bid_columns is not None else a.matrix
    n_col, n_row = keep.size, a.matrix.shape[0]

    lp = highspy.HighsLp()
    lp.num_col_ = n_col
    lp.num_row_ = n_row
    lp.col_cost_ = a.cost[keep]
    lp.col_lower_ = col_lower[keep]
    lp.col_upper_ = col_upper[keep]
    lp.row_lower_ = a.row_lower
    lp.row_upper_ = a.row_upper
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = matrix.indptr
    lp.a_matrix_.index_ = matrix.indices
    lp.a_matrix_.value_ = matrix.data
    lp.a_matrix_.num_col_ = n_col
    lp.a_matrix_.num_row_ = n_row
    integrality = np.zeros(n_col, np.int32)
    if is_mip:
        integrality[n_col - npl :] = 1
    lp.integrality_ = [highspy.HighsVarType(int(v)) for v in integrality]

    h = _new_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.setOptionValue("random_seed", 0)
    h.setOptionValue("time_limit", float(time_limit_s))
    if not presolve:
        h.setOptionValue("presolve", "off")
    h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
    # Welfare of whole placements is an integer (integral costs, network-integral batch
    # part): a bound less than 1 fen away proves optimality.
    h.setOptionValue("mip_abs_gap", 0.999)
    h.passModel(lp)
    if deadline is not None:
        stop_at = float(deadline)

        def interrupt(event: Any) -> None:
            if time.perf_counter() > stop_at:
                event.interrupt()

        h.cbSimplexInterrupt += interrupt
        h.cbIpmInterrupt += interrupt
        h.cbMipInterrupt += interrupt
    if start is not None and is_mip:
        incumbent = highspy.HighsSolution()
        incumbent.col_value = np.concatenate([start.bid, start.supply, start.placement])[keep]
        incumbent.value_valid = True
        h.setSolution(incumbent)
    h.run()
    status = h.getModelStatus()
    ok = {highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kModelEmpty}
    limited = {highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kInterrupt}
    if status not in ok | limited:
        raise SolverError(
            f"HiGHS ended with {h.modelStatusToString(status)}", fix="report this market"
        )
    solution = h.getSolution()
    if status == highspy.HighsModelStatus.kModelEmpty:
        zeros = np.zeros(nb)
        return LpSolution(
            bid=zeros,
            supply=np.zeros(ns),
            placement=np.zeros(npl),
            placement_value=np.zeros(npl),
            bid_reduced=zeros,
            side_dual=np.zeros(a.n_side),
            objective=0.0,
            optimal=True,
            mip_gap=0.0,
            bound=0.0,
        )
    if not solution.value_valid:
        raise SolverError(
            "HiGHS found no feasible clearing in the time limit", fix="raise the time limit"
        )
    x = np.zeros(nb + ns + npl)
    x[keep] = np.asarray(solution.col_value)
    info = h.getInfo()
    reduced = np.zeros(nb)
    side_dual = np.zeros(a.n_side)
    if not is_mip and solution.dual_valid:
        # HiGHS: reduced cost = cost - A^T y; for a maximisation a column at 0 with a
        # positive reduced cost would improve the objective.
        row_dual = np.asarray(solution.row_dual)
        reduced = a.cost[:nb] - a.matrix[:, :nb].T @ row_dual
        side_dual = row_dual[a.side_row0 : a.side_row0 + a.n_side]
    gap = float(info.mip_gap) if is_mip else 0.0
    if is_mip:
        bound = float(info.mip_dual_bound)
    else:
        bound = float(info.objective_function_value) if status in ok else np.inf
    return LpSolution(
        bid=x[:nb],
        supply=x[nb : nb + ns],
        placement=np.round(x[nb + ns :]),
        placement_value=x[nb + ns :],
        bid_reduced=reduced,
        side_dual=side_dual,
        objective=float(info.objective_function_value),
        optimal=status in ok,
        mip_gap=gap if np.isfinite(gap) else 0.0,
        bound=bound if np.isfinite(bound) else np.inf,
    )
