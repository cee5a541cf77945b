"""`suangu simulate` end to end, through the Typer app (`suangu demo`: test_demo.py)."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suangu import __version__
from suangu.cli import app

runner = CliRunner()


def scenario_file(name: str) -> Path:
    return Path(str(resources.files("suangu") / "data" / "scenarios" / name))


SCENARIO = scenario_file("east_west.yaml")
ORDERS = scenario_file("east_west_orders.csv")


def run_json(*args: str) -> dict[str, object]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"suangu {__version__}"


def test_example_runs_end_to_end() -> None:
    data = run_json("simulate", str(SCENARIO), str(ORDERS))
    assert data["ledger_balanced"] is True, data["ledger_message"]
    assert data["clearings"] == data["hours"] == 72
    assert data["clearings_failed"] == 0
    total, filled = data["orders_total"], data["orders_filled"]
    assert isinstance(total, int) and isinstance(filled, int)
    assert 0 < filled < total
    assert data["orders_filled"] + data["orders_partial"] + data["orders_unfilled"] == total
    spend, revenue, fees = (
        data["buyer_spend_fen"],
        data["provider_revenue_fen"],
        data["exchange_fees_fen"],
    )
    assert spend == data["traded_value_fen"]  # full metered use
    assert spend == revenue + fees  # type: ignore[operator]
    assert len(data["sites"]) >= 4  # type: ignore[arg-type]
    energy = data["energy"]  # the packaged scenario runs the energy model
    assert isinstance(energy, dict)
    assert energy["gpu_hours"] == data["gpu_hours_traded"]  # full use: every lease has a record
    assert energy["energy_kwh"] == pytest.approx(energy["green_kwh"] + energy["grid_kwh"])
    assert energy["co2_market_based_t"] > 0 and 0.5 < energy["green_share"] < 1
    timings = data["timings"]
    assert isinstance(timings, dict)
    assert timings["wall_s"] < 30


def test_simulate_prints_a_summary() -> None:
    result = runner.invoke(app, ["simulate", str(SCENARIO), str(ORDERS), "--hours", "12"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for words in (
        "Orders",
        "Volume by site",
        "Horinger",
        "welfare",
        "buyer spend",
        "provider revenue",
        "exchange fees",
        "ledger balanced",
    ):
        assert words in out, words
    assert re.search(r"ledger balanced\s*│\s*yes\s*│", out), out


def test_same_input_same_summary() -> None:
    args = ("simulate", str(SCENARIO), str(ORDERS), "--hours", "24", "--shortfall", "0.2")
    first, second = run_json(*args), run_json(*args)
    first.pop("timings"), second.pop("timings")
    assert first == second
    assert first["released_fen"] > 0  # type: ignore[operator]


# --- bad input: one red line, exit code 2, file and line named, no stack trace --------------


def mutate(tmp_path: Path, source: Path, name: str, old: str, new: str) -> Path:
    text = source.read_text(encoding="utf-8")
    assert old in text, old
    path = tmp_path / name
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError(needle)


BAD_SCENARIOS = [
    # (name, old, new, needle on the bad line, words in the message)
    ("malformed.yaml", "hours: 72", "hours: 72\n  oops: [", "oops", "malformed YAML"),
    (
        "unknown.yaml",
        "lookahead: 24",
        "lookahead: 24\nlook_ahead: 12",
        "look_ahead",
        "look_ahead: unknown field 'look_ahead'",
    ),
    (
        "negative.yaml",
        "gpus: 64, reserve: 12.00",
        "gpus: -64, reserve: 12.00",
        "-64",
        "offers[0].gpus",
    ),
    ("class.yaml", "gpu_class: L40S}", "gpu_class: L40}", "L40}", "unknown GPU class 'L40'"),
    ("reserve.yaml", "reserve: 7.40", "reserve: 7.405", "7.405", "more than 2 decimals"),
]


@pytest.mark.parametrize(("name", "old", "new", "needle", "words"), BAD_SCENARIOS)
def test_bad_scenario(
    tmp_path: Path, name: str, old: str, new: str, needle: str, words: str
) -> None:
    path = mutate(tmp_path, SCENARIO, name, old, new)
    result = runner.invoke(app, ["simulate", str(path), str(ORDERS)])
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith(f"error: {path}:{line_of(path, needle)}: "), message
    assert words in message
    assert "\n" not in message and "Traceback" not in result.output


BAD_ORDERS = [
    (
        "deadline.csv",
        "o0002,gz-speech,batch,8,80,,0,2,21,",
        "o0002,gz-speech,batch,8,80,,0,22,21,",
        "o0002,",
        "deadline: must be after release",
    ),
    (
        "row.csv",
        "o0004,sh-bank,batch,8,40,",
        "o0004,sh-bank,batch,8,,40,",
        "o0004,",
        "has 17 cells but the header has 16 columns",
    ),
    ("gpus.csv", "o0001,bj-llm,batch,16,", "o0001,bj-llm,batch,-16,", "o0001,", "gpus:"),
    (
        "limit.csv",
        "o0001,bj-llm,batch,16,240,,0,,33,14.35",
        "o0001,bj-llm,batch,16,240,,0,,33,14.355",
        "o0001,",
        "limit: has more than 2 decimals",
    ),
]


@pytest.mark.parametrize(("name", "old", "new", "needle", "words"), BAD_ORDERS)
def test_bad_orders(tmp_path: Path, name: str, old: str, new: str, needle: str, words: str) -> None:
    path = mutate(tmp_path, ORDERS, name, old, new)
    result = runner.invoke(app, ["simulate", str(SCENARIO), str(path)])
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith(f"error: {path}:{line_of(path, needle)}: "), message
    assert words in message
    assert "\n" not in message and "Traceback" not in result.output


@pytest.mark.parametrize("which", ["scenario", "orders"])
def test_missing_file(tmp_path: Path, which: str) -> None:
    missing = tmp_path / "nowhere.yaml"
    args = [str(missing), str(ORDERS)] if which == "scenario" else [str(SCENARIO), str(missing)]
    result = runner.invoke(app, ["simulate", *args])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {missing}: file not found (check the path; relative paths start where you run"
        " suangu)"
    )


@pytest.mark.parametrize("policy", ["fifo-home", "cheapest-now", "carbon-shift"])
def test_baseline_policies_run_on_the_same_loop(policy: str) -> None:
    data = run_json("simulate", str(SCENARIO), str(ORDERS), "--hours", "12", "--policy", policy)
    assert data["policy"] == policy
    assert data["ledger_balanced"] is True, data["ledger_message"]
    assert data["clearings"] == 12
    assert data["methods"] == {policy: 12}
    # pay-as-offer: buyers pay the listed reserves, so the traded value is the listed cost
    assert data["paid_fen"] == data["listed_reserve_fen"] == data["traded_value_fen"]
    assert data["net_welfare_fen"] == (
        data["value_fen"] - data["listed_reserve_fen"] - data["transfer_fen"]  # type: ignore[operator]
    )
    suangu = run_json("simulate", str(SCENARIO), str(ORDERS), "--hours", "12")
    assert suangu["policy"] == "suangu"
    assert suangu["net_welfare_fen"] >= data["net_welfare_fen"]  # type: ignore[operator]


def test_unknown_policy_is_one_error_line() -> None:
    result = runner.invoke(app, ["simulate", str(SCENARIO), str(ORDERS), "--policy", "lifo"])
    assert result.exit_code == 2
    assert "policy: unknown policy 'lifo'" in result.output
    assert "Traceback" not in result.output


def test_summary_counts_firm_deadlines() -> None:
    hubs = scenario_file("hubs.yaml")
    orders = Path(__file__).resolve().parents[2] / "examples" / "hubs_orders.csv"
    result = runner.invoke(app, ["simulate", str(hubs), str(orders), "--hours", "24"])
    assert result.exit_code == 0, result.output
    assert re.search(r"Firm deadlines: \d+ of \d+ missed \(\d+ of them unservable", result.stdout)
    flat = " ".join(result.stdout.split())
    assert re.search(r"Deadlines: [\d,]+ of [\d,]+ met \(\d+\.\d%\); [\d,]+ GPU-hours", flat)
    assert "every allocation firm when it clears" in flat
