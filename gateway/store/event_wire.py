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

from collections.abc import Mapping
from typing import Any, Final

import orjson

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
    wire_data: dict[str, Any] | None = None
    if data is not None:
        given: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        wire_data = {k: given.get(k) for k in DATA_FIELDS}
    return orjson.dumps(
        {
            "id": id,
            "seq": seq,
            "type": type,
            "subject_id": subject_id,
            "data": wire_data,
            "occurred_at": occurred_at,
            "source": source,
            "instruction_id": instruction_id,
        }
    )
