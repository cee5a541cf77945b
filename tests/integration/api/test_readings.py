"""Meter readings are tied to time and physics: inside their lease's slot, not after the
market clock's now, never overlapping, energy bounded by board power x PUE x time; and each
says how it was measured."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import EPOCH, NOW_SLOT, T0, Api

HOUR = 3600


def _lease(world: Api, slot: int) -> dict[str, Any]:
    items = world.call("GET", "/leases?order_id=ord-buy-a", "prov-a").json()["items"]
    return next(x for x in items if x["slot"] == slot)


def _post(world: Api, lease: dict[str, Any], **body: Any) -> Any:
    return world.call("POST", f"/leases/{lease['id']}/readings", "prov-a", json=body)


@pytest.mark.parametrize(
    ("start", "end", "extra", "field"),
    [
        (0, 3600, {}, "body.interval_start"),  # dated 1970
        (T0 - 2 * HOUR, T0 - HOUR, {}, "body.interval_start"),  # before the slot
        (T0, T0 + 600, {}, "body.interval_end"),  # ends in the future
        (T0 - 60, T0, {"energy_wh": 3 * 10**12}, "body.energy_wh"),  # physically impossible
        (T0 - 60, T0, {"gpu_seconds": 10**6}, "body.gpu_seconds"),
        (T0 - 60, T0, {"source": "guess"}, "body.source"),
    ],
)
def test_impossible_readings_are_refused(
    world: Api, start: int, end: int, extra: dict[str, Any], field: str
) -> None:
    lease = _lease(world, NOW_SLOT)
    r = _post(
        world,
        lease,
        **{"id": "bad", "interval_start": start, "interval_end": end, "gpu_seconds": 1, **extra},
    )
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["field"] == field and problem["fix"], problem
    readings = world.call("GET", f"/leases/{lease['id']}/readings", "prov-a").json()["items"]
    assert all(x["id"] != "bad" for x in readings)


def test_a_provider_cannot_be_paid_before_the_slot(world: Api) -> None:
    """A final reading for a lease whose slot has not started settles nothing."""
    later = _lease(world, NOW_SLOT + 3)
    start = EPOCH + later["slot"] * HOUR
    r = _post(
        world,
        later,
        id="early",
        interval_start=start,
        interval_end=start + HOUR,
        gpu_seconds=later["gpus"] * HOUR,
        final=True,
    )
    assert r.status_code == 422 and r.json()["field"] == "body.interval_end", r.text
    again = world.call("GET", f"/leases/{later['id']}", "prov-a").json()
    assert again["state"] == "scheduled"


def test_readings_never_overlap_and_say_how_they_were_measured(world: Api) -> None:
    lease = _lease(world, NOW_SLOT)
    slot_start = EPOCH + NOW_SLOT * HOUR
    first = _post(
        world,
        lease,
        id="m1",
        interval_start=slot_start,
        interval_end=slot_start + 30,
        gpu_seconds=lease["gpus"] * 30,
        energy_wh=5,
        source="nvml",
    )
    assert first.status_code == 201, first.text
    assert first.json()["source"] == "nvml"
    overlap = _post(
        world,
        lease,
        id="m2",
        interval_start=slot_start + 20,
        interval_end=slot_start + 40,
        gpu_seconds=0,
    )
    assert overlap.status_code == 422 and overlap.json()["field"] == "body.interval_start"
    # Back to back is fine; a reading without a source is a nominal estimate.
    nxt = _post(
        world,
        lease,
        id="m3",
        interval_start=slot_start + 30,
        interval_end=slot_start + 50,
        gpu_seconds=0,
    )
    assert nxt.status_code == 201, nxt.text
    assert nxt.json()["source"] == "nominal"
    listed = world.call("GET", f"/leases/{lease['id']}/readings", "prov-a").json()["items"]
    assert {x["id"]: x["source"] for x in listed if x["id"] in ("m1", "m3")} == {
        "m1": "nvml",
        "m3": "nominal",
    }
