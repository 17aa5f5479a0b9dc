"""The Store contract for retention, on every backend: a tenant's overrides, which events
are superseded or belong to leavers (restricted people never), bounded deletions that keep
the feed's numbering, records past their time per kind and scope, and the job claim that
only one process wins."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import get_args

import orjson
import pytest

from gateway.store.account_records import (
    AccountRecord,
    ApiTokenRecord,
    InvitationRecord,
    OidcPendingRecord,
    SessionRecord,
    ThrottleRecord,
)
from gateway.store.protocols import Store
from gateway.store.records import (
    DsrRequest,
    ExpiredKind,
    NewEvent,
    NotFound,
    RetentionOverrides,
    RunRecord,
    SubjectWrite,
    Suppression,
    Tenant,
)
from tests.store.test_store_contract import _setup

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SID = [f"{i:032x}" for i in range(8)]


def _event(n: int, sid: str, at: datetime, kind: str = "subject.upserted",
           source: str = "afas", data: object = "default") -> NewEvent:  # fmt: skip
    body = {"email": f"p{n}@example.nl"} if data == "default" else data
    if kind != "subject.upserted" and data == "default":
        body = None
    return NewEvent(f"evt_{n}", kind, sid, body, at, source, "ins_1")  # type: ignore[arg-type]


def test_overrides_round_trip_and_need_a_tenant(store: Store) -> None:
    _setup(store)
    assert store.retention_policy("acme") is None
    first = RetentionOverrides("acme", {"feed_compaction_days": 7}, T0, "acc_00000000000000aa")
    store.set_retention_policy(first)
    assert store.retention_policy("acme") == first
    second = RetentionOverrides(
        "acme", {"leaver_grace_days": 30, "short_lived_days": 2}, T0 + DAY, "acc_00000000000000bb"
    )
    store.set_retention_policy(second)
    assert store.retention_policy("acme") == second  # replaced, not merged
    with pytest.raises(NotFound):
        store.set_retention_policy(RetentionOverrides("nope", {}, T0, "system"))


def test_superseded_events_and_tombstones_are_found_before_the_cutoff(store: Store) -> None:
    _setup(store)
    old, new = T0 - 40 * DAY, T0
    store.append_events("acme", [
        _event(1, SID[0], old),  # seq 1: superseded by 3
        _event(2, SID[1], old),  # seq 2: SID[1]'s newest (kept)
        _event(3, SID[0], new),  # seq 3: newest
        _event(4, SID[2], old, source="hubspot"),  # seq 4: superseded by 6 (same source)
        _event(5, SID[2], old),  # seq 5: afas's newest for SID[2]
        _event(6, SID[2], new, source="hubspot"),
        _event(7, SID[3], old),  # seq 7: superseded by a tombstone
        _event(8, SID[3], old, "subject.deleted", data={"email": "left@example.nl"}),
        _event(9, SID[4], new),  # seq 9: superseded, but not before the cutoff
        _event(10, SID[4], new),
    ])  # fmt: skip
    cutoff = T0 - 30 * DAY
    assert store.superseded_events("acme", cutoff) == [1, 4, 7]
    assert store.superseded_events("acme", T0 + DAY) == [1, 4, 7, 9]
    assert store.tombstones_with_data("acme", cutoff) == [8]
    assert store.tombstones_with_data("acme", old) == []
    assert store.superseded_events("other", cutoff) == []

    # A restricted person keeps everything (storage is all a restriction allows).
    store.add_suppressions([Suppression("acme", SID[0], "restricted", T0, "acc_x")])
    assert store.superseded_events("acme", cutoff) == [4, 7]

    assert store.clear_event_data("acme", [8]) == 1
    assert store.tombstones_with_data("acme", cutoff) == []
    (row,) = store.feed_rows("acme", 7, 1)
    wire = orjson.loads(row[4])
    assert (wire["seq"], wire["type"], wire["data"]) == (8, "subject.deleted", None)
    assert store.events_of_subjects("acme", [SID[3]])[-1].data is None


def test_deleting_events_keeps_the_numbering_and_the_feed_pages_across_gaps(store: Store) -> None:
    _setup(store)
    store.append_events("acme", [_event(n, SID[n % 2], T0) for n in range(1, 11)])
    assert store.delete_events("acme", [1, 2, 3, 9, 10, 99]) == 5
    assert store.last_event_seq("acme") == 10  # the deleted head still counts
    seqs, after = [], 0
    while rows := store.feed_rows("acme", after, 2):
        seqs += [r[0] for r in rows]
        after = rows[-1][0]
    assert seqs == [4, 5, 6, 7, 8]
    block = store.feed_block("acme", 0, 3)
    assert block is not None and (block.count, block.last_seq) == (3, 6)
    assert store.append_events("acme", [_event(11, SID[0], T0)]) == [11]  # never reused
    assert store.delete_events("acme", []) == 0


def test_leavers_are_found_with_every_event_and_forgotten_while_absent(store: Store) -> None:
    _setup(store)
    old, new = T0 - 100 * DAY, T0
    store.write_subjects("acme", "afas", "r1", [SubjectWrite(s, b"d" * 16, True) for s in SID[:4]])
    store.append_events("acme", [
        _event(1, SID[0], old),
        _event(2, SID[0], old, "subject.deleted"),  # left long ago
        _event(3, SID[1], old),
        _event(4, SID[1], new, "subject.deleted"),  # left recently
        _event(5, SID[2], old, "subject.deleted"),
        _event(6, SID[2], new),  # came back: not a leaver
        _event(7, SID[3], old, "subject.deleted"),  # left long ago, but restricted
    ])  # fmt: skip
    gone = [SubjectWrite(s, b"g" * 16, False) for s in (SID[0], SID[1], SID[3])]
    store.write_subjects("acme", "afas", "r2", gone)
    store.add_suppressions([Suppression("acme", SID[3], "restricted", T0, "acc_x")])
    cutoff = T0 - 90 * DAY
    assert store.leaver_events("acme", cutoff) == [("afas", SID[0], 1), ("afas", SID[0], 2)]
    assert store.leaver_events("acme", T0 + DAY) == [
        ("afas", SID[0], 1), ("afas", SID[0], 2), ("afas", SID[1], 3), ("afas", SID[1], 4),
    ]  # fmt: skip
    # Only absent rows go: SID[2] is present again.
    assert store.forget_leavers("acme", [("afas", SID[0]), ("afas", SID[2])]) == 1
    assert set(store.subject_states("acme", "afas", SID)) == {SID[1], SID[2], SID[3]}
    assert store.forget_leavers("acme", []) == 0


def _account(account_id: str, tenant: str | None, email: str) -> AccountRecord:
    return AccountRecord(account_id, tenant, "admin" if tenant else "operator", email, "N",
                         "active", T0)  # fmt: skip


def _records(store: Store) -> None:
    """One record of each kind past its time and one not, for acme and for the gateway."""
    old, new = T0 - 60 * DAY, T0
    store.create_tenant(Tenant("beta", "Beta BV", T0, b"sealed"))
    for run_id, finished in (("run_old", old), ("run_new", new)):
        store.start_run(RunRecord(run_id, "acme", "afas", "full", "running", old))
        store.finish_run(run_id, "succeeded", finished, {})
    store.start_run(RunRecord("run_live", "acme", "afas", "full", "running", old - DAY))
    for n, (_, closed) in enumerate((("completed", old), ("completed", new), ("open", None))):
        store.create_request(DsrRequest(
            id=f"dsr_{n:016x}", tenant="acme", kind="erasure", requester="acc_x",
            received_at=old - DAY, due_at=old, subject_ids=(SID[n],),
        ))  # fmt: skip
        if closed is not None:
            store.close_request("acme", f"dsr_{n:016x}", state="completed", outcome="fulfilled",
                                closed_at=closed, closed_by="acc_x")  # fmt: skip
    store.add_suppressions([Suppression("acme", SID[1], "erased", old, "acc_x")])
    for sid in (SID[0], SID[1]):  # SID[0]'s suppression was lifted; SID[1] is still erased
        store.add_erasure_receipt("acme", sid, "con_1", old)
    store.add_erasure_receipt("acme", SID[2], "con_1", new)
    accounts = store.accounts
    for account in (_account("acc_a", "acme", "a@acme.example"),
                    _account("acc_b", "beta", "b@beta.example"),
                    _account("acc_o", None, "o@gateway.example")):  # fmt: skip
        accounts.create_account(account)
        for tag, seen in (("old", old), ("new", new)):
            accounts.create_session(
                SessionRecord(
                    f"ses_{account.id}_{tag}",
                    f"{account.id}{tag}".encode(),
                    account.id,
                    seen,
                    seen,
                    "c",
                )
            )
            accounts.add_invitation(
                InvitationRecord(f"inv{account.id}{tag}".encode(), account.id, seen - DAY, seen)
            )
            accounts.create_token(
                ApiTokenRecord(
                    f"tok_{account.id}_{tag}",
                    f"tok{account.id}{tag}".encode(),
                    account.id,
                    account.tenant,
                    account.role,
                    "t",
                    seen - DAY,
                    seen + 400 * DAY,
                    revoked_at=seen,
                )
            )
    accounts.use_invitation(b"invacc_anew", old)  # used long ago although it expires later
    for tag, expires in (("old", old), ("new", new + DAY)):
        accounts.put_oidc_pending(OidcPendingRecord(f"st{tag}".encode(), "acme", b"s",
                                  expires - DAY, expires), keep=10)  # fmt: skip
    accounts.put_throttle(ThrottleRecord("key_old", 3, old, old + DAY))
    accounts.put_throttle(ThrottleRecord("key_new", 3, new))


def test_records_past_their_time_per_kind_and_scope(store: Store) -> None:
    _setup(store)
    _records(store)
    cutoff = T0 - 30 * DAY
    found = {
        (kind, scope): store.expired_records(kind, scope, cutoff)
        for kind in get_args(ExpiredKind)
        for scope in ("acme", None)
    }
    assert found == {
        ("sync_runs", "acme"): [("run_old",)],
        ("sync_runs", None): [],
        ("dsr_requests", "acme"): [(f"dsr_{0:016x}",)],
        ("dsr_requests", None): [],
        ("erasure_receipts", "acme"): [(SID[0], "con_1")],
        ("erasure_receipts", None): [],
        ("sessions", "acme"): [("ses_acc_a_old",)],
        ("sessions", None): [("ses_acc_o_old",)],
        ("invitations", "acme"): [(b"invacc_anew",), (b"invacc_aold",)],
        ("invitations", None): [(b"invacc_oold",)],
        ("api_tokens", "acme"): [("tok_acc_a_old",)],
        ("api_tokens", None): [("tok_acc_o_old",)],
        ("oidc_pending", "acme"): [(b"stold",)],
        ("oidc_pending", None): [],
        ("signin_throttles", "acme"): [],
        ("signin_throttles", None): [("key_old",)],
    }
    for (kind, scope), keys in found.items():
        assert store.delete_records(kind, scope, keys) == len(keys), kind
        assert store.expired_records(kind, scope, cutoff) == []
    assert store.get_run("run_new").status == "succeeded"
    assert store.get_run("run_live").status == "running"
    assert [r.id for r in store.list_requests("acme")] == [f"dsr_{1:016x}", f"dsr_{2:016x}"]
    assert store.erasure_receipts("acme", SID[:3]) == [
        (SID[1], "con_1", T0 - 60 * DAY), (SID[2], "con_1", T0),
    ]  # fmt: skip
    accounts = store.accounts
    assert accounts.session_by_hash(b"acc_bold") is not None  # another tenant's: untouched
    assert accounts.session_by_hash(b"acc_anew") is not None
    assert accounts.session_by_hash(b"acc_aold") is None
    assert accounts.get_throttle("key_new") is not None
    assert accounts.get_oidc_pending(b"stnew") is not None
    assert store.delete_records("sync_runs", "acme", []) == 0


def test_one_process_holds_a_job_at_a_time(store: Store) -> None:
    assert store.job_state("retention") is None
    until = T0 + timedelta(minutes=10)
    assert store.claim_job("retention", "replica-a", until, T0)
    assert not store.claim_job("retention", "replica-b", until, T0 + timedelta(minutes=1))
    assert store.claim_job("retention", "replica-a", until + DAY, T0)  # renewed by its holder
    state = store.job_state("retention")
    assert state is not None and state.claimed_by == "replica-a" and state.first_run_at == T0
    assert not store.finish_job("retention", "replica-b", "succeeded", T0)
    assert store.finish_job("retention", "replica-a", "failed", T0 + timedelta(minutes=2))
    state = store.job_state("retention")
    assert state is not None and state.claimed_by is None and state.last_success_at is None
    assert state.last_outcome == "failed"
    # Released: anyone may take it; a claim that ran out may be taken over.
    assert store.claim_job("retention", "replica-b", T0 + timedelta(minutes=5), T0)
    later = T0 + timedelta(minutes=6)
    assert store.claim_job("retention", "replica-c", later + DAY, later)
    assert store.finish_job("retention", "replica-c", "succeeded", later)
    state = store.job_state("retention")
    assert state is not None and state.last_success_at == later and state.first_run_at == T0


def test_processes_claiming_at_once_get_one_winner(store: Store) -> None:
    until = T0 + timedelta(minutes=10)
    wins: list[str] = []
    barrier = threading.Barrier(4)

    def claim(owner: str) -> None:
        barrier.wait()
        if store.claim_job("retention", owner, until, T0):
            wins.append(owner)

    threads = [threading.Thread(target=claim, args=(f"replica-{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
