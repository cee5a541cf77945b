"""Green certificates, carbon statements and energy declarations through the API, on SQLite
and PostgreSQL: certificates and statements balance with the metered energy and the
``kWh-green`` and ``gCO2`` ledgers; an uploaded energy profile changes a site's green share;
``reserve: auto`` is the reserve that ``reserve_from_energy`` computes; bad uploads are
refused whole with the field and a fix."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console

from suangu.api.green import NATIONAL_FACTOR, declared_params, province_factor
from suangu.commands.carbon import statement_tables
from suangu.core.energy import hooks
from suangu.core.energy.accounting import carbon_account, certificate_account
from suangu.core.ledger import AccountKind, Asset
from suangu.core.types import Offer, Pool
from suangu.sim.energy import EnergyData, load_energy_data, site_years_for_span
from suangu.store.models import Role
from suangu.store.repositories import Capacity

from .conftest import EPOCH, NOW_SLOT, SITES, Api

HOUR = 3600


def _setup(api: Api) -> None:
    """Members, the two providers' sites and pools with offers, two buyers with money."""
    for m, role in (
        ("op", Role.OPERATOR),
        ("aud", Role.AUDITOR),
        ("prov-a", Role.PROVIDER),
        ("prov-b", Role.PROVIDER),
        ("buy-a", Role.BUYER),
        ("buy-b", Role.BUYER),
    ):
        api.member(m, role)
    now = api.clock.now()
    with api.db.session_scope() as s:
        cap = Capacity(s)
        for prov, site in SITES.items():
            cap.add_site(site, prov)
            pool = Pool(f"{site.id}-h100", site.id, "H100")
            cap.add_pool(pool)
            cap.add_offer(
                Offer.over(f"offer-{prov}", prov, pool.id, NOW_SLOT, NOW_SLOT + 48, 8, 1000), now
            )
    for b in ("buy-a", "buy-b"):
        r = api.call(
            "POST", "/deposits", "op", json={"id": f"d-{b}", "member_id": b, "amount_fen": 10**7}
        )
        assert r.status_code == 201, r.text


def _order(api: Api, order_id: str, buyer: str, **extra: Any) -> None:
    body = {
        "id": order_id,
        "kind": "batch",
        "gpus": 2,
        "release_slot": NOW_SLOT,
        "deadline_slot": NOW_SLOT + 4,
        "limit_fen": 2000,
        "gpu_hours": 4,
        "regions": ["inner-mongolia"],
        **extra,
    }
    r = api.call("POST", "/orders", buyer, json=body)
    assert r.status_code == 201, r.text


def _series_csv(shares: dict[int, float]) -> bytes:
    lines = ["hour,green_share"] + [f"{EPOCH + s * HOUR},{v}" for s, v in sorted(shares.items())]
    return ("\n".join(lines) + "\n").encode()


def _upload(api: Api, site: str, body: bytes, who: str = "prov-a") -> Any:
    return api.call(
        "PUT",
        f"/sites/{site}/energy/series",
        who,
        content=body,
        headers={"Content-Type": "text/csv"},
    )


def _balance(api: Api, account_id: str) -> int:
    a = api.client.app.state.ctx.ledger.lookup_account(account_id)
    return 0 if a is None else a.credits_posted - a.debits_posted


def test_certificates_and_statements_balance_with_metering_and_ledger(api: Api) -> None:
    _setup(api)
    shares = {NOW_SLOT + k: 0.25 * (k + 1) for k in range(4)}  # 0.25, 0.5, 0.75, 1.0
    r = _upload(api, "site-a", _series_csv(shares))
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "series" and r.json()["series_hours"] == 4
    _order(api, "ord-a", "buy-a")
    r = api.call("POST", "/clearings", "op", json={"id": "clr-1"})
    assert r.status_code == 201 and r.json()["n_allocations"] >= 1, r.text
    leases = api.call("GET", "/leases?order_id=buy-a~ord-a", "prov-a").json()["items"]
    assert len(leases) >= 2  # one measured, one nominal below
    last = max(x["slot"] for x in leases)
    api.clock.set(EPOCH + (last + 1) * HOUR + 30)
    expected: dict[str, int] = {}
    for k, lease in enumerate(sorted(leases, key=lambda x: x["id"])):
        start = EPOCH + lease["slot"] * HOUR
        body: dict[str, Any] = {
            "id": "final",
            "interval_start": start,
            "interval_end": start + HOUR,
            "gpu_seconds": lease["gpus"] * HOUR,
            "final": True,
        }
        if k == 0:  # measured by NVML, with its energy
            body |= {"source": "nvml", "energy_wh": 1234 * lease["gpus"]}
            expected[lease["id"]] = 1234 * lease["gpus"]
        else:  # nominal, no energy sent: the exchange estimates it
            expected[lease["id"]] = -1
        r = api.call("POST", f"/leases/{lease['id']}/readings", "prov-a", json=body)
        assert r.status_code == 201, r.text
    assert r.json()["settled"] is True

    st = api.call("GET", "/buyers/buy-a/carbon-statement", "buy-a").json()
    records = {x["lease_id"]: x for x in st["lease_records"]}
    assert set(records) == {x["id"] for x in leases}
    factor = province_factor("Inner Mongolia")
    for lease in leases:
        rec = records[lease["id"]]
        if expected[lease["id"]] >= 0:
            assert rec["energy_wh"] == rec["measured_wh"] == expected[lease["id"]]
        else:  # nominal: H100 board power 700 W x 0.7 x PUE 1.15 per GPU-hour
            assert rec["measured_wh"] == 0
            assert rec["energy_wh"] == math.floor(lease["gpus"] * 700 * 0.7 * 1.15 + 0.5)
        share = shares[lease["slot"]]
        assert rec["green_wh"] == math.floor(rec["energy_wh"] * share + 0.5)
        assert rec["certificates_wh"] == rec["green_wh"]  # a series is not capped
        grid = rec["energy_wh"] - rec["green_wh"]
        assert rec["co2_location_g"] == math.floor(grid * factor.t_per_mwh + 0.5)
        assert rec["co2_market_g"] == rec["co2_location_g"]  # all green Wh certified
        assert rec["green_basis"] == "series"
    # Totals: the records, the measured/nominal split, the breakdowns and the ledgers agree.
    total = sum(x["energy_wh"] for x in records.values())
    assert st["energy_wh"] == total == st["measured_wh"] + st["nominal_wh"]
    assert st["measured_wh"] == sum(v for v in expected.values() if v >= 0)
    assert sum(x["energy_wh"] for x in st["sites"]) == total
    assert sum(x["co2_market_g"] for x in st["months"]) == st["co2_market_g"]
    retired = _balance(api, certificate_account(AccountKind.BUYER, "buy-a"))
    assert st["certificates_wh"] == retired == st["ledger"]["certificates_retired_wh"] > 0
    assert st["co2_market_g"] == _balance(api, carbon_account("buy-a"))
    assert st["co2_location_g"] >= st["co2_market_g"]
    # The provider holds nothing: every certificate issued to it was retired to the buyer.
    certs = api.call("GET", "/providers/prov-a/certificates", "prov-a").json()
    assert certs["certificates_issued_wh"] == retired
    assert _balance(api, certificate_account(AccountKind.PROVIDER, "prov-a")) == 0
    ledger = api.client.app.state.ctx.ledger
    ledger.check_invariants()
    assert sum(ledger.balances(Asset.KWH_GREEN).values()) == 0
    # The CLI's tables show the same figures, per site.
    console = Console(record=True, width=200)
    for table in statement_tables(st):
        console.print(table)
    text = console.export_text()
    assert "site-a" in text and f"{st['certificates_wh'] / 1000:,.3f}" in text
    # A period without leases is empty; the buyer's statement is sealed from others.
    empty = api.call(
        "GET", "/buyers/buy-a/carbon-statement?from=2020-01-01&to=2020-02-01", "aud"
    ).json()
    assert empty["energy_wh"] == 0 and empty["lease_records"] == []
    assert api.call("GET", "/buyers/buy-a/carbon-statement", "buy-b").status_code == 404
    assert api.call("GET", "/buyers/buy-a/carbon-statement", "prov-a").status_code == 403
    # Booking is once: the clearing loop's sweep finds nothing more to book.
    api.client.app.state.clearing_loop.tick()
    again = api.call("GET", "/buyers/buy-a/carbon-statement", "op").json()
    assert again["energy_wh"] == st["energy_wh"] and again["certificates_wh"] == retired


def test_an_uploaded_profile_changes_the_sites_green_share(api: Api) -> None:
    _setup(api)
    before = api.call("GET", f"/sites/site-a/energy?first_slot={NOW_SLOT}&n_slots=4", "buy-a")
    assert before.status_code == 200, before.text
    assert before.json()["basis"] == "none" and before.json()["declaration"] is None
    assert {x["green_share"] for x in before.json()["slots"]} == {0.0}
    # A green order cannot clear at a site without a green share...
    _order(api, "ord-green", "buy-a", min_green_share=0.6)
    r = api.call("POST", "/clearings", "op", json={"id": "clr-before"})
    assert r.status_code == 201 and r.json()["n_allocations"] == 0, r.text
    # ... until its provider uploads the site's hourly green share.
    series = {NOW_SLOT + k: 0.8 for k in range(4)}
    assert _upload(api, "site-a", _series_csv(series)).status_code == 200
    after = api.call("GET", f"/sites/site-a/energy?first_slot={NOW_SLOT}&n_slots=5", "buy-a")
    body = after.json()
    assert body["basis"] == "series" and body["declaration"]["series_hours"] == 4
    assert [x["green_share"] for x in body["slots"]] == [0.8, 0.8, 0.8, 0.8, 0.0]
    r = api.call("POST", "/clearings", "op", json={"id": "clr-after"})
    assert r.status_code == 201 and r.json()["n_allocations"] >= 1, r.text
    # Capacities replace the series: the site is then modelled hour by hour.
    r = api.call(
        "PUT",
        "/sites/site-a/energy",
        "prov-a",
        json={"capacities": {"it_load_mw": 10, "wind_mw": 60, "solar_mw": 20}, "pue": 1.2},
    )
    assert r.status_code == 200 and r.json()["kind"] == "capacities", r.text
    modelled = api.call("GET", f"/sites/site-a/energy?first_slot={NOW_SLOT}", "op").json()
    assert modelled["basis"] == "capacities"
    assert {x["pue"] for x in modelled["slots"]} == {1.2}
    assert any(x["green_share"] > 0 for x in modelled["slots"])
    # Another provider's site is not declared by prov-a.
    other = api.call("PUT", "/sites/site-b/energy", "prov-a", json={"series": [], "pue": 1.2})
    assert other.status_code in (404, 422)
    r = _upload(api, "site-b", _series_csv(series))
    assert r.status_code == 404 and r.json()["field"] == "path.site_id"


def test_bad_uploads_name_the_field_and_store_nothing(api: Api) -> None:
    _setup(api)
    cases = [
        (b"hour,share\n1767585600,0.5\n", "body.header"),
        (f"hour,green_share\n{EPOCH + NOW_SLOT * HOUR},0.5\n{EPOCH},75\n".encode(), "line[3]"),
        (b"hour,green_share\nyesterday,0.5\n", "body.line[2].hour"),
        (f"hour,green_share\n{EPOCH + 60},0.5\n".encode(), "body.series[0].hour"),
        (
            f"hour,green_share\n{EPOCH + 2 * HOUR},0.5\n{EPOCH + HOUR},0.5\n".encode(),
            "body.series[1].hour",
        ),
        (b"hour,green_share\n", "body"),
        (b'hour,green_share\n"1,0.5\n', "body.line[2].green_share"),
        (b"\xff\xfe", "body"),
    ]
    for content, field in cases:
        r = _upload(api, "site-a", content)
        assert r.status_code == 422, (content, r.text)
        problem = r.json()
        assert field in problem["field"] and problem["fix"], (content, problem)
    for body, field in (
        ({}, "body"),
        ({"capacities": {"it_load_mw": 5}, "series": [{"hour": EPOCH, "green_share": 1}]}, "body"),
        ({"capacities": {"it_load_mw": 0}}, "body.capacities.it_load_mw"),
        ({"series": [{"hour": EPOCH, "green_share": 1.5}]}, "body.series[0].green_share"),
    ):
        r = api.call("PUT", "/sites/site-a/energy", "prov-a", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["field"] == field, (body, r.json())
    got = api.call("GET", "/sites/site-a/energy", "op").json()
    assert got["declaration"] is None and got["basis"] == "none"
    # Statement periods and slot ranges out of range are 422s naming the parameter.
    for path, field in (
        ("/buyers/buy-a/carbon-statement?from=soon", "query.from"),
        ("/buyers/buy-a/carbon-statement?to=" + "9" * 30, "query.to"),
        ("/buyers/buy-a/carbon-statement?from=2026-02-01&to=2026-01-01", "query.to"),
        ("/sites/site-a/energy?first_slot=2000000000", "query.first_slot"),
    ):
        r = api.call("GET", path, "op")
        assert r.status_code == 422 and r.json()["field"] == field, (path, r.text)


def test_reserve_auto_is_priced_from_energy_cost(api: Api) -> None:
    _setup(api)
    capacities = {"it_load_mw": 10.0, "wind_mw": 40.0, "solar_mw": 10.0}
    r = api.call(
        "PUT", "/sites/site-a/energy", "prov-a", json={"capacities": capacities, "pue": 1.25}
    )
    assert r.status_code == 200, r.text
    body = {
        "id": "auto-1",
        "pool_id": "site-a-h100",
        "start_slot": NOW_SLOT,
        "gpus": [4, 4, 4, 4, 4, 4],
        "reserve": "auto",
        "margin_fen": 30,
        "markup": 0.1,
    }
    r = api.call("POST", "/offers", "prov-a", json=body)
    assert r.status_code == 201, r.text
    got = r.json()["reserve_fen"]
    # The same computed here, from the declared site's own simulation.
    site = SITES["prov-a"]
    params = {**capacities, "storage_mw": 0.0, "storage_mwh": 0.0}
    p = declared_params(site, params, 1.25)
    data = load_energy_data()
    years = site_years_for_span(
        {site.id: site.id},
        1_767_225_600,
        1_798_761_600,
        seed=0,
        data=EnergyData({site.id: p}, data.factors, data.methods),
    )
    grid = api.client.app.state.ctx.settings.grid
    offer = Offer("auto-1", "prov-a", "site-a-h100", NOW_SLOT, (4,) * 6, (0,) * 6)
    want = hooks.reserve_from_energy(
        offer,
        Pool("site-a-h100", "site-a", "H100"),
        years[site.id],
        grid,
        margin_fen=30,
        markup=0.1,
    )
    assert got == list(want.reserve_fen)
    assert all(x > 30 for x in got) and len(set(got)) > 1  # energy cost varies by hour
    # Not both; and a site with no energy model cannot be priced from it.
    r = api.call("POST", "/offers", "prov-a", json={**body, "id": "auto-2", "reserve_fen": [1]})
    assert r.status_code == 422 and r.json()["field"] == "body.reserve_fen", r.text
    r = api.call(
        "POST", "/offers", "prov-b", json={**body, "id": "auto-3", "pool_id": "site-b-h100"}
    )
    assert r.status_code == 422 and r.json()["field"] == "body.reserve", r.text


def test_unknown_province_uses_the_national_factor() -> None:
    assert province_factor("Atlantis") == NATIONAL_FACTOR
    assert province_factor("Gansu").region == "Gansu"


def _cleared_leases(api: Api, order_id: str) -> list[dict[str, Any]]:
    now = (api.clock.now() - EPOCH) // HOUR
    _order(api, order_id, "buy-a", release_slot=now, deadline_slot=now + 4)
    r = api.call("POST", "/clearings", "op", json={"id": f"clr-{order_id}"})
    assert r.status_code == 201, r.text
    items = api.call("GET", f"/leases?order_id=buy-a~{order_id}", "prov-a").json()["items"]
    assert len(items) >= 2, items
    return sorted(items, key=lambda x: x["slot"])


def _reading(api: Api, lease: dict[str, Any], **extra: Any) -> Any:
    start = EPOCH + lease["slot"] * HOUR
    body = {
        "id": f"r-{lease['slot']}",
        "interval_start": start,
        "interval_end": start + HOUR,
        "gpu_seconds": lease["gpus"] * HOUR,
        **extra,
    }
    r = api.call("POST", f"/leases/{lease['id']}/readings", "prov-a", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_failed_and_loop_completed_leases_are_booked(api: Api) -> None:
    """Every path that settles a lease books it: a failure (the route) and the clearing
    loop's completion of a lease whose agent sent no final reading (its sweep)."""
    _setup(api)
    assert _upload(api, "site-a", _series_csv({NOW_SLOT + k: 0.5 for k in range(8)})).status_code
    failed = _cleared_leases(api, "ord-fail")
    api.clock.set(EPOCH + (failed[-1]["slot"] + 1) * HOUR + 30)
    _reading(api, failed[0], source="slurm", energy_wh=1000)  # not final: then it fails
    for lease in failed[1:]:
        _reading(api, lease, final=True, source="nvml", energy_wh=900)
    r = api.call("POST", f"/leases/{failed[0]['id']}/fail", "prov-a")
    assert r.status_code == 200 and r.json()["state"] == "settled", r.text
    st = api.call("GET", "/buyers/buy-a/carbon-statement", "buy-a").json()
    assert {x["lease_id"] for x in st["lease_records"]} == {x["id"] for x in failed}
    assert st["energy_wh"] == st["measured_wh"] == 1000 + 900 * (len(failed) - 1)
    assert st["certificates_wh"] == sum(
        math.floor(x["energy_wh"] * 0.5 + 0.5) for x in st["lease_records"]
    )
    # Readings that never say final: the loop completes the leases after the grace period,
    # settles the order and books it in the same tick.
    silent = _cleared_leases(api, "ord-silent")
    api.clock.set(EPOCH + (silent[-1]["slot"] + 1) * HOUR + 30)
    for lease in silent:
        _reading(api, lease, energy_wh=800)
    api.clock.set(api.clock.now() + 2 * HOUR)
    api.client.app.state.clearing_loop.tick()
    st = api.call("GET", "/buyers/buy-a/carbon-statement", "buy-a").json()
    booked = {x["lease_id"]: x for x in st["lease_records"]}
    assert {x["id"] for x in silent} <= set(booked)
    assert all(booked[x["id"]]["nominal_wh"] == 800 for x in silent)
    assert st["certificates_wh"] == _balance(api, certificate_account(AccountKind.BUYER, "buy-a"))
    assert st["co2_market_g"] == _balance(api, carbon_account("buy-a"))
