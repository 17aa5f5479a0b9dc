"""The one seam between the SQL the stores speak and the engine that runs it.

The gateway store, the ledger store and the account register are written once, as plain SQL
with `?` placeholders, against this small protocol; `SqliteDatabase`
(`gateway.store.sqlite_db`) and `PostgresDatabase` (`gateway.store.postgres_db`) implement it.
Keeping the queries in one place is what keeps the backends from drifting apart: a fix or a
new column lands for both, and the one contract suite (`tests/store/`) runs against each.
What differs between engines lives behind this seam (placeholders, how times are bound,
locking, connection handling) or in each backend's migrations (`gateway/store/schema/`).

Transactions nest by joining: a page's subjects, events, run progress and ledger entry are
written by three store objects inside one `transaction()`, and commit together.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from gateway.store.protocols import StoreError

Dialect = Literal["sqlite", "postgres"]


class SchemaTooNew(StoreError):
    """The database was upgraded by a newer Sluis than this one."""


class Database(Protocol):
    """A database connection (or pool) the SQL stores run their statements on.

    Errors: `execute` raises `AlreadyExists` for a duplicate key and `NotFound` for a
    missing referenced row (foreign key); `executemany` raises `StoreConflict` for either
    (a batch that collides was raced by another writer); anything else is a `StoreError`
    whose message holds no row content.
    """

    dialect: Dialect
    #: What a SELECT appends to lock the rows it returns, passing over rows another
    #: transaction holds ("" where one writer is all there is).
    skip_locked: str

    def one_of(self, values: Sequence[object]) -> tuple[str, list[object]]:
        """`column <this>` matching any of `values` (not empty): the SQL and its params."""
        ...

    def in_key_order(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """`all` for a keyset page (`WHERE key > ? ORDER BY key LIMIT ?`), which walking the
        key's index in order is always right for, whatever the table's statistics say."""
        ...

    def scrub(self) -> None:
        """Clear deleted rows from the engine's own files where it can (after a COMMIT)."""
        ...

    def json_text(self, column: str, key: str) -> str:
        """SQL for the text at top-level `key` of the JSON object held (as text) in `column`."""
        ...

    def joined(self, expr: str, order: str, *, binary: bool = False) -> str:
        """An aggregate: `expr` of every row, in `order`, joined by commas (text, or bytes
        when `binary`), one value for a whole page of rows."""
        ...

    def all(
        self, sql: str, params: Sequence[object] = (), *, reuse_plan: bool = False
    ) -> list[Any]:
        """Every row of a query (inside the current transaction, if there is one).

        `reuse_plan`: the caller vouches that the statement's best plan depends neither on
        its parameters nor on how large its tables grow (a lookup by primary key, one
        tenant's head): an engine may plan it once and keep the plan. Every other
        statement is planned for its own values each time it runs."""
        ...

    def execute(self, sql: str, params: Sequence[object] = (), *, reuse_plan: bool = False) -> int:
        """Run one statement; returns the number of rows it changed (`reuse_plan`: as
        for `all`)."""
        ...

    def all_then_commit(
        self, sql: str, params: Sequence[object] = (), *, reuse_plan: bool = False
    ) -> list[Any]:
        """`all` as the last statement of a transaction opened for it (the outermost
        `transaction()` of this thread): an engine may send the COMMIT with it, and the
        transaction is then over. Inside a transaction it joined, the same as `all`."""
        ...

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None: ...

    def insert_rows(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]
    ) -> None:
        """Many new rows at once (a page's events, a batch of ledger entries): the fastest
        way the engine has. A duplicate key is a `StoreConflict`."""
        ...

    def upsert_rows(
        self,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        rows: Sequence[Sequence[object]],
    ) -> None:
        """Many rows at once, each inserted or, where its `key` exists, its other columns
        replaced (a page's subject digests)."""
        ...

    def wrote(self, table: str, rows: int) -> None:
        """`rows` were added to `table` by a statement of the caller's own (not by
        `insert_rows` or `upsert_rows`, which count theirs): an engine that keeps its
        planner's statistics up with bulk loads counts them too."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """Everything inside commits together or not at all; an inner call joins the outer
        transaction of the same thread."""
        ...

    def lock_tenant(self, tenant: str) -> None:
        """Inside a transaction: hold the tenant's write lock until it ends, from the
        transaction's next statement on (an engine may send the lock with it). Ledger
        appends and feed event numbers of one tenant are serialised on it, across
        processes, so no two writers fork a log or interleave event numbers."""
        ...

    def snapshot(self) -> AbstractContextManager[Database]:
        """A read-only view of one consistent state, while writers carry on."""
        ...

    def time(self, value: datetime | None) -> object:
        """`value` as this engine binds a time parameter."""
        ...

    def close(self) -> None: ...


def time_text(value: datetime) -> str:
    """RFC 3339 UTC text with microseconds and a `Z`: it sorts like the instants it names
    (SQLite keeps times so, and the feed serves them so)."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def read_time(value: object) -> datetime | None:
    """A stored time as an aware UTC datetime, whichever way the engine returned it (SQLite
    keeps RFC 3339 text, PostgreSQL `timestamptz`)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value))


def need_time(value: object) -> datetime:
    """A NOT NULL column's time."""
    parsed = read_time(value)
    if parsed is None:  # pragma: no cover - NOT NULL columns
        raise StoreError("a required time is missing")
    return parsed
