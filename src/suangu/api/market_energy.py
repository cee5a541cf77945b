"""The energy model in the service's clearings: modelled green shares and a carbon price.

:class:`MarketEnergy` is the hook that ``POST /clearings`` and the clearing loop apply to
every market before clearing it, as the in-process simulation does
(:mod:`suangu.sim.simulate`): each pool's green share per slot comes from its site's modelled
hourly green share (:func:`~suangu.core.energy.hooks.green_share_for_market`), and a non-zero
carbon price (yuan per tCO2) raises every offer's reserve by the location-based carbon of
its pool-slot (:func:`~suangu.core.energy.hooks.apply_carbon_price`).

Which sites are modelled: ``sites`` maps a market site id to a packaged energy-data site id
(``suangu/data/energy/sites.yaml``); without it, every market site whose id *is* a packaged
energy-data site (``horinger``, ``qingyang``, ...) is modelled and the others keep the green
share they have (0 in the service). Site-years are simulated once per energy site and span
of calendar years, with seeded weather, and kept for the life of the process (shared by
every :class:`MarketEnergy` of the process: the same site, years and seed give the same
site-year).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace

import numpy as np

from suangu.core.energy import hooks
from suangu.core.energy.model import SiteYear
from suangu.core.errors import ValidationError
from suangu.core.types import Market, TimeGrid

#: Site-years simulated so far in this process: (energy site, first year, last year, seed).
_YEARS: dict[tuple[str, int, int, int], SiteYear] = {}
#: Most site-years kept (about 1 MB each).
_MAX_YEARS = 64
_YEARS_LOCK = threading.Lock()
#: Most pool-slot values one MarketEnergy keeps before starting afresh.
_MAX_SLOT_VALUES = 200_000


class MarketEnergy:
    """Apply the energy model to a market (see the module docs); thread-safe."""

    def __init__(
        self,
        sites: Mapping[str, str] | None = None,
        *,
        seed: int = 0,
        carbon_price_yuan_per_t: float = 0.0,
    ) -> None:
        if not 0 <= carbon_price_yuan_per_t <= 100_000:
            raise ValidationError(
                f"must be between 0 and 100,000 yuan/t, got {carbon_price_yuan_per_t}",
                field="carbon_price_yuan_per_t",
                fix="e.g. 100",
            )
        self.sites = None if sites is None else dict(sites)
        self.seed = seed
        self.carbon_price_yuan_per_t = carbon_price_yuan_per_t
        #: (kind, site, GPU class, energy site, seed, epoch, slot seconds, slot) -> value
        self._slots: dict[tuple[str, str, str, str, int, int, int, int], float] = {}
        self._lock = threading.Lock()

    def at_price(self, carbon_price_yuan_per_t: float) -> MarketEnergy:
        """This energy model at another carbon price (sharing its site-years and cache):
        each clearing takes the operator's stored price (:mod:`suangu.api.carbon_price`)."""
        if carbon_price_yuan_per_t == self.carbon_price_yuan_per_t:
            return self
        if not 0 <= carbon_price_yuan_per_t <= 100_000:
            raise ValidationError(
                f"must be between 0 and 100,000 yuan/t, got {carbon_price_yuan_per_t}",
                field="carbon_price_yuan_per_t",
                fix="e.g. 100",
            )
        other = copy.copy(self)
        other.carbon_price_yuan_per_t = carbon_price_yuan_per_t
        return other

    def energy_sites(self, site_ids: Iterable[str]) -> dict[str, str]:
        """Market site id -> energy-data site id, for the modelled ones of ``site_ids``."""
        from suangu.sim.energy import load_energy_data

        if self.sites is not None:
            return {s: self.sites[s] for s in site_ids if s in self.sites}
        known = load_energy_data().sites
        return {s: s for s in site_ids if s in known}

    def site_years(
        self, site_ids: Iterable[str], start_unix: int, end_unix: int
    ) -> dict[str, SiteYear]:
        """Site-years covering ``[start_unix, end_unix)`` by market site id, for the modelled
        ones of ``site_ids`` (simulated once per energy site and years, then cached)."""
        from suangu.sim.energy import load_energy_data, local_year, site_years_for_span

        mapping = self.energy_sites(site_ids)
        if not mapping:
            return {}
        data = load_energy_data()
        out: dict[str, SiteYear] = {}
        with _YEARS_LOCK:
            for site_id, energy_id in sorted(mapping.items()):
                offset = data.site(energy_id).utc_offset_hours
                first, last = local_year(start_unix, offset), local_year(end_unix - 1, offset)
                key = (energy_id, first, last, self.seed)
                if key not in _YEARS:
                    if len(_YEARS) >= _MAX_YEARS:
                        _YEARS.pop(next(iter(_YEARS)))
                    _YEARS[key] = site_years_for_span(
                        {energy_id: energy_id}, start_unix, end_unix, seed=self.seed, data=data
                    )[energy_id]
                out[site_id] = _YEARS[key]
        return out

    def __call__(self, market: Market) -> Market:
        """``market`` with modelled green shares and, with a carbon price, raised reserves.

        The same values as :func:`~suangu.core.energy.hooks.green_share_for_market` and
        :func:`~suangu.core.energy.hooks.carbon_for_market` with
        :func:`~suangu.core.energy.hooks.apply_carbon_price`; each pool-slot's value is
        computed once and kept (consecutive clearings share most of their horizon)."""
        grid = market.grid
        slots = range(market.first_slot, market.end_slot)
        site_years = self.site_years(
            [site.id for site in market.sites],
            grid.slot_start(slots.start),
            grid.slot_start(slots.stop),
        )
        if not site_years:
            return market
        shares = dict(market.green_share)
        for pool in market.pools:
            sy = site_years.get(pool.site_id)
            if sy is not None:
                shares[pool.id] = self._values(("green", pool.site_id, ""), sy, grid, slots)
        out = replace(market, green_share=shares)
        if self.carbon_price_yuan_per_t > 0 and out.offers:
            carbon: dict[str, tuple[float, ...]] = {}
            for pool in out.pools:
                sy = site_years.get(pool.site_id)
                if sy is None:  # not modelled: no carbon figure, no adder
                    carbon[pool.id] = tuple(0.0 for _ in slots)
                    continue
                key = ("carbon", pool.site_id, pool.gpu_class)
                carbon[pool.id] = self._values(key, sy, grid, slots)
            out = hooks.apply_carbon_price(out, carbon, self.carbon_price_yuan_per_t)
        return out

    def _values(
        self, what: tuple[str, str, str], sy: SiteYear, grid: TimeGrid, slots: range
    ) -> tuple[float, ...]:
        """Slot means of a site's hourly green share (clipped to [0, 1]) or of a class's
        gCO2 per GPU-hour, from the cache or computed for the slots missing."""
        kind, site_id, gpu = what
        base = (kind, site_id, gpu, sy.params.site_id, self.seed, grid.epoch, grid.slot_seconds)
        with self._lock:
            missing = [t for t in slots if (*base, t) not in self._slots]
            if missing:
                block = range(missing[0], missing[-1] + 1)
                if kind == "green":
                    values = np.clip(hooks.slot_mean(sy.green_share, sy, grid, block), 0.0, 1.0)
                else:
                    values = hooks.slot_mean(sy.carbon_g_per_gpu_hour(gpu), sy, grid, block)
                if len(self._slots) > _MAX_SLOT_VALUES:
                    self._slots.clear()
                for t, v in zip(block, values.tolist(), strict=True):
                    self._slots[(*base, t)] = float(v)
            return tuple(self._slots[(*base, t)] for t in slots)
