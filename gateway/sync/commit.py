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

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from gateway.ledger import entry as entries
from gateway.ledger.kinds import LedgerEntry
from gateway.ledger.log import Ledger
from gateway.ledger.record import recording
from gateway.minimise.egress import SubjectRecord
from gateway.store.protocols import Store
from gateway.store.records import ConnectorRecord, Instruction, NewEvent, new_event_id
from gateway.sync.changes import PageChanges, by_subject_id, detect_changes


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

    @property
    def events(self) -> list[NewEvent]:
        return self.changes.events


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
    """Compare, then write the batch's changes, events and inbound entry in one transaction.

    `check` runs inside the transaction, after the tenant's lock is taken, and raises to
    refuse (a revoked instruction, a paused connector): then nothing is written. `inside`
    runs after the writes, in the same transaction. `sweep=False` for a caller whose run
    never looks for leavers (a pushed SCIM write): the unchanged are not marked seen, as
    nothing would read or end that run's seen log."""
    tenant, connector = record.tenant, record.id
    latest = by_subject_id(batch.subjects)
    known = store.subject_states(tenant, connector, list(latest))
    changes = detect_changes(
        latest,
        known,
        event_id_base=new_event_id(),  # one unique base per batch, numbered within it
        occurred_at=now,
        source=connector,
        instruction_id=instruction.id,
    )

    def inbound(subject_ids: Iterable[str]) -> LedgerEntry:
        return entries.inbound(
            time=now, tenant=tenant, connector=connector, instruction_id=instruction.id,
            mapping_digest=mapping_digest, subject_ids=subject_ids, fields=fields,
            records=batch.fetched, quarantined=batch.quarantined, dropped=batch.dropped,
            run_id=run_id,
        )  # fmt: skip

    # Built before the write lock is taken (1,000 ids validated and sorted); built again
    # inside only in the rare batch that holds a suppressed person.
    written: list[LedgerEntry] = [inbound(latest)]  # appended when the block ends
    with recording(store, ledger, written):
        # The tenant's lock first (held to COMMIT), then who is suppressed: an erasure
        # takes the same lock, so a batch compared before it cannot bring the person back
        # after it.
        with store.ledger.writing(tenant):
            pass
        check()
        suppressed = frozenset(store.suppressed(tenant, list(latest)))
        if suppressed:
            changes = changes.without(suppressed)
            latest = {k: v for k, v in latest.items() if k not in suppressed}
            written[:] = [inbound(latest)]
        store.write_subjects(tenant, connector, run_id, changes.writes)
        # Suppressed people are still at the source: seen, so that a full sync's sweep
        # does not take them for leavers.
        if sweep:
            store.mark_seen(tenant, connector, run_id, [*changes.unchanged, *suppressed])
        store.append_events(tenant, changes.events)
        done = Committed(changes, suppressed)
        if inside is not None:
            inside(done)
    return done
