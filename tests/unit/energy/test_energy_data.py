"""The packaged energy data: complete, sourced, and refused when a number has no source."""

from __future__ import annotations

from importlib import resources

import pytest

from suangu.sim.energy import (
    FACTORS_FILE,
    HUBS_FILE,
    SITES_FILE,
    EnergyData,
    energy_report,
    parse_energy_data,
)
from suangu.sim.errors import ScenarioError

HUBS = {
    "horinger", "qingyang", "zhongwei", "guian", "zhangjiakou",
    "yrd_qingpu", "wuhu", "shaoguan", "tianfu", "chongqing",
}  # fmt: skip


def text(name: str) -> str:
    return (resources.files("suangu") / "data" / "energy" / name).read_text(encoding="utf-8")


def test_every_hub_site_is_packaged(energy_data: EnergyData) -> None:
    assert set(energy_data.sites) == HUBS
    h = energy_data.site("horinger")
    assert (h.lat, h.lon, h.province) == (40.55, 111.85, "Inner Mongolia")
    assert h.tariff.prices["flat"] == 0.42 and h.tariff.prices["valley"] == 0.21
    assert "1093" in h.sources["tariff_ratios.peak"]


def test_every_number_has_a_source(energy_data: EnergyData) -> None:
    for site in energy_data.sites.values():
        for key in (
            "altitude_m", "it_load_mw", "green_price_yuan_per_kwh", "linke_turbidity",
            "solar.capacity_mw", "solar.capacity_factor", "wind.capacity_mw",
            "wind.mean_speed_ms", "wind.weibull_k", "storage.power_mw", "storage.energy_mwh",
            "storage.round_trip_efficiency", "climate.mean_c", "pue_model.floor", "tariff.flat",
        ):  # fmt: skip
            assert site.sources[f"{site.site_id}.{key}"].strip(), (site.site_id, key)
        assert all(v.strip() for v in site.sources.values())
        assert site.tariff.source
    assert "published project" in energy_data.site("horinger").sources["horinger.wind.capacity_mw"]
    coal = energy_data.methods["coal_displacement"]
    assert coal.t_per_mwh == 0.836 and "635,000" in coal.source


def test_number_without_source_is_refused() -> None:
    broken = text(SITES_FILE).replace(
        'altitude_m: {value: 1100, source: "estimate: Horinger plain near Hohhot, about '
        '1,050-1,150 m"}',
        "altitude_m: 1100",
    )
    assert broken != text(SITES_FILE)
    with pytest.raises(ScenarioError, match=r"horinger\.altitude_m.*source"):
        parse_energy_data(broken, text(FACTORS_FILE), text(HUBS_FILE))


def test_bad_value_names_the_site() -> None:
    broken = text(SITES_FILE).replace("capacity_mw: {value: 300,", "capacity_mw: {value: -300,")
    with pytest.raises(ScenarioError, match=r"sites\.horinger\.wind\.capacity_mw"):
        parse_energy_data(broken, text(FACTORS_FILE), text(HUBS_FILE))


def test_report(energy_data: EnergyData) -> None:
    r = energy_report("horinger", 2024, data=energy_data)
    assert len(r.months) == 12
    d = r.to_dict()
    assert d["total"]["green_share"] > 0.8
    names = [a["method"] for a in d["avoided_co2"]]
    assert names == ["grid_average", "coal_displacement"]
    assert "location-based" in d["co2_method"] and "0.6849" in d["co2_method"]
    assert any("coal_displacement" in n for n in d["notes"])
