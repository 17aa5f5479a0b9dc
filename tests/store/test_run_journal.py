"""A full run's journal of its subject writes, on every backend.

On SQLite a full sync does not write its changed subjects into `subjects` commit by
commit: it journals them with its seen log (`mark_seen`'s `writes`) and merges them in
one transaction when it sweeps or ends (`merge_run_writes`). These tests hold each store to
what the engine relies on: the last write of a person wins, in the comparison
(`journaled_states`) and in the merge; a merge brings exactly the journal in and is safe
to repeat; an erasure strikes its people from every journal; a process that lost the run
cannot merge it; the sweep never takes a journaled person for a leaver; and nothing a run
journaled is lost however it ends. The rows are counted straight from the table where
"nothing is left" is the point.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.store.gateway_sql import SqlStore
from gateway.store.protocols import LeaseLost, Store
from gateway.store.records import RunStatus, SubjectState, SubjectWrite
from tests.store.test_seen_log import SID, T0, _log_rows, _setup, _start


def _w(sid: str, digest: bytes, present: bool = True) -> SubjectWrite:
    return SubjectWrite(sid, digest, present)


def _s(sid: str, digest: bytes, present: bool = True) -> SubjectState:
    return SubjectState(sid, digest, present)


def _journaled_rows(store: Store, run: str) -> int:
    assert isinstance(store, SqlStore)
    rows = store.database.all(
        "SELECT count(*) FROM run_seen WHERE run = ? AND writes IS NOT NULL", (run,)
    )
    return int(rows[0][0])


def test_journaled_writes_reach_the_subjects_only_when_merged(store: Store) -> None:
    _setup(store)  # SID[:20] present in acme/afas and the others, digest d*16
    _start(store, "run_1")
    with store.transaction():
        store.mark_seen("acme", "afas", "run_1", SID[2:4], [_w(SID[0], b"a" * 16)])
    store.mark_seen(
        "acme", "afas", "run_1", [], [_w(SID[30], b"n" * 16), _w(SID[1], b"g" * 16, False)]
    )
    store.mark_seen("acme", "afas", "run_1", [], [_w(SID[0], b"b" * 16)])  # the later wins
    store.mark_seen("acme", "afas", "run_other", [], [_w(SID[31], b"o" * 16)])
    wanted = [SID[0], SID[1], SID[30], SID[31], SID[5]]
    assert store.journaled_states("run_1", wanted) == {
        SID[0]: _s(SID[0], b"b" * 16),
        SID[1]: _s(SID[1], b"g" * 16, False),
        SID[30]: _s(SID[30], b"n" * 16),
    }
    # Not in the subjects yet: they hold what the run before wrote.
    assert store.subject_states("acme", "afas", wanted) == {
        SID[0]: _s(SID[0], b"d" * 16),
        SID[1]: _s(SID[1], b"d" * 16),
        SID[5]: _s(SID[5], b"d" * 16),
    }
    store.merge_run_writes("run_1", owner="replica-a")
    assert store.subject_states("acme", "afas", wanted) == {
        SID[0]: _s(SID[0], b"b" * 16),
        SID[1]: _s(SID[1], b"g" * 16, False),
        SID[30]: _s(SID[30], b"n" * 16),
        SID[5]: _s(SID[5], b"d" * 16),
    }
    assert store.journaled_states("run_1", wanted) == {}
    store.merge_run_writes("run_1")  # nothing left to merge: nothing changes
    assert store.subject_states("acme", "afas", [SID[0]]) == {SID[0]: _s(SID[0], b"b" * 16)}
    # Another run's journal is its own, and so are the other tenants' and connectors'.
    assert store.journaled_states("run_other", wanted) == {SID[31]: _s(SID[31], b"o" * 16)}
    assert store.subject_states("acme", "hubspot", [SID[0]]) == {SID[0]: _s(SID[0], b"d" * 16)}
    assert store.subject_states("beta", "afas", [SID[30]]) == {}
    # The log rows stay for the sweep; only their writes went.
    assert _log_rows(store, "WHERE run = ?", ("run_1",)) == 3
    assert _journaled_rows(store, "run_1") == 0


def test_the_sweep_never_takes_a_journaled_person_for_a_leaver(store: Store) -> None:
    _setup(store)
    _start(store, "run_1")
    store.mark_seen("acme", "afas", "run_1", SID[:10], [_w(SID[10], b"c" * 16)])
    store.mark_seen("acme", "afas", "run_1", [], [_w(SID[11], b"c" * 16, False)])
    # Not merged yet (the engine merges first): the run wrote them all the same.
    assert list(store.unseen_present("acme", "afas", "run_1")) == SID[12:20]
    store.merge_run_writes("run_1")
    assert list(store.unseen_present("acme", "afas", "run_1")) == SID[12:20]
    assert store.count_present("acme", "afas") == 19  # SID[11] written as absent


def test_an_erasure_strikes_its_people_from_every_journal(store: Store) -> None:
    _setup(store)
    _start(store, "run_1")
    _start(store, "run_2", connector="hubspot")
    _start(store, "run_3", tenant="beta")
    store.mark_seen("acme", "afas", "run_1", [], [_w(s, b"c" * 16) for s in SID[30:34]])
    store.mark_seen("acme", "afas", "run_1", [], [_w(SID[31], b"e" * 16)])
    store.mark_seen("acme", "hubspot", "run_2", [], [_w(SID[31], b"h" * 16)])
    store.mark_seen("beta", "afas", "run_3", [], [_w(SID[31], b"b" * 16)])
    # Between a commit and the merge: the person's data goes, and their journaled state
    # with it (it would bring them back into `subjects`).
    store.delete_subject_data("acme", [SID[31], SID[39]])
    assert store.journaled_states("run_1", SID[30:34]) == {
        s: _s(s, b"c" * 16) for s in (SID[30], SID[32], SID[33])
    }
    assert store.journaled_states("run_2", [SID[31]]) == {}
    store.merge_run_writes("run_1")
    store.merge_run_writes("run_2")
    assert store.subject_states("acme", "hubspot", [SID[31]]) == {}
    assert sorted(store.subject_states("acme", "afas", SID[30:34])) == [
        SID[30], SID[32], SID[33],
    ]  # fmt: skip
    # Another tenant's person with the same keyed id is another person.
    assert store.journaled_states("run_3", [SID[31]]) == {SID[31]: _s(SID[31], b"b" * 16)}


def test_a_process_that_lost_the_run_cannot_merge_it(store: Store) -> None:
    _setup(store)
    _start(store, "run_1")
    store.mark_seen("acme", "afas", "run_1", [], [_w(SID[30], b"n" * 16)])
    store.claim_runs("replica-b", T0 + timedelta(minutes=5), 1, expired_before=None)
    with pytest.raises(LeaseLost):
        store.merge_run_writes("run_1", owner="replica-a")
    assert store.subject_states("acme", "afas", [SID[30]]) == {}
    assert _journaled_rows(store, "run_1") == 1
    # The new owner merges it (as a resumed run does first).
    store.merge_run_writes("run_1", owner="replica-b")
    assert store.subject_states("acme", "afas", [SID[30]]) == {SID[30]: _s(SID[30], b"n" * 16)}


def test_a_merge_of_many_keeps_every_last_write(store: Store) -> None:
    _setup(store)
    _start(store, "run_1")
    many = [f"{n * 7919 % 5003:032x}" for n in range(5003)]  # not in key order
    for start in range(0, len(many), 250):  # as page commits journal them
        store.mark_seen(
            "acme", "afas", "run_1", [], [_w(s, b"m" * 16) for s in many[start : start + 250]]
        )
    # Some people met again later in the run, with other data.
    store.mark_seen("acme", "afas", "run_1", [], [_w(s, b"z" * 16) for s in many[::97]])
    store.merge_run_writes("run_1", owner="replica-a")
    states = store.subject_states("acme", "afas", many)
    assert len(states) == len(many)
    again = set(many[::97])
    assert all(st.digest == (b"z" if sid in again else b"m") * 16 for sid, st in states.items())


def test_a_crashed_commit_journals_nothing(store: Store) -> None:
    _setup(store)
    _start(store, "run_1")

    def crash() -> None:
        with store.transaction():
            store.mark_seen("acme", "afas", "run_1", [], [_w(SID[30], b"n" * 16)])
            raise RuntimeError("the process died mid-page")

    with pytest.raises(RuntimeError):
        crash()
    assert store.journaled_states("run_1", [SID[30]]) == {}


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
        SID[0]: _s(SID[0], b"x" * 16),
        SID[30]: _s(SID[30], b"n" * 16),
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


def test_the_embedded_store_asks_full_runs_to_journal(store: Store) -> None:
    """SQLite writes every page a commit touched to its WAL whole, PostgreSQL logs rows:
    only the first gains from the journal (`Store.journals_subjects`), though both keep
    one."""
    assert store.journals_subjects is (not store.shared)
