"""PostgreSQL under the SQL stores: a psycopg 3 connection pool, transactions per thread.

The async gateway runs store calls on worker threads (`asyncio.to_thread`), so a
transaction belongs to a thread: `transaction()` takes a connection from the pool, binds it
to the calling thread until COMMIT, and every statement that thread runs meanwhile (by any
of the three stores) goes to it; nested calls join. Its BEGIN goes with its first
statement, in one round trip (`_first`); one that sends nothing sends no BEGIN or COMMIT
either. Outside a transaction each statement
borrows a connection for itself (autocommit), so reads never wait for a long page commit.

Several gateway processes share one database, so what SQLite gets from having one writer is
taken from PostgreSQL explicitly: a tenant's ledger appends and feed event numbers are
serialised by a transaction-scoped advisory lock on the tenant (`lock_tenant`), held until
COMMIT, so numbers become visible in the order they were given and no two replicas fork a
log. Run ownership uses row locks (`FOR UPDATE SKIP LOCKED`, see the run lease queries).

Plans: a statement whose caller vouches for it (`reuse_plan`: a lookup by key, one
tenant's head, the ledger append) is prepared at once, and the server plans it once and
keeps the plan (`plan_cache_mode = auto` keeps a generic plan once it costs no more than
the first five it made for the values given). Every other statement is sent unnamed, and is
planned for its own values every time it runs, as a bulk lookup must be: a cached generic
plan, made while a table was still small, kept scanning it as it grew (0.4 s a page for
the subject lookup at 20,000 subjects), and an array's length is a value. When every
statement was planned each time it ran (`force_custom_plan`), planning was 43% of the
server's CPU under 64 feed consumers (perf): the consumer lookup took 0.47 ms a page to
plan and 0.10 ms to run, and the ledger append 1.3 ms to plan, under the tenant's lock.

Messages of PostgreSQL errors can quote row values (a duplicate key's DETAIL names it), so
errors are reported by SQLSTATE and class only, never by their text.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from functools import lru_cache
from typing import Any, Final, TypeVar

import orjson
import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool, PoolTimeout

from gateway.store.database import Dialect
from gateway.store.protocols import StoreConflict, StoreError, StoreMissing, StoreUnavailable
from gateway.store.records import AlreadyExists, NotFound

log = logging.getLogger("sluis.store")

#: Seconds to wait for the server at start before failing.
CONNECT_TIMEOUT: Final = 15.0
#: Seconds a statement waits for a free pooled connection before `StoreUnavailable` (a
#: request should get a 503 it can retry, not hang behind a saturated pool).
POOL_WAIT: Final = 5.0

#: `one_of` for text: the values as one JSON array, made an array once per statement.
_ANY_OF_TEXT: Final = "= ANY(ARRAY(SELECT json_array_elements_text(CAST(? AS json))))"


@lru_cache(maxsize=1024)
def _pg(sql: str, placeholder: str = "%s") -> str:
    """The stores' `?` placeholders as psycopg's `%s` (the SQL holds no `%` of its own)."""
    if "%" in sql:  # pragma: no cover - a programming error, caught by the contract suite
        raise StoreError("store SQL must not contain '%'")
    return sql.replace("?", placeholder)


def _query(sql: str, params: Sequence[object]) -> str:
    """`_pg`, with every parameter sent in binary (`%b`) when one is a list: psycopg spells
    a list in text element by element in Python, bytes as hex, so the arrays of a ledger
    append (a feed's group commit: entry bodies, leaf hashes, nodes) took 0.30 ms of the
    GIL against 0.08 ms in binary, and were a twelfth of a 64-consumer feed's Python."""
    if any(type(p) is list for p in params):
        return _pg(sql, "%b")
    return _pg(sql)


def _failure(exc: psycopg.Error, *, batch: bool = False) -> Exception:
    """Our error for a driver error, without its text (which can quote values)."""
    if isinstance(exc, errors.UniqueViolation):
        return (StoreConflict if batch else AlreadyExists)("a record with that key already exists")
    if isinstance(exc, errors.ForeignKeyViolation):
        if batch:
            return StoreConflict("a row refers to a record that does not exist")
        return NotFound("it refers to a record that does not exist")
    if isinstance(exc, errors.SerializationFailure | errors.DeadlockDetected):
        return StoreConflict("another writer got there first; try again")
    if isinstance(exc, errors.UndefinedTable):
        return StoreMissing("the database has no Sluis schema; run `sluis db upgrade`")
    if isinstance(exc, psycopg.OperationalError):
        return StoreUnavailable(f"database unavailable ({type(exc).__name__})")
    return StoreError(f"database error {exc.sqlstate or ''} ({type(exc).__name__})".strip())


def _rows(cursor: psycopg.Cursor[Any]) -> list[Any]:
    return cursor.fetchall()


def _rowcount(cursor: psycopg.Cursor[Any]) -> int:
    return cursor.rowcount


def tenant_lock_key(tenant: str) -> int:
    """A tenant's advisory lock key: 64 bits of a hash (a collision only serialises two
    tenants' writes, it never lets two writers of one tenant through)."""
    digest = hashlib.sha256(b"sluis/tenant/" + tenant.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


#: libpq's words for a server that is not (yet) there: worth waiting for at start. Anything
#: else (a bad parameter, a refused login, a missing database) fails at once.
_NOT_YET: Final = (
    "connection refused",
    "could not connect",
    "timeout expired",
    "the database system is starting up",
    "no route to host",
    "could not translate host name",
)


def _first_connection(url: str, kwargs: dict[str, Any], shown: str, timeout: float) -> None:
    """One direct connection before the pool: a server that is starting is waited for (up
    to `timeout`), a mistake in the settings is reported at once, in libpq's words (they
    name hosts, users and databases, never rows), instead of a pool retrying it quietly."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(url, **kwargs).close()
            return
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            waiting = any(word in reason.lower() for word in _NOT_YET)
            if not waiting or time.monotonic() >= deadline:
                raise StoreError(f"cannot connect to PostgreSQL at {shown}: {reason}") from None
            time.sleep(0.5)


class _Bound(threading.local):
    conn: psycopg.Connection[Any] | None = None
    depth: int = 0
    #: Tenants whose advisory lock this transaction holds, or asks for with its next
    #: statement (asked once, not per statement that needs it).
    locked: frozenset[str] = frozenset()
    #: Statements not sent yet (the BEGIN, advisory locks): they go to the server in one
    #: pipeline with the transaction's next statement (`_first`), not a round trip each.
    queued: tuple[tuple[str, tuple[object, ...]], ...] = ()
    #: The BEGIN has gone: the transaction ends with a COMMIT or ROLLBACK.
    begun: bool = False
    #: Its COMMIT has gone too, with its last statement (`all_then_commit`).
    committed: bool = False


T = TypeVar("T")
C = TypeVar("C")
#: The per-connection temporary tables `upsert_rows` copies through.
_STAGE: Final = "sluis_stage_"

#: What a transaction sends first, with its first statement (`PostgresDatabase._first`).
_BEGIN: Final[tuple[tuple[str, tuple[object, ...]]]] = (("BEGIN", ()),)

#: A pooled connection used less than this many seconds ago is handed out unchecked.
IDLE_CHECK_SECONDS: Final = 2.0


#: A table is analysed again once this process has written as many rows to it as it held at
#: its last analysis (it doubled), and at least this many.
ANALYZE_MIN_ROWS: Final = 1000
#: The statistics target of those analyses (samples 300x as many rows).
ANALYZE_TARGET: Final = 10


class _Statistics:
    """Keeps the planner's statistics up with the tables this process bulk-loads.

    A full sync takes `subjects` and `events` from empty to 100,000 rows in seconds, long
    before autovacuum's next round (and never, where autovacuum is off): the planner then
    still takes them for empty, and looked up a page of 1,000 subject ids by scanning every
    subject of the connector, 25 ms a page at 50,000 and growing. So a table is analysed
    (in the background, after the COMMIT that made it so) whenever this process's writes
    have doubled it since its last analysis: log2(n) analyses for n rows, 7 for a 100,000
    sync. `ANALYZE` takes no lock that reads or writes wait for.

    Each samples 3,000 rows (`ANALYZE_TARGET`), not the default 30,000: what these plans
    need is the table's size and that ids are distinct, which a small sample gives as
    well; what a full one adds (100-bucket histograms of random 32-character ids) cost
    180-216 ms of the server's CPU per analysis of a 100,000-event table against 13-20 ms,
    0.8 s of a 100,000-record sync's 2.9 s on the server. The same plans were chosen after
    either (the page's subject lookup by primary key, the feed's by `(tenant, seq)`).
    Autovacuum still analyses with the server's own target in its own time."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Any]]) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._written: dict[str, int] = {}
        self._known: dict[str, int] = {}
        self._running: set[str] = set()

    def wrote(self, table: str, rows: int) -> None:
        with self._lock:
            self._written[table] = self._written.get(table, 0) + rows

    def committed(self) -> None:
        """After a COMMIT (or an autocommitted write): analyse what has doubled."""
        with self._lock:
            due = [
                t
                for t, n in self._written.items()
                if n >= max(ANALYZE_MIN_ROWS, self._known.get(t, 0)) and t not in self._running
            ]
            for table in due:
                self._known[table] = self._known.get(table, 0) + self._written.pop(table)
                self._running.add(table)
        for table in due:
            threading.Thread(
                target=self._analyze, args=(table,), name=f"sluis-analyze-{table}", daemon=True
            ).start()

    def _analyze(self, table: str) -> None:
        try:
            with self._pool.connection(timeout=POOL_WAIT) as conn, conn.transaction():
                conn.execute(f"SET LOCAL default_statistics_target = {ANALYZE_TARGET}")
                conn.execute(f"ANALYZE {table}")
        except Exception as exc:  # a closed pool, a failover: the next doubling tries again
            log.debug("ANALYZE %s skipped (%s)", table, type(exc).__name__)
        finally:
            with self._lock:
                self._running.discard(table)


class _Liveness:
    """When the pool checks a connection before handing it out: only after it sat idle.

    Checking every borrow (`ConnectionPool.check_connection`) cost one round trip each,
    several per feed page and per sync page (a 100,000-record sync into PostgreSQL took
    14% longer with it). A connection the server dropped while it sat in the pool is found
    instead when it is used (`PostgresDatabase._retrying`): the pool then checks all of
    its idle connections at once, and the statement, if nothing of it can have run, is
    sent again on a sound one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the pool calls both from any thread
        self._returned: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = (
            weakref.WeakKeyDictionary()
        )

    def check(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            returned = self._returned.get(conn)
        if returned is None or time.monotonic() - returned > IDLE_CHECK_SECONDS:
            ConnectionPool.check_connection(conn)

    def returned(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            self._returned[conn] = time.monotonic()


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database (one schema)."""

    dialect: Dialect = "postgres"
    # A run another replica is claiming right now is passed over, not waited for, so
    # claimers never queue behind each other or take the same run.
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(
        self,
        pool: ConnectionPool[psycopg.Connection[Any]],
        url: str,
        liveness: _Liveness | None = None,
    ) -> None:
        self._pool = pool
        #: When each connection came back (the pool's `check` reads it): noted here, as a
        #: connection is given back, not by the pool's `reset` hook, which hands every
        #: return to the pool's worker thread (a queue, a wake-up and a thread switch for
        #: each statement: 7% of the 64-consumer feed's GIL time went to that hand-off).
        self._liveness = liveness or _Liveness()
        self._bound = _Bound()
        self._statistics = _Statistics(pool)
        #: table -> column -> type oid, for binary COPY (the schema is fixed while open).
        self._types: dict[str, dict[str, int]] = {}
        #: The database URL without its password (for messages).
        self.url = url

    @classmethod
    def open(
        cls,
        url: str,
        *,
        password: str | None = None,
        pool_size: int = 10,
        schema: str | None = None,
        timeout: float = CONNECT_TIMEOUT,
        pool_wait: float = POOL_WAIT,
    ) -> PostgresDatabase:
        """Connect (waiting up to `timeout` seconds for the server) or raise `StoreError`.

        `schema` confines every table to one schema (`search_path`): tests give each test
        its own; an installation normally keeps the default."""
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, int(timeout)),
            # Only what says `reuse_plan` is prepared (by `prepare=True`), the rest never
            # (psycopg's None would ignore `prepare=True` too).
            "prepare_threshold": sys.maxsize,
        }
        if password is not None:
            kwargs["password"] = password
        try:
            info = psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            raise StoreError("database_url is not a valid PostgreSQL URL") from None
        # The URL's own options (e.g. `?options=-csearch_path%3Dsluis`) are kept.
        options = [str(info["options"])] if info.get("options") else []
        options.append("-c timezone=UTC")
        # Which statements keep a plan is ours to say (`reuse_plan`, see the module's
        # docstring); the server's default mode, set in case an installation changed it.
        options.append("-c plan_cache_mode=auto")
        # The tables live in memory or on SSD, as on every managed PostgreSQL: with the
        # default cost of a random page (4, a spinning disk's), looking up a page of 1,000
        # subject ids among 100,000 planned as a scan of the whole table (12 ms, growing
        # with it) instead of 1,000 index probes (5 ms, flat).
        options.append("-c random_page_cost=1.1")
        if schema is not None:
            options.append(f"-c search_path={schema}")
        kwargs["options"] = " ".join(options)
        if not info.get("application_name"):
            # Which process a connection is (`pg_stat_activity`): a run's owner names its
            # host and pid (`engine.replica_name`), so ops can tell whose sessions a
            # replica's are, and that a dead replica's are gone.
            kwargs["application_name"] = f"sluis:{os.getpid()}"
        shown = url if "password" not in info else url.replace(str(info["password"]), "***")
        _first_connection(url, kwargs, shown, timeout)
        liveness = _Liveness()
        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            kwargs=kwargs,
            min_size=1,
            max_size=max(1, pool_size),
            open=False,
            check=liveness.check,
            timeout=pool_wait,
            name="sluis",
        )
        try:
            pool.open(wait=True, timeout=timeout)
        except PoolTimeout:
            pool.close()
            raise StoreError(f"cannot connect to PostgreSQL at {shown}") from None
        return cls(pool, shown, liveness)

    def scrub(self) -> None:
        """PostgreSQL keeps a deleted row's bytes until VACUUM reuses its space, and in its
        WAL until the WAL is recycled: neither is the application's to clear (the README's
        erasure section says what an operator does)."""

    def json_text(self, column: str, key: str) -> str:
        return f"(CAST({column} AS jsonb) ->> '{key}')"

    def joined(self, expr: str, order: str, *, binary: bool = False) -> str:
        separator = "'\\x2c'::bytea" if binary else "','"
        return f"string_agg({expr}, {separator} ORDER BY {order})"

    def one_of(self, values: Sequence[object]) -> tuple[str, list[object]]:
        """One array parameter, planned for its values every time as an index lookup (a
        prepared `IN` list of 500 parameters got a generic plan that scanned the table,
        0.4 s a page at 20,000 subjects).

        Text (keyed subject ids, the common case) crosses as one JSON text that the server
        makes the array of, still an index lookup: psycopg adapts a list element by
        element in Python, 0.6 ms more for 250 ids a statement (0.92 against 0.32 ms on an
        empty table), and a sync page's `suppressed` lookup runs under the tenant's lock."""
        if all(type(v) is str for v in values):
            return _ANY_OF_TEXT, [orjson.dumps(list(values)).decode()]
        return "= ANY(?)", [list(values)]

    def time(self, value: datetime | None) -> object:
        return value

    # ------------------------------------------------------------------ statements

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        bound = self._bound.conn
        if bound is not None:
            yield bound
            return
        try:
            with self._pool.connection() as conn:
                try:
                    yield conn
                finally:
                    self._liveness.returned(conn)
        except PoolTimeout:
            raise StoreUnavailable("no database connection free in time (pool exhausted)") from None

    def _retrying(
        self, work: Callable[[psycopg.Connection[Any]], T], *, resend: bool, batch: bool = False
    ) -> T:
        """`work` on this thread's transaction's connection, or on a pooled one. A pooled
        connection found broken (the server dropped it while it sat idle) has the pool
        check all its idle ones; `work` is then sent again on a sound one if `resend` (a
        read: nothing can have been done twice), else the caller hears StoreUnavailable."""
        if self._bound.queued:  # COPY and executemany cannot go in a pipeline: the rest alone
            self._first(lambda conn: None, lambda _: None)
        for attempt in (1, 2):
            used: psycopg.Connection[Any] | None = None
            try:
                with self._conn() as conn:
                    used = conn
                    return work(conn)
            except psycopg.Error as exc:
                # Only a pooled connection found broken is replaced (a transaction's own
                # connection breaking ends the transaction).
                if used is None or used is self._bound.conn or not used.broken:
                    raise _failure(exc, batch=batch) from None
                self._pool.check()
                if not resend or attempt == 2:
                    raise _failure(exc, batch=batch) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def all(
        self, sql: str, params: Sequence[object] = (), *, reuse_plan: bool = False
    ) -> list[Any]:
        """Results in binary: bytes come over as they are rather than spelled in hex and
        parsed back (a page of feed events read 2.4 ms in text, 1.2 ms in binary)."""
        query = _query(sql, params)
        if self._bound.queued:
            return self._first(
                lambda conn: conn.execute(query, params, binary=True, prepare=reuse_plan), _rows
            )
        return self._retrying(
            lambda conn: conn.execute(query, params, binary=True, prepare=reuse_plan).fetchall(),
            resend=True,
        )

    def in_key_order(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """With statistics older than a bulk load (autovacuum off, or not yet round), the
        planner took a page of 1,000 feed events after a 100,000-event sync for 400 rows,
        and scanned and sorted all 95,000 after the cursor: 47 ms instead of 0.5 ms. A
        plan that sorts is kept out of this one statement (`SET LOCAL`), which leaves the
        ordered index walk; inside a caller's transaction the setting would outlive the
        statement, so there the query runs as it is."""
        if self._bound.conn is not None:
            return self.all(sql, params)
        with self.transaction():
            self.execute("SET LOCAL enable_sort = off")
            return self.all(sql, params)

    def all_then_commit(
        self, sql: str, params: Sequence[object] = (), *, reuse_plan: bool = False
    ) -> list[Any]:
        """In a transaction of its own, the statement and its COMMIT go in one pipeline
        with what was queued (BEGIN, locks): a ledger append that builds on the head its
        ledger remembered (a feed's group commit) is one round trip."""
        bound = self._bound
        if bound.conn is None or bound.depth != 1:
            return self.all(sql, params, reuse_plan=reuse_plan)
        query = _query(sql, params)
        rows = self._first(
            lambda conn: conn.execute(query, params, binary=True, prepare=reuse_plan),
            _rows,
            commit=True,
        )
        bound.committed = True
        return rows

    def execute(self, sql: str, params: Sequence[object] = (), *, reuse_plan: bool = False) -> int:
        query = _query(sql, params)
        if self._bound.queued:
            return self._first(
                lambda conn: conn.execute(query, params, prepare=reuse_plan), _rowcount
            )
        return self._retrying(
            lambda conn: conn.execute(query, params, prepare=reuse_plan).rowcount, resend=False
        )

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        if not rows:
            return
        query = _pg(sql)

        def work(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cur:
                cur.executemany(query, rows)

        self._retrying(work, resend=False, batch=True)

    def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]
    ) -> None:
        """COPY, binary: measured 2.4 ms for 1,000 small rows, against 12 ms for one INSERT
        over arrays (`unnest`) and about 50 ms for `executemany`, whose per-row cost is
        psycopg's; binary rather than text saves a further 30% on a page of feed events
        (5.5 against 8.3 ms), values going over without being spelled and escaped."""
        if not rows:
            return
        types = self._column_types(table, columns)
        copying = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"

        def work(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cur, cur.copy(copying) as copy:
                copy.set_types(types)
                for row in rows:
                    copy.write_row(row)

        self._retrying(work, resend=False, batch=True)
        if not table.startswith(_STAGE):
            self._wrote(table, len(rows))

    def _column_types(self, table: str, columns: Sequence[str]) -> list[int]:
        """The type oids of `columns` (binary COPY needs them), asked once per table."""
        known = self._types.get(table)
        if known is None:
            rows = self.all(
                "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = ?::regclass"
                " AND attnum > 0 AND NOT attisdropped",
                (table,),
            )
            known = self._types[table] = {str(name): int(oid) for name, oid in rows}
        return [known[c] for c in columns]

    def upsert_rows(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        rows: Sequence[Sequence[object]],
    ) -> None:
        """COPY into a temporary table of this connection (emptied at every COMMIT), then
        one INSERT ... SELECT ... ON CONFLICT from it: COPY's speed with an upsert."""
        if not rows:
            return
        # One row per key, the last given winning (as row-by-row upserts would): a second
        # row for a key in one INSERT ... ON CONFLICT is an error in PostgreSQL.
        at = [columns.index(k) for k in key]
        rows = list({tuple(row[i] for i in at): row for row in rows}.values())
        stage = f"{_STAGE}{table}"
        names = ", ".join(columns)
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        with self.transaction():
            self.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage}"
                f" (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            self.insert_rows(stage, columns, rows)
            self.execute(
                f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage}"
                f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
            )
            self.execute(f"DELETE FROM {stage}")
            self._wrote(table, len(rows))

    def script(self, statements: Sequence[str]) -> None:
        """Schema statements, inside the caller's transaction."""
        for statement in statements:
            self.execute(statement)

    def lock_tenant(self, tenant: str) -> None:
        """The tenant's advisory lock, asked for with the transaction's next statement:
        the server takes it before it runs that statement, so whatever the transaction
        reads or writes after this call happens under it, and the lock costs no round
        trip of its own. A transaction that sends nothing more needs no lock."""
        bound = self._bound
        if bound.conn is None:  # pragma: no cover - a programming error
            raise StoreError("lock_tenant needs a transaction")
        if tenant in bound.locked:
            return
        bound.queued += ((_pg("SELECT pg_advisory_xact_lock(?)"), (tenant_lock_key(tenant),)),)
        bound.locked |= {tenant}

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def transaction(self) -> Iterator[None]:
        bound = self._bound
        if bound.conn is not None:
            bound.depth += 1
            try:
                yield
            finally:
                bound.depth -= 1
            return
        bound.conn, bound.depth, bound.queued, bound.begun = self._checkout(), 1, _BEGIN, False
        try:
            yield
        except BaseException:
            if bound.begun and not bound.committed:
                self._rollback(bound.conn)
            raise
        else:
            if bound.begun and not bound.committed:  # else nothing (more) to commit
                try:
                    bound.conn.execute("COMMIT")
                except psycopg.Error as exc:
                    self._rollback(bound.conn)
                    raise _failure(exc) from None
        finally:
            conn = bound.conn
            bound.conn, bound.depth, bound.locked = None, 0, frozenset()
            bound.queued, bound.begun, bound.committed = (), False, False
            self._give_back(conn)
        self._statistics.committed()

    def wrote(self, table: str, rows: int) -> None:
        self._wrote(table, rows)

    def _wrote(self, table: str, rows: int) -> None:
        self._statistics.wrote(table, rows)
        if self._bound.conn is None:  # autocommitted: it is in
            self._statistics.committed()

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        self._liveness.returned(conn)
        self._pool.putconn(conn)

    def _checkout(self) -> psycopg.Connection[Any]:
        try:
            return self._pool.getconn()
        except PoolTimeout:
            raise StoreUnavailable("no database connection free in time (pool exhausted)") from None

    def _first(
        self,
        send: Callable[[psycopg.Connection[Any]], C],
        read: Callable[[C], T],
        *,
        commit: bool = False,
    ) -> T:
        """A statement sent with what the transaction queued before it (its BEGIN, the
        locks it asked for) in one round trip (a pipeline): a round trip fewer for every
        transaction and every lock, which on a busy machine is what a page's commit,
        under its tenant's lock, mostly waits for. The server having dropped the
        connection while it sat in the pool, nothing of the transaction ran: it is all
        sent again on a sound one, once. With `commit`, the COMMIT goes last in the same
        pipeline (if the statement fails, the server rolls the transaction back instead)."""
        bound = self._bound
        queued = bound.queued
        for attempt in (1, 2):
            conn = bound.conn
            assert conn is not None
            bound.queued, bound.begun = (), True
            try:
                with conn.pipeline():
                    # BEGIN, and advisory locks (one plan kept for the lock's statement).
                    for statement, params in queued:
                        conn.execute(statement, params, prepare=bool(params))
                    sent = send(conn)
                    if commit:
                        conn.execute("COMMIT")
                return read(sent)
            except psycopg.Error as exc:
                if not conn.broken or attempt == 2 or queued[:1] != _BEGIN:
                    raise _failure(exc) from None
                self._give_back(conn)
                self._pool.check()
                bound.conn, bound.queued, bound.begun = self._checkout(), queued, False
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _rollback(conn: psycopg.Connection[Any]) -> None:
        # A broken connection cannot roll back; the server ends its transaction, and the
        # pool discards the connection when it is given back.
        try:
            conn.execute("ROLLBACK")
        except psycopg.Error:
            log.warning("rollback failed; the connection is discarded")

    def snapshot(self) -> AbstractContextManager[PostgresDatabase]:
        return self._snapshot()

    @contextmanager
    def _snapshot(self) -> Iterator[PostgresDatabase]:
        """A REPEATABLE READ, READ ONLY transaction on a connection of its own: every read
        through the view sees the state of its first read."""
        view = PostgresDatabase(self._pool, self.url, self._liveness)
        with view.transaction():
            view.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            view.all("SELECT 1")  # the first query fixes the snapshot
            yield view

    # ------------------------------------------------------------------ introspection

    def tables(self) -> set[str]:
        rows = self.all(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        return {str(r[0]) for r in rows}

    def columns(self, table: str) -> list[str]:
        rows = self.all(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            (table,),
        )
        return [str(r[0]) for r in rows]

    def close(self) -> None:
        self._pool.close()
