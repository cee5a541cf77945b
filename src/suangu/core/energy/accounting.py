"""Energy and carbon accounting per lease, green certificates and carbon statements.

Per lease (one allocation: an order's GPUs in one pool-slot) and its metered GPU-seconds:

* ``energy_wh`` (facility) = GPU-hours x board power x utilisation x PUE of the slot's hours;
* ``green_wh`` = energy x the site's modelled green share in those hours, ``grid_wh`` the rest
  (integers that add up exactly: ``energy_wh = green_wh + grid_wh``);
* ``location_g`` = grid Wh x the province's grid-average factor (location-based);
* ``market_g`` = (energy Wh - certificates retired for it) x the residual factor
  (market-based; see :mod:`suangu.core.energy.carbon`).

Ledgers (``suangu.core.ledger``; units Wh and g)

* ``kWh-green``: the certificate issuer (``external:issuer:kWh-green``) issues a provider's
  green generation to ``provider:<id>:kWh-green`` (:func:`issue_certificates`); a lease retires
  its green Wh from the provider to the buyer's retirement register ``buyer:<id>:kWh-green``
  (code ``green_certificate_retire``; Suangu never debits that register, so its balance is
  what has been retired to the buyer). The provider's account cannot go negative, so no
  certificate is retired twice.
* ``gCO2``: the lease's market-based grams are recorded from ``external:atmosphere:gCO2`` to
  ``buyer:<id>:gCO2`` (code ``carbon_record``); the buyer's balance is its market-based
  footprint on Suangu.

The two transfers of a lease are one linked chain (:func:`lease_transfers`): if the provider
lacks certificates, neither is applied; redo the record with ``certify=False`` (market-based
then counts the green Wh at the residual factor).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from suangu.core.energy._common import require
from suangu.core.energy.carbon import (
    AvoidanceMethod,
    AvoidedCO2,
    CarbonMethod,
    EmissionFactor,
    avoided_co2,
    location_based_g,
    market_based_g,
)
from suangu.core.energy.model import SiteYear, gpu_it_kw
from suangu.core.ledger import (
    Account,
    AccountFlags,
    AccountKind,
    Asset,
    Transfer,
    TransferCode,
    linked,
    transfer,
)
from suangu.core.types import SECONDS_PER_HOUR, Allocation, TimeGrid

ISSUER = "external:issuer:kWh-green"
ATMOSPHERE = "external:atmosphere:gCO2"


def certificate_account(kind: AccountKind, member_id: str) -> str:
    return f"{kind}:{member_id}:{Asset.KWH_GREEN}"


def carbon_account(buyer_id: str) -> str:
    return f"{AccountKind.BUYER}:{buyer_id}:{Asset.GCO2}"


def energy_accounts(provider_ids: Iterable[str], buyer_ids: Iterable[str]) -> list[Account]:
    """The kWh-green and gCO2 accounts of these providers and buyers, and the external ones."""
    out = [
        Account(id=ISSUER, ledger=Asset.KWH_GREEN, kind=AccountKind.EXTERNAL, owner="issuer"),
        Account(id=ATMOSPHERE, ledger=Asset.GCO2, kind=AccountKind.EXTERNAL, owner="atmosphere"),
    ]
    for p in sorted(set(provider_ids)):
        out.append(
            Account(
                id=certificate_account(AccountKind.PROVIDER, p),
                ledger=Asset.KWH_GREEN,
                kind=AccountKind.PROVIDER,
                owner=p,
                flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
            )
        )
    for b in sorted(set(buyer_ids)):
        out.append(
            Account(
                id=certificate_account(AccountKind.BUYER, b),
                ledger=Asset.KWH_GREEN,
                kind=AccountKind.BUYER,
                owner=b,
            )
        )
        out.append(
            Account(id=carbon_account(b), ledger=Asset.GCO2, kind=AccountKind.BUYER, owner=b)
        )
    return out


@dataclass(frozen=True, slots=True)
class LeaseEnergy:
    """The energy and carbon record of one lease (integers in Wh and g)."""

    lease_id: str
    order_id: str
    buyer_id: str
    provider_id: str
    pool_id: str
    site_id: str
    gpu_class: str
    slot: int
    start_unix: int
    gpu_seconds: int
    energy_wh: int
    green_wh: int
    grid_wh: int
    certificates_wh: int
    location_g: int
    market_g: int
    grid_factor: EmissionFactor
    residual_t_per_mwh: float

    def __post_init__(self) -> None:
        require(
            self.energy_wh == self.green_wh + self.grid_wh,
            "energy_wh",
            "must equal green_wh + grid_wh",
            "build records with lease_energy",
        )
        require(
            0 <= self.certificates_wh <= self.energy_wh,
            "certificates_wh",
            "must be between 0 and energy_wh",
            "retire at most the lease's energy",
        )

    @property
    def methods(self) -> dict[str, str]:
        """What each carbon figure means (for auditors)."""
        return {
            CarbonMethod.LOCATION: f"grid Wh x {self.grid_factor.label}",
            CarbonMethod.MARKET: (
                f"(energy - {self.certificates_wh} Wh certificates retired) x residual "
                f"{self.residual_t_per_mwh:.4f} t/MWh"
            ),
        }


def lease_id(allocation: Allocation) -> str:
    return f"{allocation.order_id}:{allocation.pool_id}:{allocation.slot}"


def lease_energy(
    allocation: Allocation,
    gpu_seconds: int,
    provider_id: str,
    site_year: SiteYear,
    grid: TimeGrid,
    gpu_class: str,
    *,
    certify: bool = True,
    residual_t_per_mwh: float | None = None,
) -> LeaseEnergy:
    """The record of ``allocation`` with ``gpu_seconds`` metered (capped at its size).

    Metered seconds are spread evenly over the hours of the slot. ``certify``: retire
    certificates for all green Wh; ``residual_t_per_mwh`` defaults to the grid factor.
    """
    require(gpu_seconds >= 0, "gpu_seconds", "must be >= 0", "metered GPU-seconds")
    hours = grid.slot_hours
    used = min(gpu_seconds, allocation.gpus * hours * SECONDS_PER_HOUR)
    start = site_year.hour_index(grid.slot_start(allocation.slot))
    require(start + hours <= site_year.hours, "slot", "runs past the year", "next year")
    pue = site_year.pue[start : start + hours]
    share = site_year.green_share[start : start + hours]
    wh_per_hour = (
        used
        / hours
        / SECONDS_PER_HOUR
        * gpu_it_kw(gpu_class, site_year.params.gpu_utilisation)
        * 1000.0
    )
    energy_f = float((wh_per_hour * pue).sum())
    green_f = float((wh_per_hour * pue * share).sum())
    energy_wh = math.floor(energy_f + 0.5)
    green_wh = min(energy_wh, math.floor(green_f + 0.5))
    grid_wh = energy_wh - green_wh
    certs = green_wh if certify else 0
    factor = site_year.params.grid_factor
    residual = factor.t_per_mwh if residual_t_per_mwh is None else residual_t_per_mwh
    return LeaseEnergy(
        lease_id=lease_id(allocation),
        order_id=allocation.order_id,
        buyer_id=allocation.buyer_id,
        provider_id=provider_id,
        pool_id=allocation.pool_id,
        site_id=site_year.params.site_id,
        gpu_class=gpu_class,
        slot=allocation.slot,
        start_unix=grid.slot_start(allocation.slot),
        gpu_seconds=used,
        energy_wh=energy_wh,
        green_wh=green_wh,
        grid_wh=grid_wh,
        certificates_wh=certs,
        location_g=location_based_g(grid_wh, factor),
        market_g=market_based_g(energy_wh, certs, residual),
        grid_factor=factor,
        residual_t_per_mwh=residual,
    )


def issue_certificates(
    transfer_id: str, provider_id: str, wh: int, *, user_data: str = ""
) -> Transfer:
    """Issue ``wh`` of green certificates to a provider (from its metered green generation)."""
    return transfer(
        transfer_id,
        ISSUER,
        certificate_account(AccountKind.PROVIDER, provider_id),
        wh,
        Asset.KWH_GREEN,
        TransferCode.GREEN_CERTIFICATE_ISSUE,
        user_data=user_data,
    )


def lease_transfers(record: LeaseEnergy) -> list[Transfer]:
    """Retire the lease's certificates to the buyer and record its market-based grams.

    One linked chain (ids ``retire:<lease>`` and ``carbon:<lease>``; zero amounts skipped), so
    resubmitting is idempotent.
    """
    chain = []
    if record.certificates_wh:
        chain.append(
            transfer(
                f"retire:{record.lease_id}",
                certificate_account(AccountKind.PROVIDER, record.provider_id),
                certificate_account(AccountKind.BUYER, record.buyer_id),
                record.certificates_wh,
                Asset.KWH_GREEN,
                TransferCode.GREEN_CERTIFICATE_RETIRE,
                user_data=record.lease_id,
            )
        )
    if record.market_g:
        chain.append(
            transfer(
                f"carbon:{record.lease_id}",
                ATMOSPHERE,
                carbon_account(record.buyer_id),
                record.market_g,
                Asset.GCO2,
                TransferCode.CARBON_RECORD,
                user_data=record.lease_id,
            )
        )
    return linked(chain)


@dataclass(frozen=True, slots=True)
class CarbonStatement:
    """A buyer's energy and carbon over ``[start_unix, end_unix)``, with its methods named."""

    buyer_id: str
    start_unix: int
    end_unix: int
    leases: int
    gpu_hours: float
    energy_wh: int
    green_wh: int
    grid_wh: int
    certificates_wh: int
    location_g: int
    market_g: int
    avoided: AvoidedCO2 | None
    methods: tuple[str, ...]

    @property
    def green_share(self) -> float:
        return self.green_wh / self.energy_wh if self.energy_wh else 0.0

    def lines(self) -> list[tuple[str, str]]:
        """``(what, value)`` rows for a printed statement."""
        rows = [
            ("leases", f"{self.leases}"),
            ("GPU-hours", f"{self.gpu_hours:,.2f}"),
            ("energy (facility)", f"{self.energy_wh / 1000:,.3f} kWh"),
            ("green (site's own wind and solar)", f"{self.green_wh / 1000:,.3f} kWh"),
            ("grid import", f"{self.grid_wh / 1000:,.3f} kWh"),
            ("green certificates retired to buyer", f"{self.certificates_wh / 1000:,.3f} kWh"),
            ("CO2, location-based", f"{self.location_g / 1000:,.3f} kg"),
            ("CO2, market-based", f"{self.market_g / 1000:,.3f} kg"),
        ]
        if self.avoided is not None:
            rows.append(("CO2 avoided vs home grid", f"{self.avoided.tonnes * 1000:,.3f} kg"))
        return rows


def carbon_statement(
    records: Sequence[LeaseEnergy],
    buyer_id: str,
    start_unix: int,
    end_unix: int,
    home_factor: EmissionFactor | None = None,
) -> CarbonStatement:
    """The statement of ``buyer_id`` for leases starting in ``[start_unix, end_unix)``.

    ``home_factor``: the grid-average factor of the buyer's home grid; avoided CO2 is then the
    energy x that factor less the market-based footprint (what running at home would have
    emitted, at the same energy, minus what it did emit).
    """
    require(end_unix > start_unix, "end_unix", "must be after start_unix", "a period")
    mine = [r for r in records if r.buyer_id == buyer_id and start_unix <= r.start_unix < end_unix]
    energy = sum(r.energy_wh for r in mine)
    market = sum(r.market_g for r in mine)
    methods = [
        "location-based: grid import x the site province's grid-average factor "
        "(direct green supply counts 0): " + "; ".join(sorted({r.grid_factor.label for r in mine})),
        "market-based: energy not covered by retired green certificates x residual factor "
        "(provincial grid average; China publishes no residual mix)",
    ]
    avoided = None
    if home_factor is not None:
        method = AvoidanceMethod(
            "home_grid",
            home_factor.t_per_mwh,
            f"buyer's home grid: {home_factor.label}, less actual market-based",
            home_factor.source,
        )
        avoided = avoided_co2(energy / 1e6, method, actual_tonnes=market / 1e6)
        methods.append(f"avoided: {avoided.label}")
    return CarbonStatement(
        buyer_id=buyer_id,
        start_unix=start_unix,
        end_unix=end_unix,
        leases=len(mine),
        gpu_hours=sum(r.gpu_seconds for r in mine) / SECONDS_PER_HOUR,
        energy_wh=energy,
        green_wh=sum(r.green_wh for r in mine),
        grid_wh=sum(r.grid_wh for r in mine),
        certificates_wh=sum(r.certificates_wh for r in mine),
        location_g=sum(r.location_g for r in mine),
        market_g=market,
        avoided=avoided,
        methods=tuple(methods),
    )
