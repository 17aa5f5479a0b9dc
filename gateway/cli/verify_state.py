"""Where an auditor's last verification ended: the file `sluis audit verify --resume FILE`
reads and rewrites.

A year of 15-minute syncs is millions of entries; an auditor who checks every week should
not recompute all of them each time. After a passing verification the file keeps, per
tenant, the size reached, the signed checkpoint that vouched for it (the note itself) and
the tree's frontier there. The next run checks that note's signature and that the frontier
gives its root, then reads only the entries after it. The file is the auditor's own (kept
on their machine, like the checkpoints they keep): the gateway never sees it, so it cannot
be made to skip anything. A rewrite of an entry before the point is found by a run
without `--resume`.
"""

from __future__ import annotations

import base64
import binascii
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import orjson

from gateway.store import VerifiedPoint

STATE_FORMAT: Final = "sluis-verify-state/1"

#: Per tenant: the point and the note of the checkpoint it ended at.
Resumable = tuple[VerifiedPoint, str]


class StateError(ValueError):
    """The state file cannot be read; the message names the file, never its content."""


def read_state(path: Path) -> dict[str, Resumable]:
    """The points in `path` (none if the file does not exist yet)."""
    if not path.exists():
        return {}
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        raise StateError(f"{path}: not a verification state file") from None
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
        raise StateError(f"{path}: not a {STATE_FORMAT} file")
    logs = doc.get("logs")
    if not isinstance(logs, dict):
        raise StateError(f"{path}: holds no logs")
    return {str(tenant): _point(path, str(tenant), item) for tenant, item in logs.items()}


def _point(path: Path, tenant: str, item: Any) -> Resumable:
    try:
        size, seq, note = item["size"], item["seq"], item["checkpoint"]
        frontier = tuple(base64.b64decode(h, validate=True) for h in item["frontier"])
        at = datetime.fromisoformat(item["verified_at"])
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise StateError(f"{path}: the entry for {tenant!r} is malformed") from None
    if not (isinstance(size, int) and isinstance(seq, int) and isinstance(note, str)):
        raise StateError(f"{path}: the entry for {tenant!r} is malformed")
    return VerifiedPoint(size, seq, frontier, at), note


def write_state(path: Path, states: dict[str, Resumable]) -> None:
    """Replace `path` with these points, atomically (a crash leaves the old file)."""
    doc = {
        "format": STATE_FORMAT,
        "logs": {
            tenant: {
                "size": point.size,
                "seq": point.seq,
                "frontier": [base64.b64encode(h).decode("ascii") for h in point.frontier],
                "checkpoint": note,
                "verified_at": point.verified_at.isoformat(),
            }
            for tenant, (point, note) in sorted(states.items())
        },
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(tmp, path)
