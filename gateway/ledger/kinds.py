"""The two kinds of ledger entry, read and written through one door.

`TransferEntry` (data moved) and `AuditEntry` (someone acted) share one log per tenant.
They are told apart by their keys (an audit entry has `action`, a transfer `direction`), so
logs written before audit entries existed keep their bytes and verify unchanged.
"""

from __future__ import annotations

from pydantic import ValidationError

from gateway.ledger.audit import AuditEntry, audit_bytes
from gateway.ledger.entry import TransferEntry, canonical_bytes

LedgerEntry = TransferEntry | AuditEntry


def entry_bytes(entry: LedgerEntry) -> bytes:
    """The canonical bytes the entry's leaf hashes."""
    if isinstance(entry, AuditEntry):
        return audit_bytes(entry)
    return canonical_bytes(entry)


_AUDIT_START = b'{"action":'


def is_audit_body(body: bytes) -> bool:
    """Whether stored canonical bytes are an audit entry's (an action, not a transfer)."""
    return body.startswith(_AUDIT_START)


def parse_entry(body: bytes) -> LedgerEntry:
    """An entry from its stored canonical JSON; raises `ValidationError`.

    Canonical JSON has sorted keys, so an audit entry starts with its `action`; telling
    the kinds apart by that prefix costs nothing on the verifier's hot path. A body in any
    other form is read as a transfer entry and fails (it is not canonical either way)."""
    if is_audit_body(body):
        return AuditEntry.model_validate_json(body)
    return TransferEntry.model_validate_json(body)


__all__ = ["LedgerEntry", "ValidationError", "entry_bytes", "is_audit_body", "parse_entry"]
