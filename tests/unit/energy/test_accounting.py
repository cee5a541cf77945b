"""Per-lease energy and carbon records, certificates on the ledger, carbon statements."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suangu.core.energy._common import year_start_unix
from suangu.core.energy.accounting import (
    ATMOSPHERE,
    ISSUER,
    carbon_account,
    carbon_statement,
    certificate_account,
    energy_accounts,
    issue_certificates,
    lease_energy,
    lease_transfers,
)
from suangu.core.energy.carbon import EmissionFactor, grams
from suangu.core.energy.model import SiteYear
from suangu.core.ledger import AccountKind, Asset, CreateResult, Ledger
from suangu.core.types import Allocation, TimeGrid

GRID = TimeGrid(epoch=year_start_unix(2024, 8))
BEIJING = EmissionFactor("Beijing", 2022, 0.558, source="MEE 2024-12-26")


def alloc(slot: int, gpus: int = 8, buyer: str = "lab", order: str = "o1") -> Allocation:
    return Allocation(order, buyer, "h-h100", slot, gpus, 1200)


def test_lease_record(horinger: SiteYear) -> None:
    a = alloc(4800)
    r = lease_energy(a, 8 * 3600, "cloudvalley", horinger, GRID, "H100")
    expected = 8 * 0.49 * horinger.pue[4800] * 1000  # Wh
    assert r.energy_wh == round(expected)
    assert r.green_wh == round(expected * horinger.green_share[4800])
    assert r.energy_wh == r.green_wh + r.grid_wh
    assert r.certificates_wh == r.green_wh
    assert r.location_g == grams(r.grid_wh, 0.6849)
    assert r.market_g == r.location_g  # all green certified: market = location
    assert r.lease_id == "o1:h-h100:4800" and r.start_unix == GRID.slot_start(4800)
    assert "0.6849" in r.methods["location-based"]
    uncertified = lease_energy(a, 8 * 3600, "cloudvalley", horinger, GRID, "H100", certify=False)
    assert uncertified.certificates_wh == 0
    assert uncertified.market_g == grams(r.energy_wh, 0.6849) >= r.market_g
    # metered use is capped at the allocation
    capped = lease_energy(a, 10**9, "cloudvalley", horinger, GRID, "H100")
    assert capped.gpu_seconds == 8 * 3600 and capped.energy_wh == r.energy_wh
    half = lease_energy(a, 4 * 3600, "cloudvalley", horinger, GRID, "H100")
    assert abs(half.energy_wh * 2 - r.energy_wh) <= 1


@given(st.integers(0, 8783), st.integers(0, 64 * 3600), st.booleans())
@settings(max_examples=60, deadline=None)
def test_lease_sums_are_exact(horinger: SiteYear, slot: int, seconds: int, certify: bool) -> None:
    r = lease_energy(alloc(slot, 64), seconds, "p", horinger, GRID, "A800", certify=certify)
    assert r.energy_wh == r.green_wh + r.grid_wh
    assert 0 <= r.certificates_wh <= r.green_wh
    assert r.location_g <= r.market_g or certify


def test_certificates_and_carbon_on_the_ledger(horinger: SiteYear) -> None:
    ledger = Ledger()
    assert all(
        c is CreateResult.OK
        for c in ledger.create_accounts(energy_accounts(["cloudvalley"], ["lab", "ai2"]))
    )
    records = [
        lease_energy(alloc(s, 8, "lab", "o1"), 8 * 3600, "cloudvalley", horinger, GRID, "H100")
        for s in range(4800, 4824)
    ] + [
        lease_energy(alloc(s, 4, "ai2", "o2"), 3 * 3600, "cloudvalley", horinger, GRID, "H100")
        for s in range(4810, 4830)
    ]
    needed = sum(r.certificates_wh for r in records)
    issued = issue_certificates("issue:cloudvalley:2024-07", "cloudvalley", needed)
    assert ledger.create_transfers([issued], now=1) == [CreateResult.OK]
    for r in records:
        codes = ledger.create_transfers(lease_transfers(r), now=2)
        assert all(c is CreateResult.OK for c in codes), codes
        ledger.check_invariants()
    # resubmitting is idempotent
    again = ledger.create_transfers(lease_transfers(records[0]), now=3)
    assert set(again) <= {CreateResult.EXISTS}
    green = ledger.balances(Asset.KWH_GREEN)
    assert green[certificate_account(AccountKind.PROVIDER, "cloudvalley")] == 0
    lab = [r for r in records if r.buyer_id == "lab"]
    assert green[certificate_account(AccountKind.BUYER, "lab")] == sum(
        r.certificates_wh for r in lab
    )
    assert green[ISSUER] == -needed
    carbon = ledger.balances(Asset.GCO2)
    assert carbon[carbon_account("lab")] == sum(r.market_g for r in lab)
    assert carbon[ATMOSPHERE] == -sum(r.market_g for r in records)
    for asset in (Asset.KWH_GREEN, Asset.GCO2):
        assert sum(ledger.balances(asset).values()) == 0  # every ledger balances


def test_no_certificate_retired_twice(horinger: SiteYear) -> None:
    ledger = Ledger()
    ledger.create_accounts(energy_accounts(["p"], ["lab"]))
    share = horinger.green_share
    slot = int(np.flatnonzero((share > 0.3) & (share < 0.9))[0])  # partly green
    r = lease_energy(alloc(slot), 8 * 3600, "p", horinger, GRID, "H100")
    assert r.certificates_wh > 0 and r.market_g > 0
    ledger.create_transfers([issue_certificates("i1", "p", r.certificates_wh - 1)], now=1)
    codes = ledger.create_transfers(lease_transfers(r), now=2)
    assert codes[0] is CreateResult.EXCEEDS_CREDITS
    assert codes[1] is CreateResult.LINKED_EVENT_FAILED  # the carbon record is not applied
    assert ledger.balances(Asset.GCO2).get(carbon_account("lab"), 0) == 0
    ledger.check_invariants()
    fallback = lease_energy(alloc(slot), 8 * 3600, "p", horinger, GRID, "H100", certify=False)
    assert all(c is CreateResult.OK for c in ledger.create_transfers(lease_transfers(fallback), 3))
    assert ledger.balances(Asset.GCO2)[carbon_account("lab")] == fallback.market_g


def test_carbon_statement(horinger: SiteYear) -> None:
    records = [
        lease_energy(alloc(s, 8), 8 * 3600, "p", horinger, GRID, "H100") for s in range(4800, 4848)
    ] + [lease_energy(alloc(4800, 8, "other"), 8 * 3600, "p", horinger, GRID, "H100")]
    start, end = GRID.slot_start(4800), GRID.slot_start(4824)
    st_ = carbon_statement(records, "lab", start, end, home_factor=BEIJING)
    mine = [r for r in records if r.buyer_id == "lab" and r.slot < 4824]
    assert st_.leases == 24 and st_.gpu_hours == 24 * 8
    assert st_.energy_wh == sum(r.energy_wh for r in mine)
    assert st_.energy_wh == st_.green_wh + st_.grid_wh
    assert st_.market_g == sum(r.market_g for r in mine)
    assert st_.location_g == sum(r.location_g for r in mine)
    assert st_.avoided is not None
    assert st_.avoided.tonnes == pytest.approx(st_.energy_wh * 0.558 / 1e6 - st_.market_g / 1e6)
    assert "Beijing" in st_.avoided.label and "0.5580" in st_.avoided.label
    assert any("location-based" in m for m in st_.methods)
    assert any("market-based" in m for m in st_.methods)
    assert any(m.startswith("avoided: ") and "home_grid" in m for m in st_.methods)
    assert 0 < st_.green_share <= 1
    labels = [k for k, _ in st_.lines()]
    assert "CO2, market-based" in labels and "CO2 avoided vs home grid" in labels
    empty = carbon_statement(records, "nobody", start, end)
    assert empty.leases == 0 and empty.avoided is None and empty.green_share == 0


def test_metered_energy_uses_the_same_rule(horinger: SiteYear) -> None:
    """One rule: the simulator's nominal record is the record of its own energy metered."""
    from suangu.core.energy.accounting import lease_record, slot_energy

    a = alloc(4800)
    nominal = lease_energy(a, 8 * 3600, "p", horinger, GRID, "H100")
    e = slot_energy(horinger, GRID, 4800)
    metered = lease_record(
        a, 8 * 3600, "p", e, GRID, "H100", energy_wh=nominal.energy_wh, measured_wh=100
    )
    assert metered.green_wh == nominal.green_wh and metered.market_g == nominal.market_g
    assert (metered.measured_wh, metered.nominal_wh) == (100, nominal.energy_wh - 100)
    # A measured energy of its own: green = energy x the slot's PUE-weighted share, half up.
    other = lease_record(a, 8 * 3600, "p", e, GRID, "H100", energy_wh=5000, measured_wh=5000)
    assert other.green_wh == round(5000 * float(horinger.green_share[4800]))
    assert other.nominal_wh == 0 and other.energy_wh == other.green_wh + other.grid_wh
    with pytest.raises(ValueError, match="measured_wh"):
        lease_record(a, 8 * 3600, "p", e, GRID, "H100", energy_wh=10, measured_wh=11)


def test_certificates_stay_within_the_sites_green_room(horinger: SiteYear) -> None:
    from suangu.core.energy.accounting import certify_within

    records = [
        lease_energy(alloc(4800, 8, order=f"o{k}"), 8 * 3600, "p", horinger, GRID, "H100")
        for k in range(3)
    ]
    site = records[0].site_id
    each = records[0].certificates_wh
    assert each > 0
    room: dict[str, int | None] = {site: 2 * each}
    out, left = certify_within(records, room)
    assert [r.certificates_wh for r in out] == [each, each, 0] and left == 1
    assert room[site] == 0
    assert out[2].market_g == grams(out[2].energy_wh, out[2].residual_t_per_mwh)
    uncapped, none_left = certify_within(records, {})
    assert uncapped == records and none_left == 0
