"""The figures the alert rules need, each wired where the thing happens: a connector's
schedule (for "no success in twice its interval"), runs stopped by the mass-delete guard,
each feed consumer's lag, and the ledger self-check of `sluis serve`."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.afas import emulator as afas_emulator
from gateway.runtime.services import Services
from tests.api.conftest import Api, grant, insert_events, make_connector, make_tenant, setup_feed
from tests.api.test_metrics import sample, scrape
from tests.api.test_syncs import C, afas_connector, wait_for_run
from tests.serve_helpers import provision, running_gateway

IDS = {"tenant": "acme", "connector": "hr"}
FEED = "/feed/v1/tenants/acme/events"


async def test_a_connectors_schedule_is_read_from_the_store(api: Api) -> None:
    await make_tenant(api)
    await make_connector(api, interval_seconds=900)
    text = await scrape(api)
    assert sample(text, "sluis_connector_interval_seconds", **IDS) == 900
    assert sample(text, "sluis_connector_paused", **IDS) == 0
    created = sample(text, "sluis_connector_created_timestamp_seconds", **IDS)
    assert created is not None and created > 1.7e9
    # No success yet: the rule for never-synced connectors counts from creation.
    assert sample(text, "sluis_last_successful_sync_timestamp_seconds", **IDS) is None
    assert (await api.patch(C, {"paused": True, "interval_seconds": 3600})).status == 200
    text = await scrape(api)
    assert sample(text, "sluis_connector_paused", **IDS) == 1
    assert sample(text, "sluis_connector_interval_seconds", **IDS) == 3600


async def test_a_run_stopped_by_the_mass_delete_guard_is_counted(
    api: Api, aiohttp_server: Any
) -> None:
    emulator = await afas_connector(api, aiohttp_server, people=100)
    env = emulator[afas_emulator.ENVIRONMENT]
    await grant(api)
    labels = {"connector_type": "afas", **IDS}
    assert sample(await scrape(api), "sluis_mass_delete_stops_total", **labels) == 0

    async def full() -> dict[str, Any]:
        started = await api.post(f"{C}/syncs", {"mode": "full"})
        assert started.status == 202, started.body
        return await wait_for_run(api, started.headers["Location"])

    assert (await full())["status"] == "succeeded"
    del env.people[:40]
    env.version += 1
    stopped = await full()
    assert stopped["status"] == "stopped" and stopped["counts"]["deletes_held"] > 0
    text = await scrape(api)
    assert sample(text, "sluis_mass_delete_stops_total", **labels) == 1
    assert sample(text, "sluis_syncs_total", connector_type="afas", outcome="stopped") == 1
    # A sync refused for another reason (a revoked instruction) is not the guard's.
    (instruction,) = (await api.get(f"{C}/instructions")).body["instructions"]
    assert (await api.delete(f"{C}/instructions/{instruction['id']}")).status == 200
    assert (await api.post(f"{C}/syncs", {"mode": "full"})).status == 409
    assert sample(await scrape(api), "sluis_mass_delete_stops_total", **labels) == 1


async def test_feed_consumer_lag_counts_from_the_cursor_it_polled_with(
    api: Api, services: Services
) -> None:
    token, _ = await setup_feed(api)
    (consumer,) = services.store.list_consumers("acme")
    who = {"tenant": "acme", "consumer": consumer.id}
    insert_events(services, "acme", 5)
    text = await scrape(api)
    assert sample(text, "sluis_feed_last_seq", tenant="acme") == 5
    # Not polled on this replica yet: no figure rather than a guess.
    assert sample(text, "sluis_feed_consumer_lag_events", **who) is None

    first = await api.get(f"{FEED}?limit=2", token=token)
    assert len(first.body["events"]) == 2
    text = await scrape(api)
    # It asked from the start: all five are still ahead of what it has applied.
    assert sample(text, "sluis_feed_consumer_lag_events", **who) == 5
    polled = sample(text, "sluis_feed_consumer_last_poll_timestamp_seconds", **who)
    assert polled is not None and polled > 1.7e9

    second = await api.get(f"{FEED}?after={first.body['next_cursor']}", token=token)
    assert len(second.body["events"]) == 3
    assert sample(await scrape(api), "sluis_feed_consumer_lag_events", **who) == 3
    await api.get(f"{FEED}?after={second.body['next_cursor']}", token=token)
    assert sample(await scrape(api), "sluis_feed_consumer_lag_events", **who) == 0
    insert_events(services, "acme", 4, start=10)
    assert sample(await scrape(api), "sluis_feed_consumer_lag_events", **who) == 4

    # A revoked consumer is no longer reported.
    revoked = await api.delete(f"/admin/v1/tenants/acme/consumers/{consumer.id}")
    assert revoked.status in (200, 204), revoked.body
    assert sample(await scrape(api), "sluis_feed_consumer_lag_events", **who) is None


def _tamper(data_dir: Path, statement: str) -> None:
    conn = sqlite3.connect(data_dir / "sluis.db")
    with conn:
        conn.execute(statement)
    conn.close()


async def test_the_ledger_self_check_says_intact_or_failed(
    api: Api, services: Services, tmp_path: Path
) -> None:
    await make_tenant(api)
    await make_connector(api)
    await grant(api)
    text = await scrape(api)
    # Primed per tenant, so `increase(...)` sees the first failure.
    assert sample(text, "sluis_ledger_verifications_total", tenant="acme", outcome="failed") == 0
    assert sample(text, "sluis_ledger_intact", tenant="acme") is None  # not checked yet

    assert services.verify_ledgers() == {"acme": True}
    text = await scrape(api)
    assert sample(text, "sluis_ledger_intact", tenant="acme") == 1
    assert sample(text, "sluis_ledger_verifications_total", tenant="acme", outcome="intact") == 1

    _tamper(tmp_path, "DELETE FROM ledger_entries WHERE tenant = 'acme' AND idx = 0")
    assert services.verify_ledgers() == {"acme": False}
    text = await scrape(api)
    assert sample(text, "sluis_ledger_intact", tenant="acme") == 0
    assert sample(text, "sluis_ledger_verifications_total", tenant="acme", outcome="failed") == 1


@pytest.mark.parametrize("tampered", [False, True], ids=["intact", "tampered"])
def test_sluis_serve_checks_every_ledger_at_start(tmp_path: Path, tampered: bool) -> None:
    tokens = provision(tmp_path / "data")
    assert tokens.admin
    if tampered:
        _tamper(tmp_path / "data", "DELETE FROM ledger_entries WHERE tenant = 'acme' AND idx = 0")
    with running_gateway(tmp_path) as gw:
        value = None
        for _ in range(100):
            status, body = gw.call("/metrics")
            assert status == 200
            value = sample(body.decode(), "sluis_ledger_intact", tenant="acme")
            if value is not None:
                break
            time.sleep(0.1)
    assert value == (0 if tampered else 1)
    failed = [line for line in gw.log().splitlines() if "failed its self-check" in line]
    assert bool(failed) is tampered
    if tampered:
        assert "acme" in failed[0] and "sluis audit verify --tenant acme" in failed[0]
