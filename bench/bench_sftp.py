"""Benchmark a full sync of N people from a CSV export over SFTP, end to end into the feed.

The SFTP emulator runs in its own process (as a real server would) and writes one export of
N people (semicolon-separated, UTF-8 with a byte-order mark, 19 columns of which the mapping
reads 7). The gateway's sync engine runs in this one, on SQLite in a temporary directory.
As a same-run baseline the bench first downloads the file with the connector's own access
pattern (asyncssh, the pinned host key, sequential 64 KiB reads) and only counts its lines:
no CSV parsing, no minimisation, no change detection, no store, no ledger. It then times the
full sync, and a second run against the unchanged file (which the connector recognises by
name, time and size and does not download).

    .venv/bin/python bench/bench_sftp.py [--employees 100000] [--page-size 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncssh
import orjson

from connectors.base import SyncMode
from gateway.ledger.audit import SYSTEM
from gateway.ledger.record import Acting
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.sync.instructions import grant
from gateway.tenancy import create_connector, create_tenant
from mappings import bundled_mapping

REPO = Path(__file__).resolve().parents[1]
BLOCK = 64 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_emulator(people: int, port: int) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """The emulator in its own process; its credentials (made at its import) on stdout."""
    code = (
        "import sys, orjson; from aiohttp import web; "
        "from connectors.sftp.emulator import EMULATOR_CREDENTIALS, make_app; "
        "sys.stdout.buffer.write(orjson.dumps(EMULATOR_CREDENTIALS) + b'\\n'); "
        "sys.stdout.flush(); "
        f"web.run_app(make_app(people={people}, sftp_port={port}), host='127.0.0.1', "
        f"port={free_port()}, print=None)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    credentials = orjson.loads(proc.stdout.readline())
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, credentials
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the emulator did not start")


async def download_only(port: int, credentials: dict[str, str]) -> tuple[int, int, float]:
    """The baseline: the newest export read as the connector reads it, lines counted."""
    key = asyncssh.import_private_key(credentials["private_key"])
    start = time.perf_counter()
    async with (
        asyncssh.connect(
            "127.0.0.1", port, username=credentials["username"], client_keys=[key],
            known_hosts=None, agent_path=None, config=[],
        ) as conn,
        conn.start_sftp_client() as sftp,
    ):  # fmt: skip
        names = sorted(n for n in await sftp.listdir("/exports") if n.endswith(".csv"))
        lines = size = 0
        async with sftp.open(f"/exports/{names[-1]}", "rb", block_size=BLOCK) as file:
            while block := await file.read(BLOCK):
                size += len(block)
                lines += block.count(b"\n")
    return lines - 1, size, time.perf_counter() - start


async def bench(args: argparse.Namespace) -> None:
    port = free_port()
    emulator, credentials = start_emulator(args.employees, port)
    base = f"sftp://127.0.0.1:{port}/exports"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                data_dir=Path(tmp), admin_token="b" * 32, allow_private_sources=True
            )
            services = Services.open(settings)
            now = datetime.now(UTC)
            by = Acting(SYSTEM, services.ledger("bench"))
            create_tenant(services.store, services.box, "bench", "Bench BV", now, by=by)
            create_connector(
                services.store, services.box, tenant="bench", by=by, connector_id="hr",
                type_name="sftp", base_url=base, credentials=credentials,
                mapping_text=bundled_mapping("sftp").read_text(),
                settings={"page_size": args.page_size, "settle_seconds": 0}, now=now,
            )  # fmt: skip
            grant(services.store, by=by, connector="hr", purpose="benchmark", now=now)
            rows, size, raw_s = await download_only(port, credentials)
            t0 = time.perf_counter()
            full = await services.engine.sync("bench", "hr", SyncMode.FULL)
            full_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            again = await services.engine.sync("bench", "hr")
            again_s = time.perf_counter() - t0
            events = services.store.last_event_seq("bench")
            services.close()
    finally:
        emulator.terminate()
        emulator.wait()
    for run in (full, again):
        assert run.status == "succeeded", run.error
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = full.counts["fetched"]
    assert n == rows, (n, rows)
    print(f"employees {n:,}, export {size / 2**20:.1f} MiB, page size {args.page_size}, "
          f"feed events {events:,}")  # fmt: skip
    print(f"{'stage':<30}{'seconds':>9}{'records/s':>12}")
    print(f"{'download only (baseline)':<30}{raw_s:>9.2f}{rows / raw_s:>12,.0f}")
    print(f"{'full sync':<30}{full_s:>9.2f}{n / full_s:>12,.0f}")
    print(f"{'re-sync, file unchanged':<30}{again_s:>9.3f}{'':>12}   (fetched "
          f"{again.counts['fetched']})")  # fmt: skip
    print(f"full sync / download-only time: {full_s / raw_s:.2f}x")
    print(f"peak RSS of the gateway process: {rss:.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--employees", type=int, default=100_000)
    ap.add_argument("--page-size", type=int, default=1000)
    asyncio.run(bench(ap.parse_args()))


if __name__ == "__main__":
    main()
