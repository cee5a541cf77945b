"""Scenario and order-stream files (suangu.sim.scenario) and the simulated clock (sim.simulate)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from suangu.core.errors import ValidationError
from suangu.core.types import OrderKind
from suangu.sim.errors import ScenarioError
from suangu.sim.scenario import load_orders, load_scenario
from suangu.sim.simulate import simulate

MINI = """\
name: mini
start: 2025-06-02T00:00:00Z
hours: 12
lookahead: 6
exchange_fee_bps: 300
sites:
  - id: west
    name: West
    province: Gansu
    region: gansu
    lat: 35.7
    lon: 107.6
    pue: 1.15
    latency_ms: {beijing: 6.7}
    green_share: 0.8
  - {id: east, province: Hebei, region: jjj, lat: 40.8, lon: 114.9, latency_ms: {beijing: 1.2}}
pools:
  - {id: west-a800, site: west, gpu_class: A800}
  - {id: east-h100, site: east, gpu_class: H100}
offers:
  - {id: w1, provider: pw, pool: west-a800, gpus: 4, reserve: 8.70}
  - {id: e1, provider: pe, pool: east-h100, from: 0, to: 18, gpus: 2, reserve: 13}
"""

ORDERS_HEADER = (
    "id,buyer,kind,gpus,gpu_hours,duration,submit,release,deadline,limit,"
    "gpu_classes,regions,provinces,home,max_latency_ms,min_green_share\n"
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def mini(tmp_path: Path, text: str = MINI) -> Path:
    return write(tmp_path, "mini.yaml", text)


def orders_csv(tmp_path: Path, *rows: str) -> Path:
    return write(tmp_path, "orders.csv", ORDERS_HEADER + "".join(r + "\n" for r in rows))


def error_of(fn: object, *args: object, **kwargs: object) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        fn(*args, **kwargs)  # type: ignore[operator]
    return info.value


# --- the packaged example ---------------------------------------------------------------------


def packaged(name: str) -> Path:
    path = Path(str(resources.files("suangu") / "data" / "scenarios" / name))
    assert path.is_file(), f"package data {name} missing"
    return path


def test_packaged_example_is_realistic() -> None:
    scenario = load_scenario(packaged("east_west.yaml"))
    stream = load_orders(packaged("east_west_orders.csv"), scenario)
    assert 4 <= len(scenario.sites) <= 6
    assert 3 <= len(set(scenario.providers.values())) <= 4
    assert 48 <= scenario.hours <= 72
    assert 200 <= len(stream.orders) <= 400
    buyers = {s.order.buyer_id for s in stream.orders}
    assert 5 <= len(buyers) <= 8
    kinds = Counter(s.order.kind for s in stream.orders)
    assert kinds[OrderKind.BATCH] > kinds[OrderKind.GANG] > 0
    assert kinds[OrderKind.SERVICE] > 0
    assert any(s.order.regions for s in stream.orders)
    assert any(s.order.min_green_share > 0 for s in stream.orders)
    # the demo's green story: every site mapped to its packaged energy-data site
    assert scenario.energy is not None and scenario.green_profiles == {}
    assert dict(scenario.energy.sites) == {
        "horinger": "horinger",
        "qingyang": "qingyang",
        "zhongwei": "zhongwei",
        "guian": "guian",
        "zhangjiakou": "zhangjiakou",
        "qingpu": "yrd_qingpu",
    }
    assert {s.order.home for s in stream.orders if s.order.max_latency_ms} >= {
        "beijing",
        "shanghai",
    }
    for offer in scenario.offers:  # realistic reserves, yuan per GPU-hour
        pool = next(p for p in scenario.pools if p.id == offer.pool_id)
        low, high = {
            "H100-SXM-80GB": (1200, 1400),
            "A800-SXM-80GB": (800, 1000),
            "Ascend-910B": (700, 900),
            "L40S": (300, 400),
        }[pool.gpu_class]
        assert all(low <= r <= high for r in offer.reserve_fen), offer.id


# --- conversion -------------------------------------------------------------------------------


def test_scenario_converts_exactly(tmp_path: Path) -> None:
    scenario = load_scenario(mini(tmp_path))
    assert scenario.grid.epoch == 1748822400
    assert scenario.fee_bp == 300
    w1, e1 = scenario.offers
    assert w1.reserve_fen[0] == 870  # 8.70 * 100 in floats is 869.999...
    assert (w1.start_slot, w1.end_slot) == (0, 18)  # default: hours + lookahead
    assert (e1.start_slot, e1.end_slot, e1.reserve_fen[0]) == (0, 18, 1300)
    assert scenario.providers == {"west-a800": "pw", "east-h100": "pe"}
    assert scenario.green_share(0, 2) == {"west-a800": (0.8, 0.8)}
    assert scenario.sites[1].name == "east"  # the id when no name is given


def test_daily_profiles_follow_local_hours(tmp_path: Path) -> None:
    profile = list(range(24))
    text = MINI.replace("gpus: 4, reserve: 8.70", f"gpus: {profile}, reserve: 8.70")
    text = text.replace("green_share: 0.8", f"green_share: {[h / 100 for h in range(24)]}")
    scenario = load_scenario(mini(tmp_path, text))
    w1 = scenario.offers[0]
    # start is 00:00 UTC = 08:00 in UTC+8 (the default utc_offset_hours)
    assert w1.gpus[:3] == (8, 9, 10)
    assert w1.gpus[16] == 0
    assert scenario.green_share(16, 2)["west-a800"] == (0.0, 0.01)


def test_iso_times_and_hour_offsets_agree(tmp_path: Path) -> None:
    scenario = load_scenario(mini(tmp_path))
    path = orders_csv(
        tmp_path,
        "a,b1,batch,2,8,,1,2,2025-06-02T10:00:00Z,9.5,A800,,,,,",
        "b,b1,gang,2,,3,2025-06-02T01:00:00+00:00,,2025-06-02T09:00:00Z,14,,,,,,",
        "c,b2,service,1,,,0,,6,12,H100,,,beijing,2,",
    )
    stream = load_orders(path, scenario)
    a, b, c = (s.order for s in stream.orders)
    assert (a.release_slot, a.deadline_slot, a.limit_fen) == (2, 10, 950)
    assert stream.orders[1].submit_slot == 1 and b.release_slot == 1
    assert (b.duration_slots, b.deadline_slot) == (3, 9)
    assert c.home == "beijing" and c.max_latency_ms == 2
    assert a.gpu_classes == {"A800-SXM-80GB"}


def test_yaml_order_stream(tmp_path: Path) -> None:
    scenario = load_scenario(mini(tmp_path))
    path = write(
        tmp_path,
        "orders.yaml",
        "orders:\n"
        "  - {id: a, buyer: b1, kind: batch, gpus: 2, gpu_hours: 8, deadline: 10, limit: 9.5,\n"
        "     gpu_classes: [A800, H100], regions: gansu;jjj, min_green_share: 0.5}\n",
    )
    (order,) = (s.order for s in load_orders(path, scenario).orders)
    assert order.gpu_classes == {"A800-SXM-80GB", "H100-SXM-80GB"}
    assert order.regions == {"gansu", "jjj"}
    assert order.min_green_share == 0.5


# --- scenario errors: file, line, field and fix -------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    err = error_of(load_scenario, tmp_path / "nope.yaml")
    assert "nope.yaml" in str(err) and "not found" in str(err)
    assert isinstance(err, ValidationError)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    err = error_of(load_scenario, mini(tmp_path, MINI.replace("hours: 12", "hours: 12\n  x: [")))
    assert err.line == 4
    assert str(err).startswith(f"{tmp_path / 'mini.yaml'}:4: malformed YAML")


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "words"),
    [
        ("lookahead: 6", "lookahead: 6\ncolour: red", 5, "colour", "unknown field 'colour'"),
        ("gpus: 4, reserve", "gpus: -4, reserve", 21, "offers[0].gpus", "-4"),
        ("gpu_class: H100}", "gpu_class: H200}", 19, "pools[1].gpu_class", "unknown GPU class"),
        ("reserve: 8.70", "reserve: 8.705", 21, "offers[0].reserve", "more than 2 decimals"),
        ("reserve: 8.70", "reserve: '8,70'", 21, "offers[0].reserve", "'8,70'"),
        ("pool: west-a800,", "pool: west-a80,", 21, "offers[0].pool", "unknown pool"),
        ("site: east,", "site: est,", 19, "pools[1].site", "unknown site"),
        ("pue: 1.15", "pue: 0.5", 13, "sites[0].pue", "greater than or equal to 1"),
        ("hours: 12", "hours: -3", 3, "hours", "greater than or equal to 1"),
        ("from: 0, to: 18", "from: 5, to: 5", 22, "offers[1].to", "after from"),
        ("from: 0, to: 18", "from: 0.5, to: 18", 22, "offers[1].from", "slot boundary"),
        ("gpus: 2, reserve: 13", "gpus: [1, 2], reserve: 13", 22, "offers[1].gpus", "24"),
        (
            "id: e1, provider: pe, pool: east-h100",
            "id: e1, provider: px, pool: west-a800",
            22,
            "offers[1].provider",
            "one provider per pool",
        ),
        ("id: e1,", "id: w1,", 22, "offers[1].id", "duplicate id 'w1'"),
        ("hours: 12", "hours: 12\nhours: 13", 4, "hours", "duplicate key"),
        ("start: 2025-06-02T00:00:00Z", "start: tomorrow", 2, "start", "ISO date-time"),
        (
            "lookahead: 6",
            "lookahead: 6\ntime_preference: 0.001",
            5,
            "time_preference",
            "2 decimals",
        ),
    ],
)
def test_scenario_errors(
    tmp_path: Path, old: str, new: str, line: int, field: str, words: str
) -> None:
    assert old in MINI
    err = error_of(load_scenario, mini(tmp_path, MINI.replace(old, new, 1)))
    text = str(err)
    assert text.startswith(f"{tmp_path / 'mini.yaml'}:{line}: "), text
    assert err.field is not None and err.field.startswith(field), text
    assert words in text
    assert err.fix, text  # says how to fix it
    assert "\n" not in text


# --- the energy block --------------------------------------------------------------------------

GREEN_MINI = (
    MINI.replace("lookahead: 6\n", "lookahead: 6\nenergy: {model: true, seed: 2}\n")
    .replace("    green_share: 0.8\n", "    energy_site: qingyang\n")
    .replace("latency_ms: {beijing: 1.2}}", "latency_ms: {beijing: 1.2}, energy_site: zhangjiakou}")
)


def test_energy_block_parses(tmp_path: Path) -> None:
    scenario = load_scenario(mini(tmp_path, GREEN_MINI))
    assert scenario.energy is not None
    assert scenario.energy.seed == 2 and scenario.energy.carbon_price_yuan_per_t == 0
    assert scenario.energy.home_grid is None
    assert dict(scenario.energy.sites) == {"west": "qingyang", "east": "zhangjiakou"}
    assert scenario.green_profiles == {}  # green shares come from the model
    # the default energy site is the site's own id
    text = GREEN_MINI.replace("id: west\n", "id: qingyang\n").replace(
        "site: west,", "site: qingyang,"
    )
    text = text.replace("    energy_site: qingyang\n", "")
    assert load_scenario(mini(tmp_path, text)).energy.sites["qingyang"] == "qingyang"  # type: ignore[union-attr]
    # model: false keeps the file's numbers, as without the block
    off = load_scenario(
        mini(tmp_path, MINI.replace("lookahead: 6\n", "lookahead: 6\nenergy: {model: false}\n"))
    )
    assert off.energy is None and off.green_share(0, 1) == {"west-a800": (0.8,)}
    assert load_scenario(mini(tmp_path)).energy is None


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "words"),
    [
        ("seed: 2}", "seed: -1}", 5, "energy.seed", "greater than or equal to 0"),
        ("seed: 2}", "seed: 2, carbon_price_yuan_per_t: -5}", 5, "energy.carbon_price", "-5"),
        ("seed: 2}", "seed: 2, carbon_price_yuan_per_t: .nan}", 5, "energy.carbon_price", "finite"),
        ("seed: 2}", "seed: 2, carbon_price_yuan_per_t: cheap}", 5, "energy.carbon_price", "cheap"),
        ("seed: 2}", "seed: 2, home_grid: Atlantis}", 5, "energy.home_grid", "Atlantis"),
        ("seed: 2}", "seed: 2, colour: green}", 5, "energy.colour", "unknown field"),
        ("model: true", "model: maybe", 5, "energy.model", "maybe"),
        (
            "model: true, seed: 2}",
            "model: false, carbon_price_yuan_per_t: 100}",
            5,
            "energy.carbon_price_yuan_per_t",
            "needs the energy model",
        ),
        ("energy_site: qingyang", "energy_site: atlantis", 16, "sites[0].energy_site", "atlantis"),
        ("    energy_site: qingyang\n", "", 8, "sites[0].energy_site", "no packaged energy data"),
        (
            "energy_site: qingyang",
            "energy_site: qingyang\n    green_share: 0.8",
            17,
            "sites[0].green_share",
            "set by the energy model",
        ),
        (
            "gpu_class: H100}",
            "gpu_class: H100, green_share: 0.9}",
            20,
            "pools[1].green_share",
            "set by the energy model",
        ),
    ],
)
def test_energy_errors(
    tmp_path: Path, old: str, new: str, line: int, field: str, words: str
) -> None:
    assert old in GREEN_MINI, old
    path = mini(tmp_path, GREEN_MINI.replace(old, new, 1))
    err = error_of(load_scenario, path)
    text = str(err)
    assert text.startswith(f"{path}:{line}: "), text
    assert err.field is not None and err.field.startswith(field), text
    assert words in text, text
    assert err.fix and "\n" not in text


def test_not_a_mapping(tmp_path: Path) -> None:
    err = error_of(load_scenario, mini(tmp_path, "- just\n- a list\n"))
    assert "mapping" in str(err) and err.line == 1


# --- order-stream errors ---------------------------------------------------------------------


GOOD = "a,b1,batch,2,8,,0,,10,9.5,,,,,,"


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ("a,b1,batch,-2,8,,0,,10,9.5,,,,,,", "gpus", "greater than or equal to 1"),
        ("a,b1,batch,two,8,,0,,10,9.5,,,,,,", "gpus", "'two'"),
        ("a,b1,bulk,2,8,,0,,10,9.5,,,,,,", "kind", "'batch', 'gang' or 'service'"),
        ("a,b1,batch,2,8,,0,5,3,9.5,,,,,,", "deadline", "after release"),
        ("a,b1,batch,2,8,,0,,10,9.505,,,,,,", "limit", "more than 2 decimals"),
        ("a,b1,batch,2,8,,0,,10,0,,,,,,", "limit", "at least 0.01"),
        ("a,b1,batch,2,8,,0,,10,9.5,A900,,,,,", "gpu_classes", "unknown GPU class 'A900'"),
        ("a,b1,batch,2,8,,0,,10,9.5,,mars,,,,", "regions", "unknown region 'mars'"),
        ("a,b1,batch,2,8,,0,,10,9.5,,,Tibet,,,", "provinces", "unknown province"),
        ("a,b1,batch,2,8,,0,,10,9.5,,,,lhasa,5,", "home", "unknown home 'lhasa'"),
        ("a,b1,batch,2,8,,0,,10,9.5,,,,,5,", "home", "max_latency_ms"),
        ("a,b1,batch,2,,,0,,10,9.5,,,,,,", "gpu_hours", "batch orders need gpu_hours"),
        ("a,b1,gang,2,,,0,,10,9.5,,,,,,", "duration", "gang orders need a duration"),
        ("a,b1,gang,2,,20,0,,10,9.5,,,,,,", "duration", "do not fit"),
        ("a,b1,gang,2,,8,0,,10,9.5,,,,,,", "duration", "longer than the clearing horizon"),
        ("a,b1,batch,2,8,3,0,,10,9.5,,,,,,", "duration", "only gang orders"),
        ("a,b1,batch,2,8,,0,,10,9.5,,,,,,1.5", "min_green_share", "less than or equal to 1"),
        ("a,b1,batch,2,8,,-1,,10,9.5,,,,,,", "submit", "before the scenario start"),
        ("a,b1,batch,2,8,,0,,2025-06-01T00:00:00Z,9.5,,,,,,", "deadline", "before the scen"),
    ],
)
def test_csv_row_errors(tmp_path: Path, row: str, field: str, words: str) -> None:
    scenario = load_scenario(mini(tmp_path))
    path = orders_csv(tmp_path, GOOD.replace("a,", "z,", 1), row)
    err = error_of(load_orders, path, scenario)
    text = str(err)
    assert text.startswith(f"{path}:3: "), text  # the header is line 1
    assert err.field == field, text
    assert words in text, text
    assert err.fix, text


def test_csv_structure_errors(tmp_path: Path) -> None:
    scenario = load_scenario(mini(tmp_path))
    bad_header = write(tmp_path, "h.csv", ORDERS_HEADER.replace("limit", "limt") + GOOD + "\n")
    err = error_of(load_orders, bad_header, scenario)
    assert err.line == 1 and "unknown column 'limt'" in str(err)
    short_row = orders_csv(tmp_path, GOOD, GOOD.replace("a,", "b,", 1)[:-3])
    err = error_of(load_orders, short_row, scenario)
    assert err.line == 3 and "13 cells but the header has 16 columns" in str(err)
    dup = orders_csv(tmp_path, GOOD, GOOD)
    err = error_of(load_orders, dup, scenario)
    assert err.line == 3 and "duplicate order id 'a'" in str(err)
    missing = write(tmp_path, "m.csv", "id,buyer,kind,gpus\na,b,batch,2\n")
    assert "missing columns deadline, limit" in str(error_of(load_orders, missing, scenario))
    other = write(tmp_path, "orders.json", "{}")
    assert "unknown order file type" in str(error_of(load_orders, other, scenario))


def test_yaml_order_errors_name_the_line(tmp_path: Path) -> None:
    scenario = load_scenario(mini(tmp_path))
    path = write(
        tmp_path,
        "orders.yaml",
        "orders:\n"
        "  - {id: a, buyer: b1, kind: batch, gpus: 2, gpu_hours: 8, deadline: 10, limit: 9}\n"
        "  - id: b\n"
        "    buyer: b1\n"
        "    kind: batch\n"
        "    gpus: 2\n"
        "    gpu_hours: 8\n"
        "    deadline: 10\n"
        "    limit: 9\n"
        "    colour: red\n",
    )
    err = error_of(load_orders, path, scenario)
    assert str(err).startswith(f"{path}:10: orders[1].colour: unknown field 'colour'")
    path.write_text(path.read_text().replace("    colour: red\n", "    release: 12\n"))
    err = error_of(load_orders, path, scenario)
    assert err.line == 3 and err.field == "orders[1].deadline"


def test_hours_override(tmp_path: Path) -> None:
    scenario = load_scenario(mini(tmp_path), hours=4)
    assert scenario.hours == 4 and scenario.offers[0].end_slot == 10
    err = error_of(load_scenario, mini(tmp_path), hours=0)
    assert err.file == "--hours"


# --- the simulated clock -------------------------------------------------------------------


def run(tmp_path: Path, *rows: str, text: str = MINI, **kwargs: object):  # type: ignore[no-untyped-def]
    scenario = load_scenario(mini(tmp_path, text))
    return simulate(scenario, load_orders(orders_csv(tmp_path, *rows), scenario), **kwargs)  # type: ignore[arg-type]


def test_one_order_settles_exactly(tmp_path: Path) -> None:
    report = run(tmp_path, "a,b1,batch,2,8,,0,,10,9.50,A800,,,,,")
    assert (report.orders_total, report.orders_filled) == (1, 1)
    assert report.gpu_hours_traded == 8
    assert report.traded_value_fen == 8 * 870  # uncongested: the reserve
    assert report.buyer_spend_fen == 6960
    assert report.exchange_fees_fen == 6960 * 300 // 10_000
    assert report.provider_revenue_fen == 6960 - report.exchange_fees_fen
    assert report.welfare_fen == 8 * (950 - 870)
    assert report.buyer_deposits_fen == 8 * 950
    assert report.ledger_balanced, report.ledger_message
    assert report.green_share == pytest.approx(0.8)


def test_batch_order_fills_over_several_clearings(tmp_path: Path) -> None:
    # 2 GPUs x 6-slot horizon = 12 GPU-hours per clearing at most; 20 GPU-hours of work.
    text = MINI.replace("gpus: 4, reserve: 8.70", "gpus: 2, reserve: 8.70")
    report = run(tmp_path, "a,b1,batch,2,20,,0,,12,9.50,A800,,,,,", text=text)
    assert report.orders_filled == 1
    assert report.gpu_hours_traded == 20
    assert report.clearings >= 4
    assert report.ledger_balanced, report.ledger_message


def test_late_order_and_gang(tmp_path: Path) -> None:
    report = run(
        tmp_path,
        "g,b1,gang,2,,4,3,,12,14,H100,,,,,",  # 2 H100 x 4 h, submitted at hour 3
        "x,b2,gang,2,,4,0,,12,15,H100,,,,,",  # takes the same 2 GPUs first, hours 0-3
        "c,b2,batch,4,400,,0,,12,5,,,,,,",  # limit below every reserve: never fills
    )
    assert report.orders_by_kind["gang"] == {"total": 2, "filled": 2, "partial": 0, "unfilled": 0}
    assert report.orders_unfilled == 1
    assert report.gpu_hours_traded == 16
    assert report.ledger_balanced


def test_orders_after_the_span_never_join(tmp_path: Path) -> None:
    report = run(tmp_path, GOOD, "late,b1,batch,2,8,,13,,16,9.5,,,,,,")
    assert report.orders_after_span == 1 and report.orders_total == 1


def test_shortfall_releases_the_unused_hold(tmp_path: Path) -> None:
    rows = [f"o{k},b{k % 3},batch,2,16,,{k},,{k + 12},{9 + k % 5}.50,,,,,," for k in range(10)]
    report = run(tmp_path, *rows, shortfall=0.5, seed=7)
    assert report.released_fen > 0
    assert report.buyer_spend_fen + report.released_fen == report.traded_value_fen
    assert report.ledger_balanced, report.ledger_message
    with pytest.raises(ValidationError):
        run(tmp_path, GOOD, shortfall=1.5)


def test_simulation_is_deterministic(tmp_path: Path) -> None:
    rows = [
        f"o{k},b{k % 3},batch,{1 + k % 3},{4 + k},,{k % 6},,{k % 6 + 8},{8 + k % 7}.25,,,,,,"
        for k in range(20)
    ]
    first = run(tmp_path, *rows, shortfall=0.3, seed=1).to_dict()
    second = run(tmp_path, *rows, shortfall=0.3, seed=1).to_dict()
    first.pop("timings"), second.pop("timings")
    assert first == second


def test_report_is_json_ready(tmp_path: Path) -> None:
    import json

    data = run(tmp_path, GOOD).to_dict()
    assert json.loads(json.dumps(data))["ledger_balanced"] is True
    assert set(data["timings"]) == {
        "clear_mean_s",
        "clear_max_s",
        "solve_mean_s",
        "solve_max_s",
        "wall_s",
        "energy_model_s",
    }
    assert data["energy"] is None  # no energy block: the file's green shares, no energy model
    assert dataclasses.is_dataclass(run(tmp_path, GOOD))


# --- links, data, speeds and the ten-hub scenario ----------------------------------------------

LINKS = """\
links:
  - {from: jjj, to: gansu, latency_ms: 7.4, bandwidth_gbps: 10, price_per_gb: 0.09}
  - {from: gansu, to: jjj, latency_ms: 7.4, bandwidth_gbps: 10, price_per_gb: 0.09}
"""


def test_links_load_as_core_links(tmp_path: Path) -> None:
    sc = load_scenario(mini(tmp_path, MINI + LINKS))
    assert [(lk.from_region, lk.to_region) for lk in sc.links] == [
        ("jjj", "gansu"),
        ("gansu", "jjj"),
    ]
    assert sc.links[0].price_fen_per_gb == 9
    assert sc.links[0].bandwidth_gbps == 10
    assert sc.regions == ("gansu", "jjj")
    assert load_scenario(mini(tmp_path)).links == ()


@pytest.mark.parametrize(
    ("link", "field", "message"),
    [
        (
            "{from: jjj, to: tibet, latency_ms: 1, bandwidth_gbps: 1, price_per_gb: 0.1}",
            "links[2].to",
            "unknown region 'tibet'",
        ),
        (
            "{from: jjj, to: gansu, latency_ms: 1, bandwidth_gbps: 1, price_per_gb: 0.1}",
            "links[2]",
            "duplicate link jjj -> gansu",
        ),
        (
            "{from: jjj, to: jjj, latency_ms: 1, bandwidth_gbps: 1, price_per_gb: 0.1}",
            "links[2].to",
            "must differ from from_region",
        ),
        (
            "{from: jjj, to: gansu, latency_ms: 1, bandwidth_gbps: 0, price_per_gb: 0.1}",
            "links[2].bandwidth_gbps",
            "greater than 0",
        ),
        (
            "{from: jjj, to: gansu, latency_ms: 1, bandwidth_gbps: 1, price_per_gb: 0.105}",
            "links[2].price_per_gb",
            "more than 2 decimals",
        ),
        (
            "{from: jjj, to: gansu, latency_ms: 1, bandwidth_gbps: 1}",
            "links[2].price_per_gb",
            "is missing",
        ),
    ],
)
def test_link_errors_name_line_and_field(
    tmp_path: Path, link: str, field: str, message: str
) -> None:
    text = MINI + LINKS + f"  - {link}\n"
    with pytest.raises(ScenarioError) as info:
        load_scenario(mini(tmp_path, text))
    err = info.value
    assert err.field == field
    assert message in err.message
    assert err.line == text.count("\n")  # the last line: the bad link
    assert err.fix


def test_order_fields_for_data_and_speed(tmp_path: Path) -> None:
    sc = load_scenario(mini(tmp_path, MINI + LINKS))
    header = ORDERS_HEADER.rstrip("\n") + ",data_gb,reference_class,speed,firm\n"
    path = write(
        tmp_path,
        "o.csv",
        header
        + "a,b1,batch,2,8,,0,,10,9.5,,,,jjj,,,500,A800,H100=2.5,true\n"
        + "b,b1,batch,2,8,,0,,10,9.5,,,,beijing,5,,,,,\n",
    )
    stream = load_orders(path, sc)
    a, b = (s.order for s in stream.orders)
    assert (a.home, a.data_gb, a.reference_class) == ("jjj", 500, "A800-SXM-80GB")
    assert dict(a.speed) == {"H100-SXM-80GB": 2.5}
    assert (b.home, b.data_gb, b.reference_class, dict(b.speed)) == ("beijing", 0, None, {})
    assert stream.firm == frozenset({"a"})


@pytest.mark.parametrize(
    ("cells", "field", "message"),
    [
        ("jjj,,,500,B200,,", "reference_class", "unknown GPU class 'B200'"),
        ("jjj,,,500,A800,H100=fast,", "speed", "valid number"),
        ("jjj,,,500,A800,H100,", "speed", "class=factor"),
        ("jjj,,,500,A800,H100=0,", "speed", "greater than or equal"),
        ("beijing,,,500,,,", "home", "is a place, not a region"),
        (",,,500,,,", "home", "is needed, as a region"),
        ("jjj,,,-1,,,", "data_gb", "greater than or equal to 0"),
        ("jjj,,,,,,maybe", "firm", "valid boolean"),
    ],
)
def test_order_field_errors(tmp_path: Path, cells: str, field: str, message: str) -> None:
    sc = load_scenario(mini(tmp_path, MINI + LINKS))
    header = ORDERS_HEADER.rstrip("\n") + ",data_gb,reference_class,speed,firm\n"
    path = write(tmp_path, "o.csv", header + f"a,b1,batch,2,8,,0,,10,9.5,,,,{cells}\n")
    with pytest.raises(ScenarioError) as info:
        load_orders(path, sc)
    assert info.value.line == 2
    assert info.value.field is not None and info.value.field.startswith(field)
    assert message in info.value.message


def test_hub_scenario_is_the_ten_hub_sites() -> None:
    from suangu.sim.trace import load_hub_scenario

    sc = load_hub_scenario()
    assert len(sc.sites) == 10 and sc.hours == 168 and sc.energy is not None
    assert len(sc.regions) == 8
    assert {s.id for s in sc.sites} >= {"horinger", "qingyang", "zhongwei", "guian", "shaoguan"}
    classes: dict[str, set[str]] = {p.site_id: set() for p in sc.pools}
    for p in sc.pools:
        classes[p.site_id].add(p.gpu_class)
    assert all(len(c) >= 2 for c in classes.values())  # several GPU classes per site
    # every ordered pair of hubs has a link; CAICT: at most 20 ms, average 9.7 ms
    assert {lk.key for lk in sc.links} == {(a, b) for a in sc.regions for b in sc.regions if a != b}
    latencies = [lk.latency_ms for lk in sc.links]
    assert max(latencies) <= 20
    assert sum(latencies) / len(latencies) == pytest.approx(9.7, abs=0.1)
    assert all(0 < lk.price_fen_per_gb <= 30 for lk in sc.links)
    assert load_hub_scenario(hours=12).hours == 12
    assert sc.delay_fen == 1  # time_preference: 0.01 yuan


def test_simulation_counts_work_in_reference_gpu_hours(tmp_path: Path) -> None:
    """A GPU-hour of H100 does 989.4 / 312 = 3.17 A800-hours of work: 6 A800-hours take one
    H100 GPU-slot, and the 2.83 left is less than a GPU-slot does: the order is filled."""
    sc = load_scenario(mini(tmp_path, MINI + LINKS))
    header = ORDERS_HEADER.rstrip("\n") + ",data_gb,reference_class,speed,firm\n"
    path = write(tmp_path, "o.csv", header + "a,b1,batch,2,6,,0,,4,9.50,H100,,,jjj,,,,A800,,true\n")
    stream = load_orders(path, sc)
    for policy in ("fifo-home", "suangu"):
        report = simulate(sc, stream, policy=policy)
        assert report.gpu_hours_traded == 1, policy
        assert report.work_done_h == pytest.approx(989.4 / 312)
        assert report.work_asked_h == 6
        assert report.orders_filled == 1 and report.firm_orders == 1
        assert report.firm_missed == 0
        assert report.value_fen == round(950 * 989.4 / 312)
        assert report.ledger_balanced
    with pytest.raises(ValidationError, match="unknown policy"):
        simulate(sc, stream, policy="lifo")
