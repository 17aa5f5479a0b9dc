"""`sluis db copy`: an embedded installation into PostgreSQL, then proof that it arrived whole.

The rows are moved by `gateway.store.copy` (one transaction; a target already in use is
refused). A copy that merely finished proves little, so this is also where it is checked,
from the target's side: every tenant's ledger is recomputed from the rows now in
PostgreSQL with the installation's own signing key (`Ledger.verify`: every leaf hash, every
checkpoint's root and signature) and its head (size and root) compared with the source's,
and every table's row count is compared with the source's. Exit 0 only when all agree; a
source still being written to (a gateway left running) shows up as counts that differ.

The checking needs the ledger, which the store layer must not know about; so it lives
here, on top, and the copy below it stays a mover of rows. Output names tables, tenants
and counts only, never a row's content.
"""

from __future__ import annotations

import base64
import re
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.keys.location import find_signing_key
from gateway.keys.signing import SigningKeyError, load_signing_key
from gateway.ledger.log import Ledger
from gateway.runtime.config import Settings
from gateway.runtime.storage import open_postgres, sqlite_path
from gateway.store import migrate
from gateway.store.copy import CopyReport, copy_database, ensure_empty, plan, row_counts
from gateway.store.ledger_sql import SqlLedgerStore
from gateway.store.migrate import MigratingDatabase
from gateway.store.postgres_db import PostgresDatabase
from gateway.store.protocols import StoreError
from gateway.store.sqlite_db import SqliteDatabase

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
_POSTGRES_URL: Final = re.compile(r"^postgres(ql)?://")
#: Seconds between progress lines on stderr (a small copy prints none).
PROGRESS_EVERY: Final = 2.0


def where(db: MigratingDatabase) -> str:
    """The database, for a message: the SQLite file, or the PostgreSQL URL without its
    password (and its schema, when not the default)."""
    if isinstance(db, PostgresDatabase):
        schema = db.all("SELECT current_schema()")[0][0]
        return f"PostgreSQL at {db.url}" + (f" (schema {schema})" if schema != "public" else "")
    if isinstance(db, SqliteDatabase):
        return str(db.path)
    return db.dialect  # pragma: no cover - the two engines above


class _Progress:
    """Rows copied and rows per second on stderr, every `PROGRESS_EVERY` seconds."""

    def __init__(self, every: float | None = None) -> None:
        self.started = self.shown = time.monotonic()
        self.every = PROGRESS_EVERY if every is None else every
        self.done: dict[str, int] = {}

    def __call__(self, table: str, done: int, total: int) -> None:
        self.done[table] = done
        now = time.monotonic()
        if now - self.shown < self.every:
            return
        self.shown = now
        rate = sum(self.done.values()) / max(now - self.started, 1e-6)
        print(
            f"sluis db copy: {table} {done:,}/{total:,} rows ({rate:,.0f} rows/s)",
            file=sys.stderr,
            flush=True,
        )


def _public_key(settings: Settings) -> Ed25519PublicKey:
    path = find_signing_key(settings.data_dir, settings.key_dir)
    if not path.is_file():
        raise SigningKeyError(
            f"no ledger signing key at {path}: the copy's ledger could not be verified;"
            " point key_dir (SLUIS_KEY_DIR) at the installation's keys"
        )
    return load_signing_key(path).public_key()


def _b64(root: bytes) -> str:
    return base64.b64encode(root).decode("ascii")


def _print_copy(report: CopyReport, source: str, target: str) -> None:
    print(f"copied {source} to {target} (schema version {report.version})")
    width = max(len(t) for t in report.rows)
    for table, rows in report.rows.items():
        print(f"  {table:<{width}} {rows:>12,}")
    rate = report.total / max(report.seconds, 1e-6)
    print(f"  {report.total:,} rows in {report.seconds:.1f} s ({rate:,.0f} rows/s)")


def _counts_agree(
    source: MigratingDatabase, target: MigratingDatabase, tables: Sequence[str]
) -> bool:
    theirs, ours = row_counts(source, tables), row_counts(target, tables)
    differ = [t for t in tables if theirs[t] != ours[t]]
    for t in differ:
        print(f"row counts: {t}: {theirs[t]:,} in the source, {ours[t]:,} in the target")
    if differ:
        print("  (was the gateway still writing to the source? stop it and copy again)")
        return False
    print(f"row counts: all {len(tables)} tables agree")
    return True


def _ledgers_agree(
    source: MigratingDatabase, target: MigratingDatabase, key: Ed25519PublicKey | None
) -> bool:
    theirs, ours = SqlLedgerStore(source), SqlLedgerStore(target)
    tenants = sorted(set(theirs.tenants()) | set(ours.tenants()))
    if not tenants:
        print("ledger: no tenant logs to verify")
        return True
    if key is None:  # pragma: no cover - the key is loaded whenever the source has logs
        raise SigningKeyError("no signing key to verify the copied ledger with")
    ok = True
    for tenant in tenants:
        report = Ledger(ours, tenant).verify(key)
        was, now = Ledger(theirs, tenant), Ledger(ours, tenant)
        head = (was.size(), was.root())
        if not report.ok:
            at = f" at entry {report.first_bad_index}" if report.first_bad_index is not None else ""
            print(f"ledger {tenant}: FAILED on the target{at}: {report.reason}")
            ok = False
        elif (report.entries, report.root) != head or (now.size(), now.root()) != head:
            print(
                f"ledger {tenant}: the target's head differs from the source's"
                f" (source {head[0]} entries, root {_b64(head[1])};"
                f" target {report.entries} entries, root {_b64(report.root)})"
            )
            ok = False
        else:
            print(
                f"ledger {tenant}: {report.entries} entries, {report.checkpoints} checkpoints"
                f" verified on the target; same head as the source (root {_b64(report.root)})"
            )
    return ok


def copy_and_verify(settings: Settings, to: str) -> int:
    """Copy the SQLite installation of `settings` into the PostgreSQL database at `to`, and
    check the copy. Raises `StoreError` (and `SigningKeyError`) for a copy that cannot run."""
    if not _POSTGRES_URL.match(to):
        raise StoreError("--to must be a postgresql:// URL")
    with ExitStack() as stack:
        source = SqliteDatabase.open(sqlite_path(settings), create=False)
        stack.callback(source.close)
        migrate.check_not_newer(source)
        # Before anything is written anywhere: the key the copy will be verified with.
        key = _public_key(settings) if SqlLedgerStore(source).tenants() else None
        target = open_postgres(to, password=settings.database_password, pool_size=3)
        stack.callback(target.close)
        shown_source, shown_target = where(source), where(target)
        ensure_empty(target)  # before upgrading it: a database in use is left as it was
        for side, db in (("source", source), ("target", target)):
            applied = migrate.upgrade(db)
            if applied:
                names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
                print(f"sluis db copy: upgraded the {side} schema: {names}", file=sys.stderr)
        tables = [t.name for t in plan(source, target)]
        report = copy_database(source, target, progress=_Progress())
        _print_copy(report, shown_source, shown_target)
        counted = _counts_agree(source, target, tables)
        verified = _ledgers_agree(source, target, key)
    if counted and verified:
        print("copy verified: set database_url to the target and start with the same keys")
        return EXIT_OK
    print("copy NOT verified: do not switch to the target")
    return EXIT_FAILED
