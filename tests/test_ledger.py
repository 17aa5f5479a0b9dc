"""The transfer ledger on a real SQLite file: appends, proofs, checkpoints, and tampering.

Tamper tests edit the database the way an attacker with file access would (plain SQL, no
library help) and check that `verify` points at the first entry it can no longer vouch for.
Most logs here are appended one entry per batch, so every entry has its own checkpoint and
the first bad index is exact.
"""

from __future__ import annotations

import base64
import os
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from gateway.keys.signing import load_or_create_signing_key, signing_key_path
from gateway.ledger import merkle
from gateway.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointSigner,
    key_id,
    open_checkpoint,
)
from gateway.ledger.entry import Category, EgressField
from gateway.ledger.log import (
    Ledger,
    LedgerCorrupt,
    LedgerError,
    TransferCounts,
    TransferEntry,
    canonical_bytes,
    check_inclusion_proof,
)
from gateway.minimise.egress import EGRESS_FIELDS, KNOWN_CATEGORIES
from gateway.store import StoreConflict
from gateway.store.ledger_sqlite import SqliteLedgerStore
from tests.ledger_helpers import T0, Clock, make_entry

LOG_NAME = "ledger.example/sluis"
ORIGIN = "ledger.example/sluis/acme"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def key(data_dir: Path) -> Ed25519PrivateKey:
    return load_or_create_signing_key(data_dir)


@pytest.fixture
def db_path(data_dir: Path) -> Path:
    return data_dir / "sluis.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteLedgerStore]:
    with SqliteLedgerStore(db_path) as s:
        yield s


@pytest.fixture
def ledger(store: SqliteLedgerStore, key: Ed25519PrivateKey) -> Ledger:
    return Ledger(store, "acme", CheckpointSigner(key, LOG_NAME), clock=Clock())


def one_by_one(ledger: Ledger, n: int) -> None:
    for i in range(n):
        assert ledger.append([make_entry(i, ledger.tenant)]) == [i]


def sql(db: Path, statement: str, params: tuple[Any, ...] = ()) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(statement, params)
    conn.close()


def rows(db: Path, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(query, params).fetchall()
    finally:
        conn.close()


def fresh_root(db: Path, tenant: str, size: int) -> bytes:
    leaves = [
        r[0]
        for r in rows(
            db,
            "SELECT leaf_hash FROM ledger_entries WHERE tenant = ? AND idx < ? ORDER BY idx",
            (tenant, size),
        )
    ]
    return merkle.reference_root(leaves)


def set_head(db: Path, size: int) -> None:
    """Make the append head match the first `size` stored entries, as an attacker would."""
    frontier = merkle.Frontier()
    frontier.extend(
        r[0]
        for r in rows(
            db, "SELECT leaf_hash FROM ledger_entries WHERE idx < ? ORDER BY idx", (size,)
        )
    )
    sql(db, "UPDATE ledger_heads SET size = ?, frontier = ?", (size, b"".join(frontier.hashes)))


def rewrite_entry(db: Path, index: int, entry: TransferEntry) -> None:
    """An attacker who keeps the leaf hash in step with the body."""
    body = canonical_bytes(entry)
    sql(
        db,
        "UPDATE ledger_entries SET body = ?, leaf_hash = ? WHERE tenant = 'acme' AND idx = ?",
        (body, merkle.leaf_hash(body), index),
    )


# --- appends, roots, proofs --------------------------------------------------------------


def test_append_assigns_indices_and_signs_each_batch(
    ledger: Ledger, key: Ed25519PrivateKey
) -> None:
    assert ledger.append([]) == []
    assert ledger.append([make_entry(i) for i in range(5)]) == [0, 1, 2, 3, 4]
    assert ledger.append([make_entry(5)]) == [5]
    cp = open_checkpoint(ledger.checkpoint(), key.public_key())
    assert (cp.origin, cp.size) == (ORIGIN, 6)
    leaves = [merkle.leaf_hash(canonical_bytes(make_entry(i))) for i in range(6)]
    assert cp.root == merkle.reference_root(leaves) == ledger.root()
    assert ledger.verify(key.public_key()).ok


def test_roots_at_every_size_match_the_reference(ledger: Ledger) -> None:
    entries = [make_entry(i) for i in range(70)]
    for chunk in (entries[:3], entries[3:40], entries[40:]):
        ledger.append(chunk)
    leaves = [merkle.leaf_hash(canonical_bytes(e)) for e in entries]
    for size in range(71):
        assert ledger.root(size) == merkle.reference_root(leaves[:size])
    with pytest.raises(LedgerError, match="outside the log"):
        ledger.root(71)


def test_every_inclusion_and_consistency_proof_verifies(
    ledger: Ledger, key: Ed25519PrivateKey
) -> None:
    one_by_one(ledger, 19)
    ledger.append([make_entry(i) for i in range(19, 40)])
    for size in (1, 2, 7, 19, 33, 40):
        for index in range(size):
            proof = ledger.prove_inclusion(index, size)
            merkle.verify_inclusion(proof.leaf_hash, index, size, proof.path, proof.root)
            assert check_inclusion_proof(proof.to_json(), key.public_key()).size in (size, 40)
    for size1 in range(1, 41):
        for size2 in (size1, 20, 40):
            if size2 >= size1:
                cons = ledger.prove_consistency(size1, size2)
                merkle.verify_consistency(size1, size2, cons.path, cons.root1, cons.root2)


class CountingReader:
    """A real store wrapped to count what proofs read (not a mock: it forwards everything)."""

    def __init__(self, store: SqliteLedgerStore) -> None:
        self._store = store
        self.leaves_read = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def leaf_hashes(self, tenant: str, start: int, stop: int) -> list[bytes]:
        found = self._store.leaf_hashes(tenant, start, stop)
        self.leaves_read += len(found)
        return found


def test_proofs_on_a_large_log_use_stored_nodes(
    store: SqliteLedgerStore, key: Ed25519PrivateKey
) -> None:
    writer = Ledger(store, "acme", CheckpointSigner(key), clock=Clock())
    n = 20_000
    batch = [make_entry(i) for i in range(1000)]
    for _ in range(n // 1000):
        writer.append(batch)
    writer.append([make_entry(7)] * 123)
    counting = CountingReader(store)
    reader = Ledger(counting, "acme")
    for index, size in ((0, None), (12_345, None), (n + 122, None), (777, 9_999), (5, 16_384)):
        proof = reader.prove_inclusion(index, size)
        assert check_inclusion_proof(proof.to_json(), key.public_key())
    cons = reader.prove_consistency(9_999, n + 123)
    merkle.verify_consistency(9_999, n + 123, cons.path, cons.root1, cons.root2)
    assert counting.leaves_read < 400, "proofs should read stored nodes, not the leaves"


def test_entries_pages_through_the_log(ledger: Ledger) -> None:
    ledger.append([make_entry(i) for i in range(10)])
    first = ledger.entries(limit=4)
    assert [r.index for r in first] == [0, 1, 2, 3]
    assert first[1].entry == make_entry(1)
    assert [r.index for r in ledger.entries(after=3, limit=100)] == list(range(4, 10))
    assert ledger.entries(after=9) == []


def test_prove_refuses_bad_requests(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="no checkpoint"):
        ledger.prove_inclusion(0)
    ledger.append([make_entry(i) for i in range(3)])
    with pytest.raises(LedgerError, match="outside"):
        ledger.prove_inclusion(3)
    with pytest.raises(LedgerError, match="outside"):
        ledger.prove_inclusion(0, 4)
    with pytest.raises(LedgerError, match="size1"):
        ledger.prove_consistency(0, 3)


def test_read_only_ledger_cannot_append(store: SqliteLedgerStore) -> None:
    with pytest.raises(LedgerError, match="read-only"):
        Ledger(store, "acme").append([make_entry(0)])


def test_entries_of_another_tenant_are_refused(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="another tenant"):
        ledger.append([make_entry(0, tenant="beta")])


def test_concurrent_appends_from_threads_keep_the_log_intact(
    ledger: Ledger, key: Ed25519PrivateKey
) -> None:
    def work(offset: int) -> None:
        for i in range(25):
            ledger.append([make_entry(offset + i), make_entry(offset + i)])

    threads = [threading.Thread(target=work, args=(k * 100,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = ledger.verify(key.public_key())
    assert report.ok, report.reason
    assert (report.entries, report.checkpoints) == (200, 100)


def test_a_stale_writer_gets_a_conflict_not_a_fork(
    store: SqliteLedgerStore, ledger: Ledger, key: Ed25519PrivateKey
) -> None:
    ledger.append([make_entry(0), make_entry(1)])
    with pytest.raises(StoreConflict):
        store.append(
            "acme",
            1,
            entries=[(b"{}", merkle.leaf_hash(b"{}"))],
            nodes=[],
            frontier=[],
            checkpoint_note="x",
        )
    assert ledger.verify(key.public_key()).ok


# --- checkpoints and keys ----------------------------------------------------------------


def test_checkpoint_is_a_c2sp_signed_note(ledger: Ledger, key: Ed25519PrivateKey) -> None:
    ledger.append([make_entry(0)])
    note = ledger.checkpoint()
    body, _, sig_line = note.partition("\n\n")
    origin, size, _root, time_line = body.split("\n")
    assert (origin, size) == (ORIGIN, "1")
    assert time_line.startswith("time ") and time_line.endswith("Z")
    # C2SP: the key name in the signature line is the origin.
    assert sig_line.startswith(f"\u2014 {ORIGIN} ") and sig_line.endswith("\n")
    blob = base64.b64decode(sig_line.split(" ")[2])
    assert blob[:4] == key_id(ORIGIN, key.public_key())
    assert len(blob) == 68
    key.public_key().verify(blob[4:], (body + "\n").encode())


def test_refreshed_checkpoint_on_an_idle_log_verifies(
    ledger: Ledger, key: Ed25519PrivateKey
) -> None:
    ledger.append([make_entry(0), make_entry(1)])
    first = open_checkpoint(ledger.checkpoint(), key.public_key())
    again = open_checkpoint(ledger.checkpoint(refresh=True), key.public_key())
    assert again.size == first.size and again.root == first.root and again.time > first.time
    empty = Ledger(ledger._store, "idle", CheckpointSigner(key))
    assert open_checkpoint(empty.checkpoint(), key.public_key()).root == merkle.EMPTY_ROOT
    assert empty.verify(key.public_key()).ok
    assert ledger.verify(key.public_key()).checkpoints == 2


def test_checkpoint_times_never_go_backwards(
    store: SqliteLedgerStore, key: Ed25519PrivateKey
) -> None:
    times = iter([T0, T0 - timedelta(hours=1), T0 + timedelta(hours=1)])
    ledger = Ledger(store, "acme", CheckpointSigner(key), clock=lambda: next(times))
    for i in range(3):
        ledger.append([make_entry(i)])
    notes = [c.note for c in store.iter_checkpoints("acme")]
    stamps = [open_checkpoint(n, key.public_key()).time for n in notes]
    assert stamps == sorted(stamps)
    assert ledger.verify(key.public_key()).ok


def test_signing_key_is_private_and_stable(data_dir: Path, key: Ed25519PrivateKey) -> None:
    path = signing_key_path(data_dir)
    assert path.stat().st_mode & 0o777 == 0o600
    assert os.stat(data_dir).st_mode & 0o077 == 0
    again = load_or_create_signing_key(data_dir)
    assert again.public_key().public_bytes_raw() == key.public_key().public_bytes_raw()


def test_notes_signed_by_other_keys_or_altered_are_refused(key: Ed25519PrivateKey) -> None:
    cp = Checkpoint("sluis/acme", 3, b"\x07" * 32, T0)
    note = CheckpointSigner(key).sign(cp)
    assert open_checkpoint(note, key.public_key()) == cp
    other = Ed25519PrivateKey.generate()
    with pytest.raises(CheckpointError, match="unknown key id"):
        open_checkpoint(CheckpointSigner(other).sign(cp), key.public_key())
    with pytest.raises(CheckpointError, match="does not verify"):
        open_checkpoint(note.replace("\n3\n", "\n4\n"), key.public_key())
    cosigned = note + "\u2014 witness " + "AAAAAAAAAAAAAAAA" + "\n"
    assert open_checkpoint(cosigned, key.public_key()) == cp
    for broken in ("", "sluis/acme\n3\n", note.replace("\n\n", "\n"), note + "junk"):
        with pytest.raises(CheckpointError):
            open_checkpoint(broken, key.public_key())


# --- values never get in -----------------------------------------------------------------


def test_vocabularies_match_the_egress_schema() -> None:
    assert set(EgressField.__args__) == set(EGRESS_FIELDS)  # type: ignore[attr-defined]
    assert set(Category.__args__) == set(KNOWN_CATEGORIES)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"subject_ids": ["jan.jansen@example.nl"]}, "subject_ids"),
        ({"subject_ids": ["ABCDEF0123456789ABCDEF0123456789"]}, "subject_ids"),
        ({"fields": {"phone": "user.contact.phone_number"}}, "fields"),
        ({"fields": {"email": "user.name"}}, "fields"),
        ({"dropped_field_names": ["jan.jansen@example.nl"]}, "dropped_field_names"),
        ({"dropped_field_names": ["123456782"]}, "dropped_field_names"),
        ({"dropped_field_names": ["x" * 65]}, "dropped_field_names"),
        ({"tenant": "Jan Jansen"}, "tenant"),
        ({"destination": "https://example.org/?email=jan@example.nl"}, "destination"),
        ({"mapping_digest": "md5:abc"}, "mapping_digest"),
        ({"time": datetime(2025, 3, 1, 9, 0)}, "time"),  # naive on purpose
        ({"counts": {"records": -1, "dropped_fields": 0, "quarantined": 0}}, "counts"),
        ({"counts": {"records": True, "dropped_fields": 0, "quarantined": 0}}, "counts"),
    ],
)
def test_entries_that_could_carry_values_are_refused(change: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as info:
        make_entry(0, **change)
    text = str(info.value)
    assert where in text
    assert "jan" not in text.lower()
    assert "123456782" not in text


def test_extra_keys_are_refused() -> None:
    body = orjson.loads(canonical_bytes(make_entry(0)))
    body["first_name_value"] = "Jan"
    with pytest.raises(ValidationError) as info:
        TransferEntry.model_validate_json(orjson.dumps(body))
    assert "Jan" not in str(info.value)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"run_id": None, "instruction_id": None, "mapping_digest": None, "destination": None},
        {"time": datetime(2025, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))},
        {"subject_ids": [], "fields": {}, "dropped_field_names": ["<other fields>", "Ünïcode"]},
    ],
)
@pytest.mark.parametrize("legacy", [False, True])
def test_canonical_bytes_match_the_model_dump(changes: dict[str, Any], legacy: bool) -> None:
    entry = make_entry(5, legacy=legacy, **changes)
    # A committed entry's body holds the commitment, not the list; an older one the list.
    left_out = {"subjects"} if legacy else {"subject_ids"}
    generic = orjson.dumps(
        entry.model_dump(mode="json", exclude=left_out), option=orjson.OPT_SORT_KEYS
    )
    assert canonical_bytes(entry) == generic


def test_canonical_bytes_round_trip_with_utc_z() -> None:
    entry = make_entry(3, time=datetime(2025, 3, 1, 10, 0, 0, 5, tzinfo=UTC))
    body = canonical_bytes(entry)
    assert b'"time":"2025-03-01T10:00:00.000005Z"' in body
    assert canonical_bytes(TransferEntry.model_validate_json(body)) == body
    assert list(orjson.loads(body)) == sorted(orjson.loads(body))


# --- tampering ---------------------------------------------------------------------------


@pytest.fixture
def log10(ledger: Ledger) -> Ledger:
    one_by_one(ledger, 10)
    return ledger


def check(ledger: Ledger, key: Ed25519PrivateKey, index: int | None, *words: str) -> None:
    report = ledger.verify(key.public_key())
    assert not report.ok
    assert report.first_bad_index == index, report.reason
    for word in words:
        assert word in (report.reason or ""), report.reason


def test_intact_log_verifies(log10: Ledger, key: Ed25519PrivateKey) -> None:
    report = log10.verify(key.public_key())
    assert report.ok, report.reason
    assert (report.entries, report.checkpoints, report.root) == (10, 10, log10.root())


def test_edited_entry_is_caught(log10: Ledger, key: Ed25519PrivateKey, db_path: Path) -> None:
    body = canonical_bytes(
        make_entry(4, counts=TransferCounts(records=0, dropped_fields=0, quarantined=0))
    )
    sql(db_path, "UPDATE ledger_entries SET body = ? WHERE idx = 4", (body,))
    check(log10, key, 4, "leaf hash")


def test_edited_entry_with_matching_leaf_hash_is_caught(
    log10: Ledger, key: Ed25519PrivateKey, db_path: Path
) -> None:
    rewrite_entry(db_path, 4, make_entry(4, subject_ids=[]))
    check(log10, key, 4, "root at checkpoint")


def test_deleted_entry_is_caught(log10: Ledger, key: Ed25519PrivateKey, db_path: Path) -> None:
    sql(db_path, "DELETE FROM ledger_entries WHERE idx = 4")
    check(log10, key, 4, "missing")


def test_deleted_and_renumbered_entry_is_caught(
    log10: Ledger, key: Ed25519PrivateKey, db_path: Path
) -> None:
    sql(db_path, "DELETE FROM ledger_entries WHERE idx = 4")
    sql(db_path, "UPDATE ledger_entries SET idx = -idx WHERE idx > 4")
    sql(db_path, "UPDATE ledger_entries SET idx = -idx - 1 WHERE idx < 0")
    check(log10, key, 4)


def test_swapped_rows_are_caught(log10: Ledger, key: Ed25519PrivateKey, db_path: Path) -> None:
    sql(db_path, "UPDATE ledger_entries SET idx = -1 WHERE idx = 3")
    sql(db_path, "UPDATE ledger_entries SET idx = 3 WHERE idx = 6")
    sql(db_path, "UPDATE ledger_entries SET idx = 6 WHERE idx = -1")
    check(log10, key, 3, "reordered")


def test_inserted_entry_is_caught(log10: Ledger, key: Ed25519PrivateKey, db_path: Path) -> None:
    sql(db_path, "UPDATE ledger_entries SET idx = -idx - 100 WHERE idx >= 4")
    sql(db_path, "UPDATE ledger_entries SET idx = -idx - 99 WHERE idx < 0")
    body = canonical_bytes(make_entry(99))
    sql(
        db_path,
        "INSERT INTO ledger_entries (tenant, idx, body, leaf_hash) VALUES ('acme', 4, ?, ?)",
        (body, merkle.leaf_hash(body)),
    )
    check(log10, key, 4)


def test_entry_appended_without_a_checkpoint_is_caught(
    log10: Ledger, key: Ed25519PrivateKey, db_path: Path
) -> None:
    body = canonical_bytes(make_entry(10, legacy=True))
    sql(
        db_path,
        "INSERT INTO ledger_entries (tenant, idx, body, leaf_hash) VALUES ('acme', 10, ?, ?)",
        (body, merkle.leaf_hash(body)),
    )
    check(log10, key, 10, "not covered")


def test_stray_negative_index_is_caught(
    log10: Ledger, key: Ed25519PrivateKey, db_path: Path
) -> None:
    body = canonical_bytes(make_entry(0))
    sql(
        db_path,
        "INSERT INTO ledger_entries (tenant, idx, body, leaf_hash) VALUES ('acme', -1, ?, ?)",
        (body, merkle.leaf_hash(body)),
    )
    check(log10, key, 0, "unexpected entry index -1")


def test_truncated_tail_is_caught_by_the_checkpoints(
    log10: Ledger, key: Ed25519PrivateKey, db_path: Path
) -> None:
    sql(db_path, "DELETE FROM ledger_entries WHERE idx >= 7")
    check(log10, key, 7, "truncated")


def test_truncation_that_removes_checkpoints_too_needs_a_kept_checkpoint(
    log10: Ledger, key: Ed25519PrivateKey, db_path: Path
) -> None:
    kept = log10.checkpoint()
    sql(db_path, "DELETE FROM ledger_entries WHERE idx >= 7")
    sql(db_path, "DELETE FROM ledger_checkpoints WHERE size > 7")
    set_head(db_path, 7)
    assert log10.verify(key.public_key()).ok  # indistinguishable from a log that stopped at 7
    report = log10.verify(key.public_key(), external_checkpoint=kept)
    assert not report.ok
    assert report.first_bad_index == 7
    assert "truncated" in (report.reason or "")


def test_fork_against_a_kept_checkpoint_is_caught(
    log10: Ledger, key: Ed25519PrivateKey, db_path: Path
) -> None:
    # A rogue operator with the signing key rewrites history and re-signs everything.
    kept = log10.checkpoint()
    rewrite_entry(db_path, 2, make_entry(2, subject_ids=[]))
    signer = CheckpointSigner(key)
    for size in range(3, 11):
        root = fresh_root(db_path, "acme", size)
        note = signer.sign(Checkpoint(ORIGIN, size, root, T0 + timedelta(minutes=size)))
        sql(db_path, "UPDATE ledger_checkpoints SET note = ? WHERE size = ?", (note, size))
    set_head(db_path, 10)
    assert log10.verify(key.public_key()).ok  # consistent with itself, so only a witness helps
    report = log10.verify(key.public_key(), external_checkpoint=kept)
    assert not report.ok
    assert report.first_bad_index == 0
    assert "fork" in (report.reason or "")


def test_checkpoint_forged_with_another_key_is_caught(
    log10: Ledger, key: Ed25519PrivateKey, db_path: Path
) -> None:
    rewrite_entry(db_path, 4, make_entry(4, subject_ids=[]))
    forger = CheckpointSigner(Ed25519PrivateKey.generate())
    for size in range(5, 11):
        root = fresh_root(db_path, "acme", size)
        note = forger.sign(Checkpoint(ORIGIN, size, root, T0 + timedelta(minutes=size)))
        sql(db_path, "UPDATE ledger_checkpoints SET note = ? WHERE size = ?", (note, size))
    check(log10, key, 4, "not signed by the trusted key")


def test_checkpoint_with_a_bad_signature_is_caught(
    log10: Ledger, key: Ed25519PrivateKey, db_path: Path
) -> None:
    (note,) = rows(db_path, "SELECT note FROM ledger_checkpoints WHERE size = 6")[0]
    sql(
        db_path,
        "UPDATE ledger_checkpoints SET note = ? WHERE size = 6",
        (note.replace("\n6\n", "\n5\n"),),
    )
    check(log10, key, 5, "does not verify")


def test_replayed_older_checkpoint_is_caught(
    log10: Ledger, key: Ed25519PrivateKey, db_path: Path
) -> None:
    (note,) = rows(db_path, "SELECT note FROM ledger_checkpoints WHERE size = 5")[0]
    sql(
        db_path,
        "INSERT INTO ledger_checkpoints (tenant, seq, size, note) VALUES ('acme', 11, 5, ?)",
        (note,),
    )
    check(log10, key, 5, "replayed")


def test_checkpoint_of_another_tenant_is_caught(
    store: SqliteLedgerStore, log10: Ledger, key: Ed25519PrivateKey, db_path: Path
) -> None:
    beta = Ledger(store, "beta", CheckpointSigner(key), clock=Clock())
    one_by_one(beta, 3)
    assert beta.verify(key.public_key()).ok
    (note,) = rows(db_path, "SELECT note FROM ledger_checkpoints WHERE tenant = 'beta'")[0]
    sql(
        db_path,
        "UPDATE ledger_checkpoints SET note = ? WHERE tenant = 'acme' AND size = 1",
        (note,),
    )
    check(log10, key, 0, "another log")


def test_entry_moved_from_another_tenant_is_caught(
    store: SqliteLedgerStore, log10: Ledger, key: Ed25519PrivateKey, db_path: Path
) -> None:
    body = canonical_bytes(make_entry(3, tenant="beta"))
    sql(
        db_path,
        "UPDATE ledger_entries SET body = ?, leaf_hash = ? WHERE idx = 3",
        (body, merkle.leaf_hash(body)),
    )
    check(log10, key, 3, "another tenant")


def test_invalid_body_is_caught_without_echoing_it(
    log10: Ledger, key: Ed25519PrivateKey, db_path: Path
) -> None:
    body = canonical_bytes(make_entry(2)).replace(b'"gateway"', b'"jan@example.nl"')
    sql(
        db_path,
        "UPDATE ledger_entries SET body = ?, leaf_hash = ? WHERE idx = 2",
        (body, merkle.leaf_hash(body)),
    )
    report = log10.verify(key.public_key())
    assert report.first_bad_index == 2
    assert "destination" in (report.reason or "")
    assert "jan" not in (report.reason or "")


def test_verifying_with_the_wrong_key_fails_at_the_first_checkpoint(log10: Ledger) -> None:
    report = log10.verify(Ed25519PrivateKey.generate().public_key())
    assert not report.ok
    assert report.first_bad_index == 0
    assert "unknown key id" in (report.reason or "")


def test_a_batch_localises_damage_to_its_range(
    ledger: Ledger, key: Ed25519PrivateKey, db_path: Path
) -> None:
    ledger.append([make_entry(i) for i in range(5)])
    ledger.append([make_entry(i) for i in range(5, 15)])
    rewrite_entry(db_path, 9, make_entry(9, subject_ids=[]))
    check(ledger, key, 5, "5..14")


def test_damaged_proof_node_is_reported_and_never_served(
    store: SqliteLedgerStore, key: Ed25519PrivateKey, db_path: Path
) -> None:
    ledger = Ledger(store, "acme", CheckpointSigner(key), clock=Clock())
    ledger.append([make_entry(i) for i in range(40)])
    sql(db_path, "UPDATE ledger_nodes SET hash = ? WHERE level = 4 AND idx = 1", (b"\x00" * 32,))
    report = ledger.verify(key.public_key())
    assert not report.ok and "proof node (level 4, index 1)" in (report.reason or "")
    with pytest.raises(LedgerCorrupt):
        ledger.prove_inclusion(20)


def test_damaged_append_head_is_reported(
    log10: Ledger, key: Ed25519PrivateKey, db_path: Path
) -> None:
    sql(db_path, "UPDATE ledger_heads SET size = 9")
    report = log10.verify(key.public_key())
    assert not report.ok and "head" in (report.reason or "")
