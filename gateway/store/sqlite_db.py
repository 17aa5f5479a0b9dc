"""The embedded engine: one SQLite file, one writing connection behind one re-entrant lock,
and a few reading connections beside it.

WAL with `synchronous=NORMAL`: a page commit is one fsync-free write to the log, and readers
never block the writer nor wait for it. Writes share one connection across threads behind
an `RLock`, because SQLite has one writer anyway and the async gateway runs store calls on
worker threads; a transaction holds the lock from BEGIN IMMEDIATE to COMMIT, so two
threads' writes never interleave, and every statement of the thread inside it (reads
included) goes to that connection, so it sees its own writes.

A read outside a transaction takes a connection of its own from a small pool instead
(`READERS` kept open): feed pages and admin reads of many threads then run side by side
(SQLite releases the GIL while it steps), and none of them waits behind a sync's page
commit holding the writer, which they did when every statement queued for the one lock.
Each such read sees what was committed when it began, as a read on the writer outside a
transaction did. SQLite serves one gateway process; several replicas need PostgreSQL
(`gateway.store.postgres_db`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Self

from gateway.store.database import Dialect, time_text
from gateway.store.protocols import StoreConflict, StoreError, StoreMissing, StoreUnavailable
from gateway.store.records import AlreadyExists, NotFound

#: Reading connections kept open for reuse: as many as the threads asyncio's default executor
#: runs store calls on (`min(32, cpus + 4)`), so feed pages do not open and close one each
#: (a new connection parses the schema on its first statement). With 4 for that executor's
#: 6 threads, 64 feed consumers got 798 pages/s against 909 with 8 (4 A/B runs, 2 cores);
#: 6 and 8 were alike (786 and 808, 2 runs each).
READERS: Final = min(32, (os.cpu_count() or 1) + 4)
#: WAL size from which the background checkpointer copies it back (`_Checkpointer`).
CHECKPOINT_BYTES: Final = 4 * 1024 * 1024
CHECKPOINT_POLL_SECONDS: Final = 0.05
#: The writer's own automatic checkpoint, in pages: only if the checkpointer falls behind.
BACKSTOP_PAGES: Final = 65536
#: How long a statement waits for another connection's lock before it is StoreUnavailable.
BUSY_TIMEOUT_MS: Final = 5000


def _connect(path: Path, mode: str) -> sqlite3.Connection:
    uri = f"{path.resolve().as_uri()}?mode={mode}"
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
    except sqlite3.OperationalError:
        raise StoreMissing(f"no database at {path}") from None
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


class _Checkpointer:
    """Copies the WAL back into the database file from a thread and connection of its own
    (`PRAGMA wal_checkpoint(PASSIVE)` once the WAL holds `CHECKPOINT_BYTES`), so a page
    commit never does it.

    Why: with the writer's automatic checkpoint, the commit that crosses the threshold
    copies every page the WAL holds, tens of ms with a large subjects table (keyed ids
    dirty pages all over it), while it holds the one writer that feed pages wait for. A
    passive checkpoint takes no writer lock: commits go on appending to the WAL meanwhile,
    and SQLite steps it without the GIL.
    """

    def __init__(self, path: Path) -> None:
        self._wal = Path(f"{path}-wal")
        self._conn = _connect(path, "rw")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.wait(CHECKPOINT_POLL_SECONDS):
                try:
                    size = self._wal.stat().st_size
                except OSError:
                    continue
                if size >= CHECKPOINT_BYTES:
                    try:
                        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    except sqlite3.Error:
                        continue  # busy or closing: the next round, or the backstop
        finally:
            self._conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _unhex(text: str | None) -> bytes | None:
    """SQLite's `unhex` for one argument (3.41), for older libraries."""
    return None if text is None else bytes.fromhex(text)


def _integrity(exc: sqlite3.IntegrityError) -> Exception:
    if "FOREIGN KEY" in str(exc):
        return NotFound("it refers to a record that does not exist")
    return AlreadyExists("a record with that id already exists")


class SqliteDatabase:
    """One SQLite connection behind one re-entrant lock, with transactions that nest."""

    dialect: Dialect = "sqlite"
    skip_locked = ""  # BEGIN IMMEDIATE: the transaction is the only writer

    def __init__(
        self, path: Path, conn: sqlite3.Connection, *, readonly: bool = False, readers: int = 0
    ) -> None:
        self.path = path
        self.conn = conn
        self.lock = threading.RLock()
        self.readonly = readonly
        self._depth = 0
        #: The thread inside a transaction on `conn`, if any.
        self._owner: int | None = None
        self._readers = readers
        self._idle: list[sqlite3.Connection] = []
        self._idle_lock = threading.Lock()
        self._closed = False
        self._checkpointer: _Checkpointer | None = None

    @classmethod
    def open(cls, path: str | Path, *, create: bool = True, readonly: bool = False) -> Self:
        """`create=False` refuses to make a new database; `readonly=True` opens it read-only."""
        path = Path(path)
        if not create and not path.is_file():
            raise StoreMissing(f"no database at {path}")
        if create and not readonly:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = "ro" if readonly else ("rwc" if create else "rw")
        db = cls(path, _connect(path, mode), readonly=readonly, readers=READERS)
        if not readonly:
            try:
                db.conn.execute("PRAGMA journal_mode = WAL")
                db.conn.execute("PRAGMA synchronous = NORMAL")
                db.conn.execute("PRAGMA foreign_keys = ON")
                # Erasure must not leave a person's data in free pages or cells.
                db.conn.execute("PRAGMA secure_delete = ON")
                # A page commit dirties scattered B-tree pages (subject ids are keyed
                # hashes): keep them cached, and checkpoint the WAL less often than 4 MB.
                db.conn.execute("PRAGMA cache_size = -65536")
                # Checkpoints run beside the writer (`_Checkpointer`); the writer's own
                # automatic one is a backstop for a WAL the checkpointer cannot keep small.
                db.conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
            except sqlite3.DatabaseError as exc:
                db.conn.close()
                raise StoreError(f"{path}: not a usable database ({exc})") from None
            if sqlite3.sqlite_version_info < (3, 41, 0):
                # A built-in from 3.41 on; a run journal's merge (`gateway_sql._MERGE`)
                # turns its digests back into bytes with it, on this writing connection.
                db.conn.create_function("unhex", 1, _unhex, deterministic=True)
            db._checkpointer = _Checkpointer(path)
        return db

    def one_of(self, values: Sequence[object]) -> tuple[str, list[object]]:
        return f"IN ({', '.join('?' * len(values))})", list(values)

    def in_key_order(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        return self.all(sql, params)

    def scrub(self) -> None:
        """A TRUNCATE checkpoint: every page in the WAL (old images of deleted rows among
        them) is written back, and the WAL file emptied; `secure_delete` (set at open) has
        already zeroed the deleted content in the pages themselves. A reader in the middle
        of a read holds the checkpoint up: it is tried for about 1.5 s, then
        StoreUnavailable (the erasure itself is committed by then)."""
        with self.lock:
            # Bounded: the writer's lock is held meanwhile (a reader holding an old snapshot
            # for long must not stall every write behind an erasure).
            self.conn.execute("PRAGMA busy_timeout = 100")
            try:
                for _ in range(10):
                    try:
                        busy, _log, _done = self.conn.execute(
                            "PRAGMA wal_checkpoint(TRUNCATE)"
                        ).fetchone()
                    except sqlite3.Error as exc:
                        raise self._failure(exc) from None
                    if not busy:
                        return
                    time.sleep(0.05)
            finally:
                self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        raise StoreUnavailable("the database is busy; the WAL could not be cleared yet")

    def json_text(self, column: str, key: str) -> str:
        return f"json_extract({column}, '$.{key}')"

    def joined(self, expr: str, order: str, *, binary: bool = False) -> str:
        """`group_concat` has no ORDER BY before SQLite 3.44: the rows must come from a
        subquery with `ORDER BY order LIMIT n`, which SQLite never flattens into an
        aggregate, so the aggregate reads them in that order (the contract suite checks)."""
        joined = f"group_concat({expr}, ',')"
        return f"CAST({joined} AS BLOB)" if binary else joined

    def time(self, value: datetime | None) -> object:
        return None if value is None else time_text(value)

    def _failure(self, exc: sqlite3.Error) -> StoreError:
        """Busy past `busy_timeout` is worth retrying; anything else is not."""
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return StoreUnavailable("the database is busy; try again")
        return StoreError(f"database: {exc}")

    def all_then_commit(
        self, sql: str, params: Sequence[object] = (), *, reuse_plan: bool = False
    ) -> list[Any]:
        return self.all(sql, params)  # a COMMIT costs no round trip here

    def all(
        self, sql: str, params: Sequence[object] = (), *, reuse_plan: bool = False
    ) -> list[Any]:
        """`reuse_plan` changes nothing here: SQLite plans a statement when it is compiled,
        and `sqlite3` keeps compiled statements in its cache whatever the caller says."""
        if self._readers and self._owner != threading.get_ident():
            return self._read(sql, params)
        with self.lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.IntegrityError as exc:  # a write with RETURNING: as `execute`
                raise _integrity(exc) from None
            except sqlite3.Error as exc:
                raise self._failure(exc) from None

    def _read(self, sql: str, params: Sequence[object]) -> list[Any]:
        """A read outside this thread's transaction, on a reading connection."""
        with self._idle_lock:
            if self._closed:
                raise StoreError("database: the store is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = _connect(self.path, "ro")
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._failure(exc) from None
        finally:
            with self._idle_lock:
                keep = not self._closed and len(self._idle) < self._readers
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    def execute(self, sql: str, params: Sequence[object] = (), *, reuse_plan: bool = False) -> int:
        with self.lock, self.transaction():
            try:
                return self.conn.execute(sql, params).rowcount
            except sqlite3.IntegrityError as exc:
                raise _integrity(exc) from None

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        with self.lock, self.transaction():
            try:
                self.conn.executemany(sql, rows)
            except sqlite3.IntegrityError:
                raise StoreConflict("a row with that key was written by another writer") from None

    def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]
    ) -> None:
        marks = ", ".join("?" * len(columns))
        self.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def upsert_rows(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        rows: Sequence[Sequence[object]],
    ) -> None:
        marks = ", ".join("?" * len(columns))
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        self.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
            f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}",
            rows,
        )

    def script(self, statements: Sequence[str]) -> None:
        """Schema statements, inside the caller's transaction (never `executescript`,
        which commits on its own)."""
        for statement in statements:
            self.conn.execute(statement)

    def wrote(self, table: str, rows: int) -> None:
        """Nothing to keep up: no ANALYZE is run here, and the planner's default estimates
        do not go stale as a table grows."""

    def lock_tenant(self, tenant: str) -> None:
        """BEGIN IMMEDIATE already made this transaction the only writer."""

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT under the lock, or nothing when already inside one."""
        with self.lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            c = self.conn
            try:
                c.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._failure(exc) from None
            self._depth, self._owner = 1, threading.get_ident()
            try:
                yield
            except sqlite3.IntegrityError:
                c.execute("ROLLBACK")
                raise StoreConflict("a row with that key already exists") from None
            except sqlite3.Error as exc:
                c.execute("ROLLBACK")
                raise self._failure(exc) from None
            except BaseException:
                c.execute("ROLLBACK")
                raise
            else:
                try:
                    c.execute("COMMIT")
                except sqlite3.Error as exc:
                    c.execute("ROLLBACK")
                    raise StoreError(f"database: commit failed ({exc})") from None
            finally:
                self._depth, self._owner = 0, None

    def snapshot(self) -> AbstractContextManager[SqliteDatabase]:
        return self._snapshot()

    @contextmanager
    def _snapshot(self) -> Iterator[SqliteDatabase]:
        conn = _connect(self.path, "ro")
        try:
            conn.execute("BEGIN")
            # The first read fixes the snapshot a WAL reader sees until COMMIT.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            yield SqliteDatabase(self.path, conn, readonly=True)
            conn.execute("COMMIT")
        finally:
            conn.close()

    def tables(self) -> set[str]:
        rows = self.all("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {str(r[0]) for r in rows}

    def columns(self, table: str) -> list[str]:
        return [str(r[1]) for r in self.all(f"PRAGMA table_info({table})")]

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._idle_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        with self.lock:
            self.conn.close()
