"""Firm-order protection in `simulate` (``protect_firm_hours``): a firm order that can run in
only one pool keeps a place there, and the protection idles no capacity."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suangu.core.types import Order, OrderKind
from suangu.sim.scenario import OrderStream, Scenario, StreamOrder, load_scenario
from suangu.sim.simulate import simulate

SCENARIO = """
name: protect
start: 2025-06-02T00:00:00Z
hours: {hours}
lookahead: 8
time_preference: 0.01
protect_firm_hours: {protect}
sites:
  - {{id: east, name: East, province: Guangdong, region: south, lat: 24.8, lon: 113.6, pue: 1.2}}
  - {{id: west, name: West, province: Gansu, region: gansu, lat: 35.6, lon: 107.6, pue: 1.2}}
pools:
  - {{id: east-h800, site: east, gpu_class: H800}}
  - {{id: west-h800, site: west, gpu_class: H800}}
offers:
  - {{id: e, provider: p1, pool: east-h800, gpus: 8, reserve: 10.00}}
  - {{id: w, provider: p2, pool: west-h800, gpus: 8, reserve: 11.00}}
"""


def _scenario(tmp_path: Path, protect: int, hours: int = 12) -> Scenario:
    path = tmp_path / f"protect-{protect}.yaml"
    path.write_text(SCENARIO.format(protect=protect, hours=hours), encoding="utf-8")
    return load_scenario(path)


def _batch(oid: str, release: int, deadline: int, limit: int, **kw: object) -> Order:
    return Order(
        id=oid,
        buyer_id="b1",
        kind=OrderKind.BATCH,
        gpus=8,
        release_slot=release,
        deadline_slot=deadline,
        limit_fen=limit,
        gpu_hours=int(kw.pop("gpu_hours", 8)),  # type: ignore[call-overload]
        **kw,  # type: ignore[arg-type]
    )


def _stream() -> OrderStream:
    """Captive firm orders (resident in the south: only east-h800) arrive at hours 0, 5 and 9;
    a flexible order that may run anywhere arrives at hour 2 wanting 64 GPU-hours by hour 12,
    and prefers the east (cheaper). Without protection it buys the east's next eight hours and
    the later captive orders miss; with it, the east's GPUs after the current slot are held
    back for them (the peak of hour 0's captive order) and the flexible work goes west."""
    orders = [StreamOrder(_batch("flex", 2, 12, 2000, gpu_hours=64), 2)]
    firm = []
    for k, h in enumerate((0, 5, 9)):
        oid = f"firm{k}"
        order = _batch(oid, h, h + 2, 3000, regions=frozenset({"south"}))
        orders.append(StreamOrder(order, h))
        firm.append(oid)
    return OrderStream("test", tuple(orders), frozenset(firm))


def test_without_protection_the_captive_firm_order_misses(tmp_path: Path) -> None:
    report = simulate(_scenario(tmp_path, 0), _stream())
    assert report.firm_orders == 3
    assert report.firm_missed >= 1
    assert report.ledger_balanced, report.ledger_message


def test_protection_keeps_every_captive_firm_order(tmp_path: Path) -> None:
    report = simulate(_scenario(tmp_path, 24), _stream())
    assert report.firm_orders == 3
    assert report.firm_missed == 0
    assert report.ledger_balanced, report.ledger_message
    # The flexible order still gets all its work: the west, plus the east when no captive
    # order needs it (held-back GPUs are released when their slot starts).
    assert report.orders_filled == 4
    assert report.clearings_failed == 0


def test_protection_idles_nothing_without_captive_demand(tmp_path: Path) -> None:
    """No captive firm order: the same allocations, welfare and spend as without protection."""
    stream = OrderStream(
        "test", (StreamOrder(_batch("flex", 2, 12, 2000, gpu_hours=64), 2),), frozenset()
    )
    on = simulate(_scenario(tmp_path, 24), stream)
    off = simulate(_scenario(tmp_path, 0), stream)
    assert on.welfare_fen == off.welfare_fen
    assert on.buyer_spend_fen == off.buyer_spend_fen
    assert on.gpu_hours_traded == off.gpu_hours_traded


def test_baselines_ignore_the_protection(tmp_path: Path) -> None:
    on = simulate(_scenario(tmp_path, 24), _stream(), policy="cheapest-now")
    off = simulate(_scenario(tmp_path, 0), _stream(), policy="cheapest-now")
    assert on.welfare_fen == off.welfare_fen
    assert on.firm_missed == off.firm_missed


@pytest.mark.parametrize("value", ["-1", "a day"])
def test_bad_setting_names_the_field(tmp_path: Path, value: str) -> None:
    from suangu.sim.errors import ScenarioError

    path = tmp_path / "bad.yaml"
    path.write_text(
        SCENARIO.format(protect=0, hours=12).replace(
            "protect_firm_hours: 0", f"protect_firm_hours: {value}"
        ),
        encoding="utf-8",
    )
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert "protect_firm_hours" in str(err.value)


def test_a_firm_order_no_pool_can_serve_is_counted_unservable(tmp_path: Path) -> None:
    """Its limit (5.00 yuan per H800 GPU-hour) is below every reserve: every policy misses it,
    and the report says why."""
    cheap = _batch("cheap", 1, 4, 500)
    ok = _batch("ok", 1, 4, 3000)
    stream = OrderStream(
        "test", (StreamOrder(cheap, 1), StreamOrder(ok, 1)), frozenset({"cheap", "ok"})
    )
    for policy in ("suangu", "fifo-home", "cheapest-now"):
        report = simulate(_scenario(tmp_path, 24), stream, policy=policy)
        assert (report.firm_orders, report.firm_missed, report.firm_unservable) == (2, 1, 1)


def test_held_back_gpus_leave_the_next_slot_alone_and_never_go_negative(tmp_path: Path) -> None:
    """What the second step sees: the unsold GPUs less those held back, never below zero,
    and all of them in the slot about to start."""
    from suangu.sim.simulate import _Simulation

    sc = _scenario(tmp_path, 24)
    sim = _Simulation(sc, _stream(), 0.0, 0, None)
    assert set(sim.captive) == {"firm0", "firm1", "firm2"}  # resident: east-h800 only
    assert all(pools == ("east-h800",) for pools in sim.captive.values())
    held = sim._held_back(0, 8)  # firm0 (8 GPUs over [0, 2)) is the only history
    assert held == {("east-h800", s): 8 for s in range(1, 8)}
    sim.sold[("e", 3)] = 5  # a contract from an earlier clearing
    sim.captive_sold[("east-h800", 1)] = 8  # a captive order already holds slot 1
    held = sim._held_back(0, 8)
    assert ("east-h800", 1) not in held
    offers = {o.id: o for o in sim._open_offers(0, 8, held)}
    assert offers["e"].start_slot == 0
    assert offers["e"].gpus == (8, 8, 0, 0, 0, 0, 0, 0)  # slot 3: 3 unsold, 8 held: none
    assert offers["w"].gpus == (8,) * 8  # other pools untouched


# --- every rule holds with protection on, on random streams -----------------------------------


@st.composite
def _streams(draw: st.DrawFn) -> OrderStream:
    n = draw(st.integers(1, 8))
    orders, firm = [], set()
    for i in range(n):
        submit = draw(st.integers(0, 8))
        window = draw(st.integers(1, 6))
        gpus = draw(st.sampled_from([1, 2, 4, 8]))
        resident = draw(st.booleans())
        order = Order(
            id=f"o{i}",
            buyer_id=f"b{i % 2}",
            kind=OrderKind.BATCH,
            gpus=gpus,
            release_slot=submit,
            deadline_slot=submit + window,
            limit_fen=draw(st.integers(800, 3500)),
            gpu_hours=gpus * draw(st.integers(1, window)),
            regions=frozenset({"south"}) if resident else frozenset(),
        )
        orders.append(StreamOrder(order, submit))
        if draw(st.booleans()):
            firm.add(order.id)
    return OrderStream("random", tuple(orders), frozenset(firm))


@given(stream=_streams())
def test_protection_breaks_no_rule(
    stream: OrderStream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Each step's result passes check_clearing / check_settlement (the simulation raises
    otherwise), the ledger balances, and no pool-slot is sold beyond its GPUs."""
    from suangu.sim.simulate import _Simulation

    sc = _scenario(tmp_path_factory.mktemp("p"), 24)
    sim = _Simulation(sc, stream, 0.0, 0, None)
    report = sim.run()
    assert report.ledger_balanced, report.ledger_message
    assert report.clearings_failed == 0
    for (offer_id, slot), gpus in sim.sold.items():
        listed = sim.listed[offer_id]
        assert 0 <= gpus <= listed.gpus[slot - listed.start_slot]
    assert report.firm_missed <= report.firm_orders


def test_released_gpus_reach_an_order_that_holds_later_slots(tmp_path: Path) -> None:
    """A firm order that may run in three pools (so not captive) buys the two small western
    pools for its whole window at hour 0, while the east is held back for a captive order.
    When the east's slots are released, it takes them, though it already holds later slots
    (without that it would stop at 16 of its 24 GPU-hours)."""
    text = (
        SCENARIO.format(protect=24, hours=12)
        .replace("gpus: 8, reserve: 11.00}", "gpus: 2, reserve: 11.00}")
        .replace(
            "pools:\n",
            "  - {id: gz, name: GZ, province: Guizhou, region: guizhou, lat: 26.6, lon: 106.7,"
            " pue: 1.2}\npools:\n  - {id: gz-h800, site: gz, gpu_class: H800}\n",
        )
        + "  - {id: g, provider: p3, pool: gz-h800, gpus: 2, reserve: 11.00}\n"
    )
    path = tmp_path / "reopen.yaml"
    path.write_text(text, encoding="utf-8")
    captive = _batch("cap", 0, 2, 3000, regions=frozenset({"south"}))
    anywhere = _batch("any", 0, 4, 2000, gpu_hours=24)
    stream = OrderStream(
        "test", (StreamOrder(captive, 0), StreamOrder(anywhere, 0)), frozenset({"cap", "any"})
    )
    report = simulate(load_scenario(path), stream)
    assert (report.firm_orders, report.firm_missed) == (2, 0)
    assert report.work_done_h == report.work_asked_h == 32


def test_unservable_counts_only_missed_orders(tmp_path: Path) -> None:
    """Neither pool alone can do the work in time (the fast one only after a 3-slot data
    transfer), both together can: the order is filled and not counted unservable."""
    path = tmp_path / "mix.yaml"
    path.write_text(
        """
name: mix
start: 2025-06-02T00:00:00Z
hours: 12
lookahead: 8
protect_firm_hours: 24
sites:
  - {id: east, name: East, province: Guangdong, region: south, lat: 24.8, lon: 113.6, pue: 1.2}
  - {id: west, name: West, province: Gansu, region: gansu, lat: 35.6, lon: 107.6, pue: 1.2}
pools:
  - {id: east-a100, site: east, gpu_class: A100}
  - {id: west-h800, site: west, gpu_class: H800}
offers:
  - {id: e, provider: p1, pool: east-a100, gpus: 8, reserve: 1.00}
  - {id: w, provider: p2, pool: west-h800, gpus: 8, reserve: 1.00}
links:
  - {from: south, to: gansu, latency_ms: 20, bandwidth_gbps: 10, price_per_gb: 0}
""",
        encoding="utf-8",
    )
    order = Order(
        "mixed", "b1", OrderKind.BATCH, 1, 0, 5, 1000, gpu_hours=6, home="south",
        data_gb=10_000, reference_class="A100", speed={"H800": 2.0},
    )  # fmt: skip
    report = simulate(
        load_scenario(path), OrderStream("t", (StreamOrder(order, 0),), frozenset({"mixed"}))
    )
    assert (report.firm_orders, report.firm_missed, report.firm_unservable) == (1, 0, 0)
