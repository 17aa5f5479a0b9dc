"""Source worker processes (`source_processes`): connectors and the door run in another
process, and the gateway's process only ever holds minimised pages.

The engine's own behaviour through a worker (pages, revocation, crash and resume, the
mass-delete guard, faults) is covered by running all of `tests/test_sync.py` both ways;
this file covers what is particular to the worker: that nothing raw is handled in the
gateway's process, a worker's death, refusals at open, and the frame protocol.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from connectors.afas.client import AfasConnector
from connectors.afas.emulator import EMULATOR_TOKEN, ENVIRONMENT, make_app
from connectors.base import MinimisedPage, RetryPolicy, SyncMode
from gateway.cli.serve import source_workers_context
from gateway.minimise.projector import Projector
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.sync.instructions import grant
from gateway.sync.source_frames import (
    MAX_FRAME_BYTES,
    FrameError,
    encode,
    page_message,
    page_of,
    read_frame,
)
from gateway.sync.source_process import SourceWorkerFailed
from gateway.tenancy import create_connector, create_tenant
from mappings import bundled_mapping
from tests.principals import system

FAST = RetryPolicy(attempts=2, initial_wait=0.001, max_wait=0.01)
PEOPLE = 250


async def _world(
    tmp_path: Path,
    base: str,
    *,
    after_page: Any = None,
    allow_private: bool = True,
    page_size: int = 100,
) -> Services:
    services = Services.open(
        Settings(
            data_dir=tmp_path / "data", admin_token="w" * 32, scheduler=False,
            allow_private_sources=allow_private, source_processes=1,
        ),
        retry=FAST,
        after_page=after_page,
    )  # fmt: skip
    now = datetime.now(UTC)
    by = system(services, "acme")
    create_tenant(services.store, services.box, "acme", "Acme BV", now, by=by)
    create_connector(
        services.store, services.box, tenant="acme", by=by, connector_id="afas",
        type_name="afas", base_url=base, credentials={"token": EMULATOR_TOKEN},
        mapping_text=bundled_mapping("afas").read_text(), settings={"page_size": page_size},
        now=now,
    )  # fmt: skip
    grant(services.store, by=by, connector="afas", purpose="accounts", now=now)
    return services


@pytest.fixture
async def emulator(aiohttp_server: Callable[..., Any]) -> tuple[web.Application, str]:
    app = make_app(people=PEOPLE, seed=5)
    server = await aiohttp_server(app, host="127.0.0.1")
    return app, str(server.make_url("/profitrestservices"))


async def test_the_gateway_process_builds_no_connector_and_projects_nothing(
    emulator: tuple[web.Application, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a worker, raw records never reach the gateway's process: building a connector
    or projecting a page here would raise, and the sync succeeds all the same."""

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("the gateway process handled raw records")

    monkeypatch.setattr(AfasConnector, "__init__", refuse)
    monkeypatch.setattr(Projector, "project_page", refuse)
    _app, base = emulator
    services = await _world(tmp_path, base)
    try:
        run = await services.engine.sync("acme", "afas", SyncMode.FULL)
        events = services.store.events_after("acme", 0, 10_000)
    finally:
        services.close()
    assert run.status == "succeeded", run.error
    assert run.counts["fetched"] == PEOPLE
    assert len(events) == run.counts["upserted"] > 0
    assert len({e.subject_id for e in events}) == len(events)


async def test_a_worker_gets_none_of_the_gateways_settings_or_secrets(
    emulator: tuple[web.Application, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker parses what sources send: its environment holds no `SLUIS_*` setting
    (the master key, tokens, the database URL) and no libpq variable."""
    monkeypatch.setenv("SLUIS_MASTER_KEY_FILE", str(tmp_path / "not-for-workers"))
    monkeypatch.setenv("PGPASSWORD", "not-for-workers")
    monkeypatch.setenv("SOME_OTHER_VARIABLE", "kept")
    _app, base = emulator
    services = await _world(tmp_path, base)
    try:
        run = await services.engine.sync("acme", "afas", SyncMode.FULL)
        assert services.engine.source_workers is not None
        (link,) = services.engine.source_workers._links
        environ = Path(f"/proc/{link.process.pid}/environ").read_bytes().split(b"\0")
    finally:
        services.close()
    assert run.status == "succeeded", run.error
    names = {item.split(b"=", 1)[0].decode() for item in environ if item}
    assert "SOME_OTHER_VARIABLE" in names
    assert not [n for n in names if n.startswith(("SLUIS_", "PG"))]


async def test_a_worker_that_dies_fails_the_run_and_the_next_run_gets_a_new_one(
    emulator: tuple[web.Application, str], tmp_path: Path
) -> None:
    app, base = emulator
    services: Services | None = None
    killed: list[int] = []

    def kill_worker(_run_id: str, pages: int) -> None:
        assert services is not None and services.engine.source_workers is not None
        if pages == 1 and not killed:  # the first run's only
            for link in services.engine.source_workers._links:
                killed.append(link.process.pid)
                link.process.kill()

    # Pages of 25, ten in all: when the worker dies after the first page has committed,
    # the gateway holds at most the two pages after it (the engine asks for a page as one
    # arrives, and waits for the page before to commit). With three pages of 100 the
    # whole run could arrive before the kill, and the run then succeeded.
    services = await _world(tmp_path, base, after_page=kill_worker, page_size=25)
    try:
        first = await services.engine.sync("acme", "afas", SyncMode.FULL)
        second = await services.engine.sync("acme", "afas", SyncMode.FULL)
        events = services.store.events_after("acme", 0, 10_000)
        # The dead worker was reaped when the new one started, not left a zombie.
        assert killed and not [pid for pid in killed if Path(f"/proc/{pid}").exists()]
    finally:
        services.close()
    assert first.status == "failed"
    assert first.error == "internal error (SourceWorkerFailed)"
    # The pages after the first may have reached the gateway before the worker died.
    assert 1 <= first.pages <= 3
    assert second.status == "succeeded", second.error
    # The page committed before the worker died is not written again.
    people = [e.subject_id for e in events]
    assert len(people) == len(set(people)) == first.counts["upserted"] + second.counts["upserted"]
    active = app[ENVIRONMENT].people
    assert second.counts["fetched"] == len(active)


async def test_a_refused_source_address_fails_the_run_as_in_process(
    emulator: tuple[web.Application, str], tmp_path: Path
) -> None:
    """The worker judges the address as the gateway would (no private addresses unless
    allowed), and the refusal comes back as the connector's own error."""
    _app, base = emulator
    services = await _world(tmp_path, base, allow_private=False)
    try:
        run = await services.engine.sync("acme", "afas", SyncMode.FULL)
    finally:
        services.close()
    assert run.status == "failed"
    assert run.error is not None and "allow_private_sources" in run.error
    assert run.counts["fetched"] == 0


async def test_started_workers_answer_and_the_next_run_uses_them(
    emulator: tuple[web.Application, str], tmp_path: Path
) -> None:
    """`SourceWorkers.start` (what `sluis serve` does at start) starts the workers and
    waits until each answers; a run then goes to one of them rather than starting one."""
    _app, base = emulator
    services = await _world(tmp_path, base)
    workers = services.engine.source_workers
    assert workers is not None
    try:
        assert workers.pids() == []
        await workers.start()
        started = workers.pids()
        assert len(started) == workers.count == 1
        # Started already: nothing more (and two at once each hear their own answer).
        await asyncio.wait_for(asyncio.gather(workers.start(), workers.start()), 30)
        assert workers.pids() == started
        run = await services.engine.sync("acme", "afas", SyncMode.FULL)
        assert run.status == "succeeded", run.error
        assert workers.pids() == started
    finally:
        services.close()


async def test_a_worker_that_cannot_start_is_reported_by_start(
    emulator: tuple[web.Application, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker process that exits before it answers (here: no Python to run it) fails
    `start` with the reason, instead of leaving the first run to find out."""
    _app, base = emulator
    services = await _world(tmp_path, base)
    workers = services.engine.source_workers
    assert workers is not None
    monkeypatch.setattr(sys, "executable", "/bin/false")
    try:
        with pytest.raises(SourceWorkerFailed, match="stopped"):
            await asyncio.wait_for(workers.start(), 30)
    finally:
        services.close()


async def test_serve_logs_workers_that_do_not_start_and_serves_on(
    emulator: tuple[web.Application, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`sluis serve`'s start (`source_workers_context`) does not fail the gateway over a
    worker that does not start: the feed and the admin API need none. It says so in the
    log, and the next run that needs a worker starts one."""
    _app, base = emulator
    services = await _world(tmp_path, base)
    context = source_workers_context(services)
    monkeypatch.setattr(sys, "executable", "/bin/false")
    try:
        with caplog.at_level(logging.ERROR, logger="sluis.serve"):
            started = context(web.Application())
            await asyncio.wait_for(started.__anext__(), 30)  # the app's start goes on
        assert "the source worker processes did not start" in caplog.text
        monkeypatch.undo()
        run = await services.engine.sync("acme", "afas", SyncMode.FULL)
        assert run.status == "succeeded", run.error
    finally:
        services.close()


def _page() -> MinimisedPage:
    return MinimisedPage(
        subjects=[{"subject_id": "ab" * 16, "first_name": "Émile", "active": True}],
        rejected=[(3, "email is required but missing")],
        dropped=Counter({"BSN": 2}),
        fetched=2,
        next_cursor="c-1",
        watermark=None,
    )


def test_a_page_crosses_unchanged() -> None:
    page = _page()
    assert page_of(page_message(page)) == page


async def _read(data: bytes) -> dict[str, Any] | None:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return await read_frame(reader)


async def test_frames_read_back_and_end_cleanly() -> None:
    assert await _read(encode({"op": "opened", "run": "r1"})) == {"op": "opened", "run": "r1"}
    assert await _read(b"") is None


@pytest.mark.parametrize(
    "data",
    [
        struct.pack(">I", MAX_FRAME_BYTES + 1),  # a length past the limit
        b"\x00\x00",  # a cut header
        struct.pack(">I", 10) + b"{}",  # a cut body
        struct.pack(">I", 3) + b"{{{",  # not JSON
        struct.pack(">I", 2) + b"[]",  # not an object
    ],
    ids=["too-long", "cut-header", "cut-body", "not-json", "not-object"],
)
async def test_a_bad_frame_is_refused(data: bytes) -> None:
    with pytest.raises(FrameError):
        await _read(data)


@pytest.mark.parametrize(
    "message",
    [
        {},
        {**page_message(_page()), "fetched": "many"},
        {**page_message(_page()), "next_cursor": 5},
        {**page_message(_page()), "rejected": [[1]]},
    ],
    ids=["empty", "count-not-a-number", "cursor-not-text", "rejection-short"],
)
def test_a_malformed_page_message_is_refused(message: dict[str, Any]) -> None:
    with pytest.raises(FrameError):
        page_of(message)
