"""Benchmark what a page commit costs per record as the store grows: a full sync of a small and
of a large AFAS source, on SQLite and (with `--postgres`) on PostgreSQL.

For each size the AFAS emulator serves that many employees; the connector's own keyset
download of every page is timed first (the baseline), then a full sync into a fresh store.
The sync engine's page commit (`SyncEngine._prepare` and `_write`: change detection,
subjects, events, the ledger entry, the transaction) is timed by wrapping both stages in
this process, so the figure is the commit's own time per record, in the same run for both
sizes.

    .venv/bin/python bench/bench_commit_scale.py [--sizes 10000 500000] [--postgres]

Targets (issue #8): the commit's cost per record at the largest size within 20% of the
smallest's; a full sync at most 2x the connector's own download.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from bench_stores import full_sync, pg_schema
from bench_sync import download_only, free_port, start_emulator

from gateway.runtime.config import Settings
from gateway.sync.engine import SyncEngine


class CommitTimer:
    """Adds up the time spent in the engine's page commits: each transaction is prepared
    (`SyncEngine._prepare`: read, compare, render) in one worker thread and written
    (`SyncEngine._write`) in another, the next prepared while the one before writes. The
    figures are the two stages' wall time summed (the work a record costs, not the run's
    elapsed time) and the threads' own CPU time, which other processes on a shared machine
    disturb far less."""

    STAGES = ("_prepare", "_write")

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.pages = 0
        self._originals: dict[str, Callable[..., Any]] = {
            name: getattr(SyncEngine, name) for name in self.STAGES
        }

    def _timed(self, original: Callable[..., Any], *, counts_page: bool) -> Callable[..., Any]:
        @functools.wraps(original)
        def timed(engine: SyncEngine, *args: Any, **kwargs: Any) -> Any:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return original(engine, *args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self.cpu_seconds += time.thread_time() - c0
                self.pages += counts_page

        return timed

    def __enter__(self) -> CommitTimer:
        for name, original in self._originals.items():
            setattr(SyncEngine, name, self._timed(original, counts_page=name == "_write"))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, original in self._originals.items():
            setattr(SyncEngine, name, original)


async def one(size: int, backend: str, page_size: int) -> dict[str, float]:
    port = free_port()
    emulator = start_emulator(size, port)
    base = f"http://127.0.0.1:{port}/profitrestservices"
    try:
        rows, download_s = await download_only(base, page_size)
        with tempfile.TemporaryDirectory() as tmp:
            schema: AbstractContextManager[str | None] = (
                pg_schema() if backend == "postgres" else nullcontext(None)
            )
            with schema as url:
                settings = Settings(  # type: ignore[call-arg]
                    data_dir=Path(tmp), database_url=url, admin_token="b" * 32,
                    allow_private_sources=True,
                )  # fmt: skip
                with CommitTimer() as timer:
                    run, sync_s = await full_sync(settings, base, page_size)
    finally:
        emulator.terminate()
        emulator.wait()
    assert run.counts["fetched"] == rows == size, (run.counts, rows, size)
    return {
        "download_s": download_s,
        "sync_s": sync_s,
        "commit_us": timer.seconds / size * 1e6,
        "commit_cpu_us": timer.cpu_seconds / size * 1e6,
        "transactions": timer.pages,
    }


async def bench(args: argparse.Namespace) -> int:
    backends = ["sqlite", "postgres"] if args.postgres else ["sqlite"]
    failed = False
    print(f"{'store':<10}{'records':>10}{'download s':>12}{'sync s':>9}{'x download':>12}"
          f"{'commit us/record':>18}{'cpu us/record':>15}")  # fmt: skip
    for backend in backends:
        figures = {size: await one(size, backend, args.page_size) for size in args.sizes}
        for size, f in figures.items():
            print(
                f"{backend:<10}{size:>10,}{f['download_s']:>12.2f}{f['sync_s']:>9.2f}"
                f"{f['sync_s'] / f['download_s']:>11.2f}x{f['commit_us']:>18.1f}"
                f"{f['commit_cpu_us']:>15.1f}"
            )
        small, large = figures[min(args.sizes)], figures[max(args.sizes)]
        growth = large["commit_us"] / small["commit_us"]
        print(
            f"{backend}: commit per record at {max(args.sizes):,} / at {min(args.sizes):,}: "
            f"{growth:.2f}x (target <= 1.20x); CPU time: "
            f"{large['commit_cpu_us'] / small['commit_cpu_us']:.2f}x"
        )
        failed |= growth > 1.2
    print("targets:", "MISSED" if failed else "met")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 500_000])
    ap.add_argument("--page-size", type=int, default=1000)
    ap.add_argument("--postgres", action="store_true", help="also on the server at :5432")
    return asyncio.run(bench(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
