"""Domain types validate in their constructors and name the field and the fix."""

from __future__ import annotations

import pytest

from suangu.core.errors import UnknownReferenceError, ValidationError
from suangu.core.gpus import CATALOGUE, gpu_class
from suangu.core.types import (
    Link,
    Market,
    Offer,
    Order,
    OrderKind,
    Pool,
    Site,
    TimeGrid,
    speed_of,
    transfer_slots,
)

SITE = Site("hor", "Horinger", "Inner Mongolia", "west")


def order(**kw: object) -> Order:
    base: dict[str, object] = dict(
        id="o",
        buyer_id="b",
        kind="batch",
        gpus=2,
        release_slot=0,
        deadline_slot=4,
        limit_fen=1000,
        gpu_hours=4,
    )
    base.update(kw)
    return Order(**base)  # type: ignore[arg-type]


def test_catalogue_has_the_published_classes() -> None:
    for name in ("H100", "H800", "A800", "A100", "910B", "L40S", "4090"):
        g = gpu_class(name)
        assert g.memory_gib > 0 and g.fp16_dense_tflops > 0 and g.board_power_w > 0
    assert gpu_class("h100").fp16_dense_tflops == pytest.approx(989.4)
    assert gpu_class("A800").memory_gib == 80
    assert len(CATALOGUE) >= 7


def test_unknown_gpu_class_lists_the_known_ones() -> None:
    with pytest.raises(UnknownReferenceError) as err:
        gpu_class("V100")
    assert err.value.field == "gpu_class" and "H100-SXM-80GB" in (err.value.fix or "")


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"gpus": 0}, "gpus"),
        ({"gpus": 2.5}, "gpus"),
        ({"deadline_slot": 0}, "deadline_slot"),
        ({"limit_fen": -5}, "limit_fen"),
        ({"limit_fen": 10**12}, "limit_fen"),
        ({"gpu_hours": 0}, "gpu_hours"),
        ({"kind": "spot"}, "kind"),
        ({"min_green_share": 1.5}, "min_green_share"),
        ({"max_latency_ms": 10.0}, "home"),
        ({"max_latency_ms": -1.0, "home": "beijing"}, "max_latency_ms"),
        ({"gpu_classes": frozenset({"V100"})}, "gpu_classes"),
        ({"duration_slots": 2}, "duration_slots"),
        ({"kind": "gang", "duration_slots": 9}, "duration_slots"),
        ({"id": " "}, "id"),
        ({"data_gb": -1, "home": "beijing"}, "data_gb"),
        ({"data_gb": 1.5, "home": "beijing"}, "data_gb"),
        ({"data_gb": 10}, "home"),
        ({"reference_class": "V100"}, "reference_class"),
        ({"speed": {"V100": 1.0}}, "speed.V100"),
        ({"speed": {"H100": 0.0}}, "speed.H100"),
        ({"speed": {"H100": float("nan")}}, "speed.H100"),
        ({"speed": {"H100": True}}, "speed.H100"),
    ],
)
def test_bad_orders_name_the_field(kw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        order(**kw)
    assert err.value.field == field
    assert err.value.fix


def test_order_kinds_and_work() -> None:
    assert order().max_gpu_slots(1) == 4
    gang = order(kind="gang", duration_slots=3, gpu_hours=0)
    assert gang.kind is OrderKind.GANG and gang.max_gpu_slots(1) == 6
    service = order(kind="service", gpu_hours=0)
    assert service.max_gpu_slots(1) == 8  # 2 GPUs in each of 4 slots
    assert order(gpu_classes=frozenset({"H100"})).gpu_classes == {"H100-SXM-80GB"}


def test_offer_validation_and_constant_helper() -> None:
    offer = Offer.over("f", "p", "pool", 2, 5, 8, 900)
    assert offer.gpus == (8, 8, 8) and offer.end_slot == 5
    with pytest.raises(ValidationError) as err:
        Offer("f", "p", "pool", 0, (1, 2), (900,))
    assert err.value.field == "reserve_fen"
    with pytest.raises(ValidationError) as err:
        Offer.over("f", "p", "pool", 0, 2, -1, 900)
    assert err.value.field == "gpus[0]"


def test_time_grid_is_whole_hours() -> None:
    assert TimeGrid(epoch=100, slot_seconds=7200).slot_at(100 + 7200 * 3 + 5) == 3
    with pytest.raises(ValidationError) as err:
        TimeGrid(slot_seconds=900)
    assert err.value.field == "slot_seconds"


def test_site_validation() -> None:
    with pytest.raises(ValidationError) as err:
        Site("x", "X", "P", "r", pue=0.9)
    assert err.value.field == "pue"
    with pytest.raises(ValidationError) as err:
        Site("x", "X", "P", "r", latency_ms={"beijing": -1})
    assert err.value.field == "latency_ms.beijing"


def test_market_checks_references_and_green_shapes() -> None:
    pool = Pool("p", "hor", "H100")
    with pytest.raises(UnknownReferenceError) as err:
        Market(TimeGrid(), 0, 2, (SITE,), (Pool("p", "nowhere", "H100"),), (), ())
    assert err.value.field == "pools[0].site_id"
    with pytest.raises(UnknownReferenceError):
        Market(TimeGrid(), 0, 2, (SITE,), (pool,), (Offer.over("f", "x", "q", 0, 1, 1, 1),), ())
    with pytest.raises(ValidationError) as err:
        Market(TimeGrid(), 0, 2, (SITE,), (pool,), (), (), green_share={"p": (0.5,)})
    assert err.value.field == "green_share.p"
    with pytest.raises(ValidationError) as err:
        Market(TimeGrid(), 0, 2, (SITE,), (pool,), (), (order(), order()))
    assert err.value.field == "orders[1].id"


def test_new_order_fields_default_to_todays_behaviour() -> None:
    o = order()
    assert o.data_gb == 0 and o.reference_class is None and dict(o.speed) == {}
    assert speed_of(o, "H100") == 1.0 and speed_of(o, "H20") == 1.0
    assert hash(o) == hash(order())  # speed is not part of the hash, orders stay hashable


def test_speed_defaults_from_fp16_tflops_and_overrides_win() -> None:
    o = order(reference_class="A100", speed={"h20": 0.25})
    assert o.reference_class == "A100-SXM-80GB"
    assert dict(o.speed) == {"H20-96GB": 0.25}
    assert speed_of(o, "A800") == pytest.approx(1.0)  # same silicon, same TFLOPS
    assert speed_of(o, "H100") == pytest.approx(989.4 / 312.0)
    assert speed_of(o, "H20") == 0.25  # the override, not 148 / 312
    assert speed_of(o, "L40S") == pytest.approx(362.05 / 312.0)
    # Without a reference class an override still applies; other classes count 1.
    assert speed_of(order(speed={"H20": 0.5}), "H20") == 0.5
    assert speed_of(order(speed={"H20": 0.5}), "H100") == 1.0


def test_link_validation_names_the_field() -> None:
    link = Link("beijing", "horinger", 12.5, 100.0, 3)
    assert link.key == ("beijing", "horinger")
    assert link.gb_per_slot(3600) == pytest.approx(45_000.0)
    for kw, field in (
        ({"to_region": "beijing"}, "to_region"),
        ({"from_region": ""}, "from_region"),
        ({"latency_ms": -1.0}, "latency_ms"),
        ({"latency_ms": float("inf")}, "latency_ms"),
        ({"bandwidth_gbps": 0.0}, "bandwidth_gbps"),
        ({"bandwidth_gbps": float("nan")}, "bandwidth_gbps"),
        ({"price_fen_per_gb": -1}, "price_fen_per_gb"),
        ({"price_fen_per_gb": 2.5}, "price_fen_per_gb"),
    ):
        args: dict[str, object] = dict(
            from_region="beijing",
            to_region="horinger",
            latency_ms=12.5,
            bandwidth_gbps=100.0,
            price_fen_per_gb=3,
        )
        args.update(kw)
        with pytest.raises(ValidationError) as err:
            Link(**args)  # type: ignore[arg-type]
        assert err.value.field == field and err.value.fix


def test_transfer_slots_rounds_up_whole_slots() -> None:
    link = Link("beijing", "horinger", 12.5, 10.0, 3)  # 10 Gbit/s = 4,500 GB per hour
    assert transfer_slots(order(), link, 3600) == 0  # no data
    assert transfer_slots(order(data_gb=10, home="beijing"), None, 3600) == 0  # stays home
    assert transfer_slots(order(data_gb=4500, home="beijing"), link, 3600) == 1  # exactly 1 h
    assert transfer_slots(order(data_gb=4501, home="beijing"), link, 3600) == 2
    assert transfer_slots(order(data_gb=1, home="beijing"), link, 3600) == 1
    assert transfer_slots(order(data_gb=9000, home="beijing"), link, 7200) == 1


def test_market_links_are_unique_pairs() -> None:
    pool = Pool("p", "hor", "H100")
    a = Link("beijing", "west", 10.0, 100.0, 3)
    m = Market(TimeGrid(), 0, 2, (SITE,), (pool,), (), (), links=[a])  # type: ignore[arg-type]
    assert m.links == (a,) and m.link("beijing", "west") is a and m.link("west", "beijing") is None
    assert Market(TimeGrid(), 0, 2, (SITE,), (pool,), (), ()).links == ()
    with pytest.raises(ValidationError) as err:
        Market(TimeGrid(), 0, 2, (SITE,), (pool,), (), (), links=(a, a))
    assert err.value.field == "links[1]"


def test_class_speed_matches_speed_of_for_stored_orders() -> None:
    from suangu.core.types import class_speed, speed_of

    order = Order(
        "o", "b", "batch", 1, 0, 2, 100, gpu_hours=4, reference_class="A800", speed={"L40S": 0.5}
    )
    for cls in ("H100", "A800", "910B", "L40S"):
        assert class_speed("A800", {"L40S": 0.5}, cls) == speed_of(order, cls)
    assert class_speed(None, {}, "H100") == 1.0
