"""Buyer orders derived from the Alibaba GPU cluster trace (cluster-trace-gpu-v2023, "openb").

The trace
---------
``openb_pod_list_default.csv`` of github.com/alibaba/clusterdata (cluster-trace-gpu-v2023)
lists 8,152 pods of a production GPU cluster over about 150 days: ``num_gpu`` (0-8),
``gpu_milli`` (the share of one GPU a 1-GPU pod uses, 1000 = a whole GPU), ``qos`` (``LS``
latency-sensitive, ``BE`` best-effort, ``Burstable``, ``Guaranteed``), ``pod_phase`` and
``creation_time`` / ``scheduled_time`` / ``deletion_time`` in seconds from the trace start.
``gpu_spec`` is empty, so the trace says nothing about GPU models. A pod's run time is
``deletion_time - scheduled_time`` (pods still running when the trace ends are cut there);
pods without GPUs or never scheduled are skipped. :func:`read_pods` reads that format: the
full file (given its path) or the packaged sample :data:`SAMPLE` (2,000 of the 6,203 usable
pods drawn with ``random.Random(2023)``, the trace's own columns; see
``suangu/data/traces/README.md``).

From pods to a week of market orders
------------------------------------
The trace is one cluster's pods; the market is ten hubs with ~3,000 GPUs and hourly slots. A
seeded generator calibrated to the trace (:func:`trace_orders`) draws the week; every order
comes from one pod drawn at random (with replacement) from the trace, which fixes its shape:

* **GPUs**: ``ceil(num_gpu * gpu_milli / 1000 * GPU_SCALE)`` with ``GPU_SCALE = 8``: one trace
  GPU stands for one 8-GPU server of a market buyer (a 0.46-GPU inference pod -> 4 GPUs);
* **duration**: ``ceil(run time * TIME_SCALE / slot)`` slots, ``TIME_SCALE = 12``, capped at
  :data:`MAX_DURATION` (48) slots: the trace's pods run minutes (median about 8 min), market
  jobs run hours (median 3 h, mean about 8 h after scaling);
* **work**: ``gpus * duration * slot_hours`` GPU-hours of the reference class
  :data:`REFERENCE_CLASS` (A800): on a class ``c`` a GPU-hour does ``speed(c)`` of them (FP16
  dense TFLOPS ratio, :func:`suangu.core.types.speed_of`), and the limit price is per
  reference GPU-hour;
* **QoS -> deadline**: ``LS`` and ``Guaranteed`` pods become *firm* orders (their deadline
  leaves a small slack: ``max(1, ceil(duration / 4))`` slots after release + duration) with a
  limit of ``9.00 yuan x lognormal(median 1.35, sigma 0.15)`` per reference GPU-hour; half of
  the ``LS`` ones (seeded) are interactive: latency-bound to their home, at most
  :data:`INTERACTIVE_LATENCY_MS`. ``BE`` and ``Burstable`` pods become *flexible* orders: slack
  ``min(48, max(12, 2 x duration))`` slots, limit ``9.00 x lognormal(median 1.15, sigma 0.15)``;
* **submit time**: the trace's creation times give an hour-of-day profile (taken as local
  time: the trace has no time zone; its evening peak is about 3.5 times its early-afternoon
  trough); each order's submit slot is drawn from the scenario's first ``days`` days with
  weight = that profile at the slot's local hour. Orders are released when submitted;
* **home** (where the buyer, its users and its data are): one of the demand-side hubs
  :data:`HOME_WEIGHTS` (Beijing-Tianjin-Hebei 35%, Yangtze River Delta 35%,
  Guangdong-Hong Kong-Macao 20%, Chengdu-Chongqing 10%; an estimate of where AI demand is),
  those that are regions of the scenario (all regions uniformly if none is). Buyers:
  :data:`BUYERS_PER_HOME` per home, ``<home>-<k>``, drawn uniformly;
* **data**: firm interactive orders bring no data; the others ``lognormal(median 8 GB per
  reference GPU-hour of work, sigma 0.8)``, whole GB, 1..50,000;
* **GPU classes and residency**: pods using whole GPUs (training and large inference) need
  at least 64 GB of GPU memory (H100, H800, H20, A100, A800, 910B); of those a seeded 30% run
  CUDA-only code (no Ascend 910B). Fractional pods accept any class. A seeded 10% of orders
  hold regulated data and must stay in their home region (``regions = {home}``); 10% of the
  flexible ones ask for a minimum green share of 0.5;
* **volume**: the number of orders is calibrated so that the week's work is ``load`` (default
  :data:`DEFAULT_LOAD` = 0.9) times what the GPUs of the home regions can do in those days at
  reference speed (mean work per order from the same mapping over the whole trace sample).
  With the diurnal profile the evening peaks then exceed the eastern hubs' capacity: the
  contention the exchange exists to relieve by moving flexible work west.

Everything is drawn from one :class:`numpy.random.Generator` seeded with ``seed`` (independent
streams per attribute), so a (trace, scenario, seed, days, load) gives the same orders on
every machine. :data:`TRACE_VERSION` changes whenever the mapping changes.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from suangu.core.errors import ValidationError
from suangu.core.gpus import CATALOGUE
from suangu.core.types import Order, OrderKind
from suangu.sim.errors import ScenarioError
from suangu.sim.scenario import OrderStream, Scenario, StreamOrder, load_scenario

#: Bump when the orders drawn for a given (trace, scenario, seed, days, load) change.
TRACE_VERSION = 1
#: The packaged trace sample (inside the ``suangu`` package).
SAMPLE = "data/traces/alibaba_gpu2023_openb_sample.csv"
#: The packaged ten-hub scenario (inside the ``suangu`` package).
HUB_SCENARIO = "data/scenarios/hubs.yaml"

GPU_SCALE = 8
TIME_SCALE = 12
MAX_DURATION = 48
REFERENCE_CLASS = "A800-SXM-80GB"
REFERENCE_FEN = 900
FIRM_LIMIT = (1.35, 0.15)  # lognormal median factor on REFERENCE_FEN, sigma
FLEXIBLE_LIMIT = (1.15, 0.15)
INTERACTIVE_LATENCY_MS = 10.0
INTERACTIVE_SHARE = 0.5
CUDA_ONLY_SHARE = 0.3
RESIDENT_SHARE = 0.1
GREEN_SHARE = 0.1
GREEN_MIN = 0.5
DATA_GB_PER_WORK_HOUR = 8.0
DEFAULT_LOAD = 0.9
BUYERS_PER_HOME = 6
MAX_ORDERS = 50_000
HOME_WEIGHTS: dict[str, float] = {
    "beijing_tianjin_hebei": 0.35,
    "yangtze_river_delta": 0.35,
    "guangdong_hk_macao": 0.20,
    "chengdu_chongqing": 0.10,
}
_SHORT = {
    "beijing_tianjin_hebei": "bj",
    "yangtze_river_delta": "sh",
    "guangdong_hk_macao": "gz",
    "chengdu_chongqing": "cd",
}
#: Classes with at least 64 GB of GPU memory: what whole-GPU pods may use.
BIG_MEMORY = frozenset(g.name for g in CATALOGUE.values() if g.memory_gib >= 64)
_FIRM_QOS = frozenset({"LS", "Guaranteed"})
_QOS = ("LS", "BE", "Burstable", "Guaranteed")
_COLUMNS = ("name", "num_gpu", "gpu_milli", "qos", "creation_time", "scheduled_time")


@dataclass(frozen=True, slots=True)
class TracePod:
    """One GPU pod of the trace (times in seconds from the trace start)."""

    name: str
    num_gpu: int
    gpu_milli: int
    qos: str
    creation_s: int
    run_s: int

    @property
    def firm(self) -> bool:
        return self.qos in _FIRM_QOS

    @property
    def fractional(self) -> bool:
        return self.num_gpu == 1 and self.gpu_milli < 1000


@dataclass(frozen=True)
class Trace:
    """The usable pods of a trace file and what was skipped."""

    source: str
    pods: tuple[TracePod, ...]
    skipped_no_gpu: int
    skipped_unscheduled: int

    def hour_profile(self) -> tuple[float, ...]:
        """Share of pods created in each hour of the day (trace clock, 24 values)."""
        counts = Counter((p.creation_s // 3600) % 24 for p in self.pods)
        total = max(1, len(self.pods))
        return tuple(counts.get(h, 0) / total for h in range(24))


@dataclass(frozen=True)
class TraceWeek:
    """A trace-derived order stream and how it was drawn."""

    stream: OrderStream
    firm: frozenset[str]  # ids of the firm orders (QoS LS / Guaranteed)
    interactive: frozenset[str]  # ids of the latency-bound ones
    pods: tuple[str, ...]  # the trace pod behind each order, in order
    orders_per_day: float
    load: float
    home_capacity_work_h: float  # reference GPU-hours the home regions can do in the days
    work_h: float  # reference GPU-hours of all orders


def _int(value: str, file: str, line: int, name: str, *, blank: int | None = None) -> int:
    text = value.strip()
    if not text and blank is not None:
        return blank
    try:
        return int(float(text))
    except ValueError:
        raise ScenarioError(
            f"must be a whole number, got {value!r}",
            file=file,
            line=line,
            field=name,
            fix="the trace's columns hold whole numbers (seconds, GPUs, milli-GPUs)",
        ) from None


def read_pods(path: str | Path | None = None) -> Trace:
    """The GPU pods of an Alibaba GPU trace file (default: the packaged sample).

    Needs the columns ``name, num_gpu, gpu_milli, qos, creation_time, scheduled_time`` and
    ``deletion_time``; others are ignored. Pods without GPUs, or never scheduled, are skipped.
    """
    if path is None:
        with resources.as_file(resources.files("suangu") / SAMPLE) as p:
            return _read_pods(Path(p), "packaged trace sample " + SAMPLE)
    return _read_pods(Path(path), str(path))


def _read_pods(path: Path, file: str) -> Trace:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ScenarioError(
            "file not found", file=file, fix="give the path of an Alibaba GPU trace pod list"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ScenarioError(
            f"cannot be read: {err}", file=file, fix="give a UTF-8 CSV pod list"
        ) from None
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    missing = [c for c in (*_COLUMNS, "deletion_time") if c not in header]
    if missing:
        raise ScenarioError(
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
            file=file,
            line=1,
            field=missing[0],
            fix="use the pod list of cluster-trace-gpu-v2023 (openb_pod_list_*.csv)",
        )
    pods: list[TracePod] = []
    no_gpu = unscheduled = 0
    for row in reader:
        line = reader.line_num
        gpus = _int(row["num_gpu"], file, line, "num_gpu")
        if gpus <= 0:
            no_gpu += 1
            continue
        scheduled = _int(row["scheduled_time"], file, line, "scheduled_time", blank=-1)
        if scheduled < 0:
            unscheduled += 1
            continue
        milli = _int(row["gpu_milli"], file, line, "gpu_milli")
        if not 0 < milli <= 1000:
            raise ScenarioError(
                f"must be in 1..1000 for a GPU pod, got {milli}",
                file=file,
                line=line,
                field="gpu_milli",
                fix="gpu_milli is the milli-share of one GPU a pod uses",
            )
        qos = row["qos"].strip()
        if qos not in _QOS:
            raise ScenarioError(
                f"unknown qos {qos!r}",
                file=file,
                line=line,
                field="qos",
                fix=f"use one of {', '.join(_QOS)}",
            )
        deleted = _int(row["deletion_time"], file, line, "deletion_time")
        created = _int(row["creation_time"], file, line, "creation_time")
        pods.append(
            TracePod(
                name=row["name"].strip() or f"line-{line}",
                num_gpu=gpus,
                gpu_milli=milli,
                qos=qos,
                creation_s=max(0, created),
                run_s=max(1, deleted - scheduled),
            )
        )
    if not pods:
        raise ScenarioError(
            "has no GPU pod that was scheduled", file=file, fix="give a trace with GPU pods"
        )
    return Trace(file, tuple(pods), no_gpu, unscheduled)


def pod_gpus(pod: TracePod) -> int:
    """Market GPUs of a pod: ``ceil(num_gpu * gpu_milli / 1000 * GPU_SCALE)``."""
    return max(1, math.ceil(pod.num_gpu * pod.gpu_milli * GPU_SCALE / 1000 - 1e-9))


def pod_duration(pod: TracePod, slot_seconds: int) -> int:
    """Market slots of a pod: ``ceil(run time * TIME_SCALE / slot)``, 1..MAX_DURATION."""
    return min(MAX_DURATION, max(1, math.ceil(pod.run_s * TIME_SCALE / slot_seconds - 1e-9)))


def home_regions(scenario: Scenario) -> dict[str, float]:
    """The home regions of the scenario and their weights (see the module docs)."""
    regions = scenario.regions
    homes = {r: w for r, w in HOME_WEIGHTS.items() if r in regions}
    if not homes:
        homes = {r: 1.0 for r in regions}
    total = sum(homes.values())
    return {r: w / total for r, w in homes.items()}


def home_capacity(scenario: Scenario, homes: Sequence[str], slots: int) -> float:
    """Reference GPU-hours the pools of ``homes`` can do over slots ``[0, slots)``."""
    ref = CATALOGUE[REFERENCE_CLASS].fp16_dense_tflops
    region = {s.id: s.region for s in scenario.sites}
    speed = {p.id: CATALOGUE[p.gpu_class].fp16_dense_tflops / ref for p in scenario.pools}
    home_pools = {p.id for p in scenario.pools if region[p.site_id] in homes}
    total = 0.0
    for offer in scenario.offers:
        if offer.pool_id not in home_pools:
            continue
        lo, hi = offer.start_slot, min(offer.end_slot, slots)
        if hi > lo:
            total += speed[offer.pool_id] * sum(offer.gpus[: hi - lo])
    return total * scenario.slot_hours


def trace_week(
    scenario: Scenario,
    *,
    path: str | Path | None = None,
    seed: int = 0,
    days: int = 7,
    load: float = DEFAULT_LOAD,
) -> TraceWeek:
    """A trace-derived order stream for ``scenario`` and the facts of its drawing."""
    if not (isinstance(days, int) and 1 <= days <= 366):
        raise ValidationError(f"must be 1..366, got {days!r}", field="days", fix="e.g. 7")
    if not (isinstance(load, int | float) and 0 < load <= 10 and math.isfinite(load)):
        raise ValidationError(
            f"must be in (0, 10], got {load!r}",
            field="load",
            fix="offered work / capacity of the home regions, e.g. 0.9",
        )
    trace = read_pods(path)
    grid = scenario.grid
    hours = grid.slot_hours
    slot_s = grid.slot_seconds
    n_slots = max(1, days * 24 // hours)
    homes = home_regions(scenario)
    home_names = list(homes)
    capacity = home_capacity(scenario, home_names, n_slots)
    gpus_of = np.array([pod_gpus(p) for p in trace.pods], np.int64)
    dur_of = np.array([pod_duration(p, slot_s) for p in trace.pods], np.int64)
    mean_work = float((gpus_of * dur_of).mean()) * hours
    per_day = load * capacity / mean_work / days if mean_work > 0 else 0.0
    n = min(MAX_ORDERS, round(per_day * days))

    streams = np.random.SeedSequence([seed, TRACE_VERSION]).spawn(8)
    rng_pod, rng_time, rng_home, rng_limit, rng_data, rng_rule, rng_buyer, rng_lat = (
        np.random.default_rng(s) for s in streams
    )
    pick = rng_pod.integers(0, len(trace.pods), n)
    profile = np.array(trace.hour_profile()) + 1e-6
    weights = np.array([profile[scenario.local_hour(k)] for k in range(n_slots)])
    submit = np.sort(rng_time.choice(n_slots, n, p=weights / weights.sum()))
    home_idx = rng_home.choice(len(home_names), n, p=np.array(list(homes.values())))
    buyer_k = rng_buyer.integers(1, BUYERS_PER_HOME + 1, n)
    firm_f = rng_limit.lognormal(math.log(FIRM_LIMIT[0]), FIRM_LIMIT[1], n)
    flex_f = rng_limit.lognormal(math.log(FLEXIBLE_LIMIT[0]), FLEXIBLE_LIMIT[1], n)
    data_f = rng_data.lognormal(math.log(DATA_GB_PER_WORK_HOUR), 0.8, n)
    cuda_only = rng_rule.random(n) < CUDA_ONLY_SHARE
    resident = rng_rule.random(n) < RESIDENT_SHARE
    green = rng_rule.random(n) < GREEN_SHARE
    interactive_draw = rng_lat.random(n) < INTERACTIVE_SHARE

    orders: list[StreamOrder] = []
    firm: set[str] = set()
    interactive: set[str] = set()
    pods: list[str] = []
    total_work = 0.0
    for i in range(n):
        pod = trace.pods[int(pick[i])]
        gpus, duration = int(gpus_of[pick[i]]), int(dur_of[pick[i]])
        release = int(submit[i])
        home = home_names[int(home_idx[i])]
        work = gpus * duration * hours
        order_id = f"t{i + 1:05d}"
        is_interactive = pod.qos == "LS" and bool(interactive_draw[i])
        if pod.firm:
            slack = max(1, math.ceil(duration / 4))
            limit = REFERENCE_FEN * float(firm_f[i])
            firm.add(order_id)
        else:
            slack = min(48, max(12, 2 * duration))
            limit = REFERENCE_FEN * float(flex_f[i])
        data_gb = 0 if is_interactive else int(min(50_000, max(1, round(data_f[i] * work))))
        if pod.fractional:
            classes: frozenset[str] = frozenset()
        elif cuda_only[i]:
            classes = frozenset(c for c in BIG_MEMORY if CATALOGUE[c].vendor == "NVIDIA")
        else:
            classes = BIG_MEMORY
        order = Order(
            id=order_id,
            buyer_id=f"{_SHORT.get(home, home)}-{int(buyer_k[i]):02d}",
            kind=OrderKind.BATCH,
            gpus=gpus,
            release_slot=release,
            deadline_slot=release + duration + slack,
            limit_fen=max(1, round(limit)),
            gpu_hours=work,
            gpu_classes=classes,
            regions=frozenset({home}) if resident[i] else frozenset(),
            home=home,
            max_latency_ms=INTERACTIVE_LATENCY_MS if is_interactive else None,
            min_green_share=GREEN_MIN if (green[i] and not pod.firm) else 0.0,
            data_gb=data_gb,
            reference_class=REFERENCE_CLASS,
        )
        if is_interactive:
            interactive.add(order_id)
        orders.append(StreamOrder(order, release))
        pods.append(pod.name)
        total_work += work
    source = f"{trace.source} (trace-derived, {days} days, seed {seed}, load {load:g})"
    return TraceWeek(
        stream=OrderStream(source, tuple(orders), frozenset(firm)),
        firm=frozenset(firm),
        interactive=frozenset(interactive),
        pods=tuple(pods),
        orders_per_day=n / days,
        load=load,
        home_capacity_work_h=capacity,
        work_h=total_work,
    )


def trace_orders(
    scenario: Scenario,
    *,
    path: str | Path | None = None,
    seed: int = 0,
    days: int = 7,
    load: float = DEFAULT_LOAD,
) -> OrderStream:
    """A week (``days``) of buyer orders for ``scenario`` derived from the GPU trace at
    ``path`` (default: the packaged sample); see the module docs for the mapping."""
    return trace_week(scenario, path=path, seed=seed, days=days, load=load).stream


#: The demo week (:func:`demo_week`): the trace's jobs at this load ...
DEMO_TRACE_LOAD = 0.75
#: ... plus this many large-model training runs (gang orders) a day ...
GANG_PER_DAY = 3.0
#: ... of these GPUs (weights), one NVIDIA training class at one site ...
GANG_GPUS: dict[int, float] = {64: 0.55, 128: 0.35, 256: 0.10}
#: ... for this many contiguous hours (the clearing's look-ahead bounds a gang's run) ...
GANG_HOURS = (12, 24)
#: ... with this share firm (the rest flexible).
GANG_FIRM_SHARE = 1 / 3
#: Training needs a large-memory NVIDIA class at least as fast as the A800.
TRAINING_CLASSES = frozenset(
    c
    for c in BIG_MEMORY
    if CATALOGUE[c].vendor == "NVIDIA"
    and CATALOGUE[c].fp16_dense_tflops >= CATALOGUE[REFERENCE_CLASS].fp16_dense_tflops
)


def demo_week(scenario: Scenario, *, seed: int = 0, days: int = 7) -> OrderStream:
    """The demo's week: the three order kinds in the shares a GPU cloud sees, from the trace.

    * **batch** (screening, fine-tuning, data processing): the trace-derived orders
      (:func:`trace_week` at :data:`DEMO_TRACE_LOAD`), divisible across slots and pools;
    * **service** (inference): the trace's interactive pods (``LS``, latency-bound to the
      buyer's home) become service orders: their GPUs in every slot of a window of the pod's
      duration from submission (``gpu_hours: 0``), no input data, firm;
    * **gang** (large-model training): :data:`GANG_PER_DAY` runs a day (Poisson), each
      64, 128 or 256 GPUs (:data:`GANG_GPUS`) of one :data:`TRAINING_CLASSES` class at one
      site for 12-24 contiguous hours (a run must fit in the clearing's 24-hour look-ahead,
      so a longer training is bought as consecutive runs; the hub scenario's largest pool
      has 384 GPUs), released when submitted with 12-36 hours of slack, a limit of
      ``9.00 yuan x lognormal(median 1.35, sigma 0.10)`` per GPU-hour, a training set of
      ``lognormal(median 500 GB, sigma 0.6)`` to move, a third of them firm.

    Deterministic for a (scenario, seed, days); gangs draw from their own random stream."""
    week = trace_week(scenario, seed=seed, days=days, load=DEMO_TRACE_LOAD)
    grid = scenario.grid
    n_slots = max(1, days * 24 // grid.slot_hours)
    orders: list[StreamOrder] = []
    firm = set(week.firm)
    for so in week.stream.orders:
        o = so.order
        if o.id in week.interactive:
            duration = max(1, o.gpu_hours // (o.gpus * grid.slot_hours))
            o = Order(
                id=o.id,
                buyer_id=o.buyer_id,
                kind=OrderKind.SERVICE,
                gpus=o.gpus,
                release_slot=o.release_slot,
                deadline_slot=o.release_slot + duration,
                limit_fen=o.limit_fen,
                gpu_classes=o.gpu_classes,
                regions=o.regions,
                home=o.home,
                max_latency_ms=o.max_latency_ms,
            )
        orders.append(StreamOrder(o, so.submit_slot))
    rng = np.random.default_rng(np.random.SeedSequence([seed, TRACE_VERSION, 10]))
    homes = home_regions(scenario)
    names, weights = list(homes), np.array(list(homes.values()))
    sizes, size_w = list(GANG_GPUS), np.array(list(GANG_GPUS.values()))
    n = int(rng.poisson(GANG_PER_DAY * days))
    submit = np.sort(rng.integers(0, n_slots, n))
    for i in range(n):
        home = names[int(rng.choice(len(names), p=weights))]
        gpus = int(sizes[int(rng.choice(len(sizes), p=size_w))])
        duration = int(rng.integers(GANG_HOURS[0], GANG_HOURS[1] + 1)) // grid.slot_hours
        duration = max(1, min(duration, scenario.lookahead))
        slack = int(rng.integers(12, 37)) // grid.slot_hours
        release = int(submit[i])
        order_id = f"g{i + 1:04d}"
        order = Order(
            id=order_id,
            buyer_id=f"{_SHORT.get(home, home)}-{int(rng.integers(1, BUYERS_PER_HOME + 1)):02d}",
            kind=OrderKind.GANG,
            gpus=gpus,
            release_slot=release,
            deadline_slot=release + duration + slack,
            limit_fen=max(1, round(REFERENCE_FEN * float(rng.lognormal(math.log(1.35), 0.10)))),
            duration_slots=duration,
            gpu_classes=TRAINING_CLASSES,
            home=home,
            data_gb=int(min(50_000, max(1, round(float(rng.lognormal(math.log(500), 0.6)))))),
        )
        if rng.random() < GANG_FIRM_SHARE:
            firm.add(order_id)
        orders.append(StreamOrder(order, release))
    orders.sort(key=lambda so: (so.submit_slot, so.order.id))
    source = (
        f"{week.stream.source}; batch, service (interactive) and gang (training) orders, "
        f"demo week seed {seed}"
    )
    return OrderStream(source, tuple(orders), frozenset(firm))


def load_hub_scenario(hours: int | None = None) -> Scenario:
    """The packaged ten-hub East-Data-West-Compute scenario (``hours`` overrides its span)."""
    with resources.as_file(resources.files("suangu") / HUB_SCENARIO) as p:
        return load_scenario(p, hours=hours)


__all__ = [
    "HOME_WEIGHTS",
    "SAMPLE",
    "TRACE_VERSION",
    "Trace",
    "TracePod",
    "TraceWeek",
    "demo_week",
    "home_regions",
    "load_hub_scenario",
    "read_pods",
    "trace_orders",
    "trace_week",
]
