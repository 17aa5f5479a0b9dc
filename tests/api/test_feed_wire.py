"""Feed pages spliced from the events' stored wire bytes are the pages the feed built before,
byte for byte, on both store backends: every field covered, an instruction narrower than
the events, a revoked source among covered ones, a deleted connector's deletions, data
holding more than the egress fields, and events stored before the wire column existed.

The reference is the feed's former page builder, kept here verbatim in substance: each
event decoded from its stored JSON and rebuilt from the four egress field names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.delivery.feed import _ALL_FIELDS, encode_cursor, serve_page, standing
from gateway.ledger.checkpoint import CheckpointSigner
from gateway.ledger.log import Ledger
from gateway.minimise.egress import EGRESS_FIELDS
from gateway.store.database import time_text
from gateway.store.event_wire import DATA_FIELDS
from gateway.store.gateway_sql import SqlStore
from gateway.store.protocols import Store
from gateway.store.records import ConnectorRecord, Consumer, Instruction, NewEvent, Tenant
from tests.ledger_helpers import Clock
from tests.store.conftest import BACKENDS

T0 = datetime(2026, 5, 4, 8, 30, 15, 123456, tzinfo=UTC)
ALL = {
    "first_name": "user.name.first",
    "last_name": "user.name.last",
    "email": "user.contact.email",
    "job_title": "user.job_title",
}
DIGEST = "sha256:" + "1" * 64


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with BACKENDS[request.param](tmp_path) as s:
        yield s


def _sid(n: int) -> str:
    return f"{n:032x}"


def _person(n: int) -> dict[str, Any]:
    return {
        "first_name": f"Zoë{n}",
        "last_name": f"van 't Hof\t{n}",
        "email": f"z{n}@example-employer.nl",
        "job_title": 'Ingénieur \u2028 "quoted" \\ </script>',
    }


def _connector(store: Store, name: str) -> None:
    store.create_connector(
        ConnectorRecord(
            tenant="acme", id=name, type="afas", base_url="http://127.0.0.1:1",
            sealed_credentials=b"s", settings={}, mapping_text="m", mapping_digest=DIGEST,
            interval_seconds=60, max_delete_share=0.2, created_at=T0,
        )
    )  # fmt: skip


def _grant(store: Store, name: str, fields: dict[str, str] | None = None) -> str:
    instruction = Instruction(
        id=f"ins_{name}", tenant="acme", connector=name, granted_by="acc_1", granted_at=T0,
        purpose="test", mapping_digest=DIGEST, fields=fields or ALL,
    )  # fmt: skip
    store.add_instruction(instruction)
    return instruction.id


def _events(store: Store, source: str, count: int, start: int = 0, **extra: Any) -> None:
    events = [
        NewEvent(
            id=f"evt_{source}_{n:04d}",
            type="subject.deleted" if n % 4 == 3 else "subject.upserted",
            subject_id=_sid(n),
            data=None if n % 4 == 3 else {**_person(n), **extra},
            occurred_at=T0 + timedelta(seconds=n),
            source=source,
            instruction_id=f"ins_{source}",
        )
        for n in range(start, start + count)
    ]
    store.append_events("acme", events)


def _former_page(store: Store, consumer: Consumer, now: datetime, after: int, limit: int) -> bytes:
    """The page as the feed built it before events carried their wire bytes."""
    assert isinstance(store, SqlStore)
    rows = store.database.all(
        "SELECT seq, id, type, subject_id, data, occurred_at, source, instruction_id"
        " FROM events WHERE tenant = ? AND seq > ? ORDER BY seq LIMIT ?",
        ("acme", after, limit),
    )
    sources: dict[str, Any] = {}
    events: list[dict[str, Any]] = []
    withheld = 0
    for seq, event_id, kind, subject, data_json, occurred, source, instruction_id in rows:
        src = sources.get(source)
        if src is None:
            src = sources[source] = standing(store, "acme", source, now)
        if src.instruction is None or (src.deletes_only and kind != "subject.deleted"):
            withheld += 1
            continue
        data: dict[str, Any] | None = None
        if data_json is not None:
            stored = orjson.loads(data_json)
            if not isinstance(stored, dict):
                stored = {}
            if src.covered is _ALL_FIELDS and stored.keys() == _ALL_FIELDS:
                data = stored
            else:
                data = {k: stored.get(k) if k in src.covered else None for k in EGRESS_FIELDS}
        events.append({
            "id": event_id, "seq": seq, "type": kind, "subject_id": subject, "data": data,
            "occurred_at": occurred if isinstance(occurred, str) else time_text(occurred),
            "source": source, "instruction_id": instruction_id,
        })  # fmt: skip
    next_seq = rows[-1][0] if rows else after
    return orjson.dumps(
        {"events": events, "next_cursor": encode_cursor(next_seq, "acme"), "withheld": withheld},
        option=orjson.OPT_UTC_Z,
    )


def _all_fields(store: Store) -> None:
    _connector(store, "hr")
    _grant(store, "hr")
    _events(store, "hr", 23)


def _narrower(store: Store) -> None:
    _connector(store, "hr")
    _grant(store, "hr", {"email": "user.contact.email", "job_title": "user.job_title"})
    _events(store, "hr", 23)


def _revoked_among_covered(store: Store) -> None:
    _connector(store, "hr")
    _connector(store, "crm")
    _grant(store, "hr")
    crm = _grant(store, "crm")
    store.revoke_instruction(crm, "acc_1", T0)
    for n in range(0, 20, 5):
        _events(store, "hr", 3, start=n)
        _events(store, "crm", 2, start=n + 3)


def _deleted_connector(store: Store) -> None:
    _connector(store, "hr")
    _grant(store, "hr")
    _events(store, "hr", 23)
    store.mark_connector_deleted("acme", "hr", T0, "delete")


def _more_than_egress(store: Store) -> None:
    _connector(store, "hr")
    _grant(store, "hr")
    _events(store, "hr", 11, bsn="123456782", iban="NL91ABNA0417164300")


def _stored_before_wire(store: Store) -> None:
    _all_fields(store)
    _connector(store, "crm")
    _grant(store, "crm", {"email": "user.contact.email"})
    _events(store, "crm", 9, start=100)
    assert isinstance(store, SqlStore)
    # As a database upgraded from before the wire column holds them.
    store.database.execute(
        "UPDATE events SET wire = NULL WHERE tenant = ? AND seq - seq / 3 * 3 = 0", ("acme",)
    )


SCENARIOS: dict[str, Callable[[Store], None]] = {
    "all fields": _all_fields,
    "narrower instruction": _narrower,
    "revoked source among covered": _revoked_among_covered,
    "deleted connector": _deleted_connector,
    "data beyond egress": _more_than_egress,
    "stored before wire": _stored_before_wire,
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_spliced_pages_equal_the_former_pages_byte_for_byte(store: Store, scenario: str) -> None:
    store.create_tenant(Tenant("acme", "Acme BV", T0, b"sealed"))
    SCENARIOS[scenario](store)
    consumer = Consumer("con_1", "acme", "lms", T0)
    ledger = Ledger(
        store.ledger, "acme", CheckpointSigner(Ed25519PrivateKey.generate()), clock=Clock()
    )
    now = T0 + timedelta(hours=1)
    head = store.last_event_seq("acme")
    for limit in (1, 4, 7, 1000):
        for after in range(head + 1):
            want = _former_page(store, consumer, now, after, limit)
            body, served, withheld = serve_page(
                store, ledger, consumer, now=now, after=after, limit=limit
            )
            assert body == want, (scenario, after, limit)
            page = orjson.loads(body)
            assert (served, withheld) == (len(page["events"]), page["withheld"])
            for event in page["events"]:
                assert event["data"] is None or list(event["data"]) == list(EGRESS_FIELDS)
    assert b"123456782" not in _former_page(store, consumer, now, 0, 1000)
    assert ledger.size() > 0


def test_the_stores_wire_fields_are_the_egress_fields() -> None:
    assert DATA_FIELDS == EGRESS_FIELDS


def test_serving_pages_logs_no_personal_data(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    store.create_tenant(Tenant("acme", "Acme BV", T0, b"sealed"))
    with caplog.at_level(logging.DEBUG):
        _stored_before_wire(store)
        consumer = Consumer("con_1", "acme", "lms", T0)
        signer = CheckpointSigner(Ed25519PrivateKey.generate())
        ledger = Ledger(store.ledger, "acme", signer, clock=Clock())
        body, served, _ = serve_page(store, ledger, consumer, now=T0, after=0, limit=1000)
    assert served and b"Zo\xc3\xab1" in body
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for value in ("Zoë", "example-employer", "Ingénieur", _sid(1)):
        assert value not in logged
