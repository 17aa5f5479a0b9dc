"""Every store backend runs the same contract tests: SQLite always, PostgreSQL on the
server at 127.0.0.1:5432 (each test in a fresh schema; see `tests/pg.py` for when it skips).

A backend joins the suite with one entry in `BACKENDS`: a context manager that opens a
fresh, empty store in a temporary directory and cleans up after it. The ledger half runs
against each backend's `store.ledger` and against every stand-alone ledger store in
`LEDGER_BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from gateway.store.ledger_sqlite import SqliteLedgerStore
from gateway.store.postgres import PostgresStore
from gateway.store.protocols import LedgerStore, Store
from gateway.store.sqlite import SqliteStore
from tests.pg import database_url, fresh_schema


@contextmanager
def _sqlite(directory: Path) -> Iterator[Store]:
    store = SqliteStore(directory / "sluis.db")
    try:
        yield store
    finally:
        store.close()


@contextmanager
def _postgres(directory: Path) -> Iterator[Store]:
    with fresh_schema() as schema:
        store = PostgresStore(database_url(), schema=schema, pool_size=4)
        try:
            yield store
        finally:
            store.close()


#: Backend name -> a fresh gateway store (the directory is the test's own).
BACKENDS: dict[str, Callable[[Path], AbstractContextManager[Store]]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
}
#: Ledger stores that exist apart from a gateway store (the auditor's read path).
LEDGER_BACKENDS: dict[str, Callable[[Path], LedgerStore]] = {
    "sqlite-ledger-only": lambda d: SqliteLedgerStore(d / "ledger.db"),
}


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with BACKENDS[request.param](tmp_path) as s:
        yield s


@pytest.fixture(params=[*sorted(BACKENDS), *sorted(LEDGER_BACKENDS)])
def ledger_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    """A ledger store: a gateway store's `ledger`, or a stand-alone one."""
    if request.param in BACKENDS:
        with BACKENDS[request.param](tmp_path) as owner:
            yield owner.ledger
    else:
        s = LEDGER_BACKENDS[request.param](tmp_path)
        yield s
        s.close()
