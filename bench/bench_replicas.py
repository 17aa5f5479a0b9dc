"""Benchmark replicas on one PostgreSQL: a multi-tenant load on one replica against two, and
the time a replica takes to carry on a dead replica's run.

1. Load: T tenants, each with an AFAS connector of E employees (one emulator process serves
   them all, as one vendor would), authorised at once; `sluis serve` replicas with their
   schedulers pick the runs up with no leader. Timed from the grants to the last run
   finished, once with one replica and once with two (each on a fresh schema); the ratio of
   the two throughputs is the figure, with each replica's peak RSS (VmHWM).
2. Takeover: one tenant's run on replica A (the emulator slowed so the run takes a while);
   A is killed with SIGKILL after its first committed page; timed until replica B has
   claimed the run and until B commits its next page, against the lease length.

    .venv/bin/python bench/bench_replicas.py [--tenants 50] [--employees 2000] [--lease 5]

Targets (issue #8): two replicas at least 1.6x one; takeover under twice the lease.

Each load row also says how busy the machine's cores were while it ran (`/proc/stat`, all
processes: replicas, their source workers, PostgreSQL, the emulator). Replicas add
throughput only with cores to spare: if one replica's load keeps the cores a share `b` of
the time busy, no number of replicas can do better than about `1 / b` times one at the
same CPU per record, so the bench prints that ceiling beside the ratio, and the CPU time
each load took (busy share x seconds x cores): two replicas that beat the ceiling did the
same work in less CPU than one.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from bench_stores import pg_schema
from bench_sync import free_port, start_emulator

from connectors.afas.emulator import EMULATOR_TOKEN
from gateway.ledger.audit import SYSTEM
from gateway.ledger.record import Acting
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.sync.instructions import grant
from gateway.tenancy import create_connector, create_tenant
from mappings import bundled_mapping

REPO = Path(__file__).resolve().parents[1]
ADMIN = "bench-admin-token-0123456789abcdef"


def provision(
    url: str, data_dir: Path, base: str, tenants: int, page_size: int, *, authorise: bool
) -> None:
    services = Services.open(Settings(data_dir=data_dir, admin_token=ADMIN, database_url=url))
    try:
        now = datetime.now(UTC)
        for n in range(tenants):
            tenant = f"t{n:03d}"
            by = Acting(SYSTEM, services.ledger(tenant))
            create_tenant(services.store, services.box, tenant, tenant, now, by=by)
            create_connector(
                services.store, services.box, tenant=tenant, by=by, connector_id="hr",
                type_name="afas", base_url=base, credentials={"token": EMULATOR_TOKEN},
                mapping_text=bundled_mapping("afas").read_text(),
                settings={"page_size": page_size}, now=now,
            )  # fmt: skip
            if authorise:
                grant(services.store, by=by, connector="hr", purpose="benchmark", now=now)
    finally:
        services.close()


def authorise_all(url: str, data_dir: Path, tenants: int) -> None:
    services = Services.open(Settings(data_dir=data_dir, admin_token=ADMIN, database_url=url))
    try:
        now = datetime.now(UTC)
        with services.store.transaction():
            for n in range(tenants):
                by = Acting(SYSTEM, services.ledger(f"t{n:03d}"))
                grant(services.store, by=by, connector="hr", purpose="benchmark", now=now)
    finally:
        services.close()


@contextmanager
def replicas(
    n: int, url: str, data_dir: Path, lease: float
) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUIS_")}
    env.update(
        SLUIS_DATA_DIR=str(data_dir), SLUIS_ADMIN_TOKEN=ADMIN, SLUIS_DATABASE_URL=url,
        SLUIS_SCHEDULER="true", SLUIS_SCHEDULER_TICK="0.2", SLUIS_RUN_LEASE_SECONDS=str(lease),
        SLUIS_ALLOW_PRIVATE_SOURCES="true", SLUIS_RESUME_CONCURRENCY="64",
        SLUIS_LOG_LEVEL="WARNING",
    )  # fmt: skip
    procs = []
    for _ in range(n):
        port = free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "gateway.cli.main", "serve"], cwd=REPO,
            env={**env, "SLUIS_PORT": str(port)}, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_times() -> tuple[int, int]:
    """The machine's (busy, total) CPU time so far, in clock ticks, over every core."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    total = sum(fields[:8])  # user .. steal; guest time is counted in user already
    return total - idle, total


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    busy, total = after[0] - before[0], after[1] - before[1]
    return busy / total if total else float("nan")


def run_states(url: str) -> list[tuple[str, str, int, str | None]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, status, pages, owner FROM sync_runs").fetchall()
    return [(r[0], r[1], int(r[2]), r[3]) for r in rows]


def load(n_replicas: int, args: argparse.Namespace, base: str) -> tuple[float, list[float], float]:
    with tempfile.TemporaryDirectory() as tmp, pg_schema() as url:
        data_dir = Path(tmp) / "data"
        provision(url, data_dir, base, args.tenants, args.page_size, authorise=False)
        with replicas(n_replicas, url, data_dir, args.lease) as procs:
            t0, cpu0 = time.perf_counter(), cpu_times()
            authorise_all(url, data_dir, args.tenants)
            while True:
                states = run_states(url)
                done = [s for s in states if s[1] != "running"]
                if len(done) >= args.tenants and len(done) == len(states):
                    break
                time.sleep(0.05)
            seconds, busy = time.perf_counter() - t0, busy_share(cpu0, cpu_times())
            assert all(s[1] == "succeeded" for s in states), states
            rss = [peak_rss_mib(p.pid) for p in procs]
    return seconds, rss, busy


def takeover(args: argparse.Namespace) -> tuple[float, float]:
    port = free_port()
    code = (
        "from aiohttp import web; from connectors.afas.emulator import make_app; "
        "from connectors.emulator_kit import CONTROL, Fault; "
        f"app = make_app(people={args.employees}); "
        "app[CONTROL].inject(*[Fault('slow', seconds=0.5) for _ in range(10000)]); "
        f"web.run_app(app, host='127.0.0.1', port={port}, print=None)"
    )
    emulator = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    base = f"http://127.0.0.1:{port}/profitrestservices"
    time.sleep(1.0)
    try:
        with tempfile.TemporaryDirectory() as tmp, pg_schema() as url:
            data_dir = Path(tmp) / "data"
            provision(url, data_dir, base, 1, 50, authorise=False)
            with (
                replicas(1, url, data_dir, args.lease) as (a,),
                replicas(1, url, data_dir, args.lease) as (b,),
            ):
                b.send_signal(signal.SIGSTOP)  # A takes the run; B joins after
                authorise_all(url, data_dir, 1)
                while not (s := run_states(url)) or s[0][2] < 1:
                    time.sleep(0.01)
                os.kill(a.pid, signal.SIGKILL)
                killed = time.perf_counter()
                dead_owner, pages = s[0][3], s[0][2]
                b.send_signal(signal.SIGCONT)
                claimed = None
                while True:
                    _run_id, _status, now_pages, owner = run_states(url)[0]
                    if claimed is None and owner != dead_owner:
                        claimed = time.perf_counter() - killed
                    if claimed is not None and now_pages > pages:
                        return claimed, time.perf_counter() - killed
                    time.sleep(0.01)
    finally:
        emulator.terminate()
        emulator.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tenants", type=int, default=50)
    ap.add_argument("--employees", type=int, default=2000)
    ap.add_argument("--page-size", type=int, default=500)
    ap.add_argument("--lease", type=float, default=5.0)
    args = ap.parse_args()

    port = free_port()
    emulator = start_emulator(args.employees, port)
    base = f"http://127.0.0.1:{port}/profitrestservices"
    try:
        one_s, one_rss, one_busy = load(1, args, base)
        two_s, two_rss, two_busy = load(2, args, base)
    finally:
        emulator.terminate()
        emulator.wait()
    records = args.tenants * args.employees
    print(f"{args.tenants} tenants x {args.employees:,} employees = {records:,} records")
    cores = os.cpu_count() or 1
    print(f"{'replicas':<10}{'seconds':>9}{'records/s':>12}{'cores busy':>12}{'CPU s':>8}"
          "  peak RSS per replica (MiB)")  # fmt: skip
    for n, secs, busy, rss in ((1, one_s, one_busy, one_rss), (2, two_s, two_busy, two_rss)):
        print(f"{n:<10}{secs:>9.2f}{records / secs:>12,.0f}{busy:>11.0%} "
              f"{busy * secs * cores:>8.1f}  {', '.join(f'{r:.0f}' for r in rss)}")  # fmt: skip
    print(
        f"two replicas / one: {one_s / two_s:.2f}x (target >= 1.6x); with one replica the"
        f" {cores} cores were {one_busy:.0%} busy, so at its CPU per record no number of"
        f" replicas on this machine could exceed about {1 / one_busy:.2f}x"
    )

    claimed, next_page = takeover(args)
    print(f"takeover with a {args.lease:.0f} s lease: claimed after {claimed:.2f} s, next page"
          f" committed after {next_page:.2f} s = {claimed / args.lease:.2f}x the lease"
          " (target < 2x)")  # fmt: skip


if __name__ == "__main__":
    main()
