"""Retention over the API against the AFAS emulator, with a fake clock: people change and
leave at the source and are synced; a hundred days later the retention job leaves each
live person's newest state in the feed and nothing of the leavers or of superseded
versions (also for a consumer reading from the start), the ledger verifies and records
what went, it is metered, and nobody is named in the logs. A tenant's policy is read by its
people and set by its admin within the statement maxima; the record of processing tells
it. The app runs the job itself when its scheduler is on."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.afas.emulator import ENVIRONMENT
from gateway.api.app import make_app
from gateway.ledger.audit import SYSTEM, AuditEntry
from gateway.ledger.record import Acting
from gateway.lifecycle.retention.job import JOB_NAME, RetentionJob
from gateway.lifecycle.retention.policy import defaults_of
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from tests.api.conftest import (
    ADMIN_TOKEN,
    MASTER_KEY,
    Api,
    grant,
    make_consumer,
    make_tenant,
    read_feed,
)
from tests.api.test_metrics import sample, scrape
from tests.api.test_syncs import C, afas_connector, wait_for_run
from tests.principals import People

T = "/admin/v1/tenants/acme"


async def _full_sync(api: Api) -> None:
    started = await api.post(f"{C}/syncs", {"mode": "full"})
    assert (await wait_for_run(api, started.headers["Location"]))["status"] == "succeeded"


def _job(services: Services) -> RetentionJob:
    return RetentionJob(
        services.store, services.metrics, defaults=lambda: defaults_of(services.settings),
        acting_for=lambda t: Acting(SYSTEM, services.ledger(t)),
        clock=lambda: services.clock(),  # noqa: PLW0108 - the test replaces the clock
        owner="replica-test",
        interval=services.settings.retention_interval,
    )  # fmt: skip


async def test_a_hundred_days_on_only_each_live_persons_newest_state_remains(
    api: Api, aiohttp_server: Any, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    emulator = await afas_connector(api, aiohttp_server, people=30)
    env = emulator[ENVIRONMENT]
    await grant(api)
    await _full_sync(api)
    env.touch(5)
    await _full_sync(api)
    env.touch(3)
    await _full_sync(api)
    leavers = env.retire(4)
    await _full_sync(api)
    token = await make_consumer(api)
    before = await read_feed(api, token, limit=7)
    newest = {e["subject_id"]: e for e in before}
    gone = {sid for sid, e in newest.items() if e["type"] == "subject.deleted"}
    assert len(gone) == 4 and len(before) > len(newest)
    left = [p for p in env.people if p["Medewerker"] in leavers]
    left_emails = {str(p["Email_werk"]).lower() for p in left if p.get("Email_werk")}
    assert any(e["data"] and e["data"]["email"] in left_emails for e in before)

    # Today nothing of the feed is old enough.
    assert _job(services).run_once() is not None
    assert len(await read_feed(api, token, limit=7)) == len(before)

    fresh = await make_consumer(api)  # made now: the test's admin token expires meanwhile
    real = services.clock
    services.clock = lambda: real() + timedelta(days=100)
    caplog.set_level(logging.INFO)
    report = _job(services).run_once(force=True)
    assert report is not None
    removed = {r.rule: r.count for r in report.removals if r.tenant == "acme"}
    assert removed["feed-compaction"] == len(before) - len(newest)
    assert removed["leavers"] == 4

    # A consumer reading from the start: each live person's newest state, once; no leaver.
    after = await read_feed(api, fresh, limit=7)
    assert {e["subject_id"]: e for e in after} == {
        sid: e for sid, e in newest.items() if sid not in gone
    }
    assert len(after) == len(newest) - len(gone)
    assert not any(email in str(after) for email in left_emails)
    # The ledger verifies and says what went, by rule and count.
    ledger = services.ledger("acme")
    assert ledger.verify(services.signer.public_key).ok
    applied = {
        r.entry.target: r.entry.counts.records if r.entry.counts else 0
        for r in ledger.entries(after=None, limit=10_000)
        if isinstance(r.entry, AuditEntry) and r.entry.action == "retention.applied"
    }
    assert applied["feed-compaction"] == removed["feed-compaction"]
    assert applied["leavers"] == 4
    # Metered.
    text = await scrape(api)
    assert sample(text, "sluis_retention_removed_total", rule="leavers") == 4
    assert sample(text, "sluis_retention_runs_total", outcome="succeeded") == 2
    last = sample(text, "sluis_retention_last_success_timestamp_seconds")
    assert last == pytest.approx(services.clock().timestamp(), abs=60)
    # Nobody named in the logs.
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "retention removed for tenant acme" in logged
    for person in left:
        assert str(person["Achternaam"]) not in logged
        assert str(person.get("Email_werk") or "@") not in logged


async def test_the_policy_is_read_by_the_tenant_and_set_by_its_admin(
    api: Api, people: People, services: Services
) -> None:
    await make_tenant(api)
    await make_tenant(api, "beta")
    shown = await api.get(f"{T}/retention", token=people.token("acme", "viewer"))
    assert shown.status == 200, shown.body
    assert shown.body["policy"] == shown.body["defaults"] == {
        "feed_compaction_days": 30, "leaver_grace_days": 90, "run_history_days": 730,
        "request_history_days": 730, "short_lived_days": 7,
    }  # fmt: skip
    assert shown.body["maxima"]["leaver_grace_days"] == 90
    assert shown.body["overrides"] == [] and shown.body["updated_by"] is None

    for body, field in (
        ({"feed_compaction_days": 91}, "feed_compaction_days"),
        ({"leaver_grace_days": 120}, "leaver_grace_days"),
        ({"run_history_days": 731}, "run_history_days"),
        ({"request_history_days": 800}, "request_history_days"),
        ({"short_lived_days": 0}, "short_lived_days"),
        ({"short_lived_days": 31}, "short_lived_days"),
        ({"feed_compaction_days": "7"}, "feed_compaction_days"),
        ({"feed_compaction_days": 7.5}, "feed_compaction_days"),
        ({"backups_days": 21}, "backups_days"),
    ):
        refused = await api.call("PUT", f"{T}/retention", json=body)
        assert refused.status == 422, (body, refused.body)
        assert refused.body["errors"][0]["field"] == field, refused.body
    for role in ("viewer", "auditor"):
        denied = await api.call("PUT", f"{T}/retention", json={}, token=people.token("acme", role))
        assert denied.status == 403
    other = await api.get(f"{T}/retention", token=people.token("beta", "admin"))
    assert other.status == 403

    done = await api.call(
        "PUT", f"{T}/retention", json={"feed_compaction_days": 7, "leaver_grace_days": 30}
    )
    assert done.status == 200, done.body
    assert done.body["policy"]["feed_compaction_days"] == 7
    assert done.body["policy"]["run_history_days"] == 730
    assert done.body["overrides"] == ["feed_compaction_days", "leaver_grace_days"]
    assert done.body["updated_by"] == people.account("acme", "admin")
    again = await api.call("PUT", f"{T}/retention", json={"leaver_grace_days": 30})
    assert again.body["policy"]["feed_compaction_days"] == 30  # left out: the default again
    ledger = (await api.get(f"{T}/ledger", params={"limit": 1000})).body
    changes = [e["entry"] for e in ledger["entries"]
               if e["entry"].get("action") == "retention.changed"]  # fmt: skip
    assert [c["changed"] for c in changes] == [
        ["feed_compaction_days", "leaver_grace_days"], ["feed_compaction_days"],
    ]  # fmt: skip
    assert all(c["actor"] == people.account("acme", "admin") for c in changes)
    record = await api.get(f"{T}/reports/processing-record")
    assert any("30 days after they left" in r for r in record.body["retention"]), record.body
    assert (await api.get("/admin/v1/tenants/nope/retention")).status in (403, 404)


async def test_the_app_runs_the_job_when_its_scheduler_is_on(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path, admin_token=ADMIN_TOKEN, master_key=MASTER_KEY, scheduler=True,
    )  # fmt: skip
    services = Services.open(settings)
    try:
        await aiohttp_client(make_app(services))
        for _ in range(200):
            state = services.store.job_state(JOB_NAME)
            if state is not None and state.last_outcome == "succeeded":
                break
            await asyncio.sleep(0.05)
        assert state is not None and state.last_outcome == "succeeded"
        assert state.claimed_by is None
    finally:
        services.close()
