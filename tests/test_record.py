"""Recording a transfer (`gateway.ledger.record`) and the entry factories
(`gateway.ledger.entry`): one lock order, and writes that commit with their entries."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.ledger import entry as entries
from gateway.ledger.checkpoint import CheckpointSigner
from gateway.ledger.entry import canonical_bytes
from gateway.ledger.log import Ledger, LedgerError
from gateway.ledger.record import record, recording
from gateway.store.records import NewEvent, Tenant
from gateway.store.sqlite import SqliteStore
from tests.ledger_helpers import ALL_FIELDS, T0

SIDS = [f"{i:032x}" for i in range(3)]
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "sluis.db")
    s.create_tenant(Tenant("acme", "Acme", T0, b"k"))
    yield s
    s.close()


@pytest.fixture
def ledger(store: SqliteStore) -> Ledger:
    return Ledger(store.ledger, "acme", CheckpointSigner(Ed25519PrivateKey.generate()))


def _inbound(tenant: str = "acme") -> entries.TransferEntry:
    return entries.inbound(
        time=T0, tenant=tenant, connector="afas", instruction_id="ins_1",
        mapping_digest=DIGEST, subject_ids=reversed(SIDS), fields=ALL_FIELDS, records=5,
        quarantined=1, dropped=Counter({"BSN": 5, "IBAN": 2}), run_id="run_1",
    )  # fmt: skip


def _event(n: int) -> NewEvent:
    return NewEvent(f"evt_{n}", "subject.deleted", SIDS[0], None, T0, "afas", "ins_1")


def test_inbound_says_what_came_in_and_what_was_dropped() -> None:
    e = _inbound()
    assert (e.direction, e.destination, e.run_id) == ("inbound", "gateway", "run_1")
    assert e.subject_ids == sorted(SIDS)
    assert (e.counts.records, e.counts.quarantined, e.counts.dropped_fields) == (5, 1, 7)
    assert e.dropped_field_names == ["BSN", "IBAN"]
    assert e.fields == ALL_FIELDS


def test_outbound_counts_events_and_names_distinct_subjects() -> None:
    e = entries.outbound(
        time=T0, tenant="acme", connector="afas", instruction_id="ins_1",
        mapping_digest=DIGEST, subject_ids=[SIDS[1], SIDS[0], SIDS[1]],
        fields={"email": "user.contact.email"}, destination="feed:con_1",
    )  # fmt: skip
    assert (e.direction, e.destination, e.run_id) == ("outbound", "feed:con_1", None)
    assert e.subject_ids == [SIDS[0], SIDS[1]] and e.counts.records == 3
    assert e.fields == {"email": "user.contact.email"} and e.dropped_field_names == []


def test_refused_moves_nothing() -> None:
    e = entries.refused(time=T0, tenant="acme", connector="afas", instruction_id=None, records=4)
    assert (e.direction, e.subject_ids, e.fields, e.counts.records) == ("refused", [], {}, 4)
    assert (e.mapping_digest, e.destination, e.run_id) == (None, None, None)
    assert b'"direction":"refused"' in canonical_bytes(e)


def test_a_factory_refuses_what_an_entry_may_not_hold() -> None:
    with pytest.raises(ValueError, match="fields"):
        entries.outbound(
            time=T0, tenant="acme", connector="afas", instruction_id="ins_1",
            mapping_digest=DIGEST, subject_ids=SIDS, fields={"bsn": "user.government_id"},
            destination="feed:con_1",
        )  # fmt: skip


def test_writes_and_entries_commit_together(store: SqliteStore, ledger: Ledger) -> None:
    with recording(store, ledger, [_inbound()]):
        store.append_events("acme", [_event(1)])
    assert store.last_event_seq("acme") == 1 and ledger.size() == 1


def test_a_failing_block_appends_nothing(store: SqliteStore, ledger: Ledger) -> None:
    def crash() -> None:
        with recording(store, ledger, [_inbound()]):
            store.append_events("acme", [_event(1)])
            raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        crash()
    assert store.last_event_seq("acme") == 0 and ledger.size() == 0


def test_a_failing_append_rolls_the_writes_back(store: SqliteStore, ledger: Ledger) -> None:
    with pytest.raises(LedgerError), recording(store, ledger, [_inbound(tenant="beta")]):
        store.append_events("acme", [_event(1)])
    assert store.last_event_seq("acme") == 0 and ledger.size() == 0


def test_record_alone_appends(store: SqliteStore, ledger: Ledger) -> None:
    record(store, ledger, [_inbound(), _inbound()])
    assert ledger.size() == 2
    assert [r.entry for r in ledger.entries()] == [_inbound(), _inbound()]


def test_entries_are_built_only_by_the_factories() -> None:
    """One path: no writer spells out a `TransferEntry` by hand (they drift apart)."""
    import ast

    from tests.conftest import REPO

    by_hand = []
    for path in sorted((REPO / "gateway").rglob("*.py")):
        if path.relative_to(REPO).as_posix() == "gateway/ledger/entry.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name == "TransferEntry":
                    by_hand.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not by_hand, f"TransferEntry built by hand (use gateway.ledger.entry): {by_hand}"
