"""A tenant's contract ends, over the API against the AFAS emulator: termination stops
processing and delivery at once and keeps the data for the grace period; then the data is
crypto-shredded (by an operator, or by the app's reaper), nothing of it or of the tenant's
subject key is left in the data directory, and the ledger still verifies."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from gateway.ledger.audit import SYSTEM
from gateway.ledger.record import Acting
from gateway.lifecycle import termination
from gateway.runtime.services import Services
from tests.api.conftest import Api, make_tenant
from tests.api.test_subjects import T, two_sources
from tests.principals import People


def _holding(directory: Path, needle: bytes) -> list[str]:
    return [p.name for p in directory.rglob("*") if p.is_file() and needle in p.read_bytes()]


async def test_a_terminated_tenant_stops_at_once_and_is_shredded_after_its_grace(
    api: Api, aiohttp_server: Any, services: Services, people: People
) -> None:
    # A short grace period: the test's API tokens expire after 30 days of its clock.
    services.settings = services.settings.model_copy(update={"tenant_grace_days": 20})
    person, _ = await two_sources(api, aiohttp_server)
    email = person["Email_werk"].lower().encode()
    feed_token = (await api.post(f"{T}/consumers", {"name": "lms2"})).body["token"]
    operator = people.operator()
    admin = people.token("acme", "admin")

    ended = await api.post(f"{T}/terminate", None, token=operator)
    assert ended.status == 200, ended.body
    assert ended.body["terminated_at"] and ended.body["destroyed_at"] is None
    assert ended.body["destroy_after"] > ended.body["terminated_at"]
    # Processing and delivery stop at once; nothing can be authorised again.
    assert (await api.post(f"{T}/connectors/hr/syncs", {"mode": "full"})).status == 409
    page = await api.get("/feed/v1/tenants/acme/events", params={"limit": 1000},
                         headers={"Authorization": f"Bearer {feed_token}"})  # fmt: skip
    assert page.body["events"] == [] and page.body["withheld"] > 0
    regrant = await api.post(f"{T}/connectors/hr/instructions", {"purpose": "again"})
    assert regrant.status == 409 and "terminated" in regrant.body["detail"]
    assert (await api.post(f"{T}/terminate", None, token=operator)).status == 409
    # The data is kept for the grace period.
    early = await api.post(f"{T}/destroy", None, token=operator)
    assert early.status == 409 and "kept until" in early.body["detail"]
    assert _holding(services.settings.data_dir, email)

    sealed_key = services.store.get_tenant("acme").sealed_key
    real = services.clock
    services.clock = lambda: real() + timedelta(days=21)
    operator = people.operator()  # a fresh step-up, by the new clock
    done = await api.post(f"{T}/destroy", None, token=operator)
    assert done.status == 200 and done.body["destroyed_at"], done.body
    # Nothing of its people or of its subject key is left on disk, WAL included.
    data_dir = services.settings.data_dir
    assert _holding(data_dir, email) == []
    assert _holding(data_dir, sealed_key) == []
    # The ledger stays, verifies, and ends with the destruction, signed.
    ledger = services.ledger("acme")
    report = ledger.verify(services.signer.public_key)
    assert report.ok, report.reason
    last = ledger.entries(after=ledger.size() - 2, limit=1)[0].entry
    assert getattr(last, "action", None) == "tenant.destroyed"
    # Its people's accounts are gone with it; the operator sees the tenant as destroyed.
    assert (await api.get(T, token=admin)).status == 401
    assert (await api.get(f"{T}/connectors", token=operator)).status in (403, 404)
    seen = (await api.get(T, token=operator)).body
    assert seen["destroyed_at"] == done.body["destroyed_at"]
    assert (await api.post(f"{T}/destroy", None, token=operator)).status == 409


async def test_the_reaper_destroys_only_tenants_past_their_grace(
    api: Api, services: Services, people: People
) -> None:
    for tenant in ("acme", "beta", "gamma"):
        await make_tenant(api, tenant)
    for tenant in ("acme", "beta"):
        assert (await api.post(f"/admin/v1/tenants/{tenant}/terminate", None,
                               token=people.operator())).status == 200  # fmt: skip
    grace = timedelta(days=90)
    now = services.clock()

    def acting_for(tenant: str) -> Acting:
        return Acting(SYSTEM, services.ledger(tenant))

    assert termination.destroy_due(services.store, acting_for, grace, now) == []
    later = now + grace + timedelta(seconds=1)
    assert termination.destroy_due(services.store, acting_for, grace, later) == ["acme", "beta"]
    assert termination.destroy_due(services.store, acting_for, grace, later) == []
    assert services.store.get_tenant("gamma").destroyed_at is None
    assert services.store.get_tenant("beta").sealed_key == b""
