"""Shared fixtures: the packaged energy data and one simulated Horinger year."""

from __future__ import annotations

import pytest

from suangu.core.energy.model import SiteYear, simulate_site_year
from suangu.sim.energy import EnergyData, load_energy_data


@pytest.fixture(scope="session")
def energy_data() -> EnergyData:
    return load_energy_data()


@pytest.fixture(scope="session")
def horinger(energy_data: EnergyData) -> SiteYear:
    return simulate_site_year(energy_data.site("horinger"), 2024, seed=0)


@pytest.fixture(scope="session")
def zhongwei(energy_data: EnergyData) -> SiteYear:
    return simulate_site_year(energy_data.site("zhongwei"), 2024, seed=0)
