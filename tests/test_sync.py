"""The sync engine end to end: a real AFAS emulator over HTTP, a real SQLite store.

Covers the promises of gateway/sync/engine.py: a page in whole transactions, change detection,
leavers and deletions with the mass-delete guard, refusal without an instruction,
revocation between pages, crash and resume without loss or duplicates, source faults.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from connectors.afas.emulator import EMULATOR_TOKEN, ENVIRONMENT, make_app
from connectors.afas.synthetic import SENSITIVE_FIELDS
from connectors.base import RetryPolicy, SyncMode
from connectors.emulator_kit import CONTROL, Fault
from gateway.ledger.audit import AuditEntry
from gateway.ledger.entry import TransferEntry
from gateway.lifecycle import erasure
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.runtime.storage import DB_FILE
from gateway.sync.engine import PageHook
from gateway.sync.instructions import InstructionRefused, grant, revoke
from gateway.tenancy import (
    change_connector,
    create_connector,
    create_tenant,
    delete_connector,
    set_paused,
)
from mappings import bundled_mapping
from tests.principals import system

FAST = RetryPolicy(attempts=4, initial_wait=0.001, max_wait=0.01)
PEOPLE = 250


@dataclass
class World:
    services: Services
    emulator: web.Application
    server: TestServer
    tmp: Path
    hook: list[PageHook]
    #: Settings every process of this world gets (`source_processes`).
    options: dict[str, Any]

    @property
    def store(self) -> Any:
        return self.services.store

    @property
    def people(self) -> list[dict[str, Any]]:
        return self.emulator[ENVIRONMENT].people

    def events(self) -> list[Any]:
        return self.store.events_after("acme", 0, 100_000)

    def reopen(self, **options: Any) -> Services:
        """A new process on the same data directory (after a crash), with other settings."""
        self.services = _services(self.tmp, self.hook, **{**self.options, **options})
        return self.services


def _services(tmp: Path, hook: list[PageHook], **options: Any) -> Services:
    settings = Settings(
        data_dir=tmp / "data", admin_token="t" * 32, scheduler=False, allow_private_sources=True,
        **options,
    )  # fmt: skip

    def after_page(run_id: str, pages: int) -> Any:
        return hook[0](run_id, pages) if hook else None

    return Services.open(settings, retry=FAST, after_page=after_page)


@pytest.fixture(params=[0, 1], ids=["in-process", "source-worker"])
async def world(
    request: pytest.FixtureRequest, tmp_path: Path, aiohttp_server: Callable[..., Any]
) -> AsyncIterator[World]:
    """Every test runs twice: with the connector in the gateway's process, and in a source
    worker process (`source_processes = 1`), which must behave the same in every respect."""
    emulator = make_app(people=PEOPLE, seed=11)
    server = await aiohttp_server(emulator, host="127.0.0.1")
    hook: list[PageHook] = []
    options = {"source_processes": request.param}
    services = _services(tmp_path, hook, **options)
    now = datetime.now(UTC)
    create_tenant(services.store, services.box, "acme", "Acme BV", now, by=system(services, "acme"))
    create_connector(
        services.store,
        services.box,
        tenant="acme",
        by=system(services, "acme"),
        connector_id="afas",
        type_name="afas",
        base_url=str(server.make_url("/profitrestservices")),
        credentials={"token": EMULATOR_TOKEN},
        mapping_text=bundled_mapping("afas").read_text(),
        settings={"page_size": 100},
        now=now,
    )
    if services.engine.source_workers is not None:
        # Started before the test, as `sluis serve` starts them: a test's timings (an
        # instruction valid for 0.8 s) must not include a worker process's start, which a
        # busy machine stretched past them.
        await services.engine.source_workers.start()
    world = World(services, emulator, server, tmp_path, hook, options)
    yield world
    world.services.close()


def _authorise(world: World) -> str:
    return grant(
        world.store,
        by=system(world.services, "acme"),
        connector="afas",
        purpose="accounts for the e-learning platform",
        now=datetime.now(UTC),
    ).id


def _active_people(world: World) -> list[dict[str, Any]]:
    today = datetime.now(UTC).date().isoformat()
    return [
        p
        for p in world.people
        if p.get("Email_werk") and not (p.get("Datum_uit_dienst") and p["Datum_uit_dienst"] < today)
    ]


def _scan_for_secrets(world: World, *texts: str) -> list[str]:
    secrets = {str(p[k]) for p in world.people for k in SENSITIVE_FIELDS if p.get(k)}
    blob = "\n".join(texts)
    return [s for s in secrets if s in blob]


async def test_full_sync_then_no_change_resync(world: World) -> None:
    _authorise(world)
    run = await world.services.engine.sync("acme", "afas", SyncMode.FULL)
    assert run.status == "succeeded", run.error
    assert run.pages == 3
    assert run.counts["fetched"] == PEOPLE
    active = _active_people(world)
    events = world.events()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len(events) == len(active) == run.counts["upserted"]
    assert {e.type for e in events} == {"subject.upserted"}
    assert all(set(e.data) == {"first_name", "last_name", "email", "job_title"} for e in events)
    assert len({e.subject_id for e in events}) == len(events)

    again = await world.services.engine.sync("acme", "afas", SyncMode.FULL)
    assert again.status == "succeeded"
    assert (again.counts["upserted"], again.counts["deleted"]) == (0, 0)
    assert again.counts["unchanged"] == run.counts["passed"]
    assert len(world.events()) == len(events)

    ledger = world.services.ledger("acme")
    # tenant.created, connector.created, authorisation.granted, then six transfers.
    assert ledger.size() == 3 + 6
    assert [r.entry.action for r in ledger.entries(limit=3) if isinstance(r.entry, AuditEntry)] == [
        "tenant.created", "connector.created", "authorisation.granted"]  # fmt: skip
    report = ledger.verify(world.services.signer.public_key)
    assert report.ok, report.reason
    exported = b"".join(r.entry.model_dump_json().encode() for r in ledger.entries(limit=100))
    from prometheus_client import generate_latest

    metrics = generate_latest(world.services.metrics.registry).decode()
    assert 'sluis_syncs_total{connector_type="afas",outcome="succeeded"} 2.0' in metrics
    leaks = _scan_for_secrets(
        world,
        exported.decode(),
        metrics,
        orjson.dumps([e.data for e in events]).decode(),
        repr(world.store.get_run(run.id)),
    )
    assert leaks == []


def _journaled(world: World, *, present: bool = False) -> list[str]:
    """The ids in the journals, sorted; with `present`, only those written as present (a
    leaver the platform never had is journaled too, but has no event)."""
    rows = world.store.database.all(
        "SELECT j.value ->> 0 FROM run_seen r, json_each(r.writes) j WHERE r.writes IS NOT NULL"
        + (" AND j.value ->> 2 = 1" if present else "")
    )
    return sorted(r[0] for r in rows)


async def test_a_full_run_journals_its_writes_and_merges_them_before_its_sweep(
    world: World,
) -> None:
    """On SQLite a full run journals whom it writes (`RunJournal`) and merges them into the
    subjects when it sweeps: between pages they are in the journal and not
    in `subjects`; an erasure meanwhile strikes its person from the journal; after the run
    the subjects hold everyone it delivered, and the journal and seen log are gone."""
    _authorise(world)
    store = world.store
    seen: dict[int, tuple[list[str], int]] = {}
    erased: list[str] = []

    def look(run_id: str, pages: int) -> None:
        seen[pages] = (_journaled(world), store.count_present("acme", "afas"))
        if pages == 1:
            # Someone delivered, so that the erasure has an event of its own to show.
            erased.append(_journaled(world, present=True)[0])
            by = system(world.services, "acme")
            erasure.erase(store, by, erased, datetime.now(UTC))

    world.hook.append(look)
    run = await world.services.engine.sync("acme", "afas", SyncMode.FULL)
    assert run.status == "succeeded", run.error
    first, second = seen[1][0], seen[2][0]
    assert seen[1][1] == seen[2][1] == 0  # nothing in `subjects` during the run
    assert first and erased[0] not in second
    assert set(first) - set(erased) < set(second)
    events = world.events()
    # The erased person's only event is the erasure's.
    assert [e.type for e in events if e.subject_id == erased[0]] == ["subject.erased"]
    delivered = {e.subject_id for e in events if e.type == "subject.upserted"}
    assert store.present_subjects("acme", "afas") == sorted(delivered)
    assert store.database.all("SELECT count(*) FROM run_seen")[0][0] == 0
    # The next full run compares with the merged subjects: nothing changed, nobody gone.
    world.hook.clear()
    again = await world.services.engine.sync("acme", "afas", SyncMode.FULL)
    assert again.status == "succeeded", again.error
    assert (again.counts["upserted"], again.counts["deleted"]) == (0, 0)
    assert again.counts["suppressed"] == 1


async def test_a_long_full_run_merges_its_journal_between_pages(world: World) -> None:
    """Every `journal_records` people a full run merges its journal between two pages, so
    what it keeps in memory and one merge's hold on the writer stay bounded."""
    _authorise(world)
    store = world.store
    world.services.engine.journal_records = 120
    seen: dict[int, tuple[int, int]] = {}

    def look(run_id: str, pages: int) -> None:
        seen[pages] = (len(_journaled(world)), store.count_present("acme", "afas"))

    world.hook.append(look)
    run = await world.services.engine.sync("acme", "afas", SyncMode.FULL)
    assert run.status == "succeeded", run.error
    # Page 1 journals fewer than 120 people; page 2 takes it past and merges them all.
    assert 0 < seen[1][0] < 120 and seen[1][1] == 0
    assert seen[2][0] == 0 and seen[2][1] > seen[1][0]
    events = world.events()
    ids = [e.subject_id for e in events]
    assert len(ids) == len(set(ids)) == len(_active_people(world))
    assert store.present_subjects("acme", "afas") == sorted(ids)


async def test_a_source_that_repeats_people_merges_the_journal_after_each_such_page(
    world: World,
) -> None:
    """A mapping whose identity is not unique (here the job title: one subject per title)
    meets the same people on every page. Each is compared with what the run journaled,
    and the journal is merged after every page that met anyone again, so no batch scans a
    journal that keeps growing."""
    by = system(world.services, "acme")
    record = world.store.get_connector("acme", "afas")
    bundled = bundled_mapping("afas").read_text()
    assert 'fields = ["Medewerker"]' in bundled
    by_title = bundled.replace('fields = ["Medewerker"]', 'fields = ["Functie"]')
    change_connector(world.store, world.services.box, record, mapping_text=by_title,
                     now=datetime.now(UTC), by=by)  # fmt: skip
    _authorise(world)
    journaled: dict[int, int] = {}

    def look(run_id: str, pages: int) -> None:
        journaled[pages] = len(_journaled(world))

    world.hook.append(look)
    run = await world.services.engine.sync("acme", "afas", SyncMode.FULL)
    assert run.status == "succeeded", run.error
    titles = {p["Functie"] for p in world.people if p.get("Functie")}
    assert 1 < len(titles) < 40
    # Page 1 journals its titles; page 2 meets them again in the journal, and the journal
    # is merged after it. Page 3 meets them in the subjects (no scan) and journals what
    # changed, merged before the sweep.
    assert journaled[1] > 0 and journaled[2] == 0
    assert _journaled(world) == []
    present = world.store.present_subjects("acme", "afas")
    events = world.events()
    # Whoever was met again with the same data got no second event; the last write won.
    latest = {}
    for e in events:
        if e.type == "subject.upserted":
            assert latest.get(e.subject_id) != e.data
            latest[e.subject_id] = e.data
    states = world.store.subject_states("acme", "afas", present)
    assert set(states) == set(present) and set(present) <= set(latest)


async def test_a_page_prepared_while_the_one_before_waits_for_the_writer_is_compared_again(
    world: World,
) -> None:
    """A page is prepared (its people's states read and compared) while the page before it
    is still being written. Here the writer is held by another connection after page 1,
    so page 3 is compared before page 2 is written; a person in both pages (the same
    identity and data: the mapping keys people on their job title) must get one
    `subject.upserted`, not one per page: the page is compared again inside its
    transaction, where page 2's write is visible."""
    by = system(world.services, "acme")
    record = world.store.get_connector("acme", "afas")
    by_title = (
        bundled_mapping("afas")
        .read_text()
        .replace('fields = ["Medewerker"]', 'fields = ["Functie"]')
    )
    change_connector(world.store, world.services.box, record, mapping_text=by_title,
                     now=datetime.now(UTC), by=by)  # fmt: skip
    people = world.people  # keyset pages of 100 by employee number: 100000 + index
    twin = {**people[150], "Functie": "Zeldzaam", "Datum_uit_dienst": None}
    people[150] = twin
    people[220] = {**twin, "Medewerker": people[220]["Medewerker"]}
    world.emulator[ENVIRONMENT].version += 1
    _authorise(world)
    held: list[float] = []

    def hold_the_writer(run_id: str, pages: int) -> None:
        if pages != 1:
            return
        conn = sqlite3.connect(world.tmp / "data" / DB_FILE, check_same_thread=False)
        conn.execute("BEGIN IMMEDIATE")
        started = time.monotonic()

        def release() -> None:
            conn.rollback()
            conn.close()
            held.append(time.monotonic() - started)

        threading.Timer(0.6, release).start()

    world.hook.append(hold_the_writer)
    run = await world.services.engine.sync("acme", "afas", SyncMode.FULL)
    assert run.status == "succeeded", run.error
    assert held and held[0] >= 0.6
    (zeldzaam,) = {
        e.subject_id for e in world.events() if e.data and e.data.get("job_title") == "Zeldzaam"
    }
    assert [e.type for e in world.events() if e.subject_id == zeldzaam] == ["subject.upserted"]
    assert run.counts["unchanged"] >= 1


async def test_incremental_picks_up_changes_and_leavers(world: World) -> None:
    _authorise(world)
    await world.services.engine.sync("acme", "afas", SyncMode.FULL)
    before = len(world.events())
    env = world.emulator[ENVIRONMENT]
    touched = env.touch(5)
    retired = env.retire(3)
    run = await world.services.engine.sync("acme", "afas")  # incremental: has a watermark
    assert run.mode == "incremental", run
    assert run.status == "succeeded", run.error
    new = world.events()[before:]
    assert sorted(e.type for e in new).count("subject.upserted") == len(set(touched) - set(retired))
    assert [e.type for e in new].count("subject.deleted") == 3
    assert run.counts["fetched"] < PEOPLE


async def test_full_sync_deletes_the_gone_but_refuses_a_mass_delete(world: World) -> None:
    _authorise(world)
    await world.services.engine.sync("acme", "afas", SyncMode.FULL)
    env = world.emulator[ENVIRONMENT]
    kept = env.people
    env.people = kept[10:]
    run = await world.services.engine.sync("acme", "afas", SyncMode.FULL)
    assert run.status == "succeeded"
    gone = [e for e in world.events() if e.type == "subject.deleted"]
    assert 0 < len(gone) <= 10 and run.counts["deleted"] == len(gone)

    env.people = kept[10:100]
    before = len(world.events())
    stopped = await world.services.engine.sync("acme", "afas", SyncMode.FULL)
    assert stopped.status == "stopped"
    assert "would delete" in (stopped.error or "") and "nothing was deleted" in (
        stopped.error or ""
    )
    assert [e.type for e in world.events()[before:]] == []


async def test_no_instruction_no_processing(world: World) -> None:
    with pytest.raises(InstructionRefused) as refused:
        await world.services.engine.sync("acme", "afas")
    assert refused.value.code == "missing"
    assert world.emulator[CONTROL].log == []
    last = world.store.last_run("acme", "afas")
    assert last.status == "refused" and "no instruction" in last.error
    entries = world.services.ledger("acme").entries(limit=10)
    assert [r.entry.direction for r in entries if isinstance(r.entry, TransferEntry)] == [
        "refused"]  # fmt: skip


def _revoke_after_first_page(world: World, instruction: str) -> list[float]:
    """Revoke `instruction` once the run's first page has committed; when (monotonic)."""
    revoked_at: list[float] = []

    def revoke_after_first(run_id: str, pages: int) -> None:
        if pages == 1:
            world.store.revoke_instruction(instruction, "dpo@acme.example", datetime.now(UTC))
            revoked_at.append(time.monotonic())

    world.hook.append(revoke_after_first)
    return revoked_at


async def test_revocation_after_a_page_stops_the_next_fetch(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    instruction = _authorise(world)
    revoked_at = _revoke_after_first_page(world, instruction)
    run = await world.services.engine.sync("acme", "afas", SyncMode.FULL)
    assert run.status == "stopped"
    assert instruction in (run.error or "") and "revoked" in (run.error or "")
    _nothing_left_unretrieved(caplog)
    fetches = world.emulator[CONTROL].requests_to("/profitrestservices/connectors")
    # The pages after the first may have been on their way already: each was asked for as
    # the one before it arrived, checked and started while the first committed, before the
    # revocation. Nothing of them is stored.
    assert fetches[0].at < revoked_at[0]
    assert run.pages == 1
    assert len(world.events()) == run.counts["upserted"] <= 100


async def test_nothing_is_asked_of_the_source_after_a_revocation(world: World) -> None:
    """A slow source, revoked once the first page has committed: the second page was asked
    for before that (as the first arrived), and no request reaches the source after it,
    neither the engine's next page nor a source worker's read-ahead, each of which is
    checked before it goes out."""
    instruction = _authorise(world)
    world.emulator[CONTROL].inject(
        *[Fault("slow", seconds=0.5, path="/profitrestservices/connectors") for _ in range(5)]
    )
    revoked_at = _revoke_after_first_page(world, instruction)
    run = await world.services.engine.sync("acme", "afas", SyncMode.FULL)
    assert run.status == "stopped" and run.pages == 1
    fetches = world.emulator[CONTROL].requests_to("/profitrestservices/connectors")
    # Page 2's request left as page 1 arrived, a commit's time before the revocation; a
    # request for page 3 could have left only once page 2 came back, 0.5 s after that.
    assert len(fetches) == 2
    assert all(f.at < revoked_at[0] + 0.25 for f in fetches), (fetches, revoked_at)
    assert len(world.events()) == run.counts["upserted"] <= 100


async def test_each_page_is_asked_for_once(world: World) -> None:
    """Pages fetched ahead (the engine's next one, a source worker's read-ahead) are the
    pages the run goes on with: the source is asked for each page once, and for nothing
    after the last."""
    _authorise(world)
    run = await world.services.engine.sync("acme", "afas", SyncMode.FULL)
    assert run.status == "succeeded"
    fetches = world.emulator[CONTROL].requests_to("/profitrestservices/connectors")
    assert len(fetches) == run.pages == 3
    assert len({f.query for f in fetches}) == 3


async def test_a_source_error_on_a_page_read_ahead_ends_the_run_as_on_any_page(
    world: World,
) -> None:
    """The second page's every attempt fails (it is read while the first is minimised and
    committed): the run ends with that error after committing the first page, the retries
    spent on the second, as if it had been read in turn."""
    _authorise(world)
    control = world.emulator[CONTROL]
    # The first request succeeds; every attempt after it fails.
    control.inject(Fault("slow", seconds=0.0, path="/profitrestservices/connectors"))
    control.inject(
        *[Fault("error", status=500, path="/profitrestservices/connectors") for _ in range(20)]
    )
    run = await world.services.engine.sync("acme", "afas", SyncMode.FULL)
    assert run.status == "failed" and run.pages == 1
    assert "500" in (run.error or "")
    fetches = control.requests_to("/profitrestservices/connectors")
    assert len(fetches) == 1 + FAST.attempts
    assert 0 < len(world.events()) == run.counts["upserted"] <= 100


async def test_a_page_fetched_while_revoking_is_never_committed(world: World) -> None:
    """Revoked while a page is on its way: the page is dropped, nothing of it is stored."""
    instruction = _authorise(world)
    world.emulator[CONTROL].inject(Fault("slow", seconds=0.3, path="/profitrestservices"))
    task = asyncio.create_task(world.services.engine.sync("acme", "afas", SyncMode.FULL))
    await asyncio.sleep(0.1)  # the first page is being served, slowly
    world.store.revoke_instruction(instruction, "dpo@acme.example", datetime.now(UTC))
    run = await task
    assert run.status == "stopped" and run.pages == 0
    assert world.events() == []
    assert world.store.count_present("acme", "afas") == 0
    entries = world.services.ledger("acme").entries(limit=10)
    directions = [r.entry.direction for r in entries if isinstance(r.entry, TransferEntry)]
    assert directions == ["refused"]


#: What an admin (or time) can change under a running sync, each of which stops it.
CHANGES = ("pause", "new_mapping", "revocation", "expiry", "deletion")


def _change(world: World, change: str, instruction: str) -> None:
    """Make `change` to the connector or its instruction, as the admin API would."""
    now = datetime.now(UTC)
    by = system(world.services, "acme")
    record = world.store.get_connector("acme", "afas")
    if change == "pause":
        set_paused(world.store, record, paused=True, now=now, by=by)
    elif change == "new_mapping":
        job_title = '[fields.job_title]\nsource = "Functie"\ncategory = "user.job_title"\n'
        bundled = bundled_mapping("afas").read_text()
        assert job_title in bundled
        narrower = bundled.replace(job_title, "")
        change_connector(world.store, world.services.box, record, mapping_text=narrower,
                         now=now, by=by)  # fmt: skip
    elif change == "revocation":
        revoke(world.store, by=by, instruction=world.store.get_instruction(instruction), now=now)
    elif change == "deletion":
        delete_connector(world.store, tenant="acme", connector="afas", subjects="keep", by=by,
                         now=now)  # fmt: skip


def _stopped_by(world: World, change: str, instruction: str) -> str:
    """The error a run stopped by `change` reports: the same whichever check saw it."""
    current = world.store.get_instruction(instruction)
    if change == "pause":
        paused = world.store.get_connector("acme", "afas").paused_at
        assert paused is not None
        return (
            f"connector afas was paused at {paused.isoformat()}; resume it (PATCH the "
            'connector with {"paused": false}) to sync again'
        )
    if change == "new_mapping":
        now = world.store.get_connector("acme", "afas").mapping_digest
        return (
            f"the mapping of connector afas changed to {now} during the run; instruction "
            f"{instruction} authorises {current.mapping_digest}: a new authorisation is needed"
        )
    if change == "expiry":
        assert current.valid_until is not None
        return f"instruction {instruction} was expired at {current.valid_until.isoformat()}"
    # A deleted connector's instructions were revoked with it: that is what is reported.
    assert current.revoked_at is not None
    return f"instruction {instruction} was revoked at {current.revoked_at.isoformat()}"


def _grant_for(world: World, change: str, seconds: float) -> str:
    """The run's instruction: one that expires `seconds` from now for `expiry`."""
    if change != "expiry":
        return _authorise(world)
    return grant(
        world.store, by=system(world.services, "acme"), connector="afas",
        purpose="accounts for the e-learning platform", now=datetime.now(UTC),
        valid_until=datetime.now(UTC) + timedelta(seconds=seconds),
    ).id  # fmt: skip


@pytest.mark.parametrize("change", CHANGES)
async def test_a_change_between_pages_stops_the_run(world: World, change: str) -> None:
    """Each change an admin (or time) makes between pages stops the run before the next
    page commits (checked before the next fetch, and inside its transaction)."""
    instruction = _grant_for(world, change, 1.0)
    changed_at: list[float] = []

    async def change_after_first(run_id: str, pages: int) -> None:
        if pages != 1:
            return
        if change == "expiry":
            until = world.store.get_instruction(instruction).valid_until
            await asyncio.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.05)
        _change(world, change, instruction)
        changed_at.append(time.monotonic())

    world.hook.append(change_after_first)
    run = await world.services.engine.sync("acme", "afas", SyncMode.FULL)
    assert run.status == "stopped"
    assert run.pages == 1
    assert run.error == _stopped_by(world, change, instruction)
    assert len(world.events()) == run.counts["upserted"] <= 100
    # Only pages already on their way when the change landed were asked for: each request
    # is checked before it leaves, so none reached the source later than a moment after.
    fetches = world.emulator[CONTROL].requests_to("/profitrestservices/connectors")
    assert all(f.at < changed_at[0] + 0.1 for f in fetches), (fetches, changed_at)


@pytest.mark.parametrize("change", CHANGES)
async def test_a_change_during_a_fetch_stops_the_page_inside_its_transaction(
    world: World, change: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A change made while a page is on its way (after the check before its fetch): the
    check inside the page's transaction refuses it, and nothing of it is stored."""
    instruction = _grant_for(world, change, 0.8)
    # The fetch's own polls of the instruction would see a revocation or expiry first.
    world.services.engine.revocation_poll = 60.0
    control = world.emulator[CONTROL]
    control.inject(Fault("slow", seconds=1.2 if change == "expiry" else 0.6,
                         path="/profitrestservices"))  # fmt: skip
    task = asyncio.create_task(world.services.engine.sync("acme", "afas", SyncMode.FULL))
    while control.faults and not task.done():  # taken when the first request reaches it
        await asyncio.sleep(0.01)
    assert not control.faults, f"the run ended before it asked the source: {task.result()}"
    _change(world, change, instruction)
    run = await task
    assert run.status == "stopped" and run.pages == 0
    assert run.error == _stopped_by(world, change, instruction)
    assert world.events() == []
    assert world.store.count_present("acme", "afas") == 0
    assert len(control.requests_to("/profitrestservices/connectors")) == 1
    _nothing_left_unretrieved(caplog)


def _nothing_left_unretrieved(caplog: pytest.LogCaptureFixture) -> None:
    """A refused commit and a refused fetch of the page after it both ended the run: it
    reports the first, and the other's failure was taken, not left for asyncio to log as
    never retrieved (collected now, so that it would be logged inside the test)."""
    gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


class Crash(BaseException):
    """Stands in for the process dying: nothing in the engine catches it."""


async def test_crash_between_pages_resumes_without_loss_or_duplicates(world: World) -> None:
    _authorise(world)

    def crash_after_second(run_id: str, pages: int) -> None:
        if pages == 2:
            raise Crash

    world.hook.append(crash_after_second)
    with pytest.raises(Crash):
        await world.services.engine.sync("acme", "afas", SyncMode.FULL)
    world.hook.clear()
    world.services.close()
    services = world.reopen()
    interrupted = services.store.running_runs()
    assert len(interrupted) == 1 and interrupted[0].pages == 2
    [resumed] = await services.engine.resume_interrupted()
    assert resumed.status == "succeeded", resumed.error
    assert resumed.pages == 3 and resumed.counts["fetched"] == PEOPLE
    events = world.events()
    ids = [e.subject_id for e in events]
    assert len(ids) == len(set(ids)) == len(_active_people(world))
    assert services.ledger("acme").verify(services.signer.public_key).ok


def _inbound(world: World) -> list[TransferEntry]:
    entries = world.services.ledger("acme").entries(limit=1000)
    return [
        r.entry
        for r in entries
        if isinstance(r.entry, TransferEntry) and r.entry.direction == "inbound"
    ]


async def test_a_page_commits_in_transactions_of_commit_records(world: World) -> None:
    world.services.close()
    services = world.reopen(commit_records=30)
    _authorise(world)
    run = await services.engine.sync("acme", "afas", SyncMode.FULL)
    assert run.status == "succeeded", run.error
    assert (run.pages, run.counts["fetched"]) == (3, PEOPLE)
    events = world.events()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len({e.subject_id for e in events}) == len(events) == len(_active_people(world))
    inbound = _inbound(world)
    # Pages of 100, 100 and 50 people in transactions of at most 30: 4 + 4 + 2 entries,
    # each naming the people it carried; together they count what the run counted.
    carried = [e.subjects.count if e.subjects else len(e.subject_ids or []) for e in inbound]
    assert all(0 < n <= 30 for n in carried)
    assert sum(carried) == run.counts["passed"]
    assert len(inbound) == 10
    assert sum(e.counts.records for e in inbound) == run.counts["fetched"]
    assert sum(e.counts.quarantined for e in inbound) == run.counts["quarantined"]
    assert sum(e.counts.dropped_fields for e in inbound) == run.counts["dropped_fields"]
    assert services.ledger("acme").verify(services.signer.public_key).ok


async def test_a_failure_between_a_pages_transactions_leaves_no_duplicate(world: World) -> None:
    """A page's first transactions commit, a later one fails (the disk is full, here a
    trigger that refuses an insert): what committed stays, and the next sync writes each
    person's event once."""
    world.services.close()
    services = world.reopen(commit_records=30)
    _authorise(world)
    path = world.tmp / "data" / DB_FILE
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TRIGGER disk_full BEFORE INSERT ON events WHEN NEW.seq = 150 "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    failed = await services.engine.sync("acme", "afas", SyncMode.FULL)
    assert (failed.status, failed.pages) == ("failed", 1)
    kept = world.events()
    # Page 1's events, and those of page 2's transactions before the failing one.
    assert failed.counts["upserted"] < len(kept) < 149
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER disk_full")
    again = await services.engine.sync("acme", "afas", SyncMode.FULL)
    assert again.status == "succeeded", again.error
    events = world.events()
    assert events[: len(kept)] == kept
    ids = [e.subject_id for e in events]
    assert len(ids) == len(set(ids)) == len(_active_people(world))
    assert services.ledger("acme").verify(services.signer.public_key).ok


async def test_a_run_taken_over_between_a_pages_transactions_commits_no_more(
    world: World,
) -> None:
    """Each of a page's transactions is fenced by the run's lease, not only the last: here
    another replica takes the run (a trigger hands it over inside a transaction), and that
    transaction and everything after it is left to the new owner."""
    world.services.close()
    services = world.reopen(commit_records=30)
    _authorise(world)
    path = world.tmp / "data" / DB_FILE
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TRIGGER taken_over AFTER INSERT ON events WHEN NEW.seq = 150 "
            "BEGIN UPDATE sync_runs SET owner = 'replica-b'; END"
        )
    run = await services.engine.sync("acme", "afas", SyncMode.FULL)
    assert run.status == "running" and run.pages == 1  # the new owner's to finish
    events = world.events()
    assert run.counts["upserted"] < len(events) < 149  # no event of the refused chunk
    assert services.ledger("acme").verify(services.signer.public_key).ok


async def test_source_faults(world: World) -> None:
    _authorise(world)
    control = world.emulator[CONTROL]
    control.inject(Fault("error", status=503), Fault("truncate"), Fault("error", status=502))
    world.emulator[ENVIRONMENT].break_email(1)
    run = await world.services.engine.sync("acme", "afas", SyncMode.FULL)
    assert run.status == "succeeded", run.error
    assert run.counts["quarantined"] == 1
    assert len(world.events()) == len(_active_people(world))

    control.inject(*[Fault("error", status=503)] * 10)
    failed = await world.services.engine.sync("acme", "afas", SyncMode.FULL)
    assert failed.status == "failed"
    assert failed.error == "afas: the source failed (HTTP 503)"


async def test_one_run_per_connector(world: World) -> None:
    _authorise(world)
    gate = asyncio.Event()

    async def hold(run_id: str, pages: int) -> None:
        await gate.wait()

    world.hook.append(hold)
    first = asyncio.create_task(world.services.engine.sync("acme", "afas", SyncMode.FULL))
    await asyncio.sleep(0.2)
    from gateway.sync.engine import SyncBusy

    with pytest.raises(SyncBusy):
        await world.services.engine.start("acme", "afas")
    gate.set()
    assert (await first).status == "succeeded"


async def test_scheduler_runs_authorised_connectors_on_their_interval(world: World) -> None:
    from gateway.sync.scheduler import Scheduler

    scheduler = Scheduler(world.services, tick=0.01)
    await scheduler.tick_once()
    assert world.store.last_run("acme", "afas") is None  # no instruction: not due
    _authorise(world)
    await scheduler.tick_once()
    for _ in range(200):
        if not scheduler._running:
            break
        await asyncio.sleep(0.02)
    first = world.store.last_run("acme", "afas")
    assert first is not None and first.status == "succeeded", first
    await scheduler.tick_once()  # the interval (an hour) has not passed
    assert world.store.last_run("acme", "afas").id == first.id
    later = world.services.clock() + timedelta(hours=2)
    record = world.store.get_connector("acme", "afas")
    assert scheduler.due(record, later)
    assert first.mode == "full"
    assert scheduler.mode_for(record, later) is None  # incremental from the watermark
    assert scheduler.mode_for(record, later + timedelta(days=1)) == SyncMode.FULL
    await scheduler.stop()
