"""Domain types validate in their constructors and name the field and the fix."""

from __future__ import annotations

import pytest

from suangu.core.errors import UnknownReferenceError, ValidationError
from suangu.core.gpus import CATALOGUE, gpu_class
from suangu.core.types import Market, Offer, Order, OrderKind, Pool, Site, TimeGrid

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
