"""The ledger export: JSON Lines an auditor can keep and verify offline, without Sluis's DB.

One export holds, per tenant, a `log` header line, that log's signed checkpoints in the
order they were written, its subject lists (each distinct one once), and its entries in
index order:

    {"type": "log", "format": "sluis-ledger-export/2", "tenant": "acme", "origin": ..., ...}
    {"type": "checkpoint", "tenant": "acme", "seq": 1, "size": 1000, "note": "sluis/acme\\n..."}
    {"type": "subjects", "tenant": "acme", "digest": "sha256:<hex>", "ids": "<b64>"}
    {"type": "entry", "tenant": "acme", "index": 0, "leaf_hash": "<b64>", "entry": "{...}"}

A transfer entry commits to the keyed ids it carried (`subjects: {count, digest}`); the
`subjects` line with that digest holds them, 16 bytes each, ascending, base64. The
verifier checks every list against its digest and every entry's commitment against a list.
Exports in format 1 (written before lists were kept apart) still verify: their entries
list their ids in themselves.

`entry` is the exact canonical JSON text the leaf hashes (a string, not an object: the
verifier hashes the bytes that were signed, not a re-encoding of them). Verification reads
the file twice per tenant (checkpoints, entries) and holds nothing else, so an export of
millions of entries checks in constant memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Final

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.ledger.checkpoint import read_unverified
from gateway.ledger.verify import CheckpointRow, KeptCheckpoint, VerifyReport, verify_log
from gateway.store import EntryRow, LedgerReader, VerifiedPoint

EXPORT_FORMAT: Final = "sluis-ledger-export/2"
#: Formats this code reads.
READABLE_FORMATS: Final = frozenset({"sluis-ledger-export/1", EXPORT_FORMAT})


class ExportFormatError(ValueError):
    """An export line that cannot be read; names the line, never its content."""


def _line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj) + b"\n"


def write_export(reader: LedgerReader, tenants: Sequence[str], out: IO[bytes]) -> int:
    """Write the logs of `tenants` from `reader` (ideally a snapshot); returns entries written."""
    total = 0
    for tenant in tenants:
        head = reader.head(tenant)
        latest = reader.latest_checkpoint(tenant)
        out.write(
            _line(
                {
                    "type": "log",
                    "format": EXPORT_FORMAT,
                    "tenant": tenant,
                    "origin": read_unverified(latest.note).origin if latest else None,
                    "size": head.size if head else 0,
                }
            )
        )
        for cp in reader.iter_checkpoints(tenant):
            out.write(
                _line(
                    {
                        "type": "checkpoint",
                        "tenant": tenant,
                        "seq": cp.seq,
                        "size": cp.size,
                        "note": cp.note,
                    }
                )
            )
        for digest, ids in reader.iter_subject_sets(tenant):
            out.write(
                _line(
                    {
                        "type": "subjects",
                        "tenant": tenant,
                        "digest": "sha256:" + digest.hex(),
                        "ids": base64.b64encode(ids).decode("ascii"),
                    }
                )
            )
        for idx, body, leaf in reader.iter_entries(tenant):
            row: dict[str, Any] = {
                "type": "entry",
                "tenant": tenant,
                "index": idx,
                "leaf_hash": base64.b64encode(leaf).decode("ascii"),
            }
            try:
                row["entry"] = body.decode("utf-8")
            except UnicodeDecodeError:
                row["entry_base64"] = base64.b64encode(body).decode("ascii")
            out.write(_line(row))
            total += 1
    return total


def _objects(path: Path, kind: str, tenant: str | None) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise ExportFormatError(f"line {lineno} is not JSON") from None
            if not isinstance(obj, dict):
                raise ExportFormatError(f"line {lineno} is not a JSON object")
            if obj.get("type") == kind and (tenant is None or obj.get("tenant") == tenant):
                yield lineno, obj


def export_tenants(path: str | Path) -> list[str]:
    """Tenants with a `log` header in the export, in file order."""
    seen: list[str] = []
    for lineno, obj in _objects(Path(path), "log", None):
        tenant = obj.get("tenant")
        if not isinstance(tenant, str) or obj.get("format") not in READABLE_FORMATS:
            raise ExportFormatError(f"line {lineno} is not a {EXPORT_FORMAT} log header")
        if tenant not in seen:
            seen.append(tenant)
    return seen


def _entries(path: Path, tenant: str, start: int = 0) -> Iterator[EntryRow]:
    for lineno, obj in _objects(path, "entry", tenant):
        try:
            idx = obj["index"]
            if isinstance(idx, int) and 0 <= idx < start:
                continue  # vouched for by the verification this one resumes

            leaf = base64.b64decode(obj["leaf_hash"], validate=True)
            if "entry" in obj:
                text = obj["entry"]
                if not isinstance(text, str):
                    raise TypeError
                body = text.encode("utf-8")
            else:
                body = base64.b64decode(obj["entry_base64"], validate=True)
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise ExportFormatError(f"line {lineno}: malformed entry line") from None
        if not isinstance(idx, int) or isinstance(idx, bool):
            raise ExportFormatError(f"line {lineno}: entry index is not an integer")
        yield idx, body, leaf


def _checkpoints(path: Path, tenant: str) -> Iterator[CheckpointRow]:
    for lineno, obj in _objects(path, "checkpoint", tenant):
        seq, size, note = obj.get("seq"), obj.get("size"), obj.get("note")
        if not (isinstance(seq, int) and isinstance(size, int) and isinstance(note, str)):
            raise ExportFormatError(f"line {lineno}: malformed checkpoint line")
        yield seq, size, note


def export_entries(path: str | Path, tenant: str) -> Iterator[EntryRow]:
    """The tenant's entries in the export, in file order (`ExportFormatError` on a bad
    line); verify the export before trusting them."""
    return _entries(Path(path), tenant)


def export_checkpoint_note(path: str | Path, tenant: str, seq: int) -> str | None:
    """The note of the tenant's checkpoint `seq` in the export (None: not there)."""
    for found, _, note in _checkpoints(Path(path), tenant):
        if found == seq:
            return note
    return None


def _subject_lists(path: Path, tenant: str) -> dict[bytes, int]:
    """Each subject list's digest and how many ids it holds, once its ids hash to it: a
    list that does not is left out, so an entry naming it fails as if it were missing."""
    counts: dict[bytes, int] = {}
    for lineno, obj in _objects(path, "subjects", tenant):
        try:
            digest = bytes.fromhex(str(obj["digest"]).removeprefix("sha256:"))
            ids = base64.b64decode(obj["ids"], validate=True)
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise ExportFormatError(f"line {lineno}: malformed subjects line") from None
        if len(ids) % 16 == 0 and hashlib.sha256(ids).digest() == digest:
            counts[digest] = len(ids) // 16
    return counts


def verify_export(
    path: str | Path,
    tenant: str,
    trusted_key: Ed25519PublicKey,
    external_checkpoint: str | None = None,
    kept: Sequence[KeptCheckpoint] = (),
    *,
    start: tuple[VerifiedPoint, str] | None = None,
) -> VerifyReport:
    """Verify one tenant's log from an export file; `ExportFormatError` if it is unreadable.
    `kept`: checkpoints the auditor kept (see `verify_log`); `start`: resume where the
    auditor's last verification ended (`ResumeRefused` if that point does not fit)."""
    p = Path(path)
    lists = _subject_lists(p, tenant)
    after = start[0] if start is not None else None
    return verify_log(
        tenant,
        _entries(p, tenant, after.size if after else 0),
        (c for c in _checkpoints(p, tenant) if after is None or c[0] > after.seq),
        trusted_key,
        external_checkpoint=external_checkpoint,
        kept=kept,
        subject_lists=lists.get,
        start=start,
    )
