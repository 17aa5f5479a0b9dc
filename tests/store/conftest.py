"""Every store backend runs the same contract tests; the SQLite one is always available.

A backend joins the suite with one entry in `BACKENDS`: a factory that opens a fresh, empty
store in a temporary directory (a PostgreSQL one would skip itself when no server is
configured). The ledger half runs against each backend's `store.ledger` and against every
stand-alone ledger store in `LEDGER_BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.store.ledger_sqlite import SqliteLedgerStore
from gateway.store.protocols import LedgerStore, Store
from gateway.store.sqlite import SqliteStore

#: Backend name -> factory of a fresh gateway store in the given directory.
BACKENDS: dict[str, Callable[[Path], Store]] = {
    "sqlite": lambda d: SqliteStore(d / "sluis.db"),
}
#: Ledger stores that exist apart from a gateway store (the auditor's read path).
LEDGER_BACKENDS: dict[str, Callable[[Path], LedgerStore]] = {
    "sqlite-ledger-only": lambda d: SqliteLedgerStore(d / "ledger.db"),
}


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = BACKENDS[request.param](tmp_path)
    yield s
    s.close()


@pytest.fixture(params=[*sorted(BACKENDS), *sorted(LEDGER_BACKENDS)])
def ledger_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    """A ledger store: a gateway store's `ledger`, or a stand-alone one."""
    if request.param in BACKENDS:
        owner = BACKENDS[request.param](tmp_path)
        yield owner.ledger
        owner.close()
    else:
        s = LEDGER_BACKENDS[request.param](tmp_path)
        yield s
        s.close()
