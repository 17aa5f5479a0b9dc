"""Data-subject requests, the reading half: find a person, and say what Sluis holds about them
and where it went (GDPR Art. 15 access, Art. 20 portability, and the lookup every other
right starts with).

A person is found by their work email, normalised exactly as the egress schema normalises
it on the way in (so `Anna@ACME.example ` finds what was stored as `anna@acme.example`),
or by their identity in one of the tenant's sources (an AFAS employee number): the keyed
id is computed from it with the connector's mapping and the tenant's subject key, as the
sync computes it. Either way the answer is keyed ids and source connector names.

What Sluis holds about a person is the minimised feed events of their keyed ids (the four
egress fields, per source, over time) and, in the ledger, the transfers that carried their
keyed id: when, which way, from which source to which destination, under which
authorisation. Nothing else exists: source fields outside the authorised mapping are
dropped on arrival, and the ledger holds keyed ids, never values. The export says so.

The ledger's index of subject lists names the entries that carried an id, so a request
reads those entries and no others (only entries written before the lists were kept apart
are scanned, their ids being in their bodies).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from gateway.keys.master import SecretBox
from gateway.ledger.entry import TransferEntry
from gateway.ledger.kinds import is_audit_body, parse_entry
from gateway.minimise.egress import EGRESS_FIELDS, clean_email
from gateway.minimise.mapping import parse_mapping
from gateway.minimise.projector import Projector
from gateway.store.protocols import LedgerReader, Store
from gateway.store.records import EventRow
from gateway.tenancy import subject_key

NOTHING_ELSE: Final = (
    "Sluis holds nothing else about this person: source fields outside the authorised "
    "mapping are dropped when they arrive and never stored, and the ledger holds the keyed "
    "id, field names and counts, never the values."
)


class SubjectLookupError(ValueError):
    """A lookup that cannot be made as asked (names the field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Found:
    """One keyed id a lookup found, and the source connectors its events came from."""

    subject_id: str
    sources: tuple[str, ...]


def find_by_email(store: Store, tenant: str, email: str) -> list[Found]:
    try:
        normalised = clean_email(email)
    except ValueError as exc:
        raise SubjectLookupError("email", str(exc)) from None
    by_subject: dict[str, list[str]] = {}
    for subject_id, source in store.subjects_with_email(tenant, normalised):
        by_subject.setdefault(subject_id, []).append(source)
    return [Found(sid, tuple(sorted(set(src)))) for sid, src in sorted(by_subject.items())]


def keyed_id(
    store: Store, box: SecretBox, tenant: str, connector: str, identity: Sequence[str]
) -> str:
    """The keyed id the connector's sync gives the source record with this identity (the
    mapping's identity fields, in order); `NotFound` for an unknown connector."""
    record = store.get_connector(tenant, connector)
    mapping = parse_mapping(record.mapping_text, f"mapping of connector {connector}")
    wanted = mapping.identity.fields
    values = [v.strip() for v in identity]
    if len(values) != len(wanted) or not all(values):
        raise SubjectLookupError(
            "identity",
            f"connector {connector} identifies people by {len(wanted)} field(s)"
            f" ({', '.join(wanted)}): give that many values, none empty",
        )
    projector = Projector(mapping, subject_key(box, store.get_tenant(tenant)))
    return projector.subject_id(*values)


def find_by_identity(
    store: Store, box: SecretBox, tenant: str, connector: str, identity: Sequence[str]
) -> list[Found]:
    subject_id = keyed_id(store, box, tenant, connector, identity)
    sources = sorted({e.source for e in store.events_of_subjects(tenant, [subject_id])})
    return [Found(subject_id, tuple(sources))] if sources else []


def transfers_of(
    reader: LedgerReader, tenant: str, subject_ids: Sequence[str]
) -> list[dict[str, Any]]:
    """Every transfer in the tenant's log that carried one of these keyed ids.

    The ledger's index of subject lists names the entries (`entries_carrying`): no entry
    is read that did not carry one of them. Entries written before the lists were stored
    apart hold their ids in their body; those (`iter_unindexed`) are still scanned."""
    carried: dict[int, set[str]] = {}
    for sid in set(subject_ids):
        for index in reader.entries_carrying(tenant, bytes.fromhex(sid)):
            carried.setdefault(index, set()).add(sid)
    found: list[tuple[int, TransferEntry, list[str]]] = []
    for index, body, _ in reader.entries_at(tenant, list(carried)):
        entry = parse_entry(body)
        if isinstance(entry, TransferEntry):
            found.append((index, entry, sorted(carried[index])))
    wanted = set(subject_ids)
    needles = [sid.encode() for sid in wanted]
    for index, body, _ in reader.iter_unindexed(tenant):
        if is_audit_body(body) or not any(n in body for n in needles):
            continue
        entry = parse_entry(body)
        if not isinstance(entry, TransferEntry):
            continue
        ids = sorted(wanted.intersection(entry.subject_ids or ()))
        if ids:
            found.append((index, entry, ids))
    return [
        {
            "index": index,
            "time": entry.time,
            "direction": entry.direction,
            "connector": entry.connector,
            "destination": entry.destination,
            "instruction_id": entry.instruction_id,
            "mapping_digest": entry.mapping_digest,
            "fields": dict(sorted(entry.fields.items())),
            "subject_ids": ids,
        }
        for index, entry, ids in sorted(found, key=lambda f: f[0])
    ]


def subject_export(
    store: Store, reader: LedgerReader, tenant: str, subject_ids: Sequence[str], now: datetime
) -> dict[str, Any] | None:
    """What Sluis holds about these keyed ids (one person may have one per source), or
    None when it holds nothing and never moved anything of theirs."""
    events = store.events_of_subjects(tenant, subject_ids)
    transfers = transfers_of(reader, tenant, subject_ids)
    if not events and not transfers:
        return None
    latest: dict[tuple[str, str], EventRow] = {}
    for event in events:
        latest[(event.subject_id, event.source)] = event
    held = [
        {
            "subject_id": sid,
            "source": source,
            "state": _STATES.get(event.type, "present"),
            "as_of": event.occurred_at,
            "data": None if event.data is None else {k: event.data.get(k) for k in EGRESS_FIELDS},
        }
        for (sid, source), event in sorted(latest.items())
    ]
    history = [
        {
            "seq": e.seq,
            "id": e.id,
            "type": e.type,
            "subject_id": e.subject_id,
            "source": e.source,
            "occurred_at": e.occurred_at,
            "instruction_id": e.instruction_id,
            "data": None if e.data is None else {k: e.data.get(k) for k in EGRESS_FIELDS},
        }
        for e in events
    ]
    return {
        "tenant": tenant,
        "generated_at": now,
        "subject_ids": sorted(set(subject_ids)),
        "held": held,
        "events": history,
        "transfers": transfers,
        "nothing_else": NOTHING_ELSE,
    }


_STATES: Final = {"subject.deleted": "deleted", "subject.erased": "erased"}

CSV_COLUMNS: Final = (
    "record", "subject_id", "source", "time", *EGRESS_FIELDS, "state", "direction",
    "destination", "instruction_id",
)  # fmt: skip


def _cell(value: object) -> str:
    """A value as a CSV cell a spreadsheet will not run: text starting like a formula gets
    a leading apostrophe (OWASP's advice against CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in _FORMULA_START else text


_FORMULA_START: Final = frozenset("=+-@\t\r")


def _data(data: dict[str, Any] | None) -> dict[str, str]:
    return {k: _cell(v) for k, v in (data or {}).items()}


def export_csv(export: dict[str, Any]) -> str:
    """The export as one CSV table: a `held` row per source (the data as it stands), an
    `event` row per stored change, a `transfer` row per ledger entry that carried the id."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for h in export["held"]:
        row = {"record": "held", "subject_id": h["subject_id"], "source": h["source"],
               "time": h["as_of"].isoformat(), "state": h["state"]}  # fmt: skip
        writer.writerow(row | _data(h["data"]))
    for e in export["events"]:
        row = {"record": "event", "subject_id": e["subject_id"], "source": e["source"],
               "time": e["occurred_at"].isoformat(), "state": e["type"],
               "instruction_id": e["instruction_id"]}  # fmt: skip
        writer.writerow(row | _data(e["data"]))
    for t in export["transfers"]:
        writer.writerow({"record": "transfer", "subject_id": " ".join(t["subject_ids"]),
                         "source": t["connector"], "time": t["time"].isoformat(),
                         "direction": t["direction"], "destination": t["destination"] or "",
                         "instruction_id": t["instruction_id"] or ""})  # fmt: skip
    return out.getvalue()
