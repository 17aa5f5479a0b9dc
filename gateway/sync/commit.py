"""One commit of minimised subjects: the path every source's records take into the store.

A pulled page (`gateway.sync.engine`) and a pushed SCIM write (`gateway.sync.scim_inbound`)
both end here, so both get the same guarantees from one piece of code: the subjects are
compared with what the gateway last saw (`gateway.sync.changes`), and the changed rows,
their feed events and an `inbound` ledger entry commit in ONE transaction, under the
tenant's ledger lock, with the instruction checked once more inside it (`check`) and
people erased or restricted meanwhile left out. What differs per caller (a run's cursor
and counts) is written by `inside`, in the same transaction.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from gateway.ledger import entry as entries
from gateway.ledger.kinds import LedgerEntry
from gateway.ledger.log import Ledger
from gateway.ledger.record import recording
from gateway.minimise.egress import SubjectRecord
from gateway.store.event_wire import RenderedEvent, render_events
from gateway.store.protocols import Store
from gateway.store.records import (
    AlreadyExists,
    ConnectorRecord,
    Instruction,
    NewEvent,
    SubjectState,
    SubjectWrite,
    new_event_id,
)
from gateway.sync.changes import PageChanges, by_subject_id, detect_changes

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Batch:
    """Minimised subjects from one source, with what the door counted on the way."""

    subjects: Sequence[SubjectRecord]
    #: Source records read (passed and quarantined).
    fetched: int
    quarantined: int
    #: Dropped source field name → records it was dropped from.
    dropped: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Committed:
    changes: PageChanges
    #: Subjects left out because they were erased or restricted.
    suppressed: frozenset[str]
    #: People compared with their journaled state: met again in the run (`RunJournal`).
    repeats: int = 0

    @property
    def events(self) -> list[NewEvent]:
        return self.changes.events


class RunJournal:
    """Whom a full run has journaled (`Store.mark_seen`'s `writes`) and not merged into
    the subjects yet, so that it compares them with what it journaled: a person met twice
    in one run (a source shifting under its pages) gets no second `subject.upserted`.

    Why a journal: written straight into `subjects`, 250 keyed ids dirtied ~250 random
    pages of its B-tree, each written whole to SQLite's WAL at COMMIT: a third of a first
    sync's time. The engine merges a run's journal in one transaction every
    `journal_records` people, before its sweep, and the store when it ends.

    It keeps only the ids' hashes (~70 bytes a person with the set's table, not the
    90-byte string as well) and asks the store for the journaled state of the few that
    match; a run resumed in another process merges its journal first, so it starts
    empty. `wrote` is called only after a write commits, before the next one starts.

    Reading a journaled state scans the journal (it has no index by id), which is cheap
    only while people met again are rare. A batch counts them (`Committed.repeats`), and
    the engine merges the journal after a page that met any: a source that repeats
    people on every page (a shifting export, an identity that is not unique) costs what
    direct writes cost, not a scan of a growing journal for every batch."""

    __slots__ = ("_hashes", "_lock", "run_id", "store")

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self._hashes: set[int] = set()
        #: `known` and `merge` one at a time: a batch is prepared while the page before
        #: its own is still being committed, and a read of the subjects made before a
        #: merge followed by a look at the journal after it would find a person in
        #: neither (and give them a second `subject.upserted`).
        self._lock = threading.Lock()

    def known(
        self, tenant: str, connector: str, subject_ids: Collection[str]
    ) -> tuple[dict[str, SubjectState], int]:
        """What these people compare with: their journaled state over their stored one;
        and how many of them the journal held (people met again)."""
        with self._lock:
            known = self.store.subject_states(tenant, connector, list(subject_ids))
            hashes = self._hashes
            mine = [sid for sid in subject_ids if hash(sid) in hashes]
            if mine:
                known.update(self.store.journaled_states(self.run_id, mine))
            return known, len(mine)

    def wrote(self, writes: Iterable[SubjectWrite]) -> None:
        self._hashes.update([hash(w.subject_id) for w in writes])

    def merge(self, owner: str) -> None:
        """Merge the journal into the subjects (`Store.merge_run_writes`, as `owner` of
        the run): nobody is in it then."""
        with self._lock:
            self.store.merge_run_writes(self.run_id, owner=owner)
            self._hashes.clear()

    def __len__(self) -> int:
        return len(self._hashes)


def _known(
    store: Store, tenant: str, connector: str, ids: Collection[str], journal: RunJournal | None
) -> tuple[dict[str, SubjectState], int]:
    if journal is None:
        return store.subject_states(tenant, connector, list(ids)), 0
    return journal.known(tenant, connector, ids)


@dataclass(slots=True)
class Prepared:
    """A batch compared and made ready to write (`prepare_batch`), holding no lock: the
    work that needs no writer (reading what was stored of its people, change detection,
    the events' rows, the inbound entry) done before the writer is taken."""

    store: Store
    record: ConnectorRecord
    instruction: Instruction
    mapping_digest: str
    fields: Mapping[str, str]
    batch: Batch
    now: datetime
    run_id: str
    latest: dict[str, SubjectRecord]
    event_id_base: str
    changes: PageChanges = field(init=False)
    rows: list[RenderedEvent] = field(init=False)
    entry: LedgerEntry = field(init=False)
    #: Of its people, how many were compared with their journaled state.
    repeats: int = field(default=0, init=False)

    def inbound(self, subject_ids: Iterable[str]) -> LedgerEntry:
        """The batch's inbound entry, naming `subject_ids`."""
        b = self.batch
        return entries.inbound(
            time=self.now, tenant=self.record.tenant, connector=self.record.id,
            instruction_id=self.instruction.id, mapping_digest=self.mapping_digest,
            subject_ids=subject_ids, fields=self.fields, records=b.fetched,
            quarantined=b.quarantined, dropped=b.dropped, run_id=self.run_id,
        )  # fmt: skip

    def compared(self, known: Mapping[str, SubjectState]) -> PageChanges:
        """The batch compared with `known`, with the same event ids every time."""
        return detect_changes(
            self.latest, known, event_id_base=self.event_id_base, occurred_at=self.now,
            source=self.record.id, instruction_id=self.instruction.id,
        )  # fmt: skip


def prepare_batch(
    store: Store,
    *,
    record: ConnectorRecord,
    instruction: Instruction,
    mapping_digest: str,
    fields: Mapping[str, str],
    batch: Batch,
    now: datetime,
    run_id: str,
    journal: RunJournal | None = None,
) -> Prepared:
    """Compare the batch with what the store holds of its people (and what `journal`
    holds, for a run that journals) and build what `write_batch` writes. Reads only,
    outside any transaction: a caller may prepare the next batch while the one before is
    being written (see `write_batch`'s `stale`)."""
    latest = by_subject_id(batch.subjects)
    known, repeats = _known(store, record.tenant, record.id, latest, journal)
    # One unique event id base per batch, numbered within it.
    prepared = Prepared(
        store, record, instruction, mapping_digest, fields, batch, now, run_id, latest,
        new_event_id(),
    )  # fmt: skip
    # Made before the write lock is taken (the events' wire bytes; 1,000 ids validated
    # and sorted), and made again inside only in the rare batch that needs it.
    prepared.changes = prepared.compared(known)
    prepared.repeats = repeats
    prepared.rows = render_events(prepared.changes.events)
    prepared.entry = prepared.inbound(latest)
    return prepared


def write_batch(
    ledger: Ledger,
    prepared: Prepared,
    *,
    check: Callable[[], None],
    inside: Callable[[Committed], None] | None = None,
    stale: Collection[str] = (),
    sweep: bool = True,
    journal: RunJournal | None = None,
) -> Committed:
    """Write a prepared batch's changes, events and inbound entry in one transaction
    (`_write_batch`). People it found new are written as new (`SubjectWrite.new`); if the
    store holds one of them after all (`AlreadyExists`: no writer is known to store a
    person between the comparison and the write that the comparison again inside does
    not see, so this is a safety net), the transaction is rolled back and the batch is
    written again with every person written as one that may be there."""
    write = functools.partial(
        _write_batch, ledger, prepared, check=check, inside=inside, stale=stale, sweep=sweep,
        journal=journal,
    )  # fmt: skip
    try:
        return write(hinted=True)
    except AlreadyExists:
        log.warning(
            "a batch of connector %s met a person stored meanwhile; written again",
            prepared.record.id,
        )
        return write(hinted=False)


def _write_batch(
    ledger: Ledger,
    prepared: Prepared,
    *,
    check: Callable[[], None],
    inside: Callable[[Committed], None] | None,
    stale: Collection[str],
    sweep: bool,
    journal: RunJournal | None,
    hinted: bool,
) -> Committed:
    """Write a prepared batch's changes, events and inbound entry in one transaction.

    `check` runs inside the transaction, after the tenant's lock is taken, and raises to
    refuse (a revoked instruction, a paused connector): then nothing is written. `inside`
    runs after the writes, in the same transaction. `stale`: people whose stored state may
    have changed since the batch was prepared (they were in a batch written meanwhile);
    if the batch holds any, it is compared again inside the transaction, where the writes
    before it are visible, so nobody's event is written twice or missed. `journal`: the
    run journals its subject writes with its seen log instead (`RunJournal`)."""
    store = prepared.store
    tenant, connector = prepared.record.tenant, prepared.record.id
    latest = prepared.latest
    changes, rows, repeats = prepared.changes, prepared.rows, prepared.repeats
    written: list[LedgerEntry] = [prepared.entry]  # appended when the block ends
    with recording(store, ledger, written):
        # The tenant's lock first (held to COMMIT), then who is suppressed: an erasure
        # takes the same lock, so a batch compared before it cannot bring the person back
        # after it.
        with store.ledger.writing(tenant):
            pass
        check()
        if stale and not latest.keys().isdisjoint(stale):
            known, repeats = _known(store, tenant, connector, latest, journal)
            changes = prepared.compared(known)
            rows = render_events(changes.events)
        suppressed = frozenset(store.suppressed(tenant, list(latest)))
        if suppressed:
            changes = changes.without(suppressed)
            rows = [r for r in rows if r.event.subject_id not in suppressed]
            written[:] = [prepared.inbound(k for k in latest if k not in suppressed)]
        # Suppressed people are still at the source: seen, so that a full sync's sweep
        # does not take them for leavers.
        seen = [*changes.unchanged, *suppressed] if sweep else []
        writes = changes.writes if hinted else [w._replace(new=False) for w in changes.writes]
        if journal is None:
            store.write_subjects(tenant, connector, prepared.run_id, writes)
            store.mark_seen(tenant, connector, prepared.run_id, seen)
        else:
            store.mark_seen(tenant, connector, prepared.run_id, seen, writes)
        store.append_events(tenant, rows)
        done = Committed(changes, suppressed, repeats)
        if inside is not None:
            inside(done)
    if journal is not None:
        journal.wrote(changes.writes)
    return done


def commit_batch(
    store: Store,
    ledger: Ledger,
    *,
    record: ConnectorRecord,
    instruction: Instruction,
    mapping_digest: str,
    fields: Mapping[str, str],
    batch: Batch,
    now: datetime,
    run_id: str,
    check: Callable[[], None],
    inside: Callable[[Committed], None] | None = None,
    sweep: bool = True,
) -> Committed:
    """Compare, then write the batch's changes, events and inbound entry in one transaction
    (`prepare_batch`, then `write_batch`). `sweep=False` for a caller whose run never looks
    for leavers (a pushed SCIM write): the unchanged are not marked seen, as nothing would
    read or end that run's seen log."""
    prepared = prepare_batch(
        store, record=record, instruction=instruction, mapping_digest=mapping_digest,
        fields=fields, batch=batch, now=now, run_id=run_id,
    )  # fmt: skip
    return write_batch(ledger, prepared, check=check, inside=inside, sweep=sweep)
