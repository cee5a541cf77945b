"""Tests of the benchmark market generator (suangu.sim.generator)."""

from __future__ import annotations

import numpy as np
import pytest

from suangu.core.errors import ValidationError
from suangu.core.gpus import CATALOGUE
from suangu.core.types import OrderKind
from suangu.sim.generator import REFERENCE_FEN, generate_market, market_stats


def test_same_seed_same_market() -> None:
    a = generate_market(300, 6, 24, 7, green=True, gang_share=0.1)
    b = generate_market(300, 6, 24, 7, green=True, gang_share=0.1)
    assert a == b
    assert dict(a.green_share) == dict(b.green_share)
    assert market_stats(a) == market_stats(b)


def test_other_seed_other_market() -> None:
    a = generate_market(300, 6, 24, 7)
    b = generate_market(300, 6, 24, 8)
    assert a.orders != b.orders
    assert a.offers != b.offers


def test_green_and_gang_variants_share_the_base_market() -> None:
    base = generate_market(300, 6, 24, 3)
    green = generate_market(300, 6, 24, 3, green=True)
    assert green.offers == base.offers and green.pools == base.pools
    for o, g in zip(base.orders, green.orders, strict=True):
        assert (o.id, o.limit_fen, o.gpus, o.gpu_hours, o.regions) == (
            g.id,
            g.limit_fen,
            g.gpus,
            g.gpu_hours,
            g.regions,
        )
    assert set(green.green_share) == {p.id for p in green.pools}
    wanting = [o.min_green_share for o in green.orders if o.min_green_share > 0]
    assert 0.1 < len(wanting) / len(green.orders) < 0.3
    assert all(0.3 <= s <= 0.8 for s in wanting)
    assert not base.green_share and all(o.min_green_share == 0 for o in base.orders)

    gang = generate_market(300, 6, 24, 3, gang_share=0.3)
    assert gang.offers == base.offers
    gangs = [o for o in gang.orders if o.kind is OrderKind.GANG]
    assert 0.2 < len(gangs) / len(gang.orders) < 0.4
    for o in gangs:
        assert o.gpus in (8, 16, 32)
        assert 2 <= o.duration_slots <= 6 <= 24
        assert o.duration_slots <= o.window


def test_market_is_realistic() -> None:
    m = generate_market(2000, 10, 24, 1)
    assert len(m.pools) == 10 and len(m.sites) == 5
    assert len({s.region for s in m.sites}) == len(m.sites)
    for site in m.sites:
        classes = [p.gpu_class for p in m.pools if p.site_id == site.id]
        assert len(classes) == len(set(classes)) == 2
    assert all(p.gpu_class in CATALOGUE for p in m.pools)
    per_pool: dict[str, list[str]] = {}
    for offer in m.offers:
        per_pool.setdefault(offer.pool_id, []).append(offer.provider_id)
        pool = next(p for p in m.pools if p.id == offer.pool_id)
        ref = REFERENCE_FEN[pool.gpu_class]
        assert all(0.65 * ref <= r <= 1.45 * ref for r in offer.reserve_fen)
        assert len(offer.gpus) == m.n_slots
    for providers in per_pool.values():
        assert 1 <= len(providers) <= 3 and len(set(providers)) == len(providers)
    for o in m.orders:
        assert o.kind is OrderKind.BATCH
        assert 0 <= o.release_slot < o.deadline_slot <= m.n_slots
        assert 4 <= o.window <= m.n_slots
        assert 1 <= o.gpus <= 16
        assert 1 <= o.gpu_hours <= o.gpus * o.window
        assert 0.2 <= len(o.regions) / len(m.sites) <= 0.8
    powers = np.mean([o.gpus in (1, 2, 4, 8, 16) for o in m.orders])
    assert powers > 0.8
    restricted = np.mean([bool(o.gpu_classes) for o in m.orders])
    assert 0.4 < restricted < 0.6

    stats = market_stats(m)
    assert stats["orders"] == 2000 and stats["batch_orders"] == 2000
    assert stats["profitable_columns"] < stats["candidate_columns"]
    assert 1.3 <= stats["hot_hour_ratio"] <= 2.0
    assert 0.05 < stats["bids_below_reserve"] < 0.4


def test_odd_pools_tiny_horizons_and_empty_markets() -> None:
    m = generate_market(50, 3, 2, 0, green=True, gang_share=0.5)
    assert len(m.pools) == 3 and len(m.sites) == 2
    assert all(o.window <= 2 for o in m.orders)
    empty = generate_market(0, 1, 1, 0)
    assert empty.orders == () and len(empty.offers) >= 1
    assert market_stats(empty)["candidate_columns"] == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_orders": -1, "n_pools": 2, "n_slots": 4, "seed": 0},
        {"n_orders": 1, "n_pools": 0, "n_slots": 4, "seed": 0},
        {"n_orders": 1, "n_pools": 2, "n_slots": 0, "seed": 0},
        {"n_orders": 1, "n_pools": 2, "n_slots": 4, "seed": 0, "gang_share": 1.5},
    ],
)
def test_bad_arguments(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValidationError):
        generate_market(**kwargs)  # type: ignore[arg-type]
