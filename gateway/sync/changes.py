"""Change detection: what a fetched page changes, decided without any I/O.

The sync engine reads what the gateway last saw of a page's subjects (a content digest and
whether they were present), hands both to `detect_changes`, and writes what comes back in
one transaction. Keeping the decision pure makes it testable on its own and lets any store
backend serve the engine: a backend only stores digests, it never decides.

The rules: a subject whose digest is unchanged yields nothing but a "seen" mark; an active
subject that is new or changed is written and yields `subject.upserted` with its egress
data; an inactive one (a leaver) is written as absent and yields `subject.deleted` only if
the platform had it (it was present before). Event ids are the page's base id numbered in
page order, so ids are unique and ordered without a clock call per subject.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from gateway.minimise.egress import SubjectRecord, egress_data
from gateway.store.records import EventType, NewEvent, SubjectState, SubjectWrite


def content_digest(subject: Mapping[str, Any]) -> bytes:
    """What a subject looks like to the platform; unchanged digest → no event."""
    return hashlib.sha256(orjson.dumps(subject, option=orjson.OPT_SORT_KEYS)).digest()[:16]


def by_subject_id(subjects: Iterable[SubjectRecord]) -> dict[str, SubjectRecord]:
    """A page's subjects by keyed id, in page order; a later record of the same id wins."""
    return {s["subject_id"]: s for s in subjects}


@dataclass(frozen=True, slots=True)
class PageChanges:
    """What one page changes: rows to write, events to append, ids only seen again."""

    writes: list[SubjectWrite]
    events: list[NewEvent]
    unchanged: list[str]
    #: "upserted", "deleted" and "unchanged", always all three.
    counts: Counter[str]

    def without(self, subject_ids: Collection[str]) -> PageChanges:
        """These changes minus everything about `subject_ids` (people suppressed since the
        page was compared: erased or restricted)."""
        if not subject_ids:
            return self
        events = [e for e in self.events if e.subject_id not in subject_ids]
        unchanged = [sid for sid in self.unchanged if sid not in subject_ids]
        kinds = Counter(e.type for e in events)
        counts = Counter({
            "upserted": kinds["subject.upserted"], "deleted": kinds["subject.deleted"],
            "unchanged": len(unchanged),
        })  # fmt: skip
        writes = [w for w in self.writes if w.subject_id not in subject_ids]
        return PageChanges(writes, events, unchanged, counts)


def detect_changes(
    latest: Mapping[str, SubjectRecord],
    known: Mapping[str, SubjectState],
    *,
    event_id_base: str,
    occurred_at: datetime,
    source: str,
    instruction_id: str,
) -> PageChanges:
    """Compare a page's subjects (`by_subject_id`) with what was stored of them (`known`,
    the store's `subject_states`) and say what to write and which events to emit."""
    writes: list[SubjectWrite] = []
    events: list[NewEvent] = []
    unchanged: list[str] = []
    upserted = deleted = 0
    for sid, subject in latest.items():
        digest = content_digest(subject)
        before = known.get(sid)
        if before is not None and before.digest == digest:
            unchanged.append(sid)
            continue
        present = bool(subject["active"])
        writes.append(SubjectWrite(sid, digest, present, before is None))
        kind: EventType
        if present:
            kind = "subject.upserted"
            upserted += 1
        elif before is not None and before.present:
            kind = "subject.deleted"
            deleted += 1
        else:
            continue
        events.append(
            NewEvent(
                id=f"{event_id_base}{len(events):05x}",
                type=kind,
                subject_id=sid,
                data=egress_data(subject) if present else None,
                occurred_at=occurred_at,
                source=source,
                instruction_id=instruction_id,
            )
        )
    counts = Counter({"upserted": upserted, "deleted": deleted, "unchanged": len(unchanged)})
    return PageChanges(writes, events, unchanged, counts)
