"""Two processes' worth of writers on one PostgreSQL ledger: separate pools (as two replicas
have), each with threads appending to the same tenant's log, plus event numbers given at the
same time. Nothing forks, nothing is lost, every number is given once and in order."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.ledger.checkpoint import CheckpointSigner
from gateway.ledger.log import Ledger
from gateway.store.postgres import PostgresStore
from gateway.store.records import NewEvent, Tenant
from tests.ledger_helpers import make_entry
from tests.pg import database_url, fresh_schema

APPENDS = 20


def test_replicas_appending_to_one_tenant_never_fork_its_log() -> None:
    key = Ed25519PrivateKey.generate()
    signer = CheckpointSigner(key)
    with fresh_schema() as schema:
        stores = [PostgresStore(database_url(schema), pool_size=4) for _ in range(2)]
        try:
            stores[0].create_tenant(Tenant("acme", "Acme", datetime.now(UTC), b"k"))
            failures: list[BaseException] = []

            def write(store: PostgresStore, worker: int) -> None:
                ledger = Ledger(store.ledger, "acme", signer)
                try:
                    for i in range(APPENDS):
                        n = worker * 1000 + i
                        with store.transaction():
                            store.append_events("acme", [
                                NewEvent(f"evt_{n}", "subject.upserted", f"{n:032x}", {"a": 1},
                                         datetime.now(UTC), "afas", "ins")
                            ])  # fmt: skip
                            ledger.append([make_entry(n)])
                except BaseException as exc:  # pragma: no cover - reported below
                    failures.append(exc)

            threads = [threading.Thread(target=write, args=(stores[w % 2], w)) for w in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not failures, failures
            for store in stores:
                report = Ledger(store.ledger, "acme").verify(key.public_key())
                assert report.ok, report.reason
                assert report.entries == report.checkpoints == 6 * APPENDS
            seqs = [e.seq for e in stores[1].events_after("acme", 0, 1000)]
            assert seqs == list(range(1, 6 * APPENDS + 1))
        finally:
            for store in stores:
                store.close()
