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
from datetime import datetime
from typing import Any, Final, NamedTuple

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
    """The event as the feed sends it; `occurred_at` is RFC 3339 UTC text (`time_text`).

    The reference encoding (one orjson object, keys in this order, no spaces): the feed
    rebuilds legacy rows with it, and `render_event`, a sync's faster way to the same bytes,
    is held to it by a test."""
    return orjson.dumps(
        {
            "id": id,
            "seq": seq,
            "type": type,
            "subject_id": subject_id,
            "data": _wire_data(data),
            "occurred_at": occurred_at,
            "source": source,
            "instruction_id": instruction_id,
        }
    )


def _wire_data(data: object) -> dict[str, Any] | None:
    if data is None:
        return None
    given: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
    return {k: given.get(k) for k in DATA_FIELDS}


class RenderedEvent(NamedTuple):
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


def render_event(event: NewEvent, spelled: _Spelled | None = None) -> RenderedEvent:
    """`event` rendered but for its number. `spelled` keeps the bytes of what a page's events
    share (their time, type, source and instruction), so each is spelled once a page.

    Byte for byte `event_wire` (a test holds them equal for any text), but assembled from
    orjson's encoding of each value rather than by encoding a new dict per event: 2.0
    against 4.2 us an event (best of 25 pages of 1,000 on the 2-core bench machine), time
    a page's commit spends holding the GIL."""
    shared = spelled if spelled is not None else {}
    key = (event.type, event.occurred_at, event.source, event.instruction_id)
    around = shared.get(key)
    if around is None:
        around = shared[key] = (
            b',"type":%b,"subject_id":' % orjson.dumps(event.type),
            b',"occurred_at":%b,"source":%b,"instruction_id":%b}' % (
                orjson.dumps(time_text(event.occurred_at)), orjson.dumps(event.source),
                orjson.dumps(event.instruction_id),
            ),
        )  # fmt: skip
    data = event.data
    if data is None:
        wire_data, data_text = b"null", None
    elif type(data) is dict and tuple(data) == DATA_FIELDS:
        # Just the egress fields, in their order (every sync's event): the wire's data is
        # the data itself, and so is the column's text.
        wire_data = orjson.dumps(data)
        data_text = wire_data.decode()
    else:
        wire_data = orjson.dumps(_wire_data(data))
        data_text = orjson.dumps(data).decode()
    tail = b'%b%b,"data":%b%b' % (around[0], orjson.dumps(event.subject_id), wire_data, around[1])
    head = b'{"id":%b,"seq":' % orjson.dumps(event.id)
    return RenderedEvent(event, data_text, head, tail)


#: What `render_event` spells once for a page's events: (type, time, source, instruction)
#: → the wire bytes before the subject id and after the data.
_Spelled = dict[tuple[str, datetime, str, str], tuple[bytes, bytes]]


def render_events(events: Iterable[NewEvent]) -> list[RenderedEvent]:
    """`render_event` for each, what they share spelled once."""
    spelled: _Spelled = {}
    return [render_event(e, spelled) for e in events]
