"""Energy and carbon: green supply, storage, PUE, tariffs, carbon accounting (pure core).

Modules: :mod:`solar` (pvlib clear sky x seeded clearness), :mod:`wind` (Weibull speed process
and power curve), :mod:`storage` (greedy dispatch maximising green energy used),
:mod:`climate` (temperature and PUE), :mod:`tariff` (time-of-use prices), :mod:`model`
(site-year simulation), :mod:`carbon` (factors and methods), :mod:`hooks` (market hooks) and
:mod:`accounting` (per-lease records, certificates, carbon statements).
"""

from suangu.core.energy.carbon import (
    AvoidanceMethod,
    AvoidedCO2,
    CarbonMethod,
    EmissionFactor,
    FactorTable,
    avoided_co2,
)
from suangu.core.energy.climate import ClimateParams, PueModel
from suangu.core.energy.model import (
    DEFAULT_GPU_UTILISATION,
    MonthRow,
    SiteEnergyParams,
    SiteYear,
    gpu_it_kw,
    simulate_site_year,
    simulate_sites,
)
from suangu.core.energy.solar import SolarParams
from suangu.core.energy.storage import Dispatch, StorageParams, dispatch
from suangu.core.energy.tariff import Period, TouTariff
from suangu.core.energy.wind import TurbineCurve, WindParams

__all__ = [
    "DEFAULT_GPU_UTILISATION",
    "AvoidanceMethod",
    "AvoidedCO2",
    "CarbonMethod",
    "ClimateParams",
    "Dispatch",
    "EmissionFactor",
    "FactorTable",
    "MonthRow",
    "Period",
    "PueModel",
    "SiteEnergyParams",
    "SiteYear",
    "SolarParams",
    "StorageParams",
    "TouTariff",
    "TurbineCurve",
    "WindParams",
    "avoided_co2",
    "dispatch",
    "gpu_it_kw",
    "simulate_site_year",
    "simulate_sites",
]
