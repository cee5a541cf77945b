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
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass, replace

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
from suangu.core.energy.model import DEFAULT_GPU_UTILISATION, SiteYear, gpu_it_kw
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
    #: Wh of ``energy_wh`` from measured readings (NVML, Slurm); the rest is nominal.
    measured_wh: int = 0

    @property
    def nominal_wh(self) -> int:
        return self.energy_wh - self.measured_wh

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


@dataclass(frozen=True, slots=True)
class SlotEnergy:
    """A site's energy in the hours of one market slot: what a lease's record needs.

    ``pue`` and ``green_share`` have one value per hour of the slot; ``green_room_wh`` is the
    green energy the site used in those hours (the most certificates the slot's leases may
    retire; ``None``: not capped, e.g. a provider's declared green-share series).
    """

    site_id: str
    pue: tuple[float, ...]
    green_share: tuple[float, ...]
    grid_factor: EmissionFactor
    gpu_utilisation: float = DEFAULT_GPU_UTILISATION
    green_room_wh: int | None = None

    def __post_init__(self) -> None:
        require(bool(self.pue), "pue", "needs one value per hour of the slot", "give the PUE")
        require(
            len(self.pue) == len(self.green_share),
            "green_share",
            f"has {len(self.green_share)} values for {len(self.pue)} hours",
            "one value per hour of the slot",
        )
        require(
            all(1.0 <= p <= 3.0 for p in self.pue), "pue", "must be between 1 and 3", "e.g. 1.2"
        )
        require(
            all(0.0 <= g <= 1.0 for g in self.green_share),
            "green_share",
            "must be between 0 and 1",
            "a share of the facility energy",
        )

    @property
    def weighted_share(self) -> float:
        """The green share of energy spread evenly over the slot's GPU-hours (PUE-weighted)."""
        return sum(p * g for p, g in zip(self.pue, self.green_share, strict=True)) / sum(self.pue)


def slot_energy(site_year: SiteYear, grid: TimeGrid, slot: int) -> SlotEnergy:
    """The modelled :class:`SlotEnergy` of ``site_year``'s site in market slot ``slot``."""
    hours = grid.slot_hours
    start = site_year.hour_index(grid.slot_start(slot))
    require(start + hours <= site_year.hours, "slot", "runs past the year", "next year")
    green_mwh = float(site_year.green_used[start : start + hours].sum())
    return SlotEnergy(
        site_id=site_year.params.site_id,
        pue=tuple(float(x) for x in site_year.pue[start : start + hours]),
        green_share=tuple(float(x) for x in site_year.green_share[start : start + hours]),
        grid_factor=site_year.params.grid_factor,
        gpu_utilisation=site_year.params.gpu_utilisation,
        green_room_wh=int(green_mwh * 1_000_000),  # Wh, rounded down
    )


def nominal_energy_wh(gpu_seconds: int, gpu_class: str, energy: SlotEnergy) -> int:
    """Facility Wh of ``gpu_seconds`` spread evenly over the slot's hours, from board power x
    utilisation x each hour's PUE (an estimate: what a lease without a metered energy gets)."""
    hours = len(energy.pue)
    wh_per_hour = (
        gpu_seconds / hours / SECONDS_PER_HOUR * gpu_it_kw(gpu_class, energy.gpu_utilisation) * 1e3
    )
    return math.floor(wh_per_hour * sum(energy.pue) + 0.5)


def lease_record(
    allocation: Allocation,
    gpu_seconds: int,
    provider_id: str,
    energy: SlotEnergy,
    grid: TimeGrid,
    gpu_class: str,
    *,
    energy_wh: int | None = None,
    measured_wh: int = 0,
    lease: str | None = None,
    certify: bool = True,
    residual_t_per_mwh: float | None = None,
) -> LeaseEnergy:
    """The energy and carbon record of a lease: the one rule (simulation and service alike).

    ``energy_wh``: the facility Wh metered (``None``: :func:`nominal_energy_wh` of the
    GPU-seconds); ``measured_wh`` of it came from meters (NVML, Slurm), the rest is nominal.
    ``green_wh`` = energy x the slot's PUE-weighted green share, rounded half up; the rest is
    grid. ``certify``: retire certificates for all green Wh; ``residual_t_per_mwh`` defaults
    to the grid factor. ``lease``: the record's id (default :func:`lease_id`).
    """
    require(gpu_seconds >= 0, "gpu_seconds", "must be >= 0", "metered GPU-seconds")
    require(len(energy.pue) == grid.slot_hours, "pue", "one value per hour", "of the slot")
    used = min(gpu_seconds, allocation.gpus * grid.slot_hours * SECONDS_PER_HOUR)
    if energy_wh is None:
        energy_wh = nominal_energy_wh(used, gpu_class, energy)
    require(energy_wh >= 0, "energy_wh", "must be >= 0", "metered facility Wh")
    require(
        0 <= measured_wh <= energy_wh,
        "measured_wh",
        "must be between 0 and energy_wh",
        "the metered part of the energy",
    )
    green_wh = min(energy_wh, math.floor(energy_wh * energy.weighted_share + 0.5))
    grid_wh = energy_wh - green_wh
    certs = green_wh if certify else 0
    factor = energy.grid_factor
    residual = factor.t_per_mwh if residual_t_per_mwh is None else residual_t_per_mwh
    return LeaseEnergy(
        lease_id=lease_id(allocation) if lease is None else lease,
        order_id=allocation.order_id,
        buyer_id=allocation.buyer_id,
        provider_id=provider_id,
        pool_id=allocation.pool_id,
        site_id=energy.site_id,
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
        measured_wh=measured_wh,
    )


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
    """The record of ``allocation`` with ``gpu_seconds`` metered (capped at its size) and its
    nominal energy (:func:`lease_record` on the site-year's :func:`slot_energy`)."""
    return lease_record(
        allocation,
        gpu_seconds,
        provider_id,
        slot_energy(site_year, grid, allocation.slot),
        grid,
        gpu_class,
        certify=certify,
        residual_t_per_mwh=residual_t_per_mwh,
    )


def uncertified(record: LeaseEnergy) -> LeaseEnergy:
    """``record`` without certificates: its green Wh count at the residual factor."""
    return replace(
        record,
        certificates_wh=0,
        market_g=market_based_g(record.energy_wh, 0, record.residual_t_per_mwh),
    )


def certify_within(
    records: Iterable[LeaseEnergy], room_wh: MutableMapping[str, int | None]
) -> tuple[list[LeaseEnergy], int]:
    """Certify records, in the order given, within each site's green room (site id -> Wh
    still certifiable, reduced here; ``None`` or missing: not capped). A record whose
    certificates would exceed its site's room is recorded :func:`uncertified`. Returns the
    records and how many were left uncertified."""
    out: list[LeaseEnergy] = []
    left = 0
    for rec in records:
        room = room_wh.get(rec.site_id)
        if room is not None:
            if rec.certificates_wh > room:
                rec = uncertified(rec)
                left += 1
            room_wh[rec.site_id] = room - rec.certificates_wh
        out.append(rec)
    return out, left


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
    #: Wh of ``energy_wh`` from measured readings (NVML, Slurm) and from nominal estimates.
    measured_wh: int = 0
    nominal_wh: int = 0

    @property
    def green_share(self) -> float:
        return self.green_wh / self.energy_wh if self.energy_wh else 0.0

    def lines(self) -> list[tuple[str, str]]:
        """``(what, value)`` rows for a printed statement."""
        rows = [
            ("leases", f"{self.leases}"),
            ("GPU-hours", f"{self.gpu_hours:,.2f}"),
            ("energy (facility)", f"{self.energy_wh / 1000:,.3f} kWh"),
            ("  measured (NVML, Slurm)", f"{self.measured_wh / 1000:,.3f} kWh"),
            ("  nominal (board power x time)", f"{self.nominal_wh / 1000:,.3f} kWh"),
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
        measured_wh=sum(r.measured_wh for r in mine),
        nominal_wh=sum(r.nominal_wh for r in mine),
    )
