"""Every store backend runs the same contract tests; the SQLite one is always available."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.store.records import Store
from gateway.store.sqlite import SqliteStore


@pytest.fixture(params=["sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "sluis.db")
        yield s
        s.close()
