"""Erasure (GDPR Art. 17) and its suppression: a person's data gone from Sluis, the platform
told, and the person kept from coming back while the source still holds them.

`erase` does, in one transaction: every stored event and change-detection row of the keyed
ids deleted (the feed can then never serve their data again, also not to a consumer
re-reading from the start); a `subject.erased` event appended per source that held them, so
every destination learns it (the feed sends erasures whatever the state of the source's
authorisation: the event carries no data, and the controller's request is the
instruction); a suppression row per id (keyed id only), which makes every later sync drop
the person at the door; and a `subject.erased` audit entry per id with the number of events
removed. After the COMMIT the store scrubs its files (SQLite: deleted cells were zeroed by
`secure_delete`, the WAL is checkpointed and emptied), so that nothing of the person is
left in the data directory. The ledger keeps the keyed ids of past transfers, which are
what prove the processing was lawful and say nothing without the subject key.

`lift` removes a suppression (the admin decides the person may be processed again, e.g.
they were re-hired): the next sync brings them back as new.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from gateway.ledger.audit import AuditCounts
from gateway.ledger.record import Acting, recording
from gateway.store.protocols import Store, StoreUnavailable
from gateway.store.records import NewEvent, Suppression, new_event_id

log = logging.getLogger("sluis.lifecycle")


@dataclass(frozen=True, slots=True)
class Erased:
    """What erasing one keyed id did."""

    subject_id: str
    #: Stored events deleted, and the sources that held the person (each told by a
    #: `subject.erased` event).
    events_deleted: int
    sources: tuple[str, ...]


def erase(store: Store, by: Acting, subject_ids: Sequence[str], now: datetime) -> list[Erased]:
    """Erase these keyed ids of `by.tenant` (see the module's docstring)."""
    tenant = by.tenant
    ids = sorted(set(subject_ids))
    erased: list[Erased] = []
    entries = []
    base = new_event_id()
    with store.transaction():
        # The tenant's lock first (held to COMMIT): a sync page takes it before it looks
        # at who is suppressed, so none can slip the person back in around this.
        with store.ledger.writing(tenant):
            pass
        events = store.events_of_subjects(tenant, ids)
        # The instruction a source last delivered each person under: the erasure event is
        # that source's, so destinations can match it to what they received.
        last: dict[tuple[str, str], str] = {}
        counts: dict[str, int] = {}
        for event in events:
            last[(event.subject_id, event.source)] = event.instruction_id
            counts[event.subject_id] = counts.get(event.subject_id, 0) + 1
        deleted = store.delete_subject_data(tenant, ids)
        if deleted != len(events):  # pragma: no cover - the transaction holds the rows still
            raise RuntimeError("erasure raced another writer")
        notices = [
            NewEvent(
                id=f"{base}{n:05x}",
                type="subject.erased",
                subject_id=sid,
                data=None,
                occurred_at=now,
                source=source,
                instruction_id=instruction,
            )
            for n, ((sid, source), instruction) in enumerate(sorted(last.items()))
        ]
        store.append_events(tenant, notices)
        store.add_suppressions(
            [Suppression(tenant, sid, "erased", now, by.actor.id) for sid in ids]
        )
        for sid in ids:
            sources = tuple(sorted(source for (s, source) in last if s == sid))
            erased.append(Erased(sid, counts.get(sid, 0), sources))
            entries.append(
                by.entry("subject.erased", now, target=sid,
                         counts=AuditCounts(records=counts.get(sid, 0)))
            )  # fmt: skip
        with recording(store, by.ledger, entries):
            pass
    scrub(store, f"erasure committed for tenant {tenant}")
    return erased


def scrub(store: Store, done: str) -> None:
    """`Store.scrub` after a deletion that is committed already: when readers hold it up,
    only the WAL's old page images wait for them; said (without naming anyone) and left
    to the next scrub, never turned into a failure of what was done."""
    try:
        store.scrub()
    except StoreUnavailable:
        log.warning("%s; the WAL could not be cleared yet", done)


def restrict(store: Store, by: Acting, subject_ids: Sequence[str], now: datetime) -> list[str]:
    """Restrict these keyed ids (GDPR Art. 18): nothing more is stored or delivered about
    them and the feed withholds what it holds, but nothing is deleted; returns the ids
    restricted now (an erased one stays erased)."""
    ids = sorted(set(subject_ids))
    with store.transaction():
        with store.ledger.writing(by.tenant):  # the lock a sync page takes first
            pass
        erased = {sid for sid, kind in store.suppressed(by.tenant, ids).items() if kind == "erased"}
        fresh = [sid for sid in ids if sid not in erased]
        store.add_suppressions(
            [Suppression(by.tenant, sid, "restricted", now, by.actor.id) for sid in fresh]
        )
        entries = [by.entry("subject.restricted", now, target=sid) for sid in fresh]
        with recording(store, by.ledger, entries):
            pass
    return fresh


def lift(store: Store, by: Acting, subject_id: str, now: datetime) -> Suppression | None:
    """Remove the suppression of `subject_id` (recorded); the one removed, or None.

    A restricted person's events were withheld from the feed meanwhile, and the feed does
    not go back: their newest event per source is appended again (new ids, same data), so
    consumers converge, as after a re-grant (`gateway.delivery.outbox`). An erased person
    has no events left: the next sync brings them back as new."""
    with store.transaction():
        with store.ledger.writing(by.tenant):
            pass
        row = next(
            (r for r in store.list_suppressions(by.tenant) if r.subject_id == subject_id), None
        )
        if row is None or not store.remove_suppression(by.tenant, subject_id):
            return None
        if row.kind == "restricted":
            newest: dict[str, NewEvent] = {}
            base = new_event_id()
            for event in store.events_of_subjects(by.tenant, [subject_id]):
                newest[event.source] = NewEvent(
                    id="", type=event.type, subject_id=subject_id, data=event.data,
                    occurred_at=now, source=event.source, instruction_id=event.instruction_id,
                )  # fmt: skip
            store.append_events(
                by.tenant,
                [e._replace(id=f"{base}{n:05x}") for n, e in enumerate(newest.values())],
            )
        with by.recording(store, "suppression.lifted", now, target=subject_id):
            pass
    return row
