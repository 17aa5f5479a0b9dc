"""A run's journaled subject writes, on every backend.

A sync run does not write its changed subjects into `subjects` page by page: it journals
them with its seen log (`mark_seen`'s `writes`) and merges them later, in key order
(`merge_run_writes`). These tests hold each store to what the engine relies on: the
latest write of a person wins, a merge brings exactly the journal in and is safe to
repeat, a person suppressed meanwhile is not brought back, a process that lost the run
cannot merge, the sweep never takes a journaled person for a leaver, and nothing a run
journaled is lost however it ends.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.store.gateway_sql import MERGE_SLICE
from gateway.store.protocols import LeaseLost, Store
from gateway.store.records import RunStatus, SubjectState, SubjectWrite, Suppression
from tests.store.test_seen_log import SID, T0, _log_rows, _setup, _start


def _w(sid: str, digest: bytes, present: bool = True) -> SubjectWrite:
    return SubjectWrite(sid, digest, present)


def test_journaled_writes_reach_the_subjects_only_when_merged(store: Store) -> None:
    _setup(store)  # SID[:20] present, digest d*16
    _start(store, "run_1")
    with store.transaction():
        store.mark_seen("acme", "afas", "run_1", SID[2:4], [_w(SID[0], b"a" * 16)])
    store.mark_seen(
        "acme", "afas", "run_1", [], [_w(SID[30], b"n" * 16), _w(SID[1], b"g" * 16, False)]
    )
    store.mark_seen("acme", "afas", "run_1", [], [_w(SID[0], b"b" * 16)])  # a later write wins
    store.mark_seen("acme", "afas", "run_other", [], [_w(SID[31], b"o" * 16)])
    assert store.run_writes("run_1") == {
        SID[0]: SubjectState(SID[0], b"b" * 16, True),
        SID[1]: SubjectState(SID[1], b"g" * 16, False),
        SID[30]: SubjectState(SID[30], b"n" * 16, True),
    }
    # Not in the subjects yet: they hold what the run before wrote.
    before = store.subject_states("acme", "afas", [SID[0], SID[1], SID[30]])
    assert before == {
        SID[0]: SubjectState(SID[0], b"d" * 16, True),
        SID[1]: SubjectState(SID[1], b"d" * 16, True),
    }
    assert store.merge_run_writes("acme", "afas", "run_1", owner="replica-a") == 3
    assert store.subject_states("acme", "afas", [SID[0], SID[1], SID[30]]) == {
        SID[0]: SubjectState(SID[0], b"b" * 16, True),
        SID[1]: SubjectState(SID[1], b"g" * 16, False),
        SID[30]: SubjectState(SID[30], b"n" * 16, True),
    }
    assert store.run_writes("run_1") == {}
    assert store.merge_run_writes("acme", "afas", "run_1") == 0  # nothing left to merge
    # Another run's journal is its own.
    assert store.run_writes("run_other") == {SID[31]: SubjectState(SID[31], b"o" * 16, True)}
    assert store.subject_states("acme", "afas", [SID[31]]) == {}
    # The log rows stay for the sweep; only their writes went.
    assert _log_rows(store, "WHERE run = ?", ("run_1",)) == 3


def test_the_sweep_never_takes_a_journaled_person_for_a_leaver(store: Store) -> None:
    _setup(store)
    _start(store, "run_1")
    store.mark_seen("acme", "afas", "run_1", SID[:10], [_w(SID[10], b"c" * 16)])
    store.mark_seen("acme", "afas", "run_1", [], [_w(SID[11], b"c" * 16, False)])
    # Not merged yet: changed people are written by the run all the same.
    assert list(store.unseen_present("acme", "afas", "run_1")) == SID[12:20]
    store.merge_run_writes("acme", "afas", "run_1")
    assert list(store.unseen_present("acme", "afas", "run_1")) == SID[12:20]
    assert store.count_present("acme", "afas") == 19  # SID[11] written as absent


def test_a_merge_leaves_out_people_suppressed_since(store: Store) -> None:
    _setup(store)
    _start(store, "run_1")
    store.mark_seen("acme", "afas", "run_1", [], [_w(s, b"c" * 16) for s in SID[30:34]])
    # An erasure between the commit and the merge: its data went, its id is suppressed.
    store.delete_subject_data("acme", [SID[31]])
    store.add_suppressions([Suppression("acme", SID[31], "erased", T0, "dpo")])
    assert store.merge_run_writes("acme", "afas", "run_1") == 3
    assert sorted(store.subject_states("acme", "afas", SID[30:34])) == [
        SID[30], SID[32], SID[33],
    ]  # fmt: skip


def test_a_process_that_lost_the_run_cannot_merge_it(store: Store) -> None:
    _setup(store)
    _start(store, "run_1")
    store.mark_seen("acme", "afas", "run_1", [], [_w(SID[30], b"n" * 16)])
    store.claim_runs("replica-b", T0 + timedelta(minutes=5), 1, expired_before=None)
    with pytest.raises(LeaseLost):
        store.merge_run_writes("acme", "afas", "run_1", owner="replica-a")
    assert store.subject_states("acme", "afas", [SID[30]]) == {}
    # The new owner reads the journal back and merges it.
    assert set(store.run_writes("run_1")) == {SID[30]}
    assert store.merge_run_writes("acme", "afas", "run_1", owner="replica-b") == 1


def test_a_merge_of_many_goes_in_slices_and_keeps_every_write(store: Store) -> None:
    _setup(store)
    _start(store, "run_1")
    many = sorted(f"{n:032x}" for n in range(2 * MERGE_SLICE + 17))
    for start in range(0, len(many), 250):  # as page commits journal them
        store.mark_seen(
            "acme", "afas", "run_1", [], [_w(s, b"m" * 16) for s in many[start : start + 250]]
        )
    assert store.merge_run_writes("acme", "afas", "run_1", owner="replica-a") == len(many)
    states = store.subject_states("acme", "afas", many)
    assert len(states) == len(many)
    assert {s.digest for s in states.values()} == {b"m" * 16}


def test_a_crashed_commit_journals_nothing(store: Store) -> None:
    _setup(store)
    _start(store, "run_1")

    def crash() -> None:
        with store.transaction():
            store.mark_seen("acme", "afas", "run_1", [], [_w(SID[30], b"n" * 16)])
            raise RuntimeError("the process died mid-page")

    with pytest.raises(RuntimeError):
        crash()
    assert store.run_writes("run_1") == {}


@pytest.mark.parametrize("status", ["succeeded", "failed", "stopped"])
def test_a_run_that_ends_unmerged_is_merged_before_its_log_goes(
    store: Store, status: RunStatus
) -> None:
    _setup(store)
    _start(store, "run_1")
    store.mark_seen(
        "acme", "afas", "run_1", SID[:3], [_w(SID[30], b"n" * 16), _w(SID[0], b"x" * 16)]
    )
    store.finish_run("run_1", status, T0, {}, owner="replica-a")
    assert _log_rows(store) == 0
    assert store.subject_states("acme", "afas", [SID[0], SID[30]]) == {
        SID[0]: SubjectState(SID[0], b"x" * 16, True),
        SID[30]: SubjectState(SID[30], b"n" * 16, True),
    }


def test_a_deleted_connector_knows_who_its_stopped_run_delivered(store: Store) -> None:
    _setup(store)
    _start(store, "run_1")
    store.mark_seen(
        "acme", "afas", "run_1", [], [_w(SID[30], b"n" * 16), _w(SID[0], b"x" * 16, False)]
    )
    with store.transaction():  # as `gateway.tenancy.delete_connector` does
        assert store.stop_running_runs("acme", "afas", T0, "deleted") == ["run_1"]
        present = store.present_subjects("acme", "afas")
    assert present == sorted([*SID[1:20], SID[30]])
    assert _log_rows(store, "WHERE connector = ?", ("afas",)) == 0


def test_the_embedded_store_asks_runs_to_journal(store: Store) -> None:
    """SQLite rewrites every page a commit touched, PostgreSQL logs rows: only the first
    gains from the journal (`Store.journals_subjects`), though both keep one."""
    assert store.journals_subjects is (not store.shared)
