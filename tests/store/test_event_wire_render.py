"""`render_events` (the fast path a sync's page takes) gives, for any events, the bytes the
reference `event_wire` makes, and the `data` column's text holds what the event held."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.store.database import time_text
from gateway.store.event_wire import DATA_FIELDS, event_wire, render_events
from gateway.store.records import NewEvent

_text = st.text(max_size=12)
_value = st.one_of(st.none(), _text, st.integers(-(2**53), 2**53), st.booleans())
#: Data as a sync makes it (the egress fields in order), in another order, with fewer or
#: other fields (an erasure's, a test's), or none (a deletion).
_data = st.one_of(
    st.none(),
    st.fixed_dictionaries({k: st.one_of(st.none(), _text) for k in DATA_FIELDS}),
    st.dictionaries(st.sampled_from([*DATA_FIELDS, "bsn", "iban"]), _value, max_size=6),
)
_times = st.integers(0, 3).map(lambda n: datetime(2026, 1, 2, tzinfo=UTC) + timedelta(hours=n))
_event = st.builds(
    NewEvent,
    id=_text,
    type=st.sampled_from(["subject.upserted", "subject.deleted", "subject.erased"]),
    subject_id=_text,
    data=_data,
    occurred_at=_times,
    source=st.sampled_from(["afas", 'cr"m', "\u00e9\n"]),
    instruction_id=st.sampled_from(["ins_1", "ins_\\2"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_event, max_size=8), st.integers(1, 2**53))
def test_rendered_events_are_the_reference_bytes(events: list[NewEvent], seq: int) -> None:
    for n, (rendered, e) in enumerate(zip(render_events(events), events, strict=True)):
        assert rendered.event is e
        assert rendered.wire(seq + n) == event_wire(
            seq=seq + n, id=e.id, type=e.type, subject_id=e.subject_id, data=e.data,
            occurred_at=time_text(e.occurred_at), source=e.source,
            instruction_id=e.instruction_id,
        )  # fmt: skip
        if e.data is None:
            assert rendered.data_text is None
        else:
            assert rendered.data_text is not None
            assert orjson.loads(rendered.data_text) == e.data
