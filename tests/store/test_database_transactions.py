"""Transactions under the SQL stores, on both engines: what a transaction queues to send
with its next statement (its BEGIN, the tenant locks) and a last statement sent with its
COMMIT (`Database.all_then_commit`) keep every transaction all-or-nothing."""

from __future__ import annotations

import threading
import time

import pytest

from gateway.store.database import Database
from gateway.store.protocols import Store
from gateway.store.records import AlreadyExists


def database_of(store: Store) -> Database:
    db: Database = store.database  # type: ignore[attr-defined]  # both SQL stores have one
    return db


class _Boom(Exception):
    pass


def _names(store: Store) -> list[str]:
    return [str(r[0]) for r in database_of(store).all("SELECT name FROM scratch ORDER BY name")]


@pytest.fixture
def scratch(store: Store) -> Store:
    db = database_of(store)
    with db.transaction():
        db.execute("CREATE TABLE scratch (name TEXT PRIMARY KEY)")
    return store


def test_a_last_statement_commits_its_own_transaction(scratch: Store) -> None:
    db = database_of(scratch)
    with db.transaction():
        db.lock_tenant("acme")
        db.execute("INSERT INTO scratch (name) VALUES (?)", ("a",))
        rows = db.all_then_commit("SELECT count(*) FROM scratch")
    assert rows[0][0] == 1
    assert _names(scratch) == ["a"]


def test_a_failing_last_statement_leaves_nothing_of_its_transaction(scratch: Store) -> None:
    db = database_of(scratch)
    with db.transaction():
        db.execute("INSERT INTO scratch (name) VALUES (?)", ("a",))

    def twice() -> None:
        with db.transaction():
            db.execute("INSERT INTO scratch (name) VALUES (?)", ("b",))
            db.all_then_commit("INSERT INTO scratch (name) VALUES (?) RETURNING name", ("a",))

    with pytest.raises(AlreadyExists):  # the same name twice
        twice()
    assert _names(scratch) == ["a"]


def test_inside_a_joined_transaction_it_commits_nothing(scratch: Store) -> None:
    db = database_of(scratch)

    def outer() -> None:
        with db.transaction():
            db.execute("INSERT INTO scratch (name) VALUES (?)", ("a",))
            with db.transaction():
                db.all_then_commit("INSERT INTO scratch (name) VALUES (?) RETURNING name", ("b",))
            raise _Boom

    with pytest.raises(_Boom):
        outer()
    assert _names(scratch) == []


def test_a_tenant_lock_holds_from_the_next_statement_to_the_end(scratch: Store) -> None:
    """The second writer's first statement waits for the first's COMMIT, which its own
    last statement sent: it sees the first's row."""
    db = database_of(scratch)
    seen: list[list[str]] = []

    def second() -> None:
        with db.transaction():
            db.lock_tenant("acme")
            seen.append(_names(scratch))

    with db.transaction():
        db.lock_tenant("acme")
        db.execute("INSERT INTO scratch (name) VALUES (?)", ("a",))
        waiting = threading.Thread(target=second)
        waiting.start()
        time.sleep(0.3)
        assert not seen
        db.all_then_commit("INSERT INTO scratch (name) VALUES (?) RETURNING name", ("b",))
    waiting.join(timeout=10)
    assert seen == [["a", "b"]]
