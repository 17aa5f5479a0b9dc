"""Benchmark the ledger at a year's scale: bytes per year under two sync schedules, the
entries written as before (keyed ids listed in every body) against the compact form
(a commitment in the body, each distinct list of ids kept once beside it, indexed), and
the time of a full and of a resumed verification, all in the same run.

A tenant of `--people` (100,000) is synced in pages of 1,000 with a real `Ledger` on a
SQLite store. The staff changes through the day (`--turnover` of them a year join, as
many leave, at evenly spread times; `--updates` a day change a field), so pages shift
between syncs, as they do with offset- and keyset-paginated HR APIs. One feed consumer
receives the changes after each sync. Two schedules:

* `full15`: a full sync every 15 minutes (96 a day): every page of people, every time;
* `hourly`: the scheduler's default (one sync an hour) reading only the records changed
  since the last (incremental), and one full sync a day to see who left.

Each simulates `--days` days after a first full sync; the second day on (steady state) is
measured and extrapolated to a year. Sizes are SQLite's own accounting of the ledger's
tables and indexes (`dbstat`). Verification: a full one over everything written, and one
resumed from where a verification at the end of the first day ended.

    .venv/bin/python bench/bench_ledger_year.py [--people 100000] [--days 2]
        [--schedule full15 hourly] [--turnover 0.15] [--updates 200]

Issue #9 asks for the size per year under both schedules and the verify time (the
listed-ids form was estimated at ~129 GB a year and half an hour to verify for `full15`).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.ledger import entry as entries
from gateway.ledger.checkpoint import CheckpointSigner
from gateway.ledger.log import Ledger
from gateway.store.ledger_sqlite import SqliteLedgerStore

T0 = datetime(2026, 11, 1, tzinfo=UTC)
PAGE = 1000
FIELDS = {
    "first_name": "user.name.first",
    "last_name": "user.name.last",
    "email": "user.contact.email",
    "job_title": "user.job_title",
}
DIGEST = "sha256:" + "ab" * 32
DROPPED = {"BSN": 1, "IBAN": 1, "Salaris": 1, "Adres": 1, "Geboortedatum": 1, "Verzuim": 1}
LEDGER_TABLES = ("ledger_entries", "ledger_nodes", "ledger_checkpoints", "ledger_heads")
LIST_TABLES = ("ledger_subject_sets", "ledger_subject_index", "ledger_index_heads")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Staff:
    """The source's people in its own (page) order, each a keyed id; changes at given times."""

    def __init__(self, people: int, rng: random.Random) -> None:
        self.rng = rng
        self.order = [self._new() for _ in range(people)]
        self.changed: set[str] = set()

    def _new(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def join_and_leave(self) -> str:
        """One joins at a random place (source order is not hire order), one leaves."""
        gone = self.order.pop(self.rng.randrange(len(self.order)))
        self.changed.discard(gone)
        new = self._new()
        self.order.insert(self.rng.randrange(len(self.order) + 1), new)
        self.changed.add(new)
        return gone

    def update(self) -> None:
        self.changed.add(self.rng.choice(self.order))

    def pages(self) -> Iterator[list[str]]:
        for start in range(0, len(self.order), PAGE):
            yield self.order[start : start + PAGE]


@dataclass
class Run:
    ledger: Ledger
    clock: Clock
    compact: bool
    run_no: int = 0

    def page(self, ids: list[str]) -> entries.TransferEntry:
        return self._form(
            entries.inbound(
                time=self.clock.now, tenant="bench", connector="afas", instruction_id="ins-1",
                mapping_digest=DIGEST, subject_ids=ids, fields=FIELDS, records=len(ids),
                quarantined=0, dropped=DROPPED, run_id=f"run-{self.run_no}",
            )
        )  # fmt: skip

    def served(self, ids: list[str]) -> entries.TransferEntry:
        return self._form(
            entries.outbound(
                time=self.clock.now, tenant="bench", connector="afas", instruction_id="ins-1",
                mapping_digest=DIGEST, subject_ids=ids, fields=FIELDS, destination="feed:lms",
            )
        )  # fmt: skip

    def _form(self, entry: entries.TransferEntry) -> entries.TransferEntry:
        # As entries were written before commitments: the ids listed in the body.
        return entry if self.compact else entry.model_copy(update={"subjects": None})

    def sync(self, pages: list[list[str]], changed: list[str]) -> None:
        """A sync: each page its own append (and checkpoint), then the feed serves the
        changes, a page of at most 1,000 events at a time."""
        self.run_no += 1
        for ids in pages:
            self.ledger.append([self.page(ids)])
        for start in range(0, len(changed), PAGE):
            self.ledger.append([self.served(changed[start : start + PAGE])])


def simulate(run: Run, staff: Staff, schedule: str, day: int, args: argparse.Namespace) -> None:
    syncs = 96 if schedule == "full15" else 24
    step = timedelta(days=1) / syncs
    changes_a_day = round(len(staff.order) * args.turnover / 365)
    due = iter(sorted(run_rng_times(staff.rng, changes_a_day + args.updates)))
    kinds = [True] * changes_a_day + [False] * args.updates
    staff.rng.shuffle(kinds)
    pending = list(zip(due, kinds, strict=True))
    start = T0 + timedelta(days=day)
    left: list[str] = []
    for n in range(syncs):
        run.clock.now = start + step * (n + 1)
        while pending and start + pending[0][0] * timedelta(days=1) <= run.clock.now:
            _, joins = pending.pop(0)
            if joins:
                left.append(staff.join_and_leave())
            else:
                staff.update()
        changed = sorted(staff.changed)
        staff.changed.clear()
        full = schedule == "full15" or n == syncs - 1
        if full:
            run.sync(list(staff.pages()), changed + left)
            left = []
        else:
            run.sync([changed[i : i + PAGE] for i in range(0, len(changed), PAGE)], changed)


def run_rng_times(rng: random.Random, n: int) -> list[float]:
    return [rng.random() for _ in range(n)]


def index_all(store: SqliteLedgerStore) -> None:
    """What the app's ledger indexer does in the background, done now (its bytes count)."""
    while store.index_subject_lists("bench", 100) > 0:
        pass


def table_bytes(db: Path, tables: tuple[str, ...]) -> int:
    """Bytes SQLite's pages hold for these tables and their indexes."""
    conn = sqlite3.connect(db)
    try:
        marks = ",".join("?" * len(tables))
        query = f"SELECT name FROM sqlite_schema WHERE tbl_name IN ({marks})"
        names = [r[0] for r in conn.execute(query, tables)]
        total = 0
        for name in names:
            row = conn.execute("SELECT SUM(pgsize) FROM dbstat WHERE name = ?", (name,)).fetchone()
            total += int(row[0] or 0)
        return total
    finally:
        conn.close()


def measure(schedule: str, compact: bool, args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    db = tmp / f"{schedule}-{'compact' if compact else 'listed'}.db"
    key = Ed25519PrivateKey.generate()
    store = SqliteLedgerStore(db)
    clock = Clock()
    ledger = Ledger(store, "bench", CheckpointSigner(key), clock=clock)
    run = Run(ledger, clock, compact)
    staff = Staff(args.people, random.Random(7))
    run.sync(list(staff.pages()), list(staff.order))  # the first full sync
    tables = LEDGER_TABLES + (LIST_TABLES if compact else ())
    t0 = time.perf_counter()
    simulate(run, staff, schedule, 0, args)
    first_day_s = time.perf_counter() - t0
    point = ledger.verify(key.public_key(), record=True)
    assert point.ok, point.reason
    index_all(store)
    before = table_bytes(db, tables)
    size_before = ledger.size()
    for day in range(1, args.days):
        simulate(run, staff, schedule, day, args)
    index_all(store)
    after = table_bytes(db, tables)
    steady_days = args.days - 1
    t0 = time.perf_counter()
    full = ledger.verify(key.public_key())
    full_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    resumed = ledger.verify(key.public_key(), resume=True)
    resumed_s = time.perf_counter() - t0
    assert full.ok, full.reason
    assert resumed.ok, resumed.reason
    assert resumed.resumed_from == point.entries
    size = ledger.size()
    store.close()
    return {
        "bytes_a_day": (after - before) / steady_days,
        "entries_a_day": (size - size_before) / steady_days,
        "entries": size,
        "full_s": full_s,
        "resumed_s": resumed_s,
        "resumed_entries": size - point.entries,
        "write_day_s": first_day_s,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--people", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=2, help="at least 2 (the first is set-up)")
    ap.add_argument("--schedule", nargs="+", default=["full15", "hourly"],
                    choices=["full15", "hourly"])  # fmt: skip
    ap.add_argument("--turnover", type=float, default=0.15, help="share joining a year")
    ap.add_argument("--updates", type=int, default=200, help="records changed a day")
    args = ap.parse_args()
    if args.days < 2:
        ap.error("--days must be at least 2")
    print(f"{args.people:,} people, pages of {PAGE}, turnover {args.turnover:.0%} a year,"
          f" {args.updates} updates a day, {args.days - 1} steady day(s) measured")  # fmt: skip
    head = f"{'schedule':<9}{'form':<9}{'entries/day':>12}{'MB/day':>9}{'GB/year':>9}"
    print(head + f"{'vs listed':>10}{'verify s/1M':>12}{'resumed s':>10}{'vs full':>8}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for schedule in args.schedule:
            listed = measure(schedule, False, args, Path(tmp))
            compact = measure(schedule, True, args, Path(tmp))
            for form, m in (("listed", listed), ("compact", compact)):
                per_million = m["full_s"] / m["entries"] * 1_000_000
                print(
                    f"{schedule:<9}{form:<9}{m['entries_a_day']:>12,.0f}"
                    f"{m['bytes_a_day'] / 1e6:>9.1f}{m['bytes_a_day'] * 365 / 1e9:>9.2f}"
                    f"{m['bytes_a_day'] / listed['bytes_a_day']:>9.2f}x{per_million:>12.1f}"
                    f"{m['resumed_s']:>10.2f}{m['resumed_s'] / m['full_s']:>7.2f}x",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
