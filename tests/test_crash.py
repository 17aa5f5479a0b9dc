"""kill -9 in the middle of a sync, then start again: no event lost, none repeated.

A real `sluis serve` process syncs from the AFAS emulator (slowed down so the kill lands
between pages); it is killed with SIGKILL after a page has been committed, started again
on the same data directory, and must resume the run from its last committed page.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connectors.afas.emulator import EMULATOR_TOKEN, ENVIRONMENT, make_app
from connectors.emulator_kit import CONTROL, Fault
from tests.serve_helpers import provision
from tests.support import free_port

REPO = Path(__file__).resolve().parents[1]
BOOTSTRAP = "crash-test-admin-token-0123456789"
ADMIN: dict[str, str] = {}
PEOPLE = 600


def _serve(data_dir: Path, port: int, workers: int = 0) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SLUIS_DATA_DIR": str(data_dir),
        "SLUIS_PORT": str(port),
        "SLUIS_ADMIN_TOKEN": BOOTSTRAP,
        "SLUIS_SCHEDULER": "false",
        "SLUIS_ALLOW_PRIVATE_SOURCES": "true",
        "SLUIS_SOURCE_PROCESSES": str(workers),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "serve"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


async def _up(http: aiohttp.ClientSession, base: str) -> None:
    for _ in range(200):
        try:
            async with http.get(f"{base}/healthz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("sluis serve did not come up")


async def _json(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> Any:
    async with http.request(method, url, json=body, headers=ADMIN) as r:
        assert r.status < 300, (r.status, await r.text())
        return await r.json()


def _source_workers(parent: int) -> list[int]:
    """Pids of the source worker processes `parent` started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"gateway.sync.source_worker" in command:
            found.append(int(entry.name))
    return found


def _gone(pid: int) -> bool:
    """Exited (a zombie no one has reaped yet counts: it runs no more)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "source-worker"])
async def test_kill_9_between_pages_then_restart(
    tmp_path: Path, aiohttp_server: Any, workers: int
) -> None:
    """With a source worker, the worker of the killed gateway goes too (its socket
    closes), and the restarted gateway carries the run on with a new one."""
    emulator = make_app(people=PEOPLE, seed=5)
    server = await aiohttp_server(emulator, host="127.0.0.1")
    emulator[CONTROL].inject(*[Fault("slow", seconds=0.4) for _ in range(20)])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t = f"{base}/admin/v1/tenants/acme"
    tokens = provision(tmp_path)
    ADMIN["Authorization"] = f"Bearer {tokens.admin}"
    proc = _serve(tmp_path, port, workers)
    try:
        async with aiohttp.ClientSession() as http:
            await _up(http, base)
            await _json(http, "POST", f"{t}/connectors", {
                "id": "hr", "type": "afas", "mapping": "afas",
                "base_url": str(server.make_url("/profitrestservices")),
                "credentials": {"token": EMULATOR_TOKEN},
            })  # fmt: skip
            await _json(http, "POST", f"{t}/connectors/hr/instructions",
                        {"purpose": "accounts"})  # fmt: skip
            run = await _json(http, "POST", f"{t}/connectors/hr/syncs", {"mode": "full"})
            url = f"{t}/connectors/hr/syncs/{run['id']}"
            while (await _json(http, "GET", url))["pages"] < 2:
                await asyncio.sleep(0.02)
            orphans = _source_workers(proc.pid)
            assert len(orphans) == workers
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            for _ in range(200):
                if all(_gone(pid) for pid in orphans):
                    break
                await asyncio.sleep(0.05)
            assert all(_gone(pid) for pid in orphans), "a source worker outlived its gateway"
            proc = _serve(tmp_path, port, workers)
            await _up(http, base)
            while (done := await _json(http, "GET", url))["status"] == "running":
                await asyncio.sleep(0.05)
            assert done["status"] == "succeeded", done
            assert done["counts"]["fetched"] == PEOPLE
            consumer = await _json(http, "POST", f"{t}/consumers", {"name": "lms"})
            feed = {"Authorization": f"Bearer {consumer['token']}"}
            async with http.get(f"{base}/feed/v1/tenants/acme/events?limit=1000",
                                headers=feed) as r:  # fmt: skip
                events = (await r.json())["events"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    people = emulator[ENVIRONMENT].people
    today = date.today().isoformat()
    active = [p for p in people if not (p["Datum_uit_dienst"] and p["Datum_uit_dienst"] < today)]
    ids = [e["subject_id"] for e in events]
    assert len(ids) == len(set(ids)) == len(active)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
