"""Change detection as a pure function (`gateway.sync.changes`): no store, no clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.minimise.egress import EGRESS_FIELDS, SubjectRecord
from gateway.store.records import SubjectState
from gateway.sync.changes import by_subject_id, content_digest, detect_changes

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
BASE = "evt_0000000000000001aaaaaaaaaaaaaaaa"


def person(n: int, *, active: bool = True, title: str | None = "Teacher") -> SubjectRecord:
    return {
        "subject_id": f"{n:032x}",
        "first_name": f"P{n}",
        "last_name": None,
        "email": f"p{n}@example.nl",
        "job_title": title,
        "active": active,
    }


def state(subject: SubjectRecord, *, present: bool = True) -> SubjectState:
    return SubjectState(subject["subject_id"], content_digest(subject), present)


def detect(subjects: list[SubjectRecord], known: dict[str, SubjectState]) -> Any:
    return detect_changes(
        by_subject_id(subjects),
        known,
        event_id_base=BASE,
        occurred_at=T0,
        source="afas",
        instruction_id="ins_1",
    )


def test_new_and_changed_people_are_upserted_with_their_egress_data() -> None:
    old = person(2, title="Teacher")
    changes = detect([person(1), person(2, title="Head")], {old["subject_id"]: state(old)})
    assert [e.type for e in changes.events] == ["subject.upserted", "subject.upserted"]
    first = changes.events[0]
    assert first.id == BASE + "00000" and changes.events[1].id == BASE + "00001"
    assert dict(first.data or {}) == {k: person(1)[k] for k in EGRESS_FIELDS}  # type: ignore[literal-required]
    assert (first.occurred_at, first.source, first.instruction_id) == (T0, "afas", "ins_1")
    assert [w.present for w in changes.writes] == [True, True]
    assert changes.counts == {"upserted": 2, "deleted": 0, "unchanged": 0}


def test_an_unchanged_person_is_only_seen() -> None:
    p = person(1)
    changes = detect([p], {p["subject_id"]: state(p)})
    assert (changes.writes, changes.events) == ([], [])
    assert changes.unchanged == [p["subject_id"]]
    assert changes.counts == {"upserted": 0, "deleted": 0, "unchanged": 1}


def test_a_leaver_is_deleted_only_if_the_platform_had_them() -> None:
    had = person(1)
    gone_before = person(2)
    known = {
        had["subject_id"]: state(had),
        gone_before["subject_id"]: state(gone_before, present=False),
    }
    changes = detect([person(n, active=False) for n in (1, 2, 3)], known)
    assert [(e.type, e.subject_id, e.data) for e in changes.events] == [
        ("subject.deleted", had["subject_id"], None)
    ]
    assert [w.present for w in changes.writes] == [False, False, False]
    assert changes.counts == {"upserted": 0, "deleted": 1, "unchanged": 0}


def test_the_last_record_of_a_repeated_id_wins() -> None:
    latest = by_subject_id([person(1, title="Old"), person(2), person(1, title="New")])
    assert list(latest) == [f"{1:032x}", f"{2:032x}"]
    assert latest[f"{1:032x}"]["job_title"] == "New"


def test_the_digest_ignores_key_order_but_not_values() -> None:
    p = person(1)
    assert content_digest(dict(reversed(list(p.items())))) == content_digest(p)
    assert content_digest(person(1, title="Other")) != content_digest(p)
    assert len(content_digest(p)) == 16


_people = st.builds(
    person,
    st.integers(0, 15),
    active=st.booleans(),
    title=st.sampled_from([None, "Teacher", "Head"]),
)
_known = st.dictionaries(
    st.integers(0, 15),
    st.tuples(st.sampled_from([None, "Teacher", "Head"]), st.booleans(), st.booleans()),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_people, max_size=20), _known)
def test_every_subject_gets_exactly_one_outcome_and_a_rerun_changes_nothing(
    subjects: list[SubjectRecord], before: dict[int, tuple[str | None, bool, bool]]
) -> None:
    known = {
        f"{n:032x}": state(person(n, active=active, title=title), present=present)
        for n, (title, active, present) in before.items()
    }
    latest = by_subject_id(subjects)
    changes = detect(subjects, known)
    written = {w.subject_id: w for w in changes.writes}
    assert set(written).isdisjoint(changes.unchanged)
    assert set(written) | set(changes.unchanged) == set(latest)
    for sid, subject in latest.items():
        if sid in written:
            assert written[sid].present == subject["active"]
            assert written[sid].digest == content_digest(subject)
    for event in changes.events:
        write = written[event.subject_id]
        if event.type == "subject.upserted":
            assert write.present and event.data is not None
        else:
            assert not write.present and known[event.subject_id].present
    ids = [e.id for e in changes.events]
    assert ids == sorted(set(ids))
    assert changes.counts["unchanged"] == len(changes.unchanged)
    assert changes.counts["upserted"] + changes.counts["deleted"] == len(changes.events)
    # Apply the writes, then look at the same page again: nothing is left to do.
    after = dict(known)
    after.update({s: SubjectState(s, w.digest, w.present) for s, w in written.items()})
    again = detect(subjects, after)
    assert (again.writes, again.events) == ([], [])
