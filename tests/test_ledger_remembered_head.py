"""A ledger appends on the head its last append left, without reading it first, and still
never forks its log: where the log moved meanwhile (another writer's append, its own
append rolled back with its transaction, a checkpoint added), the store refuses the
append unwritten and the ledger reads the head and appends after all. On both engines,
with two ledgers of one tenant on two stores, as two processes would have."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.ledger.checkpoint import CheckpointSigner
from gateway.ledger.log import Ledger
from gateway.store.postgres import PostgresStore
from gateway.store.protocols import Store
from gateway.store.records import Tenant
from gateway.store.sqlite import SqliteStore
from tests.ledger_helpers import T0, make_entry
from tests.pg import database_url, fresh_schema


class _Rollback(Exception):
    pass


class _CountingTips:
    """Counts the head reads a store's ledger answers (a spy around the real store)."""

    def __init__(self, store: Store) -> None:
        self.reads = 0
        real = store.ledger.tip

        def tip(tenant: str):  # type: ignore[no-untyped-def]
            self.reads += 1
            return real(tenant)

        store.ledger.tip = tip  # type: ignore[method-assign]


@pytest.fixture(params=["sqlite", "postgres"])
def two_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    if request.param == "sqlite":
        stores: list[Store] = [SqliteStore(tmp_path / "sluis.db") for _ in range(2)]
        try:
            yield stores[0], stores[1]
        finally:
            for store in stores:
                store.close()
        return
    with fresh_schema() as schema:
        pg = [PostgresStore(database_url(schema), pool_size=2) for _ in range(2)]
        try:
            yield pg[0], pg[1]
        finally:
            for store in pg:
                store.close()


def test_a_remembered_head_saves_the_read_and_a_moved_log_is_read_again(
    two_stores: tuple[Store, Store],
) -> None:
    first_store, other_store = two_stores
    first_store.create_tenant(Tenant("acme", "Acme", datetime.now(UTC), b"k"))
    key = Ed25519PrivateKey.generate()
    signer = CheckpointSigner(key)
    tips = _CountingTips(first_store)
    first = Ledger(first_store.ledger, "acme", signer)
    other = Ledger(other_store.ledger, "acme", signer)

    first.append([make_entry(0)])
    first.append([make_entry(1)])
    first.append_grouped([make_entry(2)])
    assert tips.reads == 1  # only the first append read the head

    # Its own append rolled back: the log is one entry short of what it remembers, and
    # another writer appends a different entry, so the log has the remembered size again
    # with other contents. Building on the remembered head would fork it.
    def rolled_back() -> None:
        with first_store.transaction():
            first.append([make_entry(3)])
            raise _Rollback

    with pytest.raises(_Rollback):
        rolled_back()
    other.append([make_entry(103)])
    first.append([make_entry(4)])
    assert tips.reads == 2

    other.append([make_entry(105)])  # another writer grew it
    first.append([make_entry(6)])
    first.checkpoint(refresh=True)  # a checkpoint more: the next append reads the head
    first.append([make_entry(7)])
    assert tips.reads == 5  # after the other's append, in the refresh, after the refresh

    report = Ledger(other_store.ledger, "acme").verify(key.public_key())
    assert report.ok, report.reason
    assert report.entries == 8
    written = [int((r.entry.time - T0).total_seconds()) for r in other.entries(limit=100)]
    assert written == [0, 1, 2, 103, 4, 105, 6, 7]  # the rolled-back entry 3 is not there
