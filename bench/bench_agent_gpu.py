"""The provider agent on a real NVIDIA GPU: NVML metering checked end to end.

Runs on a machine with an NVIDIA driver and ``nvidia-ml-py`` (``pynvml``); torch is used for
the load if it is installed. It needs neither the exchange nor a database: a small in-memory
exchange stands in for the API (same endpoints and fields the agent uses), with short slots.

1. Meter check: a GPU load runs for ``--seconds`` on device 0; the energy is read from the
   device's energy counter (``NvmlMeter``) and, independently, by integrating power samples
   (the fallback path for devices without a counter). The two must agree.
2. Agent check: a lease of two consecutive slots of ``--slot-seconds`` each on device 0;
   the agent starts the load as a local job, sends readings, stops the job at the end of its
   slots, and the readings' GPU-seconds and energy are compared with the wall clock and the
   counter.

    PYTHONPATH=src python3 bench/bench_agent_gpu.py --seconds 20 --slot-seconds 15
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from suangu.agent.executors import LocalExecutor
from suangu.agent.meters import NvmlMeter, wh
from suangu.agent.runner import ProviderAgent

LOAD = (
    "import sys, time\n"
    "end = time.time() + float(sys.argv[1])\n"
    "try:\n"
    "    import torch\n"
    "    a = torch.randn(8192, 8192, device='cuda', dtype=torch.bfloat16)\n"
    "    while time.time() < end:\n"
    "        for _ in range(20):\n"
    "            a = (a @ a).clamp_(-1, 1)\n"
    "        torch.cuda.synchronize()\n"
    "except ImportError:\n"
    "    time.sleep(max(0.0, end - time.time()))\n"
)


class NoCounter:
    """NVML with the energy counter hidden: forces the power-integration path."""

    def __init__(self, nvml: Any) -> None:
        self._n = nvml

    def __getattr__(self, name: str) -> Any:
        return getattr(self._n, name)

    def nvmlDeviceGetTotalEnergyConsumption(self, h: Any) -> float:
        raise RuntimeError("hidden")


class FakeExchange:
    """The three endpoints the agent uses, in memory."""

    def __init__(self, epoch: int, slot_seconds: int, leases: list[dict[str, Any]]) -> None:
        self.epoch, self.slot_seconds = epoch, slot_seconds
        self.leases = {x["id"]: dict(x, state="scheduled") for x in leases}
        self.readings: list[dict[str, Any]] = []

    def get(self, path: str, **params: Any) -> Any:
        assert path == "/market/grid"
        return {"epoch": self.epoch, "slot_seconds": self.slot_seconds}

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        lease_id = path.split("/")[2]
        if path.endswith("/fail"):
            self.leases[lease_id]["state"] = "failed"
            return {}
        self.readings.append(dict(json, lease_id=lease_id))
        self.leases[lease_id]["state"] = "completed" if json["final"] else "running"
        return {}

    def all_pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        return [x for x in self.leases.values() if x["state"] == params.get("state")]


def meter_check(seconds: float) -> dict[str, Any]:
    import pynvml

    counter = NvmlMeter()
    sampled = NvmlMeter(NoCounter(pynvml))
    ex = LocalExecutor([sys.executable, "-c", LOAD, str(seconds)], [0], time.time)
    t0 = time.time()
    tok_c = counter.start((0,), 1, t0)
    tok_s = sampled.start((0,), 1, t0)
    job = ex.submit("meter", 1, int(seconds), {})
    samples = []
    while ex.poll(job, time.time()).state.value == "running":
        time.sleep(0.5)
        now = time.time()
        samples.append(sampled.energy_mj(tok_s, now))
    t1 = time.time()
    e_counter = counter.energy_mj(tok_c, t1)
    e_sampled = sampled.energy_mj(tok_s, t1)
    return {
        "device": counter.describe(0),
        "seconds": round(t1 - t0, 2),
        "energy_counter_j": round(e_counter / 1000, 1),
        "energy_power_samples_j": round(e_sampled / 1000, 1),
        "mean_power_w": round(e_counter / 1000 / (t1 - t0), 1),
        "agreement": round(e_sampled / e_counter, 4) if e_counter else None,
        "job": job.state.value,
    }


def agent_check(slot_seconds: int) -> dict[str, Any]:
    epoch = int(time.time()) // slot_seconds * slot_seconds + slot_seconds  # next boundary
    first = 0
    leases = [
        {"id": f"L{k}", "order_id": "o1", "pool_id": "gpu0", "slot": first + k, "gpus": 1}
        for k in range(2)
    ]
    exchange = FakeExchange(epoch, slot_seconds, leases)
    meter = NvmlMeter()
    agent = ProviderAgent(
        exchange,
        LocalExecutor([sys.executable, "-c", LOAD, "{seconds}"], [0], time.time),
        meter,
        time.time,
        reading_interval_s=10,
        instance="gpu",
    )
    while time.time() < epoch:
        time.sleep(0.1)
    probe = meter.start((0,), 1, time.time())
    t_start = time.time()
    end = epoch + 2 * slot_seconds
    while agent.runs or time.time() < end:
        agent.tick()
        if time.time() > end + 10:
            break
        time.sleep(1.0)
    t_end = time.time()
    e_probe = meter.energy_mj(probe, t_end)
    gpu_s = sum(r["gpu_seconds"] for r in exchange.readings)
    energy = sum(r["energy_wh"] for r in exchange.readings)
    return {
        "readings": len(exchange.readings),
        "finals": sum(r["final"] for r in exchange.readings),
        "states": sorted({x["state"] for x in exchange.leases.values()}),
        "gpu_seconds_reported": gpu_s,
        "lease_seconds": 2 * slot_seconds,
        "energy_wh_reported": energy,
        "energy_wh_probe": wh(e_probe),
        "window_s": round(t_end - t_start, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--slot-seconds", type=int, default=15)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as err:
        print(f"no NVIDIA GPU here ({err}): nothing to measure")
        return
    result = {"meter": meter_check(args.seconds), "agent": agent_check(args.slot_seconds)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
