"""`suangu report energy` end to end."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from suangu.cli import app

runner = CliRunner()


def test_report_energy_table_and_png(tmp_path: Path) -> None:
    png = tmp_path / "h.png"
    result = runner.invoke(
        app, ["report", "energy", "--site", "horinger", "--year", "2024", "--png", str(png)]
    )
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = result.stdout
    assert "Horinger" in out and "year" in out and "green" in out
    assert "grid_average" in out and "coal_displacement" in out
    assert "location-based" in out


def test_report_energy_json(tmp_path: Path) -> None:
    png = tmp_path / "z.png"
    result = runner.invoke(
        app,
        ["report", "energy", "--site", "zhongwei", "--year", "2023", "--json", "--png", str(png)],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["site"] == "zhongwei" and len(data["months"]) == 12
    assert data["png"] == str(png) and png.exists()
    assert data["sources"]["zhongwei.wind.capacity_mw"].startswith("illustrative")


def test_report_energy_bad_site() -> None:
    result = runner.invoke(app, ["report", "energy", "--site", "atlantis"])
    assert result.exit_code == 2
    err = result.stderr
    assert "unknown site 'atlantis'" in err and "horinger" in err and "zhongwei" in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_report_energy_bad_year() -> None:
    result = runner.invoke(app, ["report", "energy", "--site", "horinger", "--year", "1800"])
    assert result.exit_code == 2
    assert "year" in result.stderr


def test_report_energy_unwritable_png(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(
        app, ["report", "energy", "--site", "horinger", "--png", str(blocker / "sub" / "h.png")]
    )
    assert result.exit_code == 2
    assert "png" in result.stderr and "Traceback" not in result.output
