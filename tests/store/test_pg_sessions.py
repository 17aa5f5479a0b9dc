"""Each PostgreSQL session says whose it is: `application_name` names the process
(`sluis:<pid>`, the pid a run's owner carries), so `pg_stat_activity` shows which
replica holds which sessions and when a dead one's are gone; a URL that names its own
application keeps it."""

from __future__ import annotations

import os

from gateway.store.postgres_db import PostgresDatabase
from tests.pg import database_url, require_postgres


def _name(url: str) -> str:
    db = PostgresDatabase.open(url, pool_size=1)
    try:
        return str(db.all("SELECT current_setting('application_name')")[0][0])
    finally:
        db.close()


def test_a_session_is_named_for_its_process() -> None:
    require_postgres()
    assert _name(database_url()) == f"sluis:{os.getpid()}"


def test_a_url_that_names_its_application_keeps_it() -> None:
    require_postgres()
    assert _name(f"{database_url()}?application_name=ops-console") == "ops-console"
