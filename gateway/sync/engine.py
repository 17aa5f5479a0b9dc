"""Runs one connector under one instruction, page by page, with checkpoints.

For each page: re-check the instruction (a revocation stops the run before the next
fetch; it is checked once more inside the page's transaction), fetch and minimise (the
connector's `fetch_page`), compare each subject's content digest with what the gateway
last saw, and commit in ONE transaction the changed subjects, their feed events (the
outbox the feed reads), the run's cursor and an inbound ledger entry. A crash between
pages therefore resumes from the last committed cursor without losing or repeating an
event: the page after the cursor was either committed whole or not at all.

A full sync also learns who is gone: subjects present before but not seen in this run
become `subject.deleted` events, unless that would delete more than the connector's
`max_delete_share` (default 20%), in which case the run stops and says so instead of
mass-deleting (a half-empty export is likelier than half the staff leaving).

Several processes (replicas on PostgreSQL) may run syncs against one store: a run belongs
to the process that started or claimed it, for as long as it keeps renewing its lease (with
every committed page, and a heartbeat while a page is being fetched). Every page commit is
fenced by that ownership, so a process that stalled past its lease cannot write over the
replica that took the run over; a run whose owner died is claimed by another
(`claim_orphans`) and carried on from its last committed page.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol, cast

from connectors.base import (
    Connector,
    ConnectorConfig,
    ConnectorError,
    ConnectorStats,
    MinimisedPage,
    PageRequest,
    RetryPolicy,
    SyncMode,
)
from connectors.http import source_session
from connectors.registry import connector_type
from gateway.keys.master import SecretBox
from gateway.ledger import entry as entries
from gateway.ledger.checkpoint import CheckpointSigner
from gateway.ledger.log import Ledger
from gateway.ledger.record import record as record_transfer
from gateway.minimise.egress import SubjectRecord
from gateway.minimise.mapping import Mapping as MinimisationMapping
from gateway.minimise.mapping import parse_mapping
from gateway.minimise.projector import Projector, merge_dropped
from gateway.runtime.config import COMMIT_RECORDS
from gateway.runtime.metrics import GatewayMetrics
from gateway.store.protocols import LeaseLost, Store, StoreError
from gateway.store.records import (
    ConnectorRecord,
    Instruction,
    NewEvent,
    RunRecord,
    RunStatus,
    SubjectWrite,
    new_event_id,
)
from gateway.sync.changes import content_digest
from gateway.sync.commit import (
    Batch,
    Committed,
    Prepared,
    RunJournal,
    prepare_batch,
    write_batch,
)
from gateway.sync.instructions import (
    InstructionRefused,
    require_active,
    require_still_active,
    still_active,
)
from gateway.sync.revocation import Revocations
from gateway.sync.source_process import SourceWorkers
from gateway.tenancy import connector_credentials, credentials_keeper, subject_key

log = logging.getLogger("sluis.sync")

COUNT_KEYS: Final = (
    "fetched", "passed", "quarantined", "dropped_fields", "upserted", "deleted", "unchanged",
)  # fmt: skip


class ConnectorPaused(Exception):
    """The admin paused the connector: no run starts, and a running one stops before its
    next page."""

    def __init__(self, connector: str, paused_at: datetime) -> None:
        super().__init__(
            f"connector {connector} was paused at {paused_at.isoformat()}; resume it "
            '(PATCH the connector with {"paused": false}) to sync again'
        )
        self.paused_at = paused_at


class PushedSource(Exception):
    """The connector's source pushes to the gateway (SCIM): there is nothing to fetch."""

    def __init__(self, connector: str) -> None:
        super().__init__(
            f"connector {connector} is not synced: its identity provider pushes changes to "
            "the gateway's SCIM endpoint as they happen"
        )


class SyncBusy(Exception):
    """The connector already has a running sync."""

    def __init__(self, run_id: str | None) -> None:
        super().__init__("a sync of this connector is already running")
        self.run_id = run_id


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _RunState:
    record: ConnectorRecord
    mapping: MinimisationMapping
    instruction: Instruction
    run: RunRecord
    counts: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    watermark: str | None = None
    #: Set by the heartbeat when another process has taken the run over.
    lease_lost: bool = False
    #: A full run's journal of its subject writes, on a store that journals them
    #: (`Store.journals_subjects`); merged before the sweep, or when the run ends.
    journal: RunJournal | None = None


#: Called after each committed page with (run id, pages committed so far); tests use it to
#: revoke or "crash" between pages.
PageHook = Callable[[str, int], Any]
#: People a full run journals before it merges them between two pages (`RunJournal`):
#: bounds what it keeps in memory (~7 MB of id hashes for 100,000) and how long one merge
#: holds the writer (0.24 s for 100,000 on this 2-core machine), while each merge still
#: writes each touched page of `subjects` to the WAL once for hundreds of commits.
JOURNAL_RECORDS: Final = 100_000
#: Default seconds a run stays with a process that stopped renewing its lease.
LEASE_SECONDS: Final = 30.0


def replica_name() -> str:
    """This process's name as a run owner: host, pid and a random part (a restarted
    process with a reused pid is another owner)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _Source(Protocol):
    """A run's connector as the page loop uses it: in this process (`_InProcess`) or in a
    source worker (`gateway.sync.source_process.RemoteConnector`)."""

    @property
    def stats(self) -> ConnectorStats: ...
    @property
    def records_seen(self) -> int: ...
    @property
    def unseen_source_fields(self) -> list[str]: ...
    async def fetch_page(self, request: PageRequest) -> MinimisedPage: ...


class _InProcess:
    """A connector in this process, with the projector it minimises through."""

    def __init__(self, connector: Connector, projector: Projector) -> None:
        self.connector, self.projector = connector, projector

    @property
    def stats(self) -> ConnectorStats:
        return self.connector.stats

    @property
    def records_seen(self) -> int:
        return self.projector.records_seen

    @property
    def unseen_source_fields(self) -> list[str]:
        return self.projector.unseen_source_fields

    async def fetch_page(self, request: PageRequest) -> MinimisedPage:
        return await self.connector.fetch_page(request)


async def _arrival(
    fetching: asyncio.Future[MinimisedPage], committing: asyncio.Future[None] | None
) -> MinimisedPage:
    """The page being fetched, once it has arrived; but if the page before it fails to
    commit meanwhile, that ends the run: at once, not when the fetch is done, and rather
    than the fetch's own failure (a commit refused after a revocation, a lost lease, a
    store error come before what the page after it met)."""
    if committing is not None and not committing.done():
        either: list[asyncio.Future[Any]] = [fetching, committing]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    _raise_failed(committing)
    try:
        return await fetching
    except Exception:
        if committing is not None:
            await asyncio.wait([committing])
            _raise_failed(committing)
        raise


def _raise_failed(task: asyncio.Future[None] | None) -> None:
    if task is not None and task.done() and not task.cancelled():
        failure = task.exception()
        if failure is not None:
            raise failure


class RunTakenOver(Exception):
    """The run's lease ran out and another process carries it on (or it was stopped)."""


class SyncEngine:
    """Runs syncs against one store. Store calls run on worker threads."""

    def __init__(
        self,
        store: Store,
        box: SecretBox,
        signer: CheckpointSigner,
        *,
        metrics: GatewayMetrics | None = None,
        clock: Callable[[], datetime] = utcnow,
        retry: RetryPolicy | None = None,
        after_page: PageHook | None = None,
        allow_private_sources: bool = False,
        revocation_poll: float = 1.0,
        replica: str | None = None,
        lease_seconds: float = LEASE_SECONDS,
        commit_records: int = COMMIT_RECORDS,
        journal_records: int = JOURNAL_RECORDS,
        source_workers: SourceWorkers | None = None,
    ) -> None:
        self.store = store
        #: Where connectors run: worker processes (`gateway.sync.source_process`), or this
        #: process when None.
        self.source_workers = source_workers
        #: The most subjects one transaction of a page's commit carries (`_commit_page`).
        self.commit_records = commit_records
        #: People a full run journals before it merges them into the subjects between two
        #: pages (`RunJournal`; also after a page that met people again, and always before
        #: its sweep).
        self.journal_records = journal_records
        #: This process as the owner of the runs it runs.
        self.replica = replica or replica_name()
        self.lease = timedelta(seconds=lease_seconds)
        #: Stops fetches under a revoked instruction; the admin API's revoke calls it.
        self.revocations = Revocations()
        self.revocation_poll = revocation_poll
        self.allow_private_sources = allow_private_sources
        self.box = box
        self.signer = signer
        self.metrics = metrics or GatewayMetrics()
        self.clock = clock
        self.retry = retry
        self.after_page = after_page
        self._ledgers: dict[str, Ledger] = {}

    def ledger(self, tenant: str) -> Ledger:
        if tenant not in self._ledgers:
            self._ledgers[tenant] = Ledger(self.store.ledger, tenant, self.signer, clock=self.clock)
        return self._ledgers[tenant]

    # ------------------------------------------------------------------ entry points

    async def start(
        self,
        tenant: str,
        connector_id: str,
        mode: SyncMode | None = None,
        *,
        confirm_deletes: int | None = None,
    ) -> RunRecord:
        """Check the instruction and claim the connector; returns the new run record.

        Raises `PushedSource`, `ConnectorPaused`, `InstructionRefused` (after reporting it)
        or `SyncBusy`.
        Call `run` next. `confirm_deletes` lets a full run delete exactly that many subjects
        past the connector's `max_delete_share` (see `_remove_gone`).
        """
        record = await asyncio.to_thread(self.store.get_connector, tenant, connector_id)
        if connector_type(record.type).pushed:
            raise PushedSource(connector_id)
        if record.paused_at is not None:
            raise ConnectorPaused(connector_id, record.paused_at)
        now = self.clock()
        try:
            instruction = await asyncio.to_thread(
                require_active, self.store, tenant, connector_id, record.mapping_digest, now
            )
        except InstructionRefused as refusal:
            await asyncio.to_thread(self._report_refusal, record, refusal, None)
            raise
        full_only = connector_type(record.type).full_only
        if full_only:
            mode = SyncMode.FULL  # every export is whole: leavers are who is missing
        elif mode is None:
            mode = SyncMode.INCREMENTAL if record.watermark else SyncMode.FULL
        run = RunRecord(
            id=f"run_{uuid.uuid4().hex}",
            tenant=tenant,
            connector=connector_id,
            mode=mode.value,
            status="running",
            started_at=now,
            instruction_id=instruction.id,
            since=record.watermark if mode is SyncMode.INCREMENTAL or full_only else None,
            counts=dict.fromkeys(COUNT_KEYS, 0),
            confirm_deletes=confirm_deletes,
            owner=self.replica,
            lease_until=now + self.lease,
        )
        if not await asyncio.to_thread(self.store.start_run, run):
            last = await asyncio.to_thread(self.store.last_run, tenant, connector_id)
            raise SyncBusy(last.id if last and last.status == "running" else None)
        return run

    async def sync(self, tenant: str, connector_id: str, mode: SyncMode | None = None) -> RunRecord:
        """Start and run a sync to its end; returns the finished run record."""
        run = await self.start(tenant, connector_id, mode)
        return await self.run(run)

    async def resume_interrupted(self, concurrency: int = 4) -> list[RunRecord]:
        """Continue runs a previous process left running (call once at start-up).

        Up to `concurrency` at a time, each on its own: one slow or failing source must not
        hold back (or take down) the resumption of another. Returns the runs that finished.
        """
        gate = asyncio.Semaphore(max(1, concurrency))
        runs = await self.claim_orphans(starting=True)
        outcomes = await asyncio.gather(
            *(self.resume(run, gate) for run in runs), return_exceptions=True
        )
        finished = []
        for run, outcome in zip(runs, outcomes, strict=True):
            if isinstance(outcome, RunRecord):
                finished.append(outcome)
            elif isinstance(outcome, Exception):
                log.error("resuming run %s failed (%s)", run.id, type(outcome).__name__)
            else:
                raise outcome
        return finished

    async def claim_orphans(self, *, starting: bool = False, limit: int = 100) -> list[RunRecord]:
        """Take over running runs no live process owns: on a shared store those whose
        lease ran out; on an unshared one at start, all of them (its one process died)."""
        now = self.clock()
        expired_before = None if starting and not self.store.shared else now
        return await asyncio.to_thread(
            self.store.claim_runs,
            self.replica,
            now + self.lease,
            limit,
            expired_before=expired_before,
        )

    async def resume(self, run: RunRecord, gate: asyncio.Semaphore) -> RunRecord:
        """Carry one interrupted run on once `gate` admits it."""
        async with gate:
            log.info("resuming interrupted run %s of %s/%s", run.id, run.tenant, run.connector)
            return await self.run(run)

    async def run(self, run: RunRecord) -> RunRecord:
        """Drive a claimed run from its cursor to the end (or to a clear stop)."""
        started = time.monotonic()
        record = await asyncio.to_thread(self.store.get_connector, run.tenant, run.connector)
        ctype = record.type
        status: RunStatus = "failed"
        error: str | None = None
        kind = "unknown"
        state: _RunState | None = None
        try:
            instruction = await asyncio.to_thread(
                self.store.get_instruction, run.instruction_id or ""
            )
            mapping = parse_mapping(record.mapping_text, f"mapping of connector {record.id}")
            state = _RunState(record, mapping, instruction, run)
            state.counts.update({k: int(v) for k, v in run.counts.items()})
            state.watermark = run.watermark
            async with self._heartbeat(state):
                status, error = await self._pages(state)
        except (RunTakenOver, LeaseLost):
            # Another process owns the run now (or it was stopped): it is theirs to finish.
            log.warning("sync run %s is no longer this process's; left to its owner", run.id)
            return await asyncio.to_thread(self.store.get_run, run.id)
        except InstructionRefused as refusal:
            await asyncio.to_thread(self._report_refusal, record, refusal, run.id)
            status, error = "stopped", str(refusal)
        except ConnectorPaused as paused:
            status, error = "stopped", str(paused)
        except ConnectorError as exc:
            status, error = "failed", str(exc)
            kind = exc.kind
        except asyncio.CancelledError:
            # Shutting down: the run keeps its claim on the connector and its cursor, and
            # `resume_interrupted` carries it on at the next start, as after a crash.
            log.info("sync run %s paused by shutdown; it resumes at the next start", run.id)
            raise
        except Exception as exc:
            log.exception("sync run %s failed", run.id)
            status, error = "failed", f"internal error ({type(exc).__name__})"
            kind = "internal"
        try:
            finished = await asyncio.to_thread(self._finish, run, status, state, error)
        except LeaseLost:
            log.warning("sync run %s was taken over before it finished here", run.id)
            return await asyncio.to_thread(self.store.get_run, run.id)
        if status == "failed":
            # Ids and the kind of failure only: the error text can quote a source's words.
            ids = {"tenant": run.tenant, "connector": run.connector, "run_id": run.id}
            log.warning(
                "sync run %s of %s/%s failed: %s", run.id, run.tenant, run.connector, kind,
                extra={**ids, "error_kind": kind},
            )  # fmt: skip
        self.metrics.syncs.labels(ctype, status).inc()
        self.metrics.sync_duration.labels(ctype).observe(time.monotonic() - started)
        return finished

    # ------------------------------------------------------------------ ownership

    @contextlib.asynccontextmanager
    async def _heartbeat(self, state: _RunState) -> AsyncIterator[None]:
        """Renew the run's lease every third of its length while the run goes on. A lease
        found taken marks the state; the next check before or during a fetch stops the run.
        A store that cannot be reached is tried again; if it stays away past the lease,
        another process may take the run and this one's next commit is refused."""

        async def beat() -> None:
            interval = self.lease.total_seconds() / 3
            while True:
                await asyncio.sleep(interval)
                until = self.clock() + self.lease
                try:
                    mine = await asyncio.to_thread(
                        self.store.renew_lease, state.run.id, self.replica, until
                    )
                except StoreError:
                    log.warning("could not renew the lease of run %s; retrying", state.run.id)
                    continue
                if not mine:
                    state.lease_lost = True
                    return

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ------------------------------------------------------------------ the page loop

    async def _pages(self, state: _RunState) -> tuple[RunStatus, str | None]:
        run, record = state.run, state.record
        tenant = await asyncio.to_thread(self.store.get_tenant, run.tenant)
        config = ConnectorConfig(
            type=record.type,
            base_url=record.base_url,
            credentials=connector_credentials(self.box, record),
            settings=record.settings,
        )
        mode = SyncMode(run.mode)
        cursor = self._open_cursor(run)
        state.journal = await self._open_journal(run, mode)
        source: _Source | None = None
        try:
            async with self._source(state, config, subject_key(self.box, tenant)) as source:
                unchanged = await self._page_loop(state, source, mode, cursor)
        finally:
            if source is not None:
                stats = source.stats
                self.metrics.source_retries.labels(record.type).inc(stats.retries)
                self.metrics.source_rate_limited.labels(record.type).inc(stats.rate_limited)
        self._note_unseen_fields(state, source)
        if mode is SyncMode.FULL and not unchanged:
            return await asyncio.to_thread(self._remove_gone, state)
        return "succeeded", None

    async def _page_loop(
        self, state: _RunState, source: _Source, mode: SyncMode, cursor: str | None
    ) -> bool:
        """Fetch and commit the run's pages from `cursor` on; whether the source said
        nothing changed (`MinimisedPage.unchanged`).

        A page commits in worker threads while the pages after it are fetched, and is
        prepared (its people's stored states read and compared, its events rendered)
        while the page before it is written: the source's work, the gateway's and the
        store's overlap instead of adding up. The next page is asked for as soon as a
        page arrives, whether or not the one before it has committed yet, so neither side
        waits on the other's slower moments: one page is written, one prepared, one
        fetched (a source worker also reads the one after that ahead). Every request to
        the source is checked first, by the connector itself before each attempt
        (`_check_instruction`), so nothing is asked of it once a revocation, pause or new
        mapping has landed. Writes stay in page order: a page's first write waits for its
        `turn`, given once the page before it has committed and been reported
        (`after_page`); each checks the instruction and the connector again inside its
        transaction, so a page fetched before one landed is never committed.
        """
        run = state.run
        pages = run.pages
        committing: asyncio.Future[None] | None = None
        fetching: asyncio.Future[MinimisedPage] | None = None
        unchanged = False
        before: frozenset[str] = frozenset()
        try:
            fetching = self._fetch(state, source, mode, cursor)
            while True:
                page = await _arrival(fetching, committing)
                unchanged = page.unchanged
                if not page.last:
                    fetching = self._fetch(state, source, mode, page.next_cursor)
                previous = committing
                turn = asyncio.get_running_loop().create_future()
                committing = asyncio.ensure_future(self._commit_page(state, page, turn, before))
                before = frozenset(s["subject_id"] for s in page.subjects)
                try:
                    if previous is not None:
                        await previous
                        pages += 1
                        await self._page_done(run.id, pages)
                except BaseException:
                    turn.cancel()  # the page is not written after all
                    raise
                turn.set_result(None)
                if page.last:
                    break
            await committing
            committing = None
            pages += 1
            await self._page_done(run.id, pages)
        finally:
            if fetching is not None and not fetching.done():
                fetching.cancel()  # the page after one that failed, or a stop
                await asyncio.wait([fetching])
            if committing is not None and not committing.done():
                # A worker thread cannot be stopped: let the commit it is making end
                # before the run is finished (or left to resume).
                await asyncio.wait([committing])
            # The run ends with what stopped it first (raised above); what the other
            # one met is taken here, not left to be logged as unretrieved.
            for task in (fetching, committing):
                if task is not None and not task.cancelled():
                    task.exception()
        return unchanged

    def _fetch(
        self, state: _RunState, source: _Source, mode: SyncMode, cursor: str | None
    ) -> asyncio.Future[MinimisedPage]:
        """The page at `cursor`, asked for now, while revocations are watched for (a pushed
        one cancels the fetch: `Revocations.watch`); the connector checks the run before
        each attempt at the source."""
        if state.lease_lost:
            raise RunTakenOver(state.run.id)
        return asyncio.ensure_future(
            self.revocations.watch(
                state.instruction.id,
                functools.partial(source.fetch_page, PageRequest(mode, cursor, state.run.since)),
                check=lambda: self._check_instruction(state),
                poll=self.revocation_poll,
            )
        )

    async def _open_journal(self, run: RunRecord, mode: SyncMode) -> RunJournal | None:
        """A full run's journal, on a store that journals (`Store.journals_subjects`). A
        resumed run's journal goes into the subjects first, so the new one holds only this
        process's writes; on any store, as a run may resume on a copy of another
        (`sluis db copy`)."""
        if mode is not SyncMode.FULL:
            return None
        await asyncio.to_thread(self.store.merge_run_writes, run.id, owner=self.replica)
        return RunJournal(self.store, run.id) if self.store.journals_subjects else None

    @contextlib.asynccontextmanager
    async def _source(
        self, state: _RunState, config: ConnectorConfig, key: bytes
    ) -> AsyncIterator[_Source]:
        """The run's connector: in a source worker process when the engine has them
        (`source_workers`), else in this one. Closed (`aclose`) when the block ends."""
        record = state.record

        def before_attempt() -> Awaitable[None]:
            return self._check_instruction(state)

        keep = credentials_keeper(self.store, self.box, state.run.tenant, record.id)
        if self.source_workers is not None:
            remote = await self.source_workers.open(
                config, record.mapping_text, key, retry=self.retry,
                allow_private=self.allow_private_sources, before_attempt=before_attempt,
                keep_credentials=keep,
            )  # fmt: skip
            try:
                yield remote
            finally:
                await remote.aclose()
            return
        projector = Projector(state.mapping, key)
        async with source_session(
            record.base_url, allow_private=self.allow_private_sources
        ) as session:
            connector = connector_type(record.type).connector(
                config, projector, session, retry=self.retry,
                before_attempt=before_attempt, keep_credentials=keep,
            )  # fmt: skip
            try:
                yield _InProcess(connector, projector)
            finally:
                await connector.aclose()

    async def _page_done(self, run_id: str, pages: int) -> None:
        if self.after_page is not None:
            outcome = self.after_page(run_id, pages)
            if asyncio.iscoroutine(outcome):
                await outcome

    def _still_standing(self, state: _RunState) -> None:
        """The admin's later changes reach a running run before its next page: a pause
        stops it, a new mapping does (the run's instruction authorises the old), and so does
        the instruction's revocation or expiry. The connector and its instructions are read
        in one statement (`Store.source_standing`): this runs before every fetch and inside
        every transaction of a page, after the tenant's lock, where each statement is a
        round trip on PostgreSQL that the lock is held for."""
        current, instructions = self.store.source_standing(state.run.tenant, state.run.connector)
        if current is None:
            # Deleted: its instructions were revoked with it, which this reports.
            self._still_authorised(state)
            return
        if current.paused_at is not None:
            raise ConnectorPaused(current.id, current.paused_at)
        if current.mapping_digest != state.instruction.mapping_digest:
            raise InstructionRefused(
                "mapping_changed",
                f"the mapping of connector {current.id} changed to {current.mapping_digest} "
                f"during the run; instruction {state.instruction.id} authorises "
                f"{state.instruction.mapping_digest}: a new authorisation is needed",
                state.instruction.id,
            )
        for instruction in instructions:
            if instruction.id == state.instruction.id:
                still_active(instruction, self.clock())
                return
        self._still_authorised(state)  # not the connector's: read (and refused) by its id

    def _note_unseen_fields(self, state: _RunState, source: _Source) -> None:
        """Mapped source fields that no fetched record held: most likely a typo in the
        mapping, which would leave an egress field empty for everyone without a word.
        Counted in the run (`unseen_source_fields`), named in the log, and a gauge."""
        if not source.records_seen:
            return
        unseen = source.unseen_source_fields
        run = state.run
        state.counts["unseen_source_fields"] = len(unseen)
        self.metrics.mapping_fields_unseen.labels(run.tenant, run.connector).set(len(unseen))
        if unseen:
            log.warning(
                "sync run %s of connector %s: mapped source fields in no fetched record: %s "
                "(a typo in the mapping?)",
                run.id, run.connector, ", ".join(unseen),
            )  # fmt: skip

    def _still_authorised(self, state: _RunState) -> None:
        require_still_active(self.store, state.instruction, self.clock())

    async def _check_instruction(self, state: _RunState) -> None:
        """Before every attempt at a source (the first attempt at each page included), and
        on polls while one runs: revoked here (no store read needed) or in the store, by
        any process, stops the fetch; so do a pause, a new mapping (`_still_standing`), and
        the run having been taken over by another process. The engine asks for a page
        without a check of its own: this one comes a moment later, before the request."""
        if state.lease_lost:
            raise RunTakenOver(state.run.id)
        if self.revocations.is_revoked(state.instruction.id):
            await asyncio.to_thread(self._still_authorised, state)
            raise self.revocations.refusal(state.instruction.id)
        await asyncio.to_thread(self._still_standing, state)
        if self.revocations.is_revoked(state.instruction.id):
            raise self.revocations.refusal(state.instruction.id)

    async def _commit_page(
        self,
        state: _RunState,
        page: MinimisedPage,
        turn: Awaitable[None] | None = None,
        before: Collection[str] = (),
    ) -> None:
        """The page through the one commit path (`gateway.sync.commit`), in transactions
        of at most `commit_records` subjects; the last one also writes the run's cursor,
        counts and lease.

        Why chunks: on SQLite a transaction holds the one writer, and a feed page's ledger
        entry waits for it; a whole page of 1,000 people holds it for tens of ms. Each
        chunk is a whole commit by itself (changes, events and an inbound entry for what
        it carries), so invariant 5 holds per chunk. A run stopped between chunks resumes
        from the page's start: the chunks already written compare as unchanged, so no
        event is written twice (the ledger then truthfully shows those records received
        twice).

        Why two threads: a chunk is prepared (`_prepare`: read what was stored of its
        people, compare, render its events and inbound entry) while the chunk before it is
        written (`_write`), so the writer's transaction holds only the writes; the page's
        first chunk while the page before it is written (`before`: that page's people),
        and it is written once that page's commit has been reported (`turn`). A chunk
        prepared while the one before was being written is handed that one's people as
        `stale`: the rare person in both is compared again inside the transaction.
        """
        run = state.run
        now = self.clock()
        # The connector's Subject dicts, as the projector made them (connectors/ cannot
        # name gateway types).
        subjects = cast("list[SubjectRecord]", page.subjects)
        size = self.commit_records
        chunks = [subjects[i : i + size] for i in range(0, len(subjects), size)] or [subjects]
        dropped_total = sum(page.dropped.values())
        progress: dict[str, Any] = {}
        changed: Counter[str] = Counter()
        suppressed = repeats = 0
        events: list[NewEvent] = []

        def save_progress(done: Committed) -> None:
            # The run's figures with this page in them; they become the run's only once
            # the page's last chunk has committed.
            counts = Counter(state.counts)
            counts["fetched"] += page.fetched
            counts["passed"] += len(page.subjects) - suppressed - len(done.suppressed)
            counts["quarantined"] += len(page.rejected)
            if suppressed or done.suppressed:
                counts["suppressed"] += suppressed + len(done.suppressed)
            counts["dropped_fields"] += dropped_total
            counts.update(changed)
            counts.update(done.changes.counts)
            watermark = state.watermark
            if page.watermark and (watermark is None or page.watermark > watermark):
                watermark = page.watermark
            self.store.save_run_progress(
                run.id, self._seal_cursor(run.id, page.next_cursor), watermark, counts,
                owner=self.replica, lease_until=now + self.lease,
            )  # fmt: skip
            progress.update(counts=counts, watermark=watermark)

        def fence(_: Committed) -> None:
            # Every transaction is fenced, not only the page's last (whose progress write
            # is): a process that lost the run must not commit a chunk its successor also
            # compared, or a person's event would be written twice.
            if not self.store.renew_lease(run.id, self.replica, now + self.lease):
                raise LeaseLost("the run was taken over before this page was committed")

        def written(done: Committed) -> None:
            nonlocal suppressed, repeats
            events.extend(done.events)
            changed.update(done.changes.counts)
            suppressed += len(done.suppressed)
            repeats += done.repeats

        steps: list[tuple[Batch, Callable[[Committed], None]]] = []
        sent = 0
        for n, chunk in enumerate(chunks, 1):
            # What the door counted (quarantined, dropped) rides on the last chunk, which
            # also writes the run's progress; the others are only fenced.
            if n == len(chunks):
                last = Batch(chunk, page.fetched - sent, len(page.rejected), page.dropped)
                steps.append((last, save_progress))
            else:
                steps.append((Batch(chunk, len(chunk), 0, {}), fence))
            sent += len(chunk)
        await self._write_in_turn(state, now, steps, written, turn=turn, before=before)
        journal = state.journal
        if journal is not None and (len(journal) >= self.journal_records or repeats):
            await asyncio.to_thread(journal.merge, self.replica)
        state.counts, state.watermark = progress["counts"], progress["watermark"]
        merge_dropped(state.dropped, page.dropped)
        self._count_page(state.record.type, page, dropped_total, events)

    async def _write_in_turn(
        self,
        state: _RunState,
        now: datetime,
        steps: Sequence[tuple[Batch, Callable[[Committed], None]]],
        written: Callable[[Committed], None],
        *,
        turn: Awaitable[None] | None = None,
        before: Collection[str] = (),
    ) -> None:
        """Each batch prepared, then written with its `inside` step, in order; a batch is
        prepared while the one before it is written, and `written` hears of each write
        before the next one starts. The first batch is written once `turn` is done, and
        is prepared as if `before` (people written meanwhile) were being written."""
        writing: asyncio.Future[Committed] | None = None
        in_flight: Collection[str] = before
        try:
            for batch, inside in steps:
                prepared = await asyncio.to_thread(self._prepare, state, batch, now)
                stale = in_flight
                if writing is not None:
                    written(await writing)
                elif turn is not None:
                    await turn
                writing = asyncio.ensure_future(
                    asyncio.to_thread(self._write, state, prepared, inside, stale)
                )
                in_flight = prepared.latest.keys()
            if writing is not None:
                written(await writing)
        finally:
            if writing is not None and not writing.done():
                # A worker thread cannot be stopped: let the write it is making end first.
                await asyncio.wait([writing])

    def _prepare(self, state: _RunState, batch: Batch, now: datetime) -> Prepared:
        """One chunk compared and rendered (`prepare_batch`); runs in a worker thread."""
        return prepare_batch(
            self.store, record=state.record, instruction=state.instruction,
            mapping_digest=state.mapping.digest, fields=state.mapping.categories,
            batch=batch, now=now, run_id=state.run.id, journal=state.journal,
        )  # fmt: skip

    def _write(
        self,
        state: _RunState,
        prepared: Prepared,
        inside: Callable[[Committed], None],
        stale: Collection[str],
    ) -> Committed:
        """One prepared chunk written in its transaction (`write_batch`), with the
        instruction and the connector checked again inside it; runs in a worker thread."""

        def check() -> None:
            self._still_standing(state)

        ledger = self.ledger(state.run.tenant)
        # Only a full run looks for leavers: an incremental one marks nobody seen.
        sweep = state.run.mode == SyncMode.FULL.value
        return write_batch(
            ledger, prepared, check=check, inside=inside, stale=stale, sweep=sweep,
            journal=state.journal,
        )  # fmt: skip

    def _remove_gone(self, state: _RunState) -> tuple[RunStatus, str | None]:
        run, store = state.run, self.store
        if state.journal is not None:
            # The people it wrote are its seen ones only once they are in the subjects.
            state.journal.merge(self.replica)
        gone = list(store.unseen_present(run.tenant, run.connector, run.id))
        if not gone:
            return "succeeded", None
        present = store.count_present(run.tenant, run.connector)
        share = len(gone) / present if present else 1.0
        limit = state.record.max_delete_share
        if share > limit and run.confirm_deletes != len(gone):
            # The number asked for is on the run (counts.deletes_held), so the admin can
            # confirm exactly this many for one run, or raise the connector's limit.
            state.counts["deletes_held"] = len(gone)
            self.metrics.mass_delete_stopped(state.record.type, run.tenant, run.connector)
            given = (
                f" (this run was confirmed for {run.confirm_deletes}, not {len(gone)})"
                if run.confirm_deletes is not None
                else ""
            )
            return "stopped", (
                f"the full sync would delete {len(gone)} of {present} subjects "
                f"({share:.0%}), more than the limit of {limit:.0%}; nothing was deleted"
                f"{given}. Check the source export; if these {len(gone)} people really left, "
                f'start a sync with {{"mode": "full", "confirm_deletes": {len(gone)}}}, or '
                "raise the connector's max_delete_share (PATCH the connector)"
            )
        if share > limit:
            state.counts["deletes_confirmed"] = len(gone)
        now = self.clock()
        events = [self._event("subject.deleted", sid, None, now, state) for sid in gone]
        digest = content_digest({"gone": True})
        with store.transaction():
            if not store.renew_lease(run.id, self.replica, now + self.lease):
                raise LeaseLost("the run was taken over before its leavers were written")
            store.write_subjects(
                run.tenant,
                run.connector,
                run.id,
                [SubjectWrite(s, digest, False) for s in gone],
            )
            store.append_events(run.tenant, events)
        state.counts["deleted"] += len(gone)
        self.metrics.feed_changes.labels(state.record.type, "subject.deleted").inc(len(gone))
        return "succeeded", None

    # ------------------------------------------------------------------ helpers

    def _seal_cursor(self, run_id: str, cursor: str | None) -> str | None:
        """Cursors can hold a vendor's own ids (an AFAS employee number, a HubSpot contact
        id): they are kept sealed, like credentials, and opened only to resume."""
        if cursor is None:
            return None
        return base64.urlsafe_b64encode(self.box.seal(cursor.encode(), f"run:{run_id}")).decode()

    def _open_cursor(self, run: RunRecord) -> str | None:
        if run.cursor is None:
            return None
        sealed = base64.urlsafe_b64decode(run.cursor.encode())
        return self.box.open(sealed, f"run:{run.id}").decode()

    def _event(
        self,
        kind: Any,
        subject_id: str,
        data: Mapping[str, Any] | None,
        now: datetime,
        state: _RunState,
        *,
        event_id: str | None = None,
    ) -> NewEvent:
        return NewEvent(
            id=event_id or new_event_id(),
            type=kind,
            subject_id=subject_id,
            data=data,
            occurred_at=now,
            source=state.record.id,
            instruction_id=state.instruction.id,
        )

    def _count_page(self, ctype: str, page: Any, dropped: int, events: list[NewEvent]) -> None:
        m = self.metrics
        m.records_fetched.labels(ctype).inc(page.fetched)
        m.records_emitted.labels(ctype).inc(len(page.subjects))
        m.records_quarantined.labels(ctype).inc(len(page.rejected))
        m.fields_dropped.labels(ctype).inc(dropped)
        for kind, n in Counter(e.type for e in events).items():
            m.feed_changes.labels(ctype, kind).inc(n)

    def _finish(
        self, run: RunRecord, status: RunStatus, state: _RunState | None, error: str | None
    ) -> RunRecord:
        now = self.clock()
        counts = dict(state.counts) if state else dict(run.counts)
        self.store.finish_run(run.id, status, now, counts, error, owner=self.replica)
        if status == "succeeded" and state is not None:
            self.store.set_connector_sync_state(run.tenant, run.connector, state.watermark, now)
        return self.store.get_run(run.id)

    def _report_refusal(
        self, record: ConnectorRecord, refusal: InstructionRefused, run_id: str | None
    ) -> None:
        """A refusal is a ledger entry and a metric, never silent."""
        self.metrics.refused(record.tenant, record.id, refusal.code)
        entry = entries.refused(
            time=self.clock(),
            tenant=record.tenant,
            connector=record.id,
            instruction_id=refusal.instruction_id,
            mapping_digest=record.mapping_digest,
            run_id=run_id,
        )
        record_transfer(self.store, self.ledger(record.tenant), [entry])
        if run_id is None:
            refused = RunRecord(
                id=f"run_{uuid.uuid4().hex}",
                tenant=record.tenant,
                connector=record.id,
                mode="none",
                status="refused",
                started_at=self.clock(),
                finished_at=self.clock(),
                error=str(refusal),
                instruction_id=refusal.instruction_id,
            )
            self.store.start_run(refused)
