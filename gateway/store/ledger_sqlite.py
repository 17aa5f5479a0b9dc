"""The ledger in SQLite: the embedded default store.

WAL mode with `synchronous=NORMAL` and one transaction per appended batch (rows go in with
`executemany`): per-row commits would be tens of times slower, and a batch is the unit the
ledger signs anyway. One connection per store object, shared across threads behind a lock,
so the async gateway can hand appends to a writer thread. Verification reads through a
separate read-only connection in its own transaction (`snapshot`), so a long audit sees one
state and does not block appends.

Tables are prefixed `ledger_` so they can share `sluis.db` with the rest of the gateway.
The SQL is deliberately plain (no SQLite-only tricks beyond `WITHOUT ROWID`), so the
PostgreSQL store can mirror it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Final, Self

from gateway.store.protocols import LedgerReader, StoreConflict, StoreError, StoreMissing
from gateway.store.records import EntryRow, LedgerHead, NodeRow, StoredCheckpoint

PAGE_ROWS: Final = 5000
_MIN_INDEX: Final = -(1 << 63)
_MAX_INDEX: Final = (1 << 63) - 1

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS ledger_entries (
        tenant TEXT NOT NULL,
        idx INTEGER NOT NULL,
        body BLOB NOT NULL,
        leaf_hash BLOB NOT NULL,
        PRIMARY KEY (tenant, idx)
    )""",
    """CREATE TABLE IF NOT EXISTS ledger_nodes (
        tenant TEXT NOT NULL,
        level INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (tenant, level, idx)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS ledger_checkpoints (
        tenant TEXT NOT NULL,
        seq INTEGER NOT NULL,
        size INTEGER NOT NULL,
        note TEXT NOT NULL,
        PRIMARY KEY (tenant, seq)
    ) WITHOUT ROWID""",
    """CREATE INDEX IF NOT EXISTS ledger_checkpoints_size
        ON ledger_checkpoints (tenant, size, seq)""",
    """CREATE TABLE IF NOT EXISTS ledger_heads (
        tenant TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        frontier BLOB NOT NULL
    ) WITHOUT ROWID""",
)


def _connect(path: Path, mode: str) -> sqlite3.Connection:
    uri = f"{path.resolve().as_uri()}?mode={mode}"
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
    except sqlite3.OperationalError:
        raise StoreMissing(f"no ledger database at {path}") from None
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def _split_frontier(blob: bytes) -> tuple[bytes, ...]:
    return tuple(blob[i : i + 32] for i in range(0, len(blob), 32))


class SqliteDatabase:
    """One SQLite connection behind one re-entrant lock, with transactions that nest.

    Shared by the gateway store and its ledger store, so that a page's rows and its ledger
    entry commit in one transaction: the ledger's own append joins the outer one.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self.lock = threading.RLock()
        self._depth = 0

    @classmethod
    def open(cls, path: str | Path, *, create: bool = True, readonly: bool = False) -> Self:
        """`create=False` refuses to make a new database; `readonly=True` opens it read-only."""
        path = Path(path)
        if not create and not path.is_file():
            raise StoreMissing(f"no ledger database at {path}")
        if create and not readonly:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = "ro" if readonly else ("rwc" if create else "rw")
        return cls(path, _connect(path, mode))

    def all(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        with self.lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"ledger database: {exc}") from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, or nothing when already inside one.

        Nesting lets the gateway store write a page's subjects, events and ledger entry in
        one transaction: the ledger's own append joins the outer one. Callers hold the
        (re-entrant) lock.
        """
        c = self.conn
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"ledger database: {exc}") from None
        self._depth = 1
        try:
            yield
        except sqlite3.IntegrityError:
            c.execute("ROLLBACK")
            raise StoreConflict("an entry with that index already exists") from None
        except sqlite3.Error as exc:
            c.execute("ROLLBACK")
            raise StoreError(f"ledger database: {exc}") from None
        except BaseException:
            c.execute("ROLLBACK")
            raise
        else:
            try:
                c.execute("COMMIT")
            except sqlite3.Error as exc:
                c.execute("ROLLBACK")
                raise StoreError(f"ledger database: commit failed ({exc})") from None
        finally:
            self._depth = 0

    def close(self) -> None:
        with self.lock:
            self.conn.close()


class _Reads:
    """The read half of the store, over one database connection."""

    def __init__(self, database: SqliteDatabase) -> None:
        self.database = database
        self._conn = database.conn
        self._lock = database.lock

    def _all(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        return self.database.all(sql, params)

    def tenants(self) -> list[str]:
        rows = self._all(
            "SELECT tenant FROM ledger_heads UNION SELECT tenant FROM ledger_checkpoints"
            " UNION SELECT DISTINCT tenant FROM ledger_entries ORDER BY 1"
        )
        return [str(r[0]) for r in rows]

    def head(self, tenant: str) -> LedgerHead | None:
        rows = self._all("SELECT size, frontier FROM ledger_heads WHERE tenant = ?", (tenant,))
        if not rows:
            return None
        size, blob = rows[0]
        return LedgerHead(int(size), _split_frontier(bytes(blob)))

    def iter_entries(
        self, tenant: str, start: int | None = None, stop: int | None = None
    ) -> Iterator[EntryRow]:
        # Keyset pages: the lock is held per page, never across a yield.
        low = _MIN_INDEX if start is None else start
        high = _MAX_INDEX if stop is None else stop
        while low < high:
            rows = self._all(
                "SELECT idx, body, leaf_hash FROM ledger_entries"
                " WHERE tenant = ? AND idx >= ? AND idx < ? ORDER BY idx LIMIT ?",
                (tenant, low, high, PAGE_ROWS),
            )
            yield from rows
            if len(rows) < PAGE_ROWS:
                return
            low = int(rows[-1][0]) + 1

    def leaf_hashes(self, tenant: str, start: int, stop: int) -> list[bytes]:
        rows = self._all(
            "SELECT leaf_hash FROM ledger_entries WHERE tenant = ? AND idx >= ? AND idx < ?"
            " ORDER BY idx",
            (tenant, start, stop),
        )
        return [r[0] for r in rows]

    def node_hashes(self, tenant: str, level: int, start: int, stop: int) -> list[bytes]:
        rows = self._all(
            "SELECT hash FROM ledger_nodes WHERE tenant = ? AND level = ? AND idx >= ?"
            " AND idx < ? ORDER BY idx",
            (tenant, level, start, stop),
        )
        return [r[0] for r in rows]

    def iter_nodes(self, tenant: str) -> Iterator[NodeRow]:
        # Completion order: a node at (level, idx) completes with leaf (idx + 1) << level.
        after = (-1, -1)
        while True:
            rows = self._all(
                "SELECT level, idx, hash, (idx + 1) << level AS done FROM ledger_nodes"
                " WHERE tenant = ? AND ((idx + 1) << level > ?"
                " OR ((idx + 1) << level = ? AND level > ?))"
                " ORDER BY done, level LIMIT ?",
                (tenant, after[0], after[0], after[1], PAGE_ROWS),
            )
            for level, idx, hash_, _ in rows:
                yield level, idx, hash_
            if len(rows) < PAGE_ROWS:
                return
            after = (int(rows[-1][3]), int(rows[-1][0]))

    def iter_checkpoints(self, tenant: str) -> Iterator[StoredCheckpoint]:
        after = _MIN_INDEX
        while True:
            rows = self._all(
                "SELECT seq, size, note FROM ledger_checkpoints WHERE tenant = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (tenant, after, PAGE_ROWS),
            )
            for seq, size, note in rows:
                yield StoredCheckpoint(seq, size, note)
            if len(rows) < PAGE_ROWS:
                return
            after = int(rows[-1][0])

    def latest_checkpoint(self, tenant: str) -> StoredCheckpoint | None:
        rows = self._all(
            "SELECT seq, size, note FROM ledger_checkpoints WHERE tenant = ?"
            " ORDER BY seq DESC LIMIT 1",
            (tenant,),
        )
        return StoredCheckpoint(*rows[0]) if rows else None

    def checkpoint_at(self, tenant: str, size: int) -> StoredCheckpoint | None:
        rows = self._all(
            "SELECT seq, size, note FROM ledger_checkpoints WHERE tenant = ? AND size = ?"
            " ORDER BY seq DESC LIMIT 1",
            (tenant, size),
        )
        return StoredCheckpoint(*rows[0]) if rows else None

    def checkpoints_after(self, tenant: str, after_seq: int, limit: int) -> list[StoredCheckpoint]:
        rows = self._all(
            "SELECT seq, size, note FROM ledger_checkpoints WHERE tenant = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (tenant, max(after_seq, _MIN_INDEX), max(limit, 0)),
        )
        return [StoredCheckpoint(*r) for r in rows]


class SqliteLedgerStore(_Reads):
    """The ledger tables in one SQLite file.

    `create=False` refuses to make a new database (an audit of a mistyped path must fail, not
    report an empty, intact log); `readonly=True` opens it read-only for auditors. Given a
    `database`, the store works on that open connection instead (the gateway store's own,
    so that its transactions take the ledger's appends in).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        create: bool = True,
        readonly: bool = False,
        database: SqliteDatabase | None = None,
    ) -> None:
        db = database or SqliteDatabase.open(path, create=create, readonly=readonly)
        super().__init__(db)
        self.path = db.path
        conn = db.conn
        try:
            if readonly:
                self._require_tables()
            else:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                if create:
                    for statement in _SCHEMA:
                        conn.execute(statement)
                else:
                    self._require_tables()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{self.path}: not a usable ledger database ({exc})") from None
        except StoreError:
            conn.close()
            raise

    def _transaction(self) -> AbstractContextManager[None]:
        return self.database.transaction()

    def _require_tables(self) -> None:
        rows = self._conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN"
            " ('ledger_entries', 'ledger_nodes', 'ledger_checkpoints', 'ledger_heads')"
        ).fetchone()
        if rows[0] != 4:
            raise StoreMissing(f"{self.path} holds no ledger")

    def append(
        self,
        tenant: str,
        expected_size: int,
        *,
        entries: Sequence[tuple[bytes, bytes]],
        nodes: Sequence[NodeRow],
        frontier: Sequence[bytes],
        checkpoint_note: str,
    ) -> None:
        new_size = expected_size + len(entries)
        rows = [(tenant, expected_size + i, body, leaf) for i, (body, leaf) in enumerate(entries)]
        with self._lock, self._transaction():
            c = self._conn
            self._check_size(tenant, expected_size)
            c.executemany(
                "INSERT INTO ledger_entries (tenant, idx, body, leaf_hash) VALUES (?, ?, ?, ?)",
                rows,
            )
            if nodes:
                c.executemany(
                    "INSERT INTO ledger_nodes (tenant, level, idx, hash) VALUES (?, ?, ?, ?)",
                    [(tenant, level, idx, h) for level, idx, h in nodes],
                )
            self._insert_checkpoint(tenant, new_size, checkpoint_note)
            c.execute(
                "INSERT INTO ledger_heads (tenant, size, frontier) VALUES (?, ?, ?)"
                " ON CONFLICT (tenant) DO UPDATE SET size = excluded.size,"
                " frontier = excluded.frontier",
                (tenant, new_size, b"".join(frontier)),
            )

    def add_checkpoint(self, tenant: str, expected_size: int, note: str) -> None:
        with self._lock, self._transaction():
            self._check_size(tenant, expected_size)
            self._insert_checkpoint(tenant, expected_size, note)

    def _check_size(self, tenant: str, expected: int) -> None:
        row = self._conn.execute(
            "SELECT size FROM ledger_heads WHERE tenant = ?", (tenant,)
        ).fetchone()
        if (row[0] if row else 0) != expected:
            raise StoreConflict("the log grew since its head was read")

    def _insert_checkpoint(self, tenant: str, size: int, note: str) -> None:
        self._conn.execute(
            "INSERT INTO ledger_checkpoints (tenant, seq, size, note)"
            " SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ? FROM ledger_checkpoints"
            " WHERE tenant = ?",
            (tenant, size, note, tenant),
        )

    def snapshot(self) -> AbstractContextManager[LedgerReader]:
        return self._snapshot()

    @contextmanager
    def _snapshot(self) -> Iterator[LedgerReader]:
        conn = _connect(self.path, "ro")
        try:
            conn.execute("BEGIN")
            # The first read fixes the snapshot a WAL reader sees until COMMIT.
            conn.execute("SELECT count(*) FROM ledger_heads").fetchone()
            yield _Reads(SqliteDatabase(self.path, conn))
            conn.execute("COMMIT")
        finally:
            conn.close()

    def close(self) -> None:
        self.database.close()

    def __enter__(self) -> SqliteLedgerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
