"""PostgreSQL for tests: the server on 127.0.0.1:5432 (this machine kind runs it; `.ci/run`
makes sure it is up), a database of the suite's own, and a fresh schema per test.

Tests that need it call `require_postgres()`: without a reachable server they skip with the
reason, unless `SLUIS_REQUIRE_POSTGRES=1` (set by `.ci/run`) makes that a failure, so CI
can never pass by skipping them.
"""

from __future__ import annotations

import functools
import os
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import psycopg
import pytest
from psycopg import sql

#: Where the suite's database lives (created on first use).
SERVER_URL: Final = os.environ.get(
    "SLUIS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DATABASE: Final = "sluis_test"


def database_url(schema: str | None = None) -> str:
    """The suite's database as a URL (what `database_url` takes), optionally confined to
    one schema through libpq's `options`."""
    parts = urllib.parse.urlsplit(SERVER_URL)
    query = f"options=-csearch_path%3D{schema}" if schema else ""
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, f"/{DATABASE}", query, ""))


@functools.cache
def _unavailable() -> str | None:
    """Why PostgreSQL cannot be used (None: it can); creates the suite's database."""
    try:
        with psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=3) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone()
            if found is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    except psycopg.Error as exc:
        return f"no PostgreSQL at {SERVER_URL} ({type(exc).__name__}: {str(exc).strip()[:120]})"
    return None


def require_postgres() -> str:
    """The suite's database URL, or skip (fail under SLUIS_REQUIRE_POSTGRES=1)."""
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("SLUIS_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"SLUIS_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    return database_url()


@contextmanager
def fresh_schema() -> Iterator[str]:
    """An empty schema of its own for one test, dropped afterwards."""
    url = require_postgres()
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
