"""The demo's simulated providers: a job on the market clock and a pool's model meter."""

from __future__ import annotations

from suangu.agent.executors import JobState, SimulatedExecutor
from suangu.agent.meters import wh
from suangu.core.energy import accounting
from suangu.core.types import Allocation
from suangu.demo import ModelMeter, demo_inputs
from suangu.sim.energy import site_years_for_span


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_a_simulated_job_runs_its_time_or_its_share_of_it() -> None:
    clock = Clock(1000.0)
    ex = SimulatedExecutor(clock, use=lambda run_id: 0.5 if run_id == "short" else 1.0)
    full, short = ex.submit("full", 8, 3600, {}), ex.submit("short", 8, 3600, {})
    assert full.state is short.state is JobState.RUNNING and full.started == 1000.0
    assert ex.poll(short, 2799.0).state is JobState.RUNNING
    assert ex.poll(short, 2800.0).state is JobState.DONE and short.ended == 2800.0
    assert ex.poll(full, 4599.0).state is JobState.RUNNING
    assert ex.poll(full, 4600.0).state is JobState.DONE and full.ended == 4600.0
    clock.t = 5000.0
    cancelled = ex.submit("c", 1, 60, {})
    ex.cancel(cancelled)
    assert cancelled.state is JobState.CANCELLED and cancelled.ended == 5000.0


def test_the_model_meter_gives_each_slot_the_energy_its_lease_is_booked_with() -> None:
    scenario, _ = demo_inputs("east-west", 6)
    grid = scenario.grid
    pool = scenario.pools[0]
    site = next(s for s in scenario.sites if s.id == pool.site_id)
    assert scenario.energy is not None
    energy_site = scenario.energy.sites[site.id]
    sy = site_years_for_span(
        {site.id: energy_site}, grid.epoch, grid.slot_start(6), seed=scenario.energy.seed
    )[site.id]
    meter = ModelMeter(pool.id, pool.gpu_class, "p", sy, grid)
    token = meter.start((), 4, grid.slot_start(1))
    before = 0.0
    for slot in (1, 2):
        now = meter.energy_mj(token, grid.slot_start(slot + 1))
        rec = accounting.lease_energy(
            Allocation("o", "b", pool.id, slot, 4, 0), 4 * 3600, "p", sy, grid, pool.gpu_class
        )
        assert wh(now - before) == rec.energy_wh > 0
        before = now
    # A job that ended 900 s into slot 3: the slot's reading has the energy of what it ran.
    part = meter.energy_mj(token, grid.slot_start(3) + 900)
    rec = accounting.lease_energy(
        Allocation("o", "b", pool.id, 3, 4, 0), 4 * 900, "p", sy, grid, pool.gpu_class
    )
    assert wh(part - before) == rec.energy_wh > 0
