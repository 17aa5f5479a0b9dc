"""Moving an installation from SQLite to PostgreSQL: every row, in one target transaction.

`sluis db copy` is how an embedded installation grows into several replicas, so the copy
must be whole or nothing: it runs in one PostgreSQL transaction (a copy that fails half-way
leaves the target without a row), it refuses a target that already holds Sluis rows (never
a merge into a live database), and it reads the source through one snapshot, so the rows
it copies are one consistent state even if something still writes to the file.

The tables come from the target's schema (every table the migrations made, less
`schema_migrations`), and each must be one this module knows how to order (`TABLES`): a
table the code has not placed in foreign-key order is an error, never skipped, so a
migration that adds a table cannot make the copy lose it silently. Columns come from the
catalogues of both sides and must match by name; values go through the `Database` seam
(times as each engine binds them, BLOB to bytea as bytes). `sync_runs.rowid` is an
identity column on PostgreSQL: runs are inserted in SQLite's rowid order and numbered by
it, so the queries that break ties between runs by rowid agree on both engines
(`run_seen.rowid` likewise, so a running run's seen log keeps its order).

This module only moves rows; whether the copy's ledger verifies is the caller's question
(the store never interprets what it holds).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.store import migrate
from gateway.store.database import Database, read_time
from gateway.store.migrate import MigratingDatabase
from gateway.store.protocols import StoreError

#: Rows read and inserted at a time.
BATCH_ROWS: Final = 5000

#: Every table the migrations make, in foreign-key order (a table comes after those it
#: refers to), each with the columns its rows are read in order of: a unique key, so
#: pages of `BATCH_ROWS` follow on from each other (keyset paging, no OFFSET).
TABLES: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("tenants", ("id",)),
    ("connectors", ("tenant", "id")),
    ("instructions", ("id",)),
    # The insertion order SQLite kept: PostgreSQL's identity numbers the runs in it.
    ("sync_runs", ("rowid",)),
    # A running run's seen log (appended in rowid order; renumbered in it, like the runs).
    ("run_seen", ("rowid",)),
    ("subjects", ("tenant", "connector", "subject_id")),
    ("events", ("tenant", "seq")),
    ("consumers", ("id",)),
    ("checkpoint_pushes", ("tenant",)),
    ("suppressions", ("tenant", "subject_id")),
    ("event_heads", ("tenant",)),
    ("dsr_requests", ("id",)),
    ("erasure_receipts", ("tenant", "subject_id", "consumer_id")),
    ("retention_policies", ("tenant",)),
    ("job_claims", ("name",)),
    ("destinations", ("tenant", "id")),
    ("destination_dead_letters", ("tenant", "destination", "seq")),
    ("accounts", ("id",)),
    ("invitations", ("token_hash",)),
    ("sessions", ("id",)),
    ("api_tokens", ("id",)),
    ("tenant_oidc", ("tenant",)),
    ("signin_throttles", ("key",)),
    ("oidc_pending", ("state_hash",)),
    ("ledger_entries", ("tenant", "idx")),
    ("ledger_nodes", ("tenant", "level", "idx")),
    ("ledger_checkpoints", ("tenant", "seq")),
    ("ledger_heads", ("tenant",)),
    ("ledger_subject_sets", ("tenant", "set_no")),
    ("ledger_subject_index", ("tenant", "prefix", "set_no")),
    ("ledger_index_heads", ("tenant",)),
    ("ledger_verified", ("tenant",)),
)

_VERSIONS: Final = "schema_migrations"
_NAME: Final = re.compile(r"^[a-z_][a-z0-9_]*$")
_TIME_TYPES: Final = frozenset({"timestamp with time zone", "timestamp without time zone"})

#: Called after every batch: table, rows of it copied so far, rows it has.
Progress = Callable[[str, int, int], None]


class CopyError(StoreError):
    """The copy cannot start or did not finish; the target holds no copied rows."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    #: The target binds a time here (the source may hold it as text).
    is_time: bool


@dataclass(frozen=True, slots=True)
class TablePlan:
    """How one table is copied: which columns, read in which order."""

    name: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]


@dataclass(frozen=True, slots=True)
class CopyReport:
    #: Rows copied, by table, in the order they were copied.
    rows: dict[str, int]
    #: The schema version both sides are at.
    version: int
    seconds: float

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _quoted(name: str) -> str:
    if not _NAME.match(name):  # pragma: no cover - catalogue names are ours
        raise CopyError(f"unexpected name {name!r} in the schema")
    return f'"{name}"'


def _target_columns(target: MigratingDatabase, table: str) -> list[tuple[str, str, bool]]:
    """(name, data type, is an identity) of each of the target table's columns."""
    rows = target.all(
        "SELECT column_name, data_type, is_identity FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
        (table,),
    )
    return [(str(r[0]), str(r[1]), str(r[2]) == "YES") for r in rows]


def plan(source: MigratingDatabase, target: MigratingDatabase) -> list[TablePlan]:
    """The tables to copy, in foreign-key order, checked against both schemas.

    Raises `CopyError` for a target table `TABLES` does not place, for a source table the
    target lacks (its rows would be lost), and for columns that differ between the two."""
    if source.dialect != "sqlite" or target.dialect != "postgres":
        raise CopyError("the copy goes from SQLite to PostgreSQL only")
    target_tables = target.tables() - {_VERSIONS}
    source_tables = {t for t in source.tables() if not t.startswith("sqlite_")} - {_VERSIONS}
    known = dict(TABLES)
    unplaced = sorted(target_tables - known.keys())
    if unplaced:
        raise CopyError(
            f"this Sluis does not know how to order table(s) {', '.join(unplaced)} for a copy;"
            " it cannot copy this schema"
        )
    lost = sorted(source_tables - target_tables)
    if lost:
        raise CopyError(f"the source has table(s) the target lacks: {', '.join(lost)}")
    plans = []
    for table, key in TABLES:
        if table not in target_tables:
            continue
        described = _target_columns(target, table)
        columns = tuple(
            Column(name, kind in _TIME_TYPES) for name, kind, identity in described if not identity
        )
        wanted = {c.name for c in columns}
        have = set(source.columns(table)) if table in source_tables else set()
        if have != wanted:
            missing = sorted(wanted - have) or ["-"]
            extra = sorted(have - wanted) or ["-"]
            raise CopyError(
                f"table {table} differs between source and target (missing in the source:"
                f" {', '.join(missing)}; only in the source: {', '.join(extra)})"
            )
        plans.append(TablePlan(table, key, columns))
    return plans


def row_counts(db: Database, tables: Sequence[str]) -> dict[str, int]:
    """Rows in each table."""
    return {t: int(db.all(f"SELECT count(*) FROM {_quoted(t)}")[0][0]) for t in tables}


def _check_versions(source: MigratingDatabase, target: MigratingDatabase) -> int:
    latest = migrate.latest_version(target.dialect)
    for side, db in (("source", source), ("target", target)):
        current = migrate.check_not_newer(db)
        if current != latest:
            raise CopyError(
                f"the {side} database is at schema version {current}, not {latest};"
                " upgrade it first (`sluis db upgrade`)"
            )
    return latest


def _pages(db: Database, table: TablePlan, batch_rows: int) -> Iterator[list[Any]]:
    """The table's rows in key order, a page at a time: each row is the key's values
    followed by the columns'."""
    keys = ", ".join(_quoted(k) for k in table.key)
    select = (
        f"SELECT {keys}, {', '.join(_quoted(c.name) for c in table.columns)}"
        f" FROM {_quoted(table.name)}"
    )
    after = f"({keys}) > ({', '.join('?' * len(table.key))})"
    last: tuple[object, ...] | None = None
    while True:
        if last is None:
            rows = db.all(f"{select} ORDER BY {keys} LIMIT ?", (batch_rows,))
        else:
            rows = db.all(f"{select} WHERE {after} ORDER BY {keys} LIMIT ?", (*last, batch_rows))
        if rows:
            yield rows
        if len(rows) < batch_rows:
            return
        last = tuple(rows[-1][: len(table.key)])


def _time_reader(target: Database, table: str, column: str) -> Callable[[Any], Any]:
    """The source's stored time (RFC 3339 text on SQLite) as the target binds a time."""

    def convert(value: Any) -> Any:
        try:
            return target.time(read_time(value))
        except (TypeError, ValueError):
            raise CopyError(
                f"table {table}, column {column}: a stored time is not readable"
            ) from None

    return convert


def _copy_table(
    source: Database,
    target: Database,
    table: TablePlan,
    total: int,
    *,
    batch_rows: int,
    progress: Progress | None,
) -> int:
    skip = len(table.key)
    times = [
        (i, _time_reader(target, table.name, c.name))
        for i, c in enumerate(table.columns)
        if c.is_time
    ]
    insert = (
        f"INSERT INTO {_quoted(table.name)} ({', '.join(_quoted(c.name) for c in table.columns)})"
        f" VALUES ({', '.join('?' * len(table.columns))})"
    )
    copied = 0
    for page in _pages(source, table, batch_rows):
        rows = [list(r[skip:]) for r in page]
        for i, convert in times:
            for row in rows:
                row[i] = convert(row[i])
        try:
            target.executemany(insert, rows)
        except StoreError as exc:
            raise CopyError(f"table {table.name}: {exc}") from None
        copied += len(rows)
        if progress is not None:
            progress(table.name, copied, total)
    return copied


def ensure_empty(target: MigratingDatabase) -> None:
    """`CopyError` unless every Sluis table the target has is empty (tables it lacks yet
    are empty too): a copy never merges into a database that is in use."""
    present = target.tables()
    for table, _ in TABLES:
        if table in present and target.all(f"SELECT 1 FROM {_quoted(table)} LIMIT 1"):
            raise CopyError(
                f"the target already holds Sluis data (table {table} has rows);"
                " copy into an empty database"
            )


def copy_database(
    source: MigratingDatabase,
    target: MigratingDatabase,
    *,
    batch_rows: int = BATCH_ROWS,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy every row of `source` (SQLite) into `target` (PostgreSQL), both at the latest
    schema, in one target transaction; `CopyError` (nothing copied) if it cannot."""
    started = time.monotonic()
    version = _check_versions(source, target)
    tables = plan(source, target)
    copied: dict[str, int] = {}
    with source.snapshot() as view, target.transaction():
        ensure_empty(target)
        totals = row_counts(view, [t.name for t in tables])
        for table in tables:
            copied[table.name] = _copy_table(
                view, target, table, totals[table.name], batch_rows=batch_rows, progress=progress
            )
            if copied[table.name] != totals[table.name]:  # pragma: no cover - a snapshot
                raise CopyError(f"table {table.name} changed while it was copied")
    return CopyReport(copied, version, time.monotonic() - started)
