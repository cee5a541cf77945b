"""GPU meters: how much energy the GPUs of a run used between two readings.

* :class:`NvmlMeter` reads NVIDIA's management library (``nvidia-ml-py``, imported only when
  used): each device's cumulative energy counter (``nvmlDeviceGetTotalEnergyConsumption``,
  millijoules since the driver loaded, Volta and newer). Where a device has no counter, it
  integrates ``nvmlDeviceGetPowerUsage`` samples (milliwatts) over the time between samples
  (trapezoids), so it needs to be sampled often enough (the agent samples every tick).
* :class:`NominalMeter` has no hardware to read: board power of the GPU class (from the
  catalogue) x a utilisation factor x GPU-seconds. Use it where no NVML is available (CPU
  test machines, clusters whose accounting gives no energy); readings say which meter made
  them only through the agent's log.

Energy is the GPUs' own (IT) energy in watt-hours; the exchange multiplies by the site's PUE.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from suangu.agent.errors import AgentError
from suangu.core.gpus import gpu_class
from suangu.core.metering import ReadingSource

MJ_PER_WH = 3_600_000.0


class Meter(Protocol):
    """Cumulative energy of a set of devices, in millijoules, since a meter-chosen origin."""

    @property
    def source(self) -> ReadingSource:
        """How its figures are obtained, as readings declare it."""
        ...

    def start(self, devices: Sequence[int], gpus: int, now: float) -> object: ...

    def energy_mj(self, token: object, now: float) -> float: ...


@dataclass
class _Nominal:
    gpus: int
    since: float


@dataclass(frozen=True)
class NominalMeter:
    """Board power x utilisation x time for ``gpus`` GPUs of ``gpu_class_name``."""

    gpu_class_name: str
    utilisation: float = 0.8
    source: ReadingSource = ReadingSource.NOMINAL

    def __post_init__(self) -> None:
        gpu_class(self.gpu_class_name)  # raises a clear error for an unknown class
        if not 0.0 < self.utilisation <= 1.0:
            raise AgentError(
                f"utilisation must be in (0, 1], got {self.utilisation}",
                field="meter.utilisation",
                fix="the average share of board power the GPUs draw, e.g. 0.8",
            )

    @property
    def watts_per_gpu(self) -> float:
        return gpu_class(self.gpu_class_name).board_power_w * self.utilisation

    def start(self, devices: Sequence[int], gpus: int, now: float) -> object:
        return _Nominal(gpus, now)

    def energy_mj(self, token: object, now: float) -> float:
        assert isinstance(token, _Nominal)
        return token.gpus * self.watts_per_gpu * max(0.0, now - token.since) * 1000.0


@dataclass
class _NvmlRun:
    handles: list[Any]
    origin_mj: list[float]
    # Devices without an energy counter: the last power sample (mW) and when it was taken.
    last_mw: list[float | None]
    last_t: float
    integrated_mj: list[float] = field(default_factory=list)


class NvmlMeter:
    """Energy of the run's devices from NVML (see the module docs)."""

    source = ReadingSource.NVML

    def __init__(self, nvml: Any | None = None) -> None:
        if nvml is None:
            try:
                nvml = importlib.import_module("pynvml")
            except ImportError:
                raise AgentError(
                    "the NVML meter needs the nvidia-ml-py package",
                    field="meter.kind",
                    fix="pip install nvidia-ml-py, or use meter kind 'nominal'",
                ) from None
        self._nvml = nvml
        try:
            nvml.nvmlInit()
        except Exception as err:  # NVMLError has no stable base class to name here
            raise AgentError(
                f"NVML could not start: {err}",
                field="meter.kind",
                fix="run on a machine with the NVIDIA driver, or use meter kind 'nominal'",
            ) from None

    def device_count(self) -> int:
        return int(self._nvml.nvmlDeviceGetCount())

    def describe(self, index: int) -> str:
        name = self._nvml.nvmlDeviceGetName(self._nvml.nvmlDeviceGetHandleByIndex(index))
        return name.decode() if isinstance(name, bytes) else str(name)

    def _counter(self, handle: Any) -> float | None:
        try:
            return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except Exception:
            return None

    def _power_mw(self, handle: Any) -> float:
        return float(self._nvml.nvmlDeviceGetPowerUsage(handle))

    def start(self, devices: Sequence[int], gpus: int, now: float) -> object:
        handles = [self._nvml.nvmlDeviceGetHandleByIndex(int(d)) for d in devices]
        origin: list[float] = []
        last: list[float | None] = []
        for h in handles:
            c = self._counter(h)
            origin.append(0.0 if c is None else c)
            last.append(self._power_mw(h) if c is None else None)
        return _NvmlRun(handles, origin, last, now, [0.0] * len(handles))

    def energy_mj(self, token: object, now: float) -> float:
        assert isinstance(token, _NvmlRun)
        total = 0.0
        dt = max(0.0, now - token.last_t)
        for k, h in enumerate(token.handles):
            prev = token.last_mw[k]
            if prev is None:
                c = self._counter(h)
                total += 0.0 if c is None else c - token.origin_mj[k]
                continue
            p = self._power_mw(h)
            token.integrated_mj[k] += (prev + p) / 2.0 * dt  # mW x s = mJ
            token.last_mw[k] = p
            total += token.integrated_mj[k]
        token.last_t = now
        return total

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._nvml.nvmlShutdown()


def wh(millijoules: float) -> int:
    """Whole watt-hours, rounded to nearest (readings carry integers)."""
    return round(millijoules / MJ_PER_WH)
