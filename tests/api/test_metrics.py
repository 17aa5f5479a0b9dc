"""`/metrics` tells the truth: state gauges read from the store (every ledger entry, whatever
wrote it; the last success after a restart), every known series present from the start, and
refusals labelled with the tenant and connector they concern."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gateway.api.app import make_app
from gateway.runtime.config import Settings
from gateway.runtime.metrics import REFUSAL_REASONS, SYNC_OUTCOMES
from gateway.runtime.services import Services
from tests.api.conftest import (
    ADMIN_TOKEN,
    MASTER_KEY,
    Api,
    grant,
    insert_events,
    make_connector,
    make_consumer,
    make_tenant,
)
from tests.api.test_syncs import C, afas_connector, wait_for_run


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in an exposition, or None when it is absent."""
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    return None


async def scrape(api: Api) -> str:
    reply = await api.get("/metrics")
    assert reply.status == 200
    return reply.text


async def test_ledger_entries_count_every_entry_whatever_wrote_it(
    api: Api, services: Services
) -> None:
    await make_tenant(api)
    await make_connector(api)
    assert (await api.post(f"{C}/syncs")).status == 409  # refused: a `refused` entry
    await grant(api)
    token = await make_consumer(api)
    insert_events(services, "acme", 5)
    feed = await api.get("/feed/v1/tenants/acme/events", token=token)  # an `outbound` entry
    assert len(feed.body["events"]) == 5
    size = services.ledger("acme").size()
    assert size >= 2
    text = await scrape(api)
    assert sample(text, "sluis_ledger_entries", tenant="acme") == size
    insert_events(services, "acme", 2, start=10)
    cursor = feed.body["next_cursor"]
    await api.get(f"/feed/v1/tenants/acme/events?after={cursor}", token=token)
    grown = services.ledger("acme").size()
    assert grown > size
    assert sample(await scrape(api), "sluis_ledger_entries", tenant="acme") == grown


async def test_state_gauges_survive_a_restart(
    api: Api, services: Services, aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path
) -> None:
    await afas_connector(api, aiohttp_server, people=60)
    await grant(api)
    started = await api.post(f"{C}/syncs", {"mode": "full"})
    run = await wait_for_run(api, started.headers["Location"])
    assert run["status"] == "succeeded"
    before = await scrape(api)
    size = services.ledger("acme").size()
    last = sample(
        before, "sluis_last_successful_sync_timestamp_seconds", tenant="acme", connector="hr"
    )
    assert last is not None and last > 0
    assert sample(before, "sluis_ledger_entries", tenant="acme") == size

    # A new process on the same data directory: nothing has run in it yet.
    again = Services.open(
        Settings(
            data_dir=tmp_path,
            admin_token=ADMIN_TOKEN,
            master_key=MASTER_KEY,
            scheduler=False,
            allow_private_sources=True,
        )
    )
    try:
        fresh = Api(await aiohttp_client(make_app(again)))
        after = await scrape(fresh)
    finally:
        again.close()
    assert sample(after, "sluis_ledger_entries", tenant="acme") == size
    assert (
        sample(after, "sluis_last_successful_sync_timestamp_seconds", tenant="acme", connector="hr")
        == last
    )
    assert sample(after, "sluis_syncs_total", connector_type="afas", outcome="succeeded") == 0


async def test_known_series_exist_before_their_first_increment(api: Api) -> None:
    text = await scrape(api)
    for ctype in ("afas", "hubspot"):
        for outcome in SYNC_OUTCOMES:
            assert sample(text, "sluis_syncs_total", connector_type=ctype, outcome=outcome) == 0
        for change in ("subject.upserted", "subject.deleted"):
            assert sample(text, "sluis_feed_changes_total", connector_type=ctype, type=change) == 0
        for name in ("sluis_records_fetched_total", "sluis_source_retries_total"):
            assert sample(text, name, connector_type=ctype) == 0
    await make_tenant(api)
    await make_connector(api)
    text = await scrape(api)
    for reason in REFUSAL_REASONS:
        assert (
            sample(
                text,
                "sluis_authorisation_refusals_total",
                tenant="acme",
                connector="hr",
                reason=reason,
            )
            == 0
        ), reason
    assert sample(text, "sluis_feed_events_served_total", tenant="acme") == 0
    # The tenant's ledger holds who created it and the accounts made for this test.
    audit_only = (await api.get("/admin/v1/tenants/acme/ledger")).body
    assert sample(text, "sluis_ledger_entries", tenant="acme") == audit_only["size"]
    assert all("action" in e["entry"] for e in audit_only["entries"])


async def test_refusals_name_tenant_and_connector(api: Api) -> None:
    await make_tenant(api)
    await make_connector(api)
    await make_connector(api, id="crm")
    assert (await api.post(f"{C}/syncs")).status == 409
    ins = await grant(api, connector="crm")
    await api.delete(f"/admin/v1/tenants/acme/connectors/crm/instructions/{ins['id']}")
    assert (await api.post("/admin/v1/tenants/acme/connectors/crm/syncs")).status == 409
    text = await scrape(api)
    refusals = "sluis_authorisation_refusals_total"
    assert sample(text, refusals, tenant="acme", connector="hr", reason="missing") == 1
    assert sample(text, refusals, tenant="acme", connector="crm", reason="revoked") == 1
    assert sample(text, refusals, tenant="acme", connector="crm", reason="missing") == 0
    assert sample(text, refusals, reason="missing") is None


async def test_a_scrape_waiting_for_the_store_does_not_stall_the_gateway(
    api: Api, services: Services
) -> None:
    """Collecting reads the store; while a page commit holds it, other requests go on, and
    the scrape itself no longer waits: reads outside a transaction have connections of
    their own (`gateway.store.sqlite_db`)."""
    import asyncio
    import threading
    import time

    await make_tenant(api)
    held, release = threading.Event(), threading.Event()

    def hold_the_store() -> None:
        with services.store.transaction():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_store)
    holder.start()
    try:
        assert held.wait(5)
        started = time.monotonic()
        scraping = asyncio.ensure_future(api.get("/metrics"))
        await asyncio.sleep(0.2)
        assert (await api.get("/healthz")).status == 200  # the loop serves others...
        assert time.monotonic() - started < 3.0  # (the store is held for up to 10 s)
        assert (await scraping).status == 200  # ...and the scrape is answered meanwhile
        assert time.monotonic() - started < 3.0
    finally:
        release.set()
        holder.join()
    assert (await scraping).status == 200
