"""The packaged one-region scenario: at 100 yuan/t the carbon price, priced in milli-fen,
moves work to the cleaner hours of the same site; at 0 yuan/t the time preference runs it
as early as it can (figures: docs/market.md, ``bench/bench_carbon_shift.py``)."""

from __future__ import annotations

from importlib import resources

from suangu.sim.carbon_shift import carbon_shift
from suangu.sim.scenario import load_orders, load_scenario


def test_a_carbon_price_moves_work_to_cleaner_hours_of_one_region() -> None:
    data = resources.files("suangu.data.scenarios")
    with resources.as_file(data / "one_region.yaml") as path:
        scenario = load_scenario(path, hours=48)
    with resources.as_file(data / "one_region_orders.csv") as path:
        stream = load_orders(path, scenario)
    assert len(scenario.sites) == 1 and scenario.delay_fen == 1
    r = carbon_shift(scenario, stream, 0.0, 100.0)
    for run in (r.low, r.high):
        assert run.report.ledger_balanced, run.report.ledger_message
    done = sum(r.low.gpu_hours)
    assert done > 0 and sum(r.high.gpu_hours) == done  # the same work, only its hours moved
    assert r.gpu_hours_shifted >= 0.25 * done
    assert r.co2_saved_g >= 0.2 * r.low.location_g
    (carbon,) = r.carbon_g.values()

    def mean_carbon(hours: tuple[float, ...]) -> float:
        return sum(h * carbon[t] for t, h in enumerate(hours)) / sum(hours)

    assert mean_carbon(r.high.gpu_hours) < 0.8 * mean_carbon(r.low.gpu_hours)
    # At 0 yuan/t nothing is added, and the 1-fen time preference runs each job at once.
    first = {s.order.id: s.submit_slot for s in stream.orders}
    assert r.low.gpu_hours[0] > 0 and min(first.values()) == 0
