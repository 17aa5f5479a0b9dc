"""The ledger at a year's scale: keyed ids committed to in the entry, kept beside it once
per distinct list, found by id, and verification that resumes where it ended.

On real SQLite files (the contract suite runs the store half on PostgreSQL too): what an
auditor and a DPO rely on is that every transfer still proves which people it carried,
that swapping a person in or out of a stored list is caught, and that a resumed
verification still catches what happens after the point it resumed from.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.keys.signing import load_or_create_signing_key
from gateway.ledger import merkle
from gateway.ledger.checkpoint import CheckpointSigner
from gateway.ledger.entry import blob_ids, commit, inbound, outbound, subject_blob
from gateway.ledger.export import verify_export, write_export
from gateway.ledger.log import (
    Ledger,
    LedgerCorrupt,
    TransferEntry,
    canonical_bytes,
    check_inclusion_proof,
)
from gateway.lifecycle.breach import breach_scope
from gateway.lifecycle.subjects import transfers_of
from gateway.store.ledger_sqlite import SqliteLedgerStore
from tests.ledger_helpers import ALL_FIELDS, T0, Clock, make_entry


def sid(n: int) -> str:
    return f"{n:032x}"


PAGE_A = [sid(n) for n in range(1, 6)]
PAGE_B = [sid(n) for n in range(6, 9)]


def page(i: int, ids: list[str]) -> TransferEntry:
    return inbound(
        time=T0 + timedelta(minutes=i), tenant="acme", connector="afas",
        instruction_id="instr-7", mapping_digest="sha256:" + "ab" * 32, subject_ids=ids,
        fields=ALL_FIELDS, records=len(ids), quarantined=0, dropped={"BSN": len(ids)},
        run_id=f"run-{i}",
    )  # fmt: skip


def served(i: int, ids: list[str]) -> TransferEntry:
    return outbound(
        time=T0 + timedelta(minutes=i), tenant="acme", connector="afas",
        instruction_id="instr-7", mapping_digest="sha256:" + "ab" * 32, subject_ids=ids,
        fields=ALL_FIELDS, destination="feed:lms",
    )  # fmt: skip


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
    return Ledger(store, "acme", CheckpointSigner(key), clock=Clock())


def sql(db: Path, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
    conn = sqlite3.connect(db)
    try:
        with conn:
            return conn.execute(statement, params).fetchall()
    finally:
        conn.close()


def four_syncs(ledger: Ledger) -> None:
    """Four full syncs of the same two pages, each page served once: 10 entries."""
    for run in range(4):
        ledger.append([page(2 * run, PAGE_A), page(2 * run + 1, PAGE_B)])
    ledger.append([served(8, PAGE_A[:2]), served(9, [PAGE_B[0]])])


# --- what is written -------------------------------------------------------------------


def test_a_body_commits_to_its_ids_and_each_list_is_stored_once(
    ledger: Ledger, db_path: Path
) -> None:
    four_syncs(ledger)
    body = orjson.loads(sql(db_path, "SELECT body FROM ledger_entries WHERE idx = 0")[0][0])
    assert "subject_ids" not in body
    assert body["subjects"] == {"count": 5, "digest": commit(PAGE_A).digest}
    lists = sql(db_path, "SELECT ids FROM ledger_subject_sets ORDER BY set_no")
    # Eight inbound pages name two lists; the two served pages two more.
    assert [blob_ids(r[0]) for r in lists] == [PAGE_A, PAGE_B, PAGE_A[:2], [PAGE_B[0]]]
    records = ledger.entries(limit=20)
    assert [r.entry.subject_ids for r in records[:2]] == [PAGE_A, PAGE_B]
    assert all(isinstance(r.entry, TransferEntry) and r.entry.subjects for r in records)


def test_a_commitment_must_match_its_list() -> None:
    good = page(0, PAGE_A)
    with pytest.raises(ValueError, match="commits to"):
        good.with_subject_ids(PAGE_B)
    with pytest.raises(ValueError, match="sorted, distinct"):
        TransferEntry.model_validate_json(
            orjson.dumps({**good.model_dump(mode="json"), "subject_ids": PAGE_A[::-1]})
        )


def test_verification_follows_every_commitment(
    ledger: Ledger, key: Ed25519PrivateKey, db_path: Path
) -> None:
    four_syncs(ledger)
    assert ledger.verify(key.public_key()).ok
    # Someone swaps a person into a stored list (keeping its size).
    forged = subject_blob(sorted([*PAGE_B[:2], sid(99)]))
    sql(db_path, "UPDATE ledger_subject_sets SET ids = ? WHERE set_no = 2", (forged,))
    report = ledger.verify(key.public_key())
    assert not report.ok
    assert report.first_bad_index == 1 and "commits to is missing" in (report.reason or "")
    with pytest.raises(LedgerCorrupt):
        ledger.entries(limit=5)
    # A list removed outright is caught the same way.
    sql(db_path, "UPDATE ledger_subject_sets SET ids = ? WHERE set_no = 2", (subject_blob(PAGE_B),))
    assert ledger.verify(key.public_key()).ok
    sql(db_path, "DELETE FROM ledger_subject_sets WHERE set_no = 1")
    report = ledger.verify(key.public_key())
    assert not report.ok and report.first_bad_index == 0


def test_entries_written_before_lists_were_kept_apart_still_verify_and_are_found(
    ledger: Ledger, key: Ed25519PrivateKey, db_path: Path
) -> None:
    ledger.append([make_entry(0, legacy=True), make_entry(1, legacy=True)])
    # As the upgrade leaves them: no list number (their ids are in their body).
    sql(db_path, "UPDATE ledger_entries SET subject_set = NULL")
    ledger.append([page(2, [sid(0), sid(7)])])
    assert ledger.verify(key.public_key()).ok
    records = ledger.entries()
    assert [r.entry.subject_ids for r in records] == [
        [sid(0), sid(1000)], [sid(1), sid(1001)], [sid(0), sid(7)],
    ]  # fmt: skip
    found = transfers_of(ledger._store, "acme", [sid(0), sid(1001)])
    assert [(t["index"], t["subject_ids"]) for t in found] == [
        (0, [sid(0)]), (1, [sid(1001)]), (2, [sid(0)]),
    ]  # fmt: skip


def test_a_person_is_found_through_the_index_and_a_breach_names_every_list(
    ledger: Ledger, store: SqliteLedgerStore
) -> None:
    four_syncs(ledger)
    found = transfers_of(store, "acme", [PAGE_A[1]])
    assert [t["index"] for t in found] == [0, 2, 4, 6, 8]
    assert [t["direction"] for t in found] == ["inbound"] * 4 + ["outbound"]
    assert transfers_of(store, "acme", [sid(12345)]) == []
    scope = breach_scope(store, "acme", T0, T0 + timedelta(hours=1))
    assert scope.subject_ids == {*PAGE_A, *PAGE_B}
    assert scope.transfers == 10


def test_a_proof_shows_which_people_a_transfer_carried(
    ledger: Ledger, key: Ed25519PrivateKey
) -> None:
    four_syncs(ledger)
    proof = ledger.prove_inclusion(1).to_json()
    assert proof["subject_ids"] == PAGE_B
    check_inclusion_proof(proof, key.public_key())
    swapped = {**proof, "subject_ids": [*PAGE_B[:2], sid(99)]}
    with pytest.raises(merkle.ProofError, match="commits to"):
        check_inclusion_proof(swapped, key.public_key())


# --- verification that resumes ----------------------------------------------------------


def test_a_recorded_verification_is_resumed_and_still_catches_what_came_after(
    ledger: Ledger, key: Ed25519PrivateKey, db_path: Path
) -> None:
    four_syncs(ledger)
    first = ledger.verify(key.public_key(), record=True)
    assert first.ok and first.resumed_from == 0
    ledger.append([page(20, PAGE_A), page(21, [sid(50)])])
    again = ledger.verify(key.public_key(), resume=True, record=True)
    assert again.ok and again.resumed_from == 10 and again.entries == 12
    assert again.root == ledger.root()
    ledger.append([page(22, [sid(51)])])
    # A rewrite after the point is caught by the resumed check ...
    body = canonical_bytes(page(22, [sid(52)]))
    sql(
        db_path,
        "UPDATE ledger_entries SET body = ?, leaf_hash = ? WHERE idx = 12",
        (body, merkle.leaf_hash(body)),
    )
    report = ledger.verify(key.public_key(), resume=True)
    assert not report.ok and report.resumed_from == 12 and report.first_bad_index == 12


def test_a_rewrite_before_the_point_is_left_to_the_full_check(
    ledger: Ledger, key: Ed25519PrivateKey, db_path: Path
) -> None:
    four_syncs(ledger)
    assert ledger.verify(key.public_key(), record=True).ok
    body = canonical_bytes(page(0, PAGE_B))
    sql(
        db_path,
        "UPDATE ledger_entries SET body = ?, leaf_hash = ? WHERE idx = 0",
        (body, merkle.leaf_hash(body)),
    )
    assert ledger.verify(key.public_key(), resume=True).ok  # what resuming means
    full = ledger.verify(key.public_key())
    assert not full.ok and full.first_bad_index == 0


def test_a_point_that_does_not_fit_its_checkpoint_is_not_resumed_from(
    ledger: Ledger, key: Ed25519PrivateKey, db_path: Path
) -> None:
    four_syncs(ledger)
    assert ledger.verify(key.public_key(), record=True).ok
    ledger.append([page(20, PAGE_A)])
    for frontier in (b"\1" * 32, b"\1" * 64):  # a wrong hash; a wrong number of them
        sql(db_path, "UPDATE ledger_verified SET frontier = ?", (frontier,))
        report = ledger.verify(key.public_key(), resume=True)
        assert report.ok and report.resumed_from == 0 and report.entries == 11


def test_an_export_verifies_offline_lists_included_and_resumes(
    ledger: Ledger, store: SqliteLedgerStore, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    four_syncs(ledger)
    export = tmp_path / "acme.jsonl"
    with export.open("wb") as out:
        write_export(store, ["acme"], out)
    assert verify_export(export, "acme", key.public_key()).ok
    lines = [orjson.loads(line) for line in export.read_bytes().splitlines()]
    lists = [x for x in lines if x["type"] == "subjects"]
    assert len(lists) == 4
    assert blob_ids(base64.b64decode(lists[0]["ids"])) == PAGE_A

    def rewritten(change: Any) -> Path:
        path = tmp_path / "changed.jsonl"
        path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in map(change, lines) if x))
        return path

    swapped = rewritten(
        lambda x: {**x, "ids": base64.b64encode(subject_blob([sid(90), *PAGE_A[1:]])).decode()}
        if x["type"] == "subjects" and x["digest"] == lists[0]["digest"] else x
    )  # fmt: skip
    report = verify_export(swapped, "acme", key.public_key())
    assert not report.ok and report.first_bad_index == 0
    dropped = rewritten(lambda x: None if x is lists[1] else x)
    report = verify_export(dropped, "acme", key.public_key())
    assert not report.ok and report.first_bad_index == 1

    full = verify_export(export, "acme", key.public_key())
    assert full.ok
    ledger.append([page(20, [sid(60)])])
    with export.open("wb") as out:
        write_export(store, ["acme"], out)
    point = ledger.verify(key.public_key(), record=True)
    stored = store.verified("acme")
    assert stored is not None and point.ok
    note = store.checkpoints_after("acme", stored.seq - 1, 1)[0].note
    earlier = (
        type(stored)(full.entries, full.last_seq, full.frontier, stored.verified_at),
        store.checkpoints_after("acme", full.last_seq - 1, 1)[0].note,
    )
    resumed = verify_export(export, "acme", key.public_key(), start=earlier)
    assert resumed.ok and resumed.resumed_from == 10 and resumed.entries == 11
    assert note.startswith(ledger.origin)
