"""Orders derived from the Alibaba GPU trace (suangu.sim.trace)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from suangu.core.types import OrderKind
from suangu.sim.errors import ScenarioError
from suangu.sim.scenario import Scenario, load_orders, load_scenario, write_orders
from suangu.sim.trace import (
    BIG_MEMORY,
    HOME_WEIGHTS,
    INTERACTIVE_LATENCY_MS,
    MAX_DURATION,
    TracePod,
    home_capacity,
    load_hub_scenario,
    pod_duration,
    pod_gpus,
    read_pods,
    trace_orders,
    trace_week,
)

FULL_TRACE = Path(__file__).parents[3] / "shared" / "data" / "alibaba_gpu2023_openb_pods.csv"
HEADER = "name,num_gpu,gpu_milli,qos,pod_phase,creation_time,scheduled_time,deletion_time\n"


@pytest.fixture(scope="module")
def hubs() -> Scenario:
    return load_hub_scenario()


def test_packaged_sample_reads() -> None:
    trace = read_pods()
    assert len(trace.pods) == 2000
    assert all(p.num_gpu >= 1 and 0 < p.gpu_milli <= 1000 and p.run_s >= 1 for p in trace.pods)
    assert set(Counter(p.qos for p in trace.pods)) <= {"LS", "BE", "Burstable", "Guaranteed"}
    profile = trace.hour_profile()
    assert len(profile) == 24 and sum(profile) == pytest.approx(1.0)
    assert max(profile) > 2 * min(profile)  # the trace has a daily rhythm


def test_pods_without_gpus_or_start_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        HEADER
        + "p0,0,0,BE,Running,0,0,100\n"
        + "p1,1,500,BE,Pending,10,,100\n"
        + "p2,8,1000,LS,Running,20,30,3630\n",
        encoding="utf-8",
    )
    trace = read_pods(path)
    assert trace.pods == (TracePod("p2", 8, 1000, "LS", 20, 3600),)
    assert (trace.skipped_no_gpu, trace.skipped_unscheduled) == (1, 1)


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ("name,num_gpu\np,1\n", 1, "gpu_milli", "missing columns"),
        (HEADER + "p,one,1000,LS,Running,0,0,10\n", 2, "num_gpu", "whole number"),
        (HEADER + "p,1,0,LS,Running,0,0,10\n", 2, "gpu_milli", "1..1000"),
        (HEADER + "p,1,1000,XX,Running,0,0,10\n", 2, "qos", "unknown qos"),
        (HEADER, None, None, "no GPU pod"),
    ],
)
def test_bad_trace_files(
    tmp_path: Path, text: str, line: int | None, field: str | None, message: str
) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        read_pods(path)
    assert (info.value.line, info.value.field) == (line, field)
    assert message in info.value.message
    with pytest.raises(ScenarioError, match="file not found"):
        read_pods(tmp_path / "absent.csv")


def test_pod_scaling() -> None:
    pod = TracePod("p", 1, 460, "BE", 0, 500)
    assert pod_gpus(pod) == 4  # 0.46 GPU x 8
    assert pod_gpus(TracePod("p", 8, 1000, "LS", 0, 1)) == 64
    assert pod_duration(pod, 3600) == 2  # 500 s x 12 = 1.67 h
    assert pod_duration(TracePod("p", 1, 1000, "LS", 0, 10**7), 3600) == MAX_DURATION


def test_week_is_deterministic_and_seeded(hubs: Scenario) -> None:
    a = trace_orders(hubs, seed=3, days=2)
    b = trace_orders(hubs, seed=3, days=2)
    c = trace_orders(hubs, seed=4, days=2)
    assert a == b
    assert a.orders != c.orders


def test_week_follows_the_documented_mapping(hubs: Scenario) -> None:
    week = trace_week(hubs, days=7)
    stream = week.stream
    orders = [s.order for s in stream.orders]
    assert len(orders) > 1000
    assert stream.firm == week.firm and week.firm
    homes = Counter(o.home for o in orders)
    assert set(homes) == set(HOME_WEIGHTS)
    assert homes["beijing_tianjin_hebei"] > homes["chengdu_chongqing"]
    for s in stream.orders:
        o = s.order
        assert o.kind is OrderKind.BATCH and o.reference_class == "A800-SXM-80GB"
        assert 0 <= s.submit_slot == o.release_slot < 7 * 24
        duration = o.gpu_hours // o.gpus
        assert o.gpu_hours == o.gpus * duration and 1 <= duration <= MAX_DURATION
        slack = o.deadline_slot - o.release_slot - duration
        if o.id in week.firm:
            assert slack == max(1, math.ceil(duration / 4))
            assert o.min_green_share == 0
        else:
            assert slack == min(48, max(12, 2 * duration))
        if o.id in week.interactive:
            assert o.id in week.firm and o.max_latency_ms == INTERACTIVE_LATENCY_MS
            assert o.data_gb == 0
        else:
            assert o.max_latency_ms is None and o.data_gb >= 1
        assert not o.gpu_classes or o.gpu_classes <= BIG_MEMORY
        assert o.regions in (frozenset(), frozenset({o.home}))
        assert o.buyer_id.split("-")[0] in {"bj", "sh", "gz", "cd"}
    # calibrated: the week's work is `load` x what the home regions can do
    assert week.work_h == pytest.approx(0.9 * week.home_capacity_work_h, rel=0.1)
    assert week.home_capacity_work_h == home_capacity(hubs, list(HOME_WEIGHTS), 7 * 24)
    # the evening peak (local 18-23 h) gets more orders than the early afternoon (12-17 h)
    local = Counter(hubs.local_hour(s.submit_slot) for s in stream.orders)
    assert sum(local[h] for h in range(18, 24)) > 1.3 * sum(local[h] for h in range(12, 18))


def test_load_scales_the_volume(hubs: Scenario) -> None:
    small = trace_week(hubs, days=1, load=0.3)
    big = trace_week(hubs, days=1, load=0.9)
    assert len(big.stream.orders) == pytest.approx(3 * len(small.stream.orders), rel=0.02)


@pytest.mark.skipif(not FULL_TRACE.exists(), reason="the full trace (shared/data) is absent")
def test_full_trace_reads() -> None:
    trace = read_pods(FULL_TRACE)
    assert len(trace.pods) == 6203
    assert trace.skipped_no_gpu == 1088
    assert trace_orders(load_hub_scenario(), path=FULL_TRACE, days=1).orders


def test_orders_round_trip_through_the_csv_format(hubs: Scenario, tmp_path: Path) -> None:
    stream = trace_orders(hubs, days=1)
    back = load_orders(write_orders(stream, tmp_path / "week.csv", hubs), hubs)
    assert [(s.order, s.submit_slot) for s in back.orders] == [
        (s.order, s.submit_slot) for s in stream.orders
    ]
    assert back.firm == stream.firm


def test_hand_made_orders_round_trip(tmp_path: Path) -> None:
    """Gang and service orders, latency to a place, green minimums, speeds."""
    from importlib import resources

    package = resources.files("suangu") / "data" / "scenarios"
    sc = load_scenario(Path(str(package / "east_west.yaml")))
    stream = load_orders(Path(str(package / "east_west_orders.csv")), sc)
    back = load_orders(write_orders(stream, tmp_path / "o.csv", sc), sc)
    assert [(s.order, s.submit_slot) for s in back.orders] == [
        (s.order, s.submit_slot) for s in stream.orders
    ]
    assert {s.order.kind for s in back.orders} == set(OrderKind)


def test_the_demo_week_has_batch_service_and_gang_orders_firm_and_flexible() -> None:
    from suangu.sim.trace import GANG_GPUS, TRAINING_CLASSES, demo_week

    scenario = load_hub_scenario()
    stream = demo_week(scenario, seed=0)
    assert stream == demo_week(scenario, seed=0)  # deterministic
    kinds = Counter(s.order.kind for s in stream.orders)
    assert set(kinds) == {OrderKind.BATCH, OrderKind.SERVICE, OrderKind.GANG}
    assert kinds[OrderKind.BATCH] > kinds[OrderKind.SERVICE] > kinds[OrderKind.GANG] > 5
    capacity = max(max(o.gpus) for o in scenario.offers)
    for s in stream.orders:
        o = s.order
        if o.kind is OrderKind.GANG:
            assert o.gpus in GANG_GPUS and o.gpus <= capacity
            assert 12 <= o.duration_slots <= scenario.lookahead
            assert o.gpu_classes == TRAINING_CLASSES and o.data_gb > 0
        elif o.kind is OrderKind.SERVICE:
            assert o.max_latency_ms is not None and o.gpu_hours == 0 and o.id in stream.firm
    gangs = {s.order.id for s in stream.orders if s.order.kind is OrderKind.GANG}
    assert gangs & stream.firm and gangs - stream.firm
