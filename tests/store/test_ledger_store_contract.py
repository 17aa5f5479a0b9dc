"""The LedgerStore contract: what `gateway.ledger.log.Ledger` relies on from any backend.

Stores keep bytes and numbers and never interpret them, so these tests feed opaque rows
(no Merkle maths): what goes in comes back, in order, atomically, per tenant.
"""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from gateway.store.protocols import LedgerStore, LogMoved, StoreConflict
from gateway.store.records import AppendBase, VerifiedPoint


def _leaf(i: int) -> bytes:
    return bytes([i % 256]) * 32


def _append(
    store: LedgerStore,
    tenant: str,
    start: int,
    n: int,
    note: str,
    base: AppendBase | None = None,
    *,
    frontier: bytes | None = None,
) -> int:
    return store.append(
        tenant,
        start,
        entries=[(f'{{"i":{start + i}}}'.encode(), _leaf(start + i)) for i in range(n)],
        nodes=[(4, start // 16, b"n" * 32)] if n >= 16 else [],
        frontier=[frontier or _leaf(start + n - 1)],
        checkpoint_note=note,
        base=base,
    )


def test_an_empty_store_has_nothing(ledger_store: LedgerStore) -> None:
    s = ledger_store
    assert s.tenants() == []
    assert s.head("acme") is None
    assert list(s.iter_entries("acme")) == []
    assert s.leaf_hashes("acme", 0, 10) == []
    assert s.node_hashes("acme", 4, 0, 10) == []
    assert list(s.iter_nodes("acme")) == []
    assert list(s.iter_checkpoints("acme")) == []
    assert s.latest_checkpoint("acme") is None
    assert s.checkpoint_at("acme", 0) is None
    assert s.tip("acme") == (None, None)


def test_appends_come_back_in_order_per_tenant(ledger_store: LedgerStore) -> None:
    s = ledger_store
    _append(s, "acme", 0, 16, "cp 16")
    _append(s, "acme", 16, 4, "cp 20")
    _append(s, "beta", 0, 1, "beta cp 1")
    assert s.tenants() == ["acme", "beta"]
    head = s.head("acme")
    assert head is not None and head.size == 20 and head.frontier == (_leaf(19),)
    rows = list(s.iter_entries("acme"))
    assert [r[0] for r in rows] == list(range(20))
    assert rows[3] == (3, b'{"i":3}', _leaf(3))
    assert [r[0] for r in s.iter_entries("acme", 5, 8)] == [5, 6, 7]
    assert [r[0] for r in s.iter_entries("acme", 18)] == [18, 19]
    assert [r[0] for r in s.iter_entries("acme", None, 2)] == [0, 1]
    assert s.leaf_hashes("acme", 2, 5) == [_leaf(2), _leaf(3), _leaf(4)]
    assert s.leaf_hashes("acme", 19, 25) == [_leaf(19)]
    assert s.node_hashes("acme", 4, 0, 2) == [b"n" * 32]
    assert list(s.iter_nodes("acme")) == [(4, 0, b"n" * 32)]
    assert list(s.iter_nodes("beta")) == []
    assert [(c.size, c.note) for c in s.iter_checkpoints("acme")] == [(16, "cp 16"), (20, "cp 20")]
    seqs = [c.seq for c in s.iter_checkpoints("acme")]
    assert seqs == sorted(seqs) and len(set(seqs)) == 2
    latest = s.latest_checkpoint("acme")
    assert latest is not None and (latest.size, latest.note) == (20, "cp 20")
    found = s.checkpoint_at("acme", 16)
    assert found is not None and found.note == "cp 16"
    assert s.checkpoint_at("acme", 17) is None
    assert [r[0] for r in s.iter_entries("beta")] == [0]


def test_a_stale_append_conflicts_and_changes_nothing(ledger_store: LedgerStore) -> None:
    s = ledger_store
    _append(s, "acme", 0, 2, "cp 2")
    with pytest.raises(StoreConflict):
        _append(s, "acme", 1, 1, "stale")
    with pytest.raises(StoreConflict):
        _append(s, "acme", 3, 1, "ahead")
    assert s.head("acme").size == 2  # type: ignore[union-attr]
    assert [c.note for c in s.iter_checkpoints("acme")] == ["cp 2"]
    assert [r[0] for r in s.iter_entries("acme")] == [0, 1]


def test_an_append_built_on_a_remembered_log_is_checked_against_it(
    ledger_store: LedgerStore,
) -> None:
    """`base`: an append built on the head and checkpoint its writer remembered (not read
    in its transaction) goes in only if the log is still exactly there: its size, its
    frontier (a log of the same size with other entries has another), its latest
    checkpoint (one added since)."""
    s = ledger_store
    empty = AppendBase(None, 0)
    seq = _append(s, "acme", 0, 1, "cp 1", empty)
    assert seq == 1
    after_one = AppendBase(_leaf(0), 1)
    with pytest.raises(LogMoved):  # the log is not empty any more
        _append(s, "acme", 0, 1, "again", empty)
    with pytest.raises(LogMoved):  # same size, other entries: another frontier
        _append(s, "acme", 1, 1, "forked", AppendBase(b"x" * 32, 1))
    s.add_checkpoint("acme", 1, "cp 1 again")
    with pytest.raises(LogMoved):  # a checkpoint came since
        _append(s, "acme", 1, 1, "stale", after_one)
    assert [c.note for c in s.iter_checkpoints("acme")] == ["cp 1", "cp 1 again"]
    assert s.head("acme").size == 1  # type: ignore[union-attr]
    assert _append(s, "acme", 1, 2, "cp 3", AppendBase(_leaf(0), 2)) == 3
    assert _append(s, "acme", 3, 1, "cp 4") == 4  # no base: the size alone, as before
    assert [r[0] for r in s.iter_entries("acme")] == [0, 1, 2, 3]
    # Inside a transaction a refused append leaves it usable: the writer reads and retries.
    with s.writing("acme"):
        with pytest.raises(LogMoved):
            _append(s, "acme", 4, 1, "stale", after_one)
        head, latest = s.tip("acme")
        assert head is not None and latest is not None
        _append(s, "acme", head.size, 1, "cp 5", AppendBase(b"".join(head.frontier), latest.seq))
    assert s.head("acme").size == 5  # type: ignore[union-attr]


def test_an_append_whose_later_write_fails_stores_none_of_it(ledger_store: LedgerStore) -> None:
    """A failure of a later write of an append (a tree node stored already) is a
    `StoreConflict`, and the entries written before it are rolled back: on PostgreSQL the
    append is one statement (`_APPEND_PG`), on SQLite several in one transaction."""
    s = ledger_store
    _append(s, "acme", 0, 16, "cp 16")
    with pytest.raises(StoreConflict):
        s.append(
            "acme",
            16,
            entries=[(b'{"i":16}', _leaf(16))],
            nodes=[(4, 0, b"m" * 32)],  # (level 4, index 0) is there already
            frontier=[_leaf(16)],
            checkpoint_note="cp 17",
        )
    assert s.head("acme").size == 16  # type: ignore[union-attr]
    assert [r[0] for r in s.iter_entries("acme")][-1] == 15
    assert [c.note for c in s.iter_checkpoints("acme")] == ["cp 16"]
    assert list(s.iter_nodes("acme")) == [(4, 0, b"n" * 32)]
    _append(s, "acme", 16, 1, "cp 17")
    assert s.head("acme").size == 17  # type: ignore[union-attr]


def test_add_checkpoint_only_at_the_current_size(ledger_store: LedgerStore) -> None:
    s = ledger_store
    _append(s, "acme", 0, 3, "cp 3")
    s.add_checkpoint("acme", 3, "cp 3 again")
    with pytest.raises(StoreConflict):
        s.add_checkpoint("acme", 2, "too small")
    latest = s.latest_checkpoint("acme")
    assert latest is not None and latest.note == "cp 3 again"
    again = s.checkpoint_at("acme", 3)
    assert again is not None and again.note == "cp 3 again"
    s.add_checkpoint("idle", 0, "empty log")
    assert "idle" in s.tenants() and s.checkpoint_at("idle", 0) is not None


def test_the_tip_is_the_head_and_the_latest_checkpoint_read_together(
    ledger_store: LedgerStore,
) -> None:
    s = ledger_store
    _append(s, "acme", 0, 16, "cp 16")
    _append(s, "acme", 16, 4, "cp 20")
    s.add_checkpoint("acme", 20, "cp 20 again")
    _append(s, "beta", 0, 1, "beta cp 1")
    head, latest = s.tip("acme")
    assert head == s.head("acme") and latest == s.latest_checkpoint("acme")
    assert latest is not None and latest.note == "cp 20 again"
    # A log with checkpoints but no entries yet: no head, a latest checkpoint.
    s.add_checkpoint("idle", 0, "empty log")
    assert s.tip("idle") == (None, s.latest_checkpoint("idle"))


def test_a_snapshot_holds_still_while_writers_carry_on(ledger_store: LedgerStore) -> None:
    s = ledger_store
    _append(s, "acme", 0, 2, "cp 2")
    with s.snapshot() as reader:
        _append(s, "acme", 2, 3, "cp 5")
        assert reader.head("acme").size == 2  # type: ignore[union-attr]
        assert [r[0] for r in reader.iter_entries("acme")] == [0, 1]
        assert [c.note for c in reader.iter_checkpoints("acme")] == ["cp 2"]
        assert reader.tenants() == ["acme"]
        assert reader.leaf_hashes("acme", 0, 5) == [_leaf(0), _leaf(1)]
        assert reader.latest_checkpoint("acme").note == "cp 2"  # type: ignore[union-attr]
        assert reader.checkpoint_at("acme", 5) is None
        assert reader.node_hashes("acme", 4, 0, 1) == []
        assert list(reader.iter_nodes("acme")) == []
    assert s.head("acme").size == 5  # type: ignore[union-attr]


def test_entries_page_through_large_logs(ledger_store: LedgerStore) -> None:
    s = ledger_store
    total = 12_000  # more than one page of rows at a time in the SQLite store
    s.append(
        "acme",
        0,
        entries=[(b"{}", _leaf(i)) for i in range(total)],
        nodes=[(4, i, _leaf(i)) for i in range(total // 16)],
        frontier=[],
        checkpoint_note="cp",
    )
    assert sum(1 for _ in s.iter_entries("acme")) == total
    assert sum(1 for _ in s.iter_nodes("acme")) == total // 16


def test_writing_keeps_other_writers_of_the_tenant_out_until_it_ends(
    ledger_store: LedgerStore,
) -> None:
    # The lock holds from the transaction's first statement after `writing` (on
    # PostgreSQL it goes with that statement): the other writer's read waits for the
    # first's COMMIT, and sees its append.
    s = ledger_store
    seen: list[int] = []

    def other() -> None:
        with s.writing("acme"):
            head = s.head("acme")
            seen.append(head.size if head else 0)
            _append(s, "acme", 1, 1, "cp 2")

    with s.writing("acme"):
        assert s.head("acme") is None
        waiting = threading.Thread(target=other)
        waiting.start()
        time.sleep(0.3)
        assert not seen
        _append(s, "acme", 0, 1, "cp 1")
    waiting.join(timeout=10)
    assert seen == [1]
    assert s.head("acme").size == 2  # type: ignore[union-attr]


def _ids(*starts: int) -> bytes:
    """A sorted binary list of 16-byte ids (as `subject_blob` makes them)."""
    return b"".join(sorted(s.to_bytes(16, "big") for s in starts))


def _digest(ids: bytes) -> bytes:
    return hashlib.sha256(ids).digest()


def _append_with_lists(
    store: LedgerStore, start: int, lists: list[bytes | None], note: str = "cp"
) -> None:
    store.append(
        "acme",
        start,
        entries=[(b'{"i":%d}' % (start + i), _leaf(start + i)) for i in range(len(lists))],
        nodes=[],
        frontier=[_leaf(start + len(lists) - 1)],
        checkpoint_note=note,
        subject_sets=[(i, _digest(ids), ids) for i, ids in enumerate(lists) if ids is not None],
    )


def test_subject_lists_are_stored_once_and_found_by_id(ledger_store: LedgerStore) -> None:
    s = ledger_store
    twin = (7 << 64) | 1  # shares its first 8 bytes with `7 << 64`: same index key
    a, b, c = _ids(1, 2, 7 << 64), _ids(3), _ids(twin)
    _append_with_lists(s, 0, [a, a, None, b])
    _append_with_lists(s, 4, [c, a, _ids()])
    assert [d for d, _ in s.iter_subject_sets("acme")] == [_digest(a), _digest(b), _digest(c)]
    found = s.subject_sets("acme", [_digest(b), _digest(a), b"\0" * 32])
    assert found == {_digest(a): a, _digest(b): b}
    assert s.subject_sets("other", [_digest(a)]) == {}
    one = (1).to_bytes(16, "big")
    assert s.entries_carrying("acme", one) == [0, 1, 5]
    assert s.entries_carrying("acme", (3).to_bytes(16, "big")) == [3]
    # The index key is shared; the list itself tells the two apart.
    assert s.entries_carrying("acme", (7 << 64).to_bytes(16, "big")) == [0, 1, 5]
    assert s.entries_carrying("acme", twin.to_bytes(16, "big")) == [4]
    assert s.entries_carrying("acme", (99).to_bytes(16, "big")) == []
    assert s.entries_carrying("other", one) == []
    assert [r[0] for r in s.entries_at("acme", [5, 0, 99, 3])] == [0, 3, 5]
    assert s.entries_at("acme", [2])[0] == (2, b'{"i":2}', _leaf(2))
    assert list(s.iter_unindexed("acme")) == []

    def answers() -> list[list[int]]:
        probes = [1, 3, 7 << 64, twin, 99]
        return [s.entries_carrying("acme", p.to_bytes(16, "big")) for p in probes]

    # Found the same before the lists are indexed (read directly), half-way and after.
    before = answers()
    assert s.index_subject_lists("acme", 2) == 2
    assert answers() == before
    assert s.index_subject_lists("acme", 10) == 1
    assert s.index_subject_lists("acme", 10) == 0
    assert answers() == before
    _append_with_lists(s, 7, [_ids(1, 99)])  # stored after the index head
    assert s.entries_carrying("acme", (99).to_bytes(16, "big")) == [7]
    assert s.entries_carrying("acme", one) == [0, 1, 5, 7]
    assert s.index_subject_lists("acme", 10) == 1
    assert s.entries_carrying("acme", one) == [0, 1, 5, 7]


def test_a_refused_append_stores_no_subject_list(ledger_store: LedgerStore) -> None:
    s = ledger_store
    _append_with_lists(s, 0, [_ids(1)])
    with pytest.raises(StoreConflict):
        _append_with_lists(s, 0, [_ids(2)])
    assert [d for d, _ in s.iter_subject_sets("acme")] == [_digest(_ids(1))]
    assert s.entries_carrying("acme", (2).to_bytes(16, "big")) == []


def test_entries_from_before_subject_lists_are_read_apart(ledger_store: LedgerStore) -> None:
    s = ledger_store
    _append_with_lists(s, 0, [_ids(1), None, None])
    # What a log written before lists were kept apart looks like after the upgrade.
    database = getattr(s, "database")  # noqa: B009 - the SQL stores' own connection
    database.execute("UPDATE ledger_entries SET subject_set = NULL WHERE idx >= 1")
    assert [r[0] for r in s.iter_unindexed("acme")] == [1, 2]
    assert s.entries_carrying("acme", (1).to_bytes(16, "big")) == [0]


def test_where_verification_ended_is_kept_per_tenant(ledger_store: LedgerStore) -> None:
    s = ledger_store
    assert s.verified("acme") is None
    at = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    s.set_verified("acme", VerifiedPoint(20, 3, (_leaf(1), _leaf(2)), at))
    s.set_verified("beta", VerifiedPoint(1, 1, (_leaf(9),), at))
    s.set_verified("acme", VerifiedPoint(36, 5, (_leaf(4),), at + timedelta(days=1)))
    assert s.verified("acme") == VerifiedPoint(36, 5, (_leaf(4),), at + timedelta(days=1))
    assert s.verified("beta") == VerifiedPoint(1, 1, (_leaf(9),), at)


def test_nodes_can_be_read_from_a_size_on(ledger_store: LedgerStore) -> None:
    s = ledger_store
    _append(s, "acme", 0, 16, "cp 16")
    _append(s, "acme", 16, 16, "cp 32")
    assert list(s.iter_nodes("acme", 16)) == [(4, 1, b"n" * 32)]
    assert list(s.iter_nodes("acme", 15)) == [(4, 0, b"n" * 32), (4, 1, b"n" * 32)]
    assert list(s.iter_nodes("acme", 32)) == []


def test_a_damaged_index_is_found_and_rebuilt_from_the_lists(ledger_store: LedgerStore) -> None:
    s = ledger_store
    lists = [_ids(*range(10 * n, 10 * n + 10)) for n in range(1, 5)]
    _append_with_lists(s, 0, list(lists))
    assert s.unsound_index("acme") == []  # nothing indexed yet: nothing to disagree
    while s.index_subject_lists("acme", 10):
        pass
    assert s.unsound_index("acme") == []
    database = getattr(s, "database")  # noqa: B009 - the SQL stores' own connection
    twelve = (12).to_bytes(16, "big")
    assert s.entries_carrying("acme", twelve) == [0]
    # Someone removes a row (the lookup would miss entry 0), alters one, adds one.
    prefix = int.from_bytes(twelve[:8], "big", signed=True)
    database.execute("DELETE FROM ledger_subject_index WHERE set_no = 1 AND prefix = ?", (prefix,))
    database.execute("UPDATE ledger_subject_index SET prefix = prefix + 1 WHERE set_no = 2"
                     " AND prefix = (SELECT MIN(prefix) FROM ledger_subject_index"
                     " WHERE set_no = 2)")  # fmt: skip
    database.execute("INSERT INTO ledger_subject_index (tenant, prefix, set_no) VALUES"
                     " ('acme', 777, 3)")  # fmt: skip
    assert s.entries_carrying("acme", twelve) == []
    assert s.unsound_index("acme") == [1, 2, 3]
    s.reindex_subject_lists("acme", [1, 2, 3])
    assert s.unsound_index("acme") == []
    assert s.entries_carrying("acme", twelve) == [0]
