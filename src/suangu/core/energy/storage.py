"""Battery storage dispatch that maximises the green energy a data centre uses.

The battery charges only from the site's own green generation (never from the grid) and
discharges only into the data centre. Rule, hour by hour:

* surplus (generation > load): charge ``min(surplus, power, room / eta_c)``; the rest of the
  surplus is curtailed (or sold: the data centre cannot use it);
* deficit (load > generation): discharge ``min(deficit, power, soc * eta_d)``; the rest of the
  deficit is imported from the grid.

``eta_c = eta_d = sqrt(round_trip_efficiency)``.

Why this greedy rule is optimal for "maximise green energy used" with one load: green used is
``sum(direct) + sum(discharge)``; ``direct = min(generation, load)`` is fixed, so only total
discharge matters. (1) Charging as much as possible from a surplus never hurts: the energy
would otherwise be curtailed, and a fuller battery can only allow more (never less) discharge
later, because any later discharge plan feasible from a lower state of charge stays feasible
from a higher one, except where the battery would be full, and a full battery can absorb
nothing more anyway (so the excess would have been curtailed in that plan too). (2)
Discharging as much as possible into a deficit never hurts: a unit discharged now covers one
unit of deficit, exactly as it would later, and it frees room to store later surplus; a unit
held back for a later deficit can be swapped for this one without changing total discharge
(an exchange argument). Power limits apply per hour and bind both plans alike. With prices
(time-of-use arbitrage, grid charging) greedy is no longer optimal; the objective here has no
prices. The test suite checks greedy against a linear program on small random cases.

The loop is a tight pure-Python loop over 8,760 floats (about 4 ms a year).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from suangu.core.energy._common import FloatArray, check_range, require


@dataclass(frozen=True, slots=True)
class StorageParams:
    """A battery: power (MW, charge and discharge), energy (MWh), round-trip efficiency."""

    power_mw: float = 0.0
    energy_mwh: float = 0.0
    round_trip_efficiency: float = 0.88
    initial_soc: float = 0.5

    def __post_init__(self) -> None:
        check_range(self.power_mw, "storage.power_mw", 0.0, 1e6, "MW")
        check_range(self.energy_mwh, "storage.energy_mwh", 0.0, 1e7, "MWh")
        check_range(
            self.round_trip_efficiency, "storage.round_trip_efficiency", 0.1, 1.0, "e.g. 0.88"
        )
        check_range(self.initial_soc, "storage.initial_soc", 0.0, 1.0, "share of energy_mwh")


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Hourly energy flows, MWh per hour (hours of one year or any span).

    Conservation: ``generation = direct + charge + curtailed`` and
    ``load = direct + discharge + grid``; ``soc[t] = soc[t-1] + charge[t] * eta_c -
    discharge[t] / eta_d`` with ``soc[-1] = initial``.
    """

    direct: FloatArray
    charge: FloatArray
    discharge: FloatArray
    curtailed: FloatArray
    grid: FloatArray
    soc: FloatArray
    soc_initial: float

    @property
    def green_used(self) -> FloatArray:
        out: FloatArray = self.direct + self.discharge
        return out


def dispatch(generation: FloatArray, load: FloatArray, params: StorageParams) -> Dispatch:
    """Greedy dispatch (see the module docs) of ``params`` between ``generation`` and ``load``."""
    gen = np.asarray(generation, dtype=np.float64)
    dem = np.asarray(load, dtype=np.float64)
    require(gen.shape == dem.shape and gen.ndim == 1, "load", "must match generation", "1-D")
    require(
        bool(np.all(np.isfinite(gen)) and np.all(gen >= 0)),
        "generation",
        "must be finite and non-negative",
        "MW per hour",
    )
    require(
        bool(np.all(np.isfinite(dem)) and np.all(dem >= 0)),
        "load",
        "must be finite and non-negative",
        "MW per hour",
    )
    direct = np.minimum(gen, dem)
    net = (gen - dem).tolist()
    n = len(net)
    charge = [0.0] * n
    discharge = [0.0] * n
    soc_out = [0.0] * n
    eta = math.sqrt(params.round_trip_efficiency)
    power, cap = params.power_mw, params.energy_mwh
    soc0 = cap * params.initial_soc
    soc = soc0
    if power > 0.0 and cap > 0.0:
        for t in range(n):
            x = net[t]
            if x > 0.0:
                c = min(x, power, (cap - soc) / eta)
                if c > 0.0:
                    charge[t] = c
                    soc = min(cap, soc + c * eta)
            elif x < 0.0:
                d = min(-x, power, soc * eta)
                if d > 0.0:
                    discharge[t] = d
                    soc = max(0.0, soc - d / eta)
            soc_out[t] = soc
    else:
        soc_out = [soc] * n
    ch = np.asarray(charge)
    dis = np.asarray(discharge)
    curtailed = np.maximum(0.0, gen - direct - ch)
    grid = np.maximum(0.0, dem - direct - dis)
    return Dispatch(direct, ch, dis, curtailed, grid, np.asarray(soc_out), soc0)
