"""Ledger benchmark: append throughput against a plain-SQLite baseline, and a 1M-entry verify.

Run from the repository root:

    .venv/bin/python bench/bench_ledger.py               # 100k appends, 1M-entry verify
    .venv/bin/python bench/bench_ledger.py --quick       # 20k appends, 100k-entry verify

Appends go through `Ledger.append` in batches of 1,000, and of 1 and 8 as feed pages make
them (canonical JSON, leaf hashes,
frontier, stored nodes, one Ed25519 checkpoint and one SQLite transaction per batch). The
baseline writes the very same entry bytes with `executemany`, one transaction per batch,
and no hashing or signing, so the ratio is the price of tamper evidence. The verify runs
`sluis audit verify` in a child process, so its time and peak memory are the CLI's own.
Targets: >= 50,000 appends/s; verify of 1,000,000 entries < 30 s.
"""

from __future__ import annotations

import argparse
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.keys.signing import load_or_create_signing_key  # noqa: E402
from gateway.ledger.checkpoint import CheckpointSigner  # noqa: E402
from gateway.ledger.entry import Category, EgressField  # noqa: E402
from gateway.ledger.log import Ledger, TransferCounts, TransferEntry, canonical_bytes  # noqa: E402
from gateway.store.ledger_sqlite import SqliteLedgerStore  # noqa: E402

TENANT = "bench"
FIELDS: dict[EgressField, Category] = {
    "first_name": "user.name.first",
    "last_name": "user.name.last",
    "email": "user.contact.email",
    "job_title": "user.job_title",
}
DROPPED = ["BSN", "IBAN", "Geboortedatum", "Adres", "Salaris", "Verzuim"]


def make_pool(n: int, seed: int = 7) -> list[TransferEntry]:
    """Typical entries: one page of a sync, 1-10 subjects, four fields, a few dropped names."""
    rnd = random.Random(seed)
    t0 = datetime(2025, 6, 1, tzinfo=UTC)
    pool = []
    for i in range(n):
        subjects = rnd.randint(1, 10)
        pool.append(
            TransferEntry(
                time=t0 + timedelta(milliseconds=i),
                direction="outbound" if i % 2 else "inbound",
                tenant=TENANT,
                connector="afas",
                instruction_id="instr-2025-0001",
                mapping_digest="sha256:" + f"{rnd.getrandbits(256):064x}",
                subject_ids=[f"{rnd.getrandbits(128):032x}" for _ in range(subjects)],
                fields=dict(FIELDS),
                counts=TransferCounts(
                    records=subjects, dropped_fields=subjects * 6, quarantined=rnd.randint(0, 1)
                ),
                dropped_field_names=DROPPED[: rnd.randint(2, 6)],
                destination="feed:lms-prod" if i % 2 else "gateway",
                run_id=f"run-{i // 1000}",
            )
        )
    return pool


def bench_append(work: Path, pool: list[TransferEntry], total: int, batch: int) -> float:
    key = load_or_create_signing_key(work)
    with SqliteLedgerStore(work / f"append-{batch}.db") as store:
        ledger = Ledger(store, TENANT, CheckpointSigner(key))
        batches = [pool[i : i + batch] for i in range(0, len(pool), batch)]
        start = time.perf_counter()
        done = 0
        while done < total:
            done += len(ledger.append(batches[(done // batch) % len(batches)]))
        return done / (time.perf_counter() - start)


def bench_baseline(work: Path, pool: list[TransferEntry], total: int, batch: int) -> float:
    """The same bytes into the same table shape: executemany, one transaction per batch."""
    bodies = [canonical_bytes(e) for e in pool]
    filler = b"\x00" * 32
    conn = sqlite3.connect(work / f"baseline-{batch}.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE entries (tenant TEXT NOT NULL, idx INTEGER NOT NULL, body BLOB NOT NULL,"
        " leaf_hash BLOB NOT NULL, PRIMARY KEY (tenant, idx))"
    )
    start = time.perf_counter()
    done = 0
    while done < total:
        offset = done % len(bodies)
        rows = [
            (TENANT, done + i, bodies[offset + i], filler)
            for i in range(min(batch, len(bodies) - offset))
        ]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO entries VALUES (?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
        done += len(rows)
    elapsed = time.perf_counter() - start
    conn.close()
    return done / elapsed


def build_log(work: Path, pool: list[TransferEntry], total: int, batch: int) -> float:
    key = load_or_create_signing_key(work)
    with SqliteLedgerStore(work / "sluis.db") as store:
        ledger = Ledger(store, TENANT, CheckpointSigner(key))
        start = time.perf_counter()
        done = 0
        while done < total:
            done += len(ledger.append(pool[: min(batch, total - done)]))
        return time.perf_counter() - start


def bench_verify(work: Path) -> tuple[float, float, str]:
    argv = [sys.executable, "-m", "gateway.cli.main", "audit", "verify", "--data-dir", str(work)]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"verify failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return elapsed, peak_mib, proc.stdout.strip()


def bench_proofs(work: Path, size: int, count: int) -> float:
    rnd = random.Random(1)
    with SqliteLedgerStore(work / "sluis.db", create=False) as store:
        ledger = Ledger(store, TENANT)
        start = time.perf_counter()
        for _ in range(count):
            ledger.prove_inclusion(rnd.randrange(size))
        return (time.perf_counter() - start) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=100_000)
    parser.add_argument("--verify-entries", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="20k appends, 100k verify")
    args = parser.parse_args()
    if args.quick:
        args.appends, args.verify_entries = 20_000, 100_000

    pool = make_pool(10_000)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="sluis-bench-") as tmp:
        work = Path(tmp)
        ledger_rate = bench_append(work, pool, args.appends, 1_000)
        base_rate = bench_baseline(work, pool, args.appends, 1_000)
        rows.append(
            (
                f"append {args.appends:,} (batches of 1,000)",
                f"{ledger_rate:,.0f} entries/s",
                ">= 50,000/s",
            )
        )
        rows.append(("baseline: plain SQLite executemany", f"{base_rate:,.0f} entries/s", ""))
        rows.append(("ledger / baseline", f"{ledger_rate / base_rate:.2f}x", ""))
        # Small appends, as feed pages make them (one entry a page, a few when grouped):
        # here a transaction, the head, a checkpoint and its signature are per append.
        for small in (1, 8):
            n = min(args.appends, 20_000)
            ledger_small = bench_append(work, pool, n, small)
            base_small = bench_baseline(work, pool, n, small)
            rows.append(
                (
                    f"append {n:,} in batches of {small}",
                    f"{ledger_small:,.0f} entries/s",
                    f"{ledger_small / base_small:.2f}x baseline ({base_small:,.0f}/s)",
                )
            )

        build = build_log(work, pool, args.verify_entries, 10_000)
        rows.append(
            (
                f"build {args.verify_entries:,}-entry log (batches of 10,000)",
                f"{build:.1f} s ({args.verify_entries / build:,.0f}/s)",
                "",
            )
        )
        elapsed, peak, summary = bench_verify(work)
        rows.append(
            (f"sluis audit verify, {args.verify_entries:,} entries", f"{elapsed:.1f} s", "< 30 s")
        )
        rows.append(("  verify peak RSS (child process)", f"{peak:,.0f} MiB", ""))
        rows.append(
            (
                "  inclusion proof on that log (avg of 200)",
                f"{bench_proofs(work, args.verify_entries, 200):.2f} ms",
                "",
            )
        )
        db_mib = (work / "sluis.db").stat().st_size / 2**20
        rows.append(("  database size", f"{db_mib:,.0f} MiB", ""))

    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print(f"{'measure':<{width}}  {'result':>{value_width}}  target")
    print(f"{'-' * width}  {'-' * value_width}  ------")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>{value_width}}  {target}")
    print(f"\nverify said: {summary}")


if __name__ == "__main__":
    main()
