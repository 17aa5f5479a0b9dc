"""Benchmark the breach scope report on a large ledger: a window of an hour and of a day in a
log of 1,000,000 entries, against reading the whole log, in the same run.

The log is a week of a tenant's traffic, built with the real ledger (canonical entries,
Merkle nodes, a signed checkpoint per batch) in a SQLite store: batches of `--batch`
entries a minute apart, each entry an inbound or outbound transfer of `--ids` keyed
subject ids. The baseline reads and parses every entry of the log, as a report without the
checkpoint search would have to.

    .venv/bin/python bench/bench_breach.py [--entries 1000000] [--ids 10] [--batch 100]

Target (issue #9): a breach scope under 5 s on a ledger of 1,000,000 entries.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.ledger import entry as entries
from gateway.ledger.checkpoint import CheckpointSigner
from gateway.ledger.kinds import parse_entry
from gateway.ledger.log import Ledger
from gateway.lifecycle.breach import breach_scope
from gateway.store.ledger_sqlite import SqliteLedgerStore

T0 = datetime(2026, 11, 23, tzinfo=UTC)
FIELDS = {
    "first_name": "user.name.first",
    "last_name": "user.name.last",
    "email": "user.contact.email",
    "job_title": "user.job_title",
}
DIGEST = "sha256:" + "ab" * 32


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def fill(ledger: Ledger, clock: Clock, count: int, ids: int, batch: int) -> None:
    made = 0
    while made < count:
        at = clock.now
        page: list[entries.TransferEntry] = []
        for n in range(made, min(made + batch, count)):
            subjects = [f"{(n * ids + k) % 500_000:032x}" for k in range(ids)]
            if n % 2:
                page.append(
                    entries.outbound(time=at, tenant="bench", connector="afas",
                                     instruction_id="ins-afas", mapping_digest=DIGEST,
                                     subject_ids=subjects, fields=FIELDS, destination="feed:lms")
                )  # fmt: skip
            else:
                page.append(
                    entries.inbound(time=at, tenant="bench", connector="afas",
                                    instruction_id="ins-afas", mapping_digest=DIGEST,
                                    subject_ids=subjects, fields=FIELDS, records=ids,
                                    quarantined=0, dropped={"BSN": ids}, run_id="run-1")
                )  # fmt: skip
        ledger.append(page)
        made += len(page)
        clock.now += timedelta(minutes=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--ids", type=int, default=10)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteLedgerStore(Path(tmp) / "ledger.db")
        clock = Clock()
        ledger = Ledger(store, "bench", CheckpointSigner(Ed25519PrivateKey.generate()), clock=clock)
        t0 = time.perf_counter()
        fill(ledger, clock, args.entries, args.ids, args.batch)
        span = clock.now - T0
        print(f"log: {args.entries:,} entries of {args.ids} subject ids in batches of "
              f"{args.batch}, over {span}, built in {time.perf_counter() - t0:.0f} s")  # fmt: skip
        t0 = time.perf_counter()
        parsed = 0
        for _, body, _ in store.iter_entries("bench"):
            parse_entry(body)
            parsed += 1
        whole_s = time.perf_counter() - t0
        print(f"{'case':<34}{'seconds':>9}{'entries read':>14}{'subjects':>10}{'vs whole':>10}")
        print(f"{'read the whole log (baseline)':<34}{whole_s:>9.2f}{parsed:>14,}{'':>10}{'':>10}")
        middle = T0 + span / 2
        worst = 0.0
        for name, length in (("an hour", timedelta(hours=1)), ("a day", timedelta(days=1))):
            t0 = time.perf_counter()
            scope = breach_scope(store, "bench", middle, middle + length)
            seconds = time.perf_counter() - t0
            worst = max(worst, seconds)
            print(
                f"{'breach scope, ' + name:<34}{seconds:>9.2f}{scope.entries_read:>14,}"
                f"{len(scope.subject_ids):>10,}{seconds / whole_s:>9.1%}"
            )
        store.close()
    print(f"target (under 5 s on this log): {'met' if worst < 5 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
