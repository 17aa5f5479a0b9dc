"""The connector contract: what every pull connector does against its vendor's emulator.

Written against `ConnectorHarness` only, so each vendor passes the same tests: complete
paging, incremental runs that never miss a change, leavers, retries on 5xx and cut-off
bodies, Retry-After, fail-fast bad credentials, quarantined records, and no sensitive
value anywhere past the door (pages, errors, logs).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import web

from connectors.base import ConnectorError, SyncMode
from connectors.emulator_kit import Fault, RateLimit
from gateway.minimise.egress import Subject
from tests.contract.conftest import FAST, PEOPLE, Emulator, MakeConnector, StartEmulator
from tests.contract.harness import ConnectorHarness
from tests.contract.suite import leaked, sync


async def test_full_sync_reads_everyone_exactly_once(
    make_connector: MakeConnector, sensitive: set[str]
) -> None:
    connector = make_connector()
    run = await sync(connector)
    assert run.pages > 10
    assert run.fetched == PEOPLE
    assert run.rejected == []
    assert len(run.subjects) == PEOPLE
    assert len(run.by_id()) == PEOPLE, "some people came twice (and so others not at all)"
    for subject in run.subjects:
        assert Subject.model_validate(subject).model_dump() == subject
    assert leaked(sensitive, *run.trace) == []


async def test_full_sync_is_repeatable(make_connector: MakeConnector) -> None:
    first = await sync(make_connector())
    second = await sync(make_connector())
    assert first.by_id() == second.by_id()


async def test_incremental_sync_never_misses_a_change(
    harness: ConnectorHarness, emulator: Emulator, make_connector: MakeConnector
) -> None:
    connector = make_connector()
    before = await sync(connector)
    assert before.watermark is not None, "a full run must report a watermark"

    harness.touch(emulator.app, 5)
    changes = await sync(connector, SyncMode.INCREMENTAL, since=before.watermark)
    after = await sync(connector)

    old = before.by_id()
    changed = {sid: s for sid, s in after.by_id().items() if old.get(sid) != s}
    assert len(changed) == 5
    got = changes.by_id()
    for sid, subject in changed.items():
        assert got.get(sid) == subject, "an incremental run missed a change"
    assert changes.fetched < PEOPLE // 2, "the incremental run read (nearly) everyone"
    assert changes.watermark not in (None, before.watermark), "the watermark did not move"


async def test_incremental_sync_without_changes_is_small(make_connector: MakeConnector) -> None:
    connector = make_connector()
    full = await sync(connector)
    again = await sync(connector, SyncMode.INCREMENTAL, since=full.watermark)
    assert again.fetched < PEOPLE // 10


async def test_leavers_are_reported(
    harness: ConnectorHarness, emulator: Emulator, make_connector: MakeConnector
) -> None:
    connector = make_connector()
    before = await sync(connector)
    harness.retire(emulator.app, 3)
    after = await sync(connector)

    left = before.active_ids() - after.active_ids()
    assert len(left) == 3
    still = after.by_id()
    for sid in left:
        # Reported as inactive, or (for sources that hide leavers) gone from a full run.
        assert sid not in still or still[sid]["active"] is False
    assert after.active_ids() <= before.active_ids()


async def test_a_page_that_fails_twice_with_503_is_retried(
    emulator: Emulator, make_connector: MakeConnector
) -> None:
    connector = make_connector()

    def fail_third_page(n: int) -> None:
        if n == 2:
            emulator.control.inject(Fault("error", status=503), Fault("error", status=503))

    run = await sync(connector, before_page=fail_third_page)
    assert len(run.by_id()) == PEOPLE
    assert connector.stats.retries == 2
    assert [r.status for r in emulator.control.log].count(503) == 2


def _limited(harness: ConnectorHarness) -> int:
    """The status a rate-limited request gets from this vendor (429 unless the harness says
    otherwise: Salesforce answers 403 REQUEST_LIMIT_EXCEEDED)."""
    return int(getattr(harness, "rate_limited_status", 429))


async def test_retry_after_is_honoured(
    harness: ConnectorHarness, emulator: Emulator, make_connector: MakeConnector
) -> None:
    connector = make_connector()

    def limit_second_page(n: int) -> None:
        if n == 1:
            emulator.control.inject(Fault("rate_limit", seconds=1.0))

    run = await sync(connector, before_page=limit_second_page)
    assert len(run.by_id()) == PEOPLE
    assert connector.stats.rate_limited == 1
    log = emulator.control.log
    at = next(i for i, r in enumerate(log) if r.status == _limited(harness))
    assert log[at + 1].at - log[at].at >= 1.0, "a request came within the Retry-After window"


async def test_a_rate_limit_is_waited_out(
    harness: ConnectorHarness, start_emulator: StartEmulator, make_connector: MakeConnector
) -> None:
    small = await start_emulator(250)
    small.control.rate_limit = RateLimit(requests=2, window=1.0)
    connector = make_connector(target=small)
    run = await sync(connector)
    assert len(run.by_id()) == 250
    statuses = [r.status for r in small.control.log]
    assert statuses.count(_limited(harness)) == 1, "the connector hammered a rate-limited source"
    at = statuses.index(_limited(harness))
    assert small.control.log[at + 1].at - small.control.log[0].at >= 1.0


async def test_bad_credentials_fail_fast_and_clearly(
    harness: ConnectorHarness,
    emulator: Emulator,
    make_connector: MakeConnector,
    sensitive: set[str],
) -> None:
    async def refused() -> None:
        # Building the connector may already refuse the credentials: that is fine too.
        await sync(make_connector(valid_credentials=False))

    with pytest.raises(ConnectorError) as caught:
        await refused()
    error = caught.value
    assert error.kind == "auth"
    assert not error.retryable
    assert harness.type in str(error)
    assert len(emulator.control.log) <= 1, "a refused credential must not be retried"
    assert leaked(sensitive, str(error)) == []


async def test_a_cut_off_page_is_retried(emulator: Emulator, make_connector: MakeConnector) -> None:
    connector = make_connector()

    def cut_second_page(n: int) -> None:
        if n == 1:
            emulator.control.inject(Fault("truncate"))

    run = await sync(connector, before_page=cut_second_page)
    assert len(run.by_id()) == PEOPLE
    assert connector.stats.retries == 1


async def test_a_persistently_malformed_page_fails_as_malformed(
    emulator: Emulator, make_connector: MakeConnector, sensitive: set[str]
) -> None:
    connector = make_connector()
    emulator.control.inject(*[Fault("truncate") for _ in range(FAST.attempts)])
    with pytest.raises(ConnectorError) as caught:
        await sync(connector)
    assert caught.value.kind == "malformed"
    assert connector.stats.retries == FAST.attempts - 1
    assert len(emulator.control.log) == FAST.attempts
    assert leaked(sensitive, str(caught.value)) == []


async def test_a_record_without_email_is_rejected_and_the_rest_pass(
    harness: ConnectorHarness, emulator: Emulator, make_connector: MakeConnector
) -> None:
    connector = make_connector()
    harness.break_email(emulator.app, 2)
    run = await sync(connector)
    assert run.fetched == PEOPLE
    assert len(run.rejected) == 2
    assert all("email" in reason for reason in run.rejected)
    assert len(run.by_id()) == PEOPLE - 2


async def test_nothing_sensitive_gets_past_the_door(
    caplog: pytest.LogCaptureFixture,
    harness: ConnectorHarness,
    emulator: Emulator,
    make_connector: MakeConnector,
    sensitive: set[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    connector = make_connector()
    harness.touch(emulator.app, 3)
    harness.retire(emulator.app, 2)
    harness.break_email(emulator.app, 2)
    full = await sync(connector)
    changes = await sync(connector, SyncMode.INCREMENTAL, since=full.watermark)
    texts += full.trace + changes.trace + full.rejected
    emulator.control.inject(*[Fault("truncate") for _ in range(FAST.attempts)])
    for valid in (True, False):
        with pytest.raises(ConnectorError) as caught:
            await sync(make_connector(valid_credentials=valid))
        texts += [str(caught.value), repr(caught.value)]
    texts.append(caplog.text)
    assert leaked(sensitive, *texts) == []


async def test_redirects_are_not_followed(
    emulator: Emulator, make_connector: MakeConnector, aiohttp_server: Any
) -> None:
    """A source answering 302 must not lead the gateway (and its credentials) elsewhere."""
    followed: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        followed.append(request.headers.get("Authorization", ""))
        return web.json_response({})

    trap = web.Application()
    trap.router.add_route("*", "/{tail:.*}", elsewhere)
    other = await aiohttp_server(trap, host="127.0.0.1")
    emulator.control.inject(Fault("error", status=302, location=str(other.make_url("/x"))))
    with pytest.raises(ConnectorError) as caught:
        await sync(make_connector())
    assert caught.value.kind == "config"
    assert "redirected" in str(caught.value)
    assert followed == []
