"""A feed event's wire JSON: the bytes the pull feed sends for it, built once when the event
is written, so a feed page is spliced from stored bytes rather than rebuilt per event.

What a reader could change is left out: the page's cursor and `withheld` count are the
feed's, and an event whose instruction now covers fewer fields than it carries is rebuilt
from these bytes by the feed (`gateway.delivery.feed`).

This one function is the only writer of the `events.wire` column (`SqlStore.append_events`
at write time, `SqlStore.feed_rows` for rows stored before the column existed), and it
builds `data` from `DATA_FIELDS` alone: whatever else a caller put into an event's data is
never in its wire bytes. That keeps the guarantee the feed gave when it rebuilt every event
from the egress field names: nothing else stored can leave. The store may not import the
egress schema (it sits below it), so the names are spelled here, and the feed refuses to
load if they ever differ from `gateway.minimise.egress.EGRESS_FIELDS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson

from gateway.store.database import time_text
from gateway.store.records import NewEvent

#: The egress fields, in output order (held equal to `EGRESS_FIELDS` by the feed).
DATA_FIELDS: Final[tuple[str, ...]] = ("first_name", "last_name", "email", "job_title")


def event_wire(
    *,
    seq: int,
    id: str,
    type: str,
    subject_id: str,
    data: object,
    occurred_at: str,
    source: str,
    instruction_id: str,
) -> bytes:
    """The event as the feed sends it; `occurred_at` is RFC 3339 UTC text (`time_text`)."""
    head, tail = _around_seq(
        id=id, type=type, subject_id=subject_id, data=data, occurred_at=occurred_at,
        source=source, instruction_id=instruction_id,
    )  # fmt: skip
    return b"%b%d%b" % (head, seq, tail)


def _around_seq(
    *,
    id: str,
    type: str,
    subject_id: str,
    data: object,
    occurred_at: str,
    source: str,
    instruction_id: str,
) -> tuple[bytes, bytes]:
    """The wire bytes before and after the event's number. orjson writes keys in order
    with no spaces: the bytes after `"seq":` are those of the same object without `id`
    and `seq`, less its opening brace."""
    head = b'{"id":%b,"seq":' % orjson.dumps(id)
    tail = (
        b","
        + orjson.dumps(
            {
                "type": type,
                "subject_id": subject_id,
                "data": _wire_data(data),
                "occurred_at": occurred_at,
                "source": source,
                "instruction_id": instruction_id,
            }
        )[1:]
    )
    return head, tail


def _wire_data(data: object) -> dict[str, Any] | None:
    if data is None:
        return None
    given: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
    return {k: given.get(k) for k in DATA_FIELDS}


@dataclass(frozen=True, slots=True)
class RenderedEvent:
    """An event with everything its row needs but its number: the `data` column's text and
    the wire bytes before and after `seq`. The number is given only under the tenant's
    lock (`Store.append_events`); the rest is made before it, so a sync's page holds the
    one writer for less time. `head + str(seq) + tail` is byte for byte `event_wire`."""

    event: NewEvent
    data_text: str | None
    head: bytes
    tail: bytes

    def wire(self, seq: int) -> bytes:
        return b"%b%d%b" % (self.head, seq, self.tail)


def render_event(event: NewEvent, stamps: dict[datetime, str] | None = None) -> RenderedEvent:
    """`event` rendered but for its number (`stamps` caches the text of shared times)."""
    at = event.occurred_at
    text = stamps.get(at) if stamps is not None else None
    if text is None:
        text = time_text(at)
        if stamps is not None:
            stamps[at] = text
    head, tail = _around_seq(
        id=event.id, type=event.type, subject_id=event.subject_id, data=event.data,
        occurred_at=text, source=event.source, instruction_id=event.instruction_id,
    )  # fmt: skip
    data = None if event.data is None else orjson.dumps(event.data).decode()
    return RenderedEvent(event, data, head, tail)


def render_events(events: Iterable[NewEvent]) -> list[RenderedEvent]:
    """`render_event` for each (a page's events share one time: spelled once)."""
    stamps: dict[datetime, str] = {}
    return [render_event(e, stamps) for e in events]
