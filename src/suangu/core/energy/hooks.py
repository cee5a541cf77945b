"""Market hooks: pure functions that feed the energy model into the market's core types.

The clearing engine is unchanged: these functions only build new :class:`Offer` and
:class:`Market` values (reserves, green shares) from :class:`~suangu.core.energy.model.SiteYear`
results. A market slot maps to the site-year hours it covers (``TimeGrid.slot_start`` against
the site-year's local-midnight start); a slot of several hours uses the mean over its hours.

* :func:`reserve_from_energy`: a provider lets the exchange set its reserve from energy cost:
  ``reserve_fen = ceil(energy_cost_fen * (1 + markup)) + margin_fen`` per slot (rounded up:
  never below cost).
* :func:`apply_carbon_price`: the operator's carbon price (yuan per tCO2) added to every
  offer's reserve in the horizon, in milli-fen: ``+ carbon_cost_mfen(g per GPU-hour,
  price)`` (``Market.reserve_mfen``), whole fen rounded down in ``reserve_fen``. The
  clearing then treats carbon as a cost like energy (a reserve adder; the money is the
  provider's, collecting it as a levy is a settlement rule not modelled here), priced to the
  milli-fen: at 100 yuan/t a GPU-hour's carbon differs between hours of one region by 1-3
  fen, which whole fen would round to a few levels.
* :func:`green_share_for_market`: ``Market.green_share`` from the modelled hourly green share
  of each pool's site, so that orders' minimum green shares use the model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from suangu.core.energy._common import FloatArray, require
from suangu.core.energy.model import SiteYear
from suangu.core.errors import UnknownReferenceError
from suangu.core.types import MAX_PRICE_FEN, MILLI, Market, Offer, Pool, TimeGrid

#: fen per yuan
FEN = 100
#: grams per tonne
G_PER_T = 1_000_000


def slot_mean(hourly: FloatArray, site_year: SiteYear, grid: TimeGrid, slots: range) -> FloatArray:
    """The mean of an hourly site-year array over the hours of each market slot in ``slots``."""
    n = grid.slot_hours
    out = np.empty(len(slots))
    for k, slot in enumerate(slots):
        start = site_year.hour_index(grid.slot_start(slot))
        require(
            start + n <= site_year.hours,
            "slot",
            f"slot {slot} runs past the end of {site_year.year}",
            "simulate the next year too",
        )
        out[k] = float(hourly[start : start + n].mean())
    return out


def energy_cost_fen(
    site_year: SiteYear, gpu_class: str, grid: TimeGrid, slots: range
) -> FloatArray:
    """Energy cost of one GPU-hour of ``gpu_class`` in each slot, fen (not rounded)."""
    return FEN * slot_mean(site_year.energy_cost_per_gpu_hour(gpu_class), site_year, grid, slots)


def carbon_cost_mfen(g_per_gpu_hour: float, yuan_per_t: float) -> int:
    """Carbon cost of one GPU-hour, whole milli-fen (half up):
    ``g * yuan_per_t * 100 * 1000 / 1e6``."""
    require(g_per_gpu_hour >= 0, "carbon_g", "must be >= 0", "grams per GPU-hour")
    require(
        math.isfinite(yuan_per_t) and 0 <= yuan_per_t <= 100_000,
        "yuan_per_t",
        f"must be a carbon price between 0 and 100,000 yuan/t, got {yuan_per_t!r}",
        "e.g. 100 for 100 yuan per tonne",
    )
    return math.floor(g_per_gpu_hour * yuan_per_t * FEN * MILLI / G_PER_T + 0.5)


def carbon_cost_fen(g_per_gpu_hour: float, yuan_per_t: float) -> int:
    """Carbon cost of one GPU-hour in whole fen: :func:`carbon_cost_mfen` rounded down (what
    a whole-fen reserve carries of it; the clearing uses the milli-fen)."""
    return carbon_cost_mfen(g_per_gpu_hour, yuan_per_t) // MILLI


def _site_year(site_years: Mapping[str, SiteYear], pool: Pool) -> SiteYear:
    try:
        return site_years[pool.site_id]
    except KeyError:
        raise UnknownReferenceError(
            f"no energy model for site {pool.site_id!r} of pool {pool.id!r}",
            field="site_years",
            fix="simulate every site whose pools use energy hooks",
        ) from None


def _checked_reserve(value: int, field: str) -> int:
    require(
        0 <= value <= MAX_PRICE_FEN,
        field,
        f"reserve would be {value} fen, outside 0..{MAX_PRICE_FEN}",
        "check the margin, markup and carbon price units",
    )
    return value


def reserve_from_energy(
    offer: Offer,
    pool: Pool,
    site_year: SiteYear,
    grid: TimeGrid,
    *,
    margin_fen: int = 0,
    markup: float = 0.0,
) -> Offer:
    """``offer`` with its reserve set from the energy cost of ``pool`` in each of its slots."""
    require(offer.pool_id == pool.id, "pool", f"offer is for {offer.pool_id!r}", "match them")
    require(margin_fen >= 0, "margin_fen", "must be >= 0", "fen per GPU-hour")
    require(0.0 <= markup <= 10.0, "markup", "must be between 0 and 10", "0.2 for +20%")
    cost = energy_cost_fen(site_year, pool.gpu_class, grid, range(offer.start_slot, offer.end_slot))
    reserve = tuple(
        _checked_reserve(math.ceil(c * (1.0 + markup) - 1e-9) + margin_fen, f"reserve_fen[{k}]")
        for k, c in enumerate(cost.tolist())
    )
    return dataclasses.replace(offer, reserve_fen=reserve)


def reserves_from_energy(
    market: Market,
    site_years: Mapping[str, SiteYear],
    offer_ids: Collection[str],
    *,
    margin_fen: int = 0,
    markup: float = 0.0,
) -> Market:
    """``market`` with :func:`reserve_from_energy` applied to the offers in ``offer_ids``."""
    pools = {p.id: p for p in market.pools}
    offers = tuple(
        reserve_from_energy(
            o,
            pools[o.pool_id],
            _site_year(site_years, pools[o.pool_id]),
            market.grid,
            margin_fen=margin_fen,
            markup=markup,
        )
        if o.id in offer_ids
        else o
        for o in market.offers
    )
    return dataclasses.replace(market, offers=offers)


def carbon_for_market(
    market: Market, site_years: Mapping[str, SiteYear]
) -> dict[str, tuple[float, ...]]:
    """Location-based gCO2 per GPU-hour of every pool in every slot of the horizon."""
    slots = range(market.first_slot, market.end_slot)
    out = {}
    for pool in market.pools:
        sy = _site_year(site_years, pool)
        hourly = sy.carbon_g_per_gpu_hour(pool.gpu_class)
        out[pool.id] = tuple(slot_mean(hourly, sy, market.grid, slots).tolist())
    return out


def apply_carbon_price(
    market: Market, carbon_g_per_gpu_hour: Mapping[str, Sequence[float]], yuan_per_t: float
) -> Market:
    """``market`` with every offer's reserve raised by the carbon cost of its pool-slot.

    ``carbon_g_per_gpu_hour[pool_id][k]`` is the carbon of one GPU-hour in slot
    ``first_slot + k`` (see :func:`carbon_for_market`). Only slots inside the horizon change
    (the clearing uses no others); pools missing from the mapping are refused. The reserves
    rise in milli-fen (``Market.reserve_mfen``: :func:`carbon_cost_mfen` on top of the
    reserve, in fen or milli-fen, it had), and each ``reserve_fen`` becomes that rounded down
    to whole fen. A price of 0 leaves the market as it is.
    """
    first, end = market.first_slot, market.end_slot
    if yuan_per_t == 0:
        return market
    offers = []
    fine: dict[str, tuple[int, ...]] = {}
    for i, offer in enumerate(market.offers):
        carbon = carbon_g_per_gpu_hour.get(offer.pool_id)
        if carbon is None:
            raise UnknownReferenceError(
                f"no carbon figures for pool {offer.pool_id!r}",
                field="carbon_g_per_gpu_hour",
                fix="give every offered pool its gCO2 per GPU-hour (carbon_for_market)",
            )
        require(
            len(carbon) == market.n_slots,
            f"carbon_g_per_gpu_hour.{offer.pool_id}",
            f"has {len(carbon)} values for {market.n_slots} slots",
            "one value per slot of the horizon",
        )
        had = market.reserve_mfen.get(offer.id)
        mfen = list(had) if had is not None else [r * MILLI for r in offer.reserve_fen]
        for k in range(len(mfen)):
            slot = offer.start_slot + k
            if first <= slot < end:
                mfen[k] += carbon_cost_mfen(float(carbon[slot - first]), yuan_per_t)
                _checked_reserve(mfen[k] // MILLI, f"offers[{i}].reserve_fen[{k}]")
        fine[offer.id] = tuple(mfen)
        reserve = tuple(v // MILLI for v in mfen)
        offers.append(dataclasses.replace(offer, reserve_fen=reserve))
    return dataclasses.replace(market, offers=tuple(offers), reserve_mfen=fine)


def green_share_for_market(market: Market, site_years: Mapping[str, SiteYear]) -> Market:
    """``market`` with ``green_share`` of every pool from its site's modelled green share.

    Pools of sites without a site-year keep their given share (or 0 if none was given).
    """
    slots = range(market.first_slot, market.end_slot)
    shares = dict(market.green_share)
    for pool in market.pools:
        sy = site_years.get(pool.site_id)
        if sy is None:
            continue
        values = np.clip(slot_mean(sy.green_share, sy, market.grid, slots), 0.0, 1.0)
        shares[pool.id] = tuple(values.tolist())
    return dataclasses.replace(market, green_share=shares)
