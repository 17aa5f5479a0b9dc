"""Feed events written outside a sync: the re-emission that follows a re-grant, (the deletions a
connector's deletion announces are built in `gateway.tenancy`).

Why re-emit: the feed checks the instruction when a page is *served*, and passes over
(withholds) the events of a connector without an active one for its current mapping. Those
events are not queued, so a consumer that polled through the gap (a revocation, an expiry,
a mapping changed but not yet authorised) would otherwise keep an old view for good. So
when an instruction is granted after such a gap, the gateway appends, for every subject the
connector ever sent, a fresh copy of that subject's newest event (`subject.upserted` with
its last synced data, or `subject.deleted`) under the new instruction. A consumer that
applies events in `seq` order then holds what the gateway last synced; the next sync brings
what changed at the source meanwhile (a full sync also the people who left). Consumers
that saw no gap receive the same state twice, which applying by `subject_id` absorbs.
"""

from __future__ import annotations

from datetime import datetime

from gateway.ledger.record import Acting
from gateway.store.records import Instruction, NewEvent, Store, new_event_id
from gateway.sync.instructions import InstructionRefused, grant, require_active


def had_gap(store: Store, tenant: str, connector: str, mapping_digest: str, now: datetime) -> bool:
    """Whether the connector's events are being withheld now (no active instruction for its
    current mapping) although it has had an instruction before."""
    try:
        require_active(store, tenant, connector, mapping_digest, now)
    except InstructionRefused as refusal:
        return refusal.code != "missing"
    return False


def reemit_current_state(
    store: Store, tenant: str, connector: str, instruction: Instruction, now: datetime
) -> int:
    """Append each subject's newest event again under `instruction`; returns how many."""
    base = new_event_id()
    events = [
        NewEvent(
            id=f"{base}{n:05x}",
            type=row.type,
            subject_id=row.subject_id,
            data=row.data,
            occurred_at=now,
            source=connector,
            instruction_id=instruction.id,
        )
        for n, row in enumerate(store.latest_events(tenant, connector))
    ]
    store.append_events(tenant, events)
    return len(events)


def grant_and_converge(
    store: Store,
    *,
    by: Acting,
    connector: str,
    purpose: str,
    now: datetime,
    valid_until: datetime | None = None,
) -> tuple[Instruction, int]:
    """Grant an instruction; after a gap, re-emit the current state in the same commit."""
    tenant = by.tenant
    with store.transaction():
        record = store.get_connector(tenant, connector)
        gap = had_gap(store, tenant, connector, record.mapping_digest, now)
        instruction = grant(
            store,
            by=by,
            connector=connector,
            purpose=purpose,
            now=now,
            valid_until=valid_until,
        )
        replayed = reemit_current_state(store, tenant, connector, instruction, now) if gap else 0
    return instruction, replayed
