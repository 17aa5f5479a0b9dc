"""Three `sluis serve` replicas on one PostgreSQL, and `kill -9` of whichever holds a run.

Three tenants each connect a (slowed) AFAS emulator; the replicas' schedulers start the
runs with no leader among them. While the runs go on, the replica holding one is killed
with SIGKILL at a random moment, three times over, and started again. Every run must
finish, taken over by another replica once the dead one's lease ran out; every tenant's feed
must hold every person once, numbered 1..n with no gap, served alike by every replica; and
`sluis audit verify` must pass for every tenant's ledger.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from connectors.afas.emulator import EMULATOR_TOKEN, ENVIRONMENT, make_app
from connectors.emulator_kit import CONTROL, Fault
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.tenancy import create_tenant
from tests.pg import database_url, fresh_schema
from tests.principals import People, system
from tests.serve_helpers import ADMIN, REPO
from tests.support import free_port

TENANTS = ("acme", "globex", "initech")
PEOPLE = 400
LEASE = "2"

pytestmark = pytest.mark.slow


class Replica:
    def __init__(self, n: int, env: dict[str, str], log_dir: Path) -> None:
        self.n = n
        self.port = free_port()
        self.env = {**env, "SLUIS_PORT": str(self.port)}
        self.log = log_dir / f"replica-{n}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli.main", "serve"],
                cwd=REPO, env=self.env, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _up(http: aiohttp.ClientSession, replica: Replica) -> None:
    for _ in range(300):
        assert replica.proc is not None
        if replica.proc.poll() is not None:
            raise AssertionError(replica.log.read_text(errors="replace")[-3000:])
        try:
            async with http.get(f"{replica.base}/healthz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"replica {replica.n} did not come up")


async def _call(
    http: aiohttp.ClientSession, method: str, url: str, token: str, body: Any = None
) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    async with http.request(method, url, json=body, headers=headers) as r:
        assert r.status < 300, (r.status, await r.text())
        return await r.json()


def _runs(url: str) -> list[tuple[str, str, str, str | None]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tenant, id, status, owner FROM sync_runs ORDER BY started_at"
        ).fetchall()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def _gone(url: str, pid: int, seconds: float = 10.0) -> None:
    """Wait until no PostgreSQL session of process `pid` is left (`application_name`)."""
    deadline = time.monotonic() + seconds
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            (left,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (f"sluis:{pid}",),
            ).fetchone() or (0,)
            if not left:
                return
            assert time.monotonic() < deadline, f"sessions of a killed process remain: {left}"
            time.sleep(0.02)


def _active(emulator: Any) -> int:
    today = date.today().isoformat()
    people = emulator[ENVIRONMENT].people
    return sum(1 for p in people if not (p["Datum_uit_dienst"] and p["Datum_uit_dienst"] < today))


async def test_runs_survive_kill_9_of_the_replica_holding_them(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    with fresh_schema() as schema:
        url = database_url(schema)
        data_dir = tmp_path / "data"
        settings = Settings(data_dir=data_dir, admin_token=ADMIN, database_url=url)
        services = Services.open(settings)
        try:
            people = People(services)
            tokens = {}
            for tenant in TENANTS:
                create_tenant(
                    services.store, services.box, tenant, tenant.title(), services.clock(),
                    by=system(services, tenant),
                )  # fmt: skip
                tokens[tenant] = people.token(tenant, "admin")
        finally:
            services.close()

        emulators: dict[str, tuple[Any, Any]] = {}
        for tenant in TENANTS:
            app = make_app(people=PEOPLE, seed=len(emulators) + 11)
            app[CONTROL].inject(*[Fault("slow", seconds=0.25) for _ in range(400)])
            emulators[tenant] = (app, await aiohttp_server(app, host="127.0.0.1"))

        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUIS_")}
        env.update(
            SLUIS_DATA_DIR=str(data_dir), SLUIS_ADMIN_TOKEN=ADMIN, SLUIS_DATABASE_URL=url,
            SLUIS_SCHEDULER="true", SLUIS_SCHEDULER_TICK="0.3", SLUIS_RUN_LEASE_SECONDS=LEASE,
            SLUIS_ALLOW_PRIVATE_SOURCES="true",
        )  # fmt: skip
        replicas = [Replica(n, env, tmp_path) for n in range(3)]
        #: Runs a killed replica held at its death, and that replica's name.
        killed: dict[str, str] = {}
        try:
            for r in replicas:
                r.start()
            async with aiohttp.ClientSession() as http:
                for r in replicas:
                    await _up(http, r)
                for tenant in TENANTS:
                    t = f"{replicas[0].base}/admin/v1/tenants/{tenant}"
                    server = emulators[tenant][1]
                    await _call(http, "POST", f"{t}/connectors", tokens[tenant], {
                        "id": "hr", "type": "afas", "mapping": "afas",
                        "base_url": str(server.make_url("/profitrestservices")),
                        "credentials": {"token": EMULATOR_TOKEN},
                        "settings": {"page_size": 25},
                    })  # fmt: skip
                    await _call(http, "POST", f"{t}/connectors/hr/instructions", tokens[tenant],
                                {"purpose": "accounts"})  # fmt: skip

                # Chaos: three times, kill -9 the replica holding a run, then restart it.
                rng = random.Random(os.getpid())
                for _ in range(3):
                    await asyncio.sleep(rng.uniform(0.3, 1.5))
                    # A run whose owner is alive (a killed one's runs wait for takeover).
                    alive = {r.proc.pid: r for r in replicas if r.proc is not None}
                    held = [
                        (run[3], alive[int(run[3].split(":")[1])])
                        for run in _runs(url)
                        if run[2] == "running" and run[3] and int(run[3].split(":")[1]) in alive
                    ]
                    if not held:
                        continue
                    owner, victim = rng.choice(held)
                    victim.kill()
                    # A COMMIT the victim sent just before it died is still the server's
                    # to finish: its sessions' end is when it can have changed nothing more.
                    _gone(url, int(owner.split(":")[1]))
                    # Held at its death: a run it finished between the look and the kill
                    # (or before: a replica may run one tenant's sync after another's) is
                    # its own to have finished.
                    for run in _runs(url):
                        if run[3] == owner and run[2] == "running":
                            killed[run[1]] = owner
                    victim.start()
                    await _up(http, victim)

                for _ in range(1200):
                    runs = _runs(url)
                    if runs and all(run[2] != "running" for run in runs):
                        break
                    await asyncio.sleep(0.1)
                assert killed, "no run was caught running; the emulators are not slow enough"
                assert all(run[2] == "succeeded" for run in runs), runs
                assert {run[0] for run in runs} == set(TENANTS), runs
                # Runs that were held by a killed replica were finished by another owner.
                finished_by = {run[1]: run[3] for run in runs}
                assert all(finished_by[run] != owner for run, owner in killed.items()), killed

                for tenant in TENANTS:
                    t = f"{replicas[0].base}/admin/v1/tenants/{tenant}"
                    consumer = await _call(http, "POST", f"{t}/consumers", tokens[tenant],
                                           {"name": "lms"})  # fmt: skip
                    pages = []
                    for r in replicas:  # every replica serves the same feed
                        feed = f"{r.base}/feed/v1/tenants/{tenant}/events?limit=1000"
                        pages.append(await _call(http, "GET", feed, consumer["token"]))
                    events = pages[0]["events"]
                    assert all(p["events"] == events for p in pages[1:])
                    ids = [e["subject_id"] for e in events]
                    assert len(ids) == len(set(ids)) == _active(emulators[tenant][0])
                    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        finally:
            for r in replicas:
                r.stop()

        for tenant in TENANTS:
            audit = subprocess.run(
                [sys.executable, "-m", "gateway.cli.main", "audit", "verify", "--tenant", tenant,
                 "--database-url", url, "--data-dir", str(data_dir)],
                check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert audit.returncode == 0, audit.stdout + audit.stderr


async def test_a_revocation_through_one_replica_stops_another(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    """Replica B is waiting on a rate-limited source (Retry-After 30 s) when the admin
    revokes through replica A: B's run stops within the poll, the source hears nothing
    more, and B's feed withholds the connector's events from the next page on."""
    with fresh_schema() as schema:
        url = database_url(schema)
        data_dir = tmp_path / "data"
        services = Services.open(Settings(data_dir=data_dir, admin_token=ADMIN, database_url=url))
        try:
            create_tenant(
                services.store, services.box, "acme", "Acme", services.clock(),
                by=system(services, "acme"),
            )  # fmt: skip
            token = People(services).token("acme", "admin")
        finally:
            services.close()
        app = make_app(people=60, seed=3)
        server = await aiohttp_server(app, host="127.0.0.1")
        control = app[CONTROL]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUIS_")}
        env.update(
            SLUIS_DATA_DIR=str(data_dir), SLUIS_ADMIN_TOKEN=ADMIN, SLUIS_DATABASE_URL=url,
            SLUIS_SCHEDULER="false", SLUIS_ALLOW_PRIVATE_SOURCES="true",
        )  # fmt: skip
        a, b = Replica(0, env, tmp_path), Replica(1, env, tmp_path)
        try:
            a.start()
            b.start()
            async with aiohttp.ClientSession() as http:
                await _up(http, a)
                await _up(http, b)
                ta = f"{a.base}/admin/v1/tenants/acme"
                tb = f"{b.base}/admin/v1/tenants/acme"
                await _call(http, "POST", f"{ta}/connectors", token, {
                    "id": "hr", "type": "afas", "mapping": "afas",
                    "base_url": str(server.make_url("/profitrestservices")),
                    "credentials": {"token": EMULATOR_TOKEN}, "settings": {"page_size": 20},
                })  # fmt: skip
                instruction = await _call(
                    http, "POST", f"{ta}/connectors/hr/instructions", token, {"purpose": "x"}
                )
                first = await _call(http, "POST", f"{tb}/connectors/hr/syncs", token, {})
                while (await _call(http, "GET", f"{tb}/connectors/hr/syncs/{first['id']}",
                                   token))["status"] == "running":  # fmt: skip
                    await asyncio.sleep(0.05)
                consumer = await _call(http, "POST", f"{ta}/consumers", token, {"name": "lms"})
                feed = f"{b.base}/feed/v1/tenants/acme/events?limit=1000"
                assert (await _call(http, "GET", feed, consumer["token"]))["events"]

                control.inject(*[Fault("rate_limit", seconds=30)] * 6)
                run = await _call(http, "POST", f"{tb}/connectors/hr/syncs", token,
                                  {"mode": "full"})  # fmt: skip
                while len(control.faults) > 5:
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.3)
                await _call(http, "DELETE", f"{ta}/connectors/hr/instructions/{instruction['id']}",
                            token)  # fmt: skip
                seen = len(control.log)
                revoked = asyncio.get_running_loop().time()
                while (done := await _call(http, "GET", f"{tb}/connectors/hr/syncs/{run['id']}",
                                           token))["status"] == "running":  # fmt: skip
                    await asyncio.sleep(0.05)
                assert asyncio.get_running_loop().time() - revoked < 3
                assert done["status"] == "stopped" and "revoked" in done["error"], done
                await asyncio.sleep(1.0)
                assert len(control.log) == seen, "the source was asked again after the revoke"
                page = await _call(http, "GET", feed, consumer["token"])
                assert page["events"] == [] and page["withheld"] > 0, page
        finally:
            a.stop()
            b.stop()
