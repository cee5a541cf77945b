"""The simulation with the energy model on: hooks before each clearing, accounting per lease."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from suangu.cli import app
from suangu.core.energy import accounting, hooks
from suangu.core.energy.accounting import ISSUER, LeaseEnergy
from suangu.core.energy.carbon import grams
from suangu.core.ledger import AccountKind, Asset
from suangu.core.types import ClearingResult, Market
from suangu.sim import simulate as sim_module
from suangu.sim.energy import site_years_for_span
from suangu.sim.scenario import OrderStream, Scenario, load_orders, load_scenario
from suangu.sim.simulate import SimulationReport, _Simulation

runner = CliRunner()

SCENARIO = """\
name: green-mini
start: 2025-06-02T00:00:00Z
hours: 12
lookahead: 6
exchange_fee_bps: 300
energy: {model: true, seed: 3, carbon_price_yuan_per_t: CARBON, home_grid: Beijing}
sites:
  - {id: hor, province: Inner Mongolia, region: im, lat: 40.5, lon: 111.8, energy_site: horinger}
  - {id: qp, province: Shanghai, region: yrd, lat: 31.1, lon: 120.9, energy_site: yrd_qingpu}
pools:
  - {id: hor-h100, site: hor, gpu_class: H100}
  - {id: qp-h100, site: qp, gpu_class: H100}
offers:
  - {id: h1, provider: pw, pool: hor-h100, gpus: 8, reserve: 12.00}
  - {id: q1, provider: pe, pool: qp-h100, gpus: 8, reserve: 13.00}
"""

HEADER = (
    "id,buyer,kind,gpus,gpu_hours,duration,submit,release,deadline,limit,"
    "gpu_classes,regions,provinces,home,max_latency_ms,min_green_share\n"
)
ORDERS = [
    "a,lab,batch,4,24,,0,,12,20,,,,,,",
    "b,lab,batch,2,10,,2,,12,20,,yrd,,,,",
    "c,bank,batch,2,8,,1,,10,20,,,,,,0.6",
    "g,bank,gang,2,,3,4,,12,20,,,,,,",
]


def files(tmp_path: Path, carbon: float = 0, text: str = SCENARIO) -> tuple[Path, Path]:
    scenario = tmp_path / "green.yaml"
    scenario.write_text(text.replace("CARBON", f"{carbon:g}"), encoding="utf-8")
    orders = tmp_path / "orders.csv"
    orders.write_text(HEADER + "".join(r + "\n" for r in ORDERS), encoding="utf-8")
    return scenario, orders


def load(tmp_path: Path, carbon: float = 0, text: str = SCENARIO) -> tuple[Scenario, OrderStream]:
    scenario_path, orders_path = files(tmp_path, carbon, text)
    scenario = load_scenario(scenario_path)
    return scenario, load_orders(orders_path, scenario)


@dataclasses.dataclass
class Run:
    report: SimulationReport
    sim: _Simulation
    cleared: list[tuple[Market, ClearingResult]]


@pytest.fixture
def capture(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Market, ClearingResult]]]:
    """Every market the simulation clears, and its result."""
    seen: list[tuple[Market, ClearingResult]] = []
    real = sim_module.clear

    def spy(market: Market) -> ClearingResult:
        result = real(market)
        seen.append((market, result))
        return result

    monkeypatch.setattr(sim_module, "clear", spy)
    yield seen


def run(
    tmp_path: Path,
    cleared: list[tuple[Market, ClearingResult]],
    carbon: float = 0,
    shortfall: float = 0.0,
) -> Run:
    scenario, stream = load(tmp_path, carbon)
    cleared.clear()
    sim = _Simulation(scenario, stream, shortfall, 0, None)
    return Run(sim.run(), sim, list(cleared))


def test_green_shares_are_the_hooks_output(
    tmp_path: Path, capture: list[tuple[Market, ClearingResult]]
) -> None:
    r = run(tmp_path, capture)
    scenario = r.sim.sc
    assert scenario.energy is not None and scenario.green_profiles == {}
    end = scenario.grid.slot_start(scenario.hours + scenario.lookahead)
    site_years = site_years_for_span(scenario.energy.sites, scenario.grid.epoch, end, seed=3)
    assert r.cleared
    for market, _ in r.cleared:
        bare = dataclasses.replace(market, green_share={})
        assert market.green_share == hooks.green_share_for_market(bare, site_years).green_share
        assert set(market.green_share) == {"hor-h100", "qp-h100"}
    # Horinger's wind beats Qingpu's rooftop solar
    hor = [s for m, _ in r.cleared for s in m.green_share["hor-h100"]]
    qp = [s for m, _ in r.cleared for s in m.green_share["qp-h100"]]
    assert sum(hor) / len(hor) > sum(qp) / len(qp)


def test_every_lease_has_an_exact_energy_record(
    tmp_path: Path, capture: list[tuple[Market, ClearingResult]]
) -> None:
    r = run(tmp_path, capture, shortfall=0.3)
    allocations = {a for _, result in r.cleared for a in result.allocations}
    records: list[LeaseEnergy] = r.sim.records
    assert len(records) == len(allocations) > 0
    assert {rec.lease_id for rec in records} == {accounting.lease_id(a) for a in allocations}
    for rec in records:
        assert rec.energy_wh == rec.green_wh + rec.grid_wh
        assert rec.energy_wh > 0 and rec.certificates_wh == rec.green_wh
    e = r.report.energy
    assert e is not None
    assert e.leases == len(records)
    assert e.energy_wh == e.green_wh + e.grid_wh == sum(x.energy_wh for x in records)
    assert e.location_g == sum(x.location_g for x in records)
    assert e.market_g == sum(x.market_g for x in records)
    # metered GPU-seconds are what the money was settled on
    assert e.gpu_hours * 3600 == sum(x.gpu_seconds for x in records)
    assert r.report.released_fen > 0  # the shortfall did bite


def test_all_three_ledgers_balance(
    tmp_path: Path, capture: list[tuple[Market, ClearingResult]]
) -> None:
    r = run(tmp_path, capture)
    report, ledger, records = r.report, r.sim.ledger, r.sim.records
    assert report.ledger_balanced, report.ledger_message
    assert "kWh-green" in report.ledger_message and "gCO2" in report.ledger_message
    ledger.check_invariants()
    green = ledger.balances(Asset.KWH_GREEN)
    co2 = ledger.balances(Asset.GCO2)
    assert sum(green.values()) == 0 and sum(co2.values()) == 0
    assert -green[ISSUER] == sum(x.certificates_wh for x in records) > 0
    for buyer in ("lab", "bank"):
        mine = [x for x in records if x.buyer_id == buyer]
        assert green[accounting.certificate_account(AccountKind.BUYER, buyer)] == sum(
            x.certificates_wh for x in mine
        )
        assert co2[accounting.carbon_account(buyer)] == sum(x.market_g for x in mine)
    for provider in ("pw", "pe"):  # every issued certificate was retired
        assert green[accounting.certificate_account(AccountKind.PROVIDER, provider)] == 0
    # a tampered record is caught by the final check
    r.sim.records[0] = dataclasses.replace(records[0], market_g=records[0].market_g + 1)
    ok, message = r.sim._ledger_check()
    assert not ok and "gCO2" in message


def test_carbon_price_raises_prices_by_exactly_the_carbon_cost(
    tmp_path: Path, capture: list[tuple[Market, ClearingResult]]
) -> None:
    price = 500.0  # yuan per tonne
    base = run(tmp_path, capture)
    taxed = run(tmp_path, capture, carbon=price)
    assert taxed.sim.sc.energy is not None
    assert taxed.sim.sc.energy.carbon_price_yuan_per_t == price
    added = 0
    site_years = taxed.sim.site_years
    for market, result in taxed.cleared:
        carbon = hooks.carbon_for_market(market, site_years)
        plain = {o.id: o for o in base.sim.sc.offers}
        for offer in market.offers:  # every reserve in the horizon rose by the carbon cost
            for k, reserve in enumerate(offer.reserve_fen):
                slot = offer.start_slot + k
                g = carbon[offer.pool_id][slot - market.first_slot]
                before = plain[offer.id].reserve_fen[slot - plain[offer.id].start_slot]
                assert reserve == before + hooks.carbon_cost_fen(g, price)
        for a in result.allocations:  # uncongested: cleared at the reserve, carbon included
            g = carbon[a.pool_id][a.slot - market.first_slot]
            cost = hooks.carbon_cost_fen(g, price)
            reserve = plain[f"{'h' if a.pool_id.startswith('hor') else 'q'}1"].reserve_fen[a.slot]
            assert a.price_fen == reserve + cost
            added += cost * a.gpus
    assert added > 0
    # nothing else changed: same allocations, prices up by exactly the carbon cost
    assert taxed.report.gpu_hours_traded == base.report.gpu_hours_traded
    assert taxed.report.traded_value_fen == base.report.traded_value_fen + added
    assert taxed.report.welfare_fen == base.report.welfare_fen - added
    assert taxed.report.ledger_balanced, taxed.report.ledger_message


def test_energy_report_is_labelled_and_deterministic(
    tmp_path: Path, capture: list[tuple[Market, ClearingResult]]
) -> None:
    first = run(tmp_path, capture, shortfall=0.2).report.to_dict()
    second = run(tmp_path, capture, shortfall=0.2).report.to_dict()
    first.pop("timings"), second.pop("timings")
    assert first == second
    e = json.loads(json.dumps(first))["energy"]
    assert e["energy_kwh"] == pytest.approx(e["green_kwh"] + e["grid_kwh"])
    assert e["years"] == [2025] and e["seed"] == 3
    assert e["energy_sites"] == {"hor": "horinger", "qp": "yrd_qingpu"}
    assert (
        "Inner Mongolia province grid average 2022, 0.6849 t/MWh" in e["methods"]["location-based"]
    )
    assert "residual" in e["methods"]["market-based"]
    assert e["grid_factors_t_per_mwh"] == {"Inner Mongolia": 0.6849, "Shanghai": 0.5849}
    names = [a["method"] for a in e["avoided_co2"]]
    assert names == ["grid_average", "coal_displacement", "home_grid"]
    coal = e["avoided_co2"][1]
    assert coal["t_per_mwh"] == 0.836
    assert coal["tonnes"] == pytest.approx(e["energy_kwh"] / 1000 * 0.836 - e["co2_market_based_t"])
    assert [b["buyer"] for b in e["buyers"]] == ["bank", "lab"]
    assert sum(b["energy_kwh"] for b in e["buyers"]) == pytest.approx(e["energy_kwh"])
    for b in e["buyers"]:
        home = b["avoided_vs_home_grid"]
        assert home["method"] == "home_grid" and home["t_per_mwh"] == 0.558
        assert home["tonnes"] == pytest.approx(
            b["energy_kwh"] / 1000 * 0.558 - b["co2_market_based_t"]
        )
        assert any(m.startswith("location-based") for m in b["methods"])


def test_span_across_new_year_joins_two_years(tmp_path: Path) -> None:
    # 12:00 UTC on 31 December is 20:00 in UTC+8: the span and its lookahead run into 2025
    text = SCENARIO.replace("2025-06-02T00:00:00Z", "2024-12-31T12:00:00Z")
    scenario, stream = load(tmp_path, 100, text)
    report = _Simulation(scenario, stream, 0.0, 0, None).run()
    assert report.ledger_balanced, report.ledger_message
    assert report.energy is not None and report.energy.years == (2024, 2025)
    assert report.energy.leases > 0


def test_without_the_block_nothing_is_modelled(tmp_path: Path) -> None:
    text = re.sub(r"energy: .*\n", "", SCENARIO).replace(
        "energy_site: horinger}", "energy_site: horinger, green_share: 0.5}"
    )
    scenario, stream = load(tmp_path, 0, text)
    assert scenario.energy is None
    assert scenario.green_share(0, 1) == {"hor-h100": (0.5,)}
    report = _Simulation(scenario, stream, 0.0, 0, None).run()
    assert report.energy is None and report.ledger_balanced
    assert report.to_dict()["energy"] is None


# --- the CLI -----------------------------------------------------------------------------


def test_simulate_shows_the_energy_table() -> None:
    package = resources.files("suangu") / "data/scenarios"
    with (
        resources.as_file(package / "east_west.yaml") as scenario,
        resources.as_file(package / "east_west_orders.csv") as orders,
    ):
        result = runner.invoke(app, ["simulate", str(scenario), str(orders), "--hours", "12"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "energy model" in out  # the header says where green shares come from
    for words in (
        "Energy and carbon",
        "green (own wind and solar, hourly)",
        "CO2 location-based",
        "CO2 market-based",
        "coal_displacement, 0.8360 t/MWh",
        "CO2 per buyer",
        "bj-llm",
        "Inner Mongolia 0.6849",
    ):
        assert words in out, words
    assert re.search(r"ledger balanced\s*│\s*yes\s*│", out), out


def test_simulate_json_has_energy(tmp_path: Path) -> None:
    scenario, orders = files(tmp_path, 50)
    result = runner.invoke(app, ["simulate", str(scenario), str(orders), "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    assert data["ledger_balanced"] is True
    assert data["energy"]["carbon_price_yuan_per_t"] == 50
    assert data["energy"]["leases"] > 0
    assert data["timings"]["energy_model_s"] > 0


def test_bad_energy_block_is_one_line(tmp_path: Path) -> None:
    scenario, orders = files(tmp_path, -5)
    result = runner.invoke(app, ["simulate", str(scenario), str(orders)])
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert f"{scenario}:6: energy.carbon_price_yuan_per_t" in line


def test_certificates_never_exceed_the_sites_green_energy(tmp_path: Path) -> None:
    scenario, stream = load(tmp_path)
    sim = _Simulation(scenario, stream, 0.0, 0, None)
    # the same hourly green shares, but a site that uses a millionth of the green energy
    tiny = 1e-6
    for site_id, sy in sim.site_years.items():
        flows = dataclasses.replace(
            sy.flows,
            direct=sy.flows.direct * tiny,
            discharge=sy.flows.discharge * tiny,
            grid=sy.flows.grid * tiny,
        )
        sim.site_years[site_id] = dataclasses.replace(sy, load=sy.load * tiny, flows=flows)
    report = sim.run()
    assert report.ledger_balanced, report.ledger_message
    e = report.energy
    assert e is not None and e.uncertified_leases > 0
    uncertified = [r for r in sim.records if r.certificates_wh == 0 and r.green_wh > 0]
    assert len(uncertified) == e.uncertified_leases
    for r in uncertified:  # green Wh without certificates count at the residual factor
        assert r.market_g == grams(r.energy_wh, r.residual_t_per_mwh)
        assert r.market_g > r.location_g
    for slot in {r.slot for r in sim.records}:
        for sy in {id(s): s for s in sim.site_years.values()}.values():
            start = sy.hour_index(scenario.grid.slot_start(slot))
            room = int(float(sy.green_used[start : start + 1].sum()) * 1e6)
            certified = sum(
                r.certificates_wh
                for r in sim.records
                if r.slot == slot and r.site_id == sy.params.site_id
            )
            assert certified <= room
