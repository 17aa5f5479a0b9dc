"""What the source benches share: an HTTP emulator in a process of its own, a gateway with
one connector of the type authorised, and the connector's own download as the baseline.

The emulator runs in its own process, as a vendor's API would, so its work is not counted
against the gateway's; the download-only baseline is every page through the connector's
`fetch_raw` (request, parse, nothing kept), measured in the same run as the sync.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from connectors.base import ConnectorConfig, PageRequest, SyncMode
from connectors.registry import connector_type
from gateway.ledger.audit import SYSTEM
from gateway.ledger.record import Acting
from gateway.minimise.mapping import parse_mapping
from gateway.minimise.projector import Projector
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.store.records import RunRecord
from gateway.sync.instructions import grant
from gateway.tenancy import create_connector, create_tenant
from mappings import bundled_mapping

REPO = Path(__file__).resolve().parents[1]
TENANT = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def emulator(module: str, options: str) -> Iterator[str]:
    """`<module>.make_app(<options>)` served on a free port in its own process; its root
    URL while the block runs."""
    port = free_port()
    code = (
        f"from aiohttp import web; from {module} import make_app; "
        f"web.run_app(make_app({options}), host='127.0.0.1', port={port}, print=None, "
        "access_log=None)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the emulator did not start") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def projector(type_name: str) -> Projector:
    """The bundled mapping of `type_name`, compiled with a fixed key."""
    text = bundled_mapping(type_name).read_text()
    return Projector(parse_mapping(text, type_name), b"k" * 32)


async def download_only(
    type_name: str, base: str, credentials: Mapping[str, str], settings: Mapping[str, Any]
) -> tuple[int, float]:
    """The baseline: every page through the connector's own `fetch_raw`, parsed, dropped;
    (records, seconds)."""
    config = ConnectorConfig(type_name, base, dict(credentials), dict(settings))
    rows, cursor = 0, None
    async with aiohttp.ClientSession() as session:
        connector = connector_type(type_name).connector(config, projector(type_name), session)
        start = time.perf_counter()
        while True:
            page = await connector.fetch_raw(PageRequest(SyncMode.FULL, cursor, None))
            rows += len(page.records)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    return rows, time.perf_counter() - start


def gateway_with(
    data_dir: Path,
    type_name: str,
    connector_id: str,
    base: str,
    credentials: Mapping[str, str],
    settings: Mapping[str, Any],
) -> Services:
    """A gateway on SQLite in `data_dir` with tenant `bench` and one authorised connector
    of `type_name` (its bundled mapping); close it when done."""
    services = Services.open(
        Settings(data_dir=data_dir, admin_token="b" * 32, allow_private_sources=True)
    )
    now = datetime.now(UTC)
    by = Acting(SYSTEM, services.ledger(TENANT))
    create_tenant(services.store, services.box, TENANT, "Bench BV", now, by=by)
    create_connector(
        services.store, services.box, tenant=TENANT, by=by, connector_id=connector_id,
        type_name=type_name, base_url=base, credentials=dict(credentials),
        mapping_text=bundled_mapping(type_name).read_text(), settings=dict(settings), now=now,
    )  # fmt: skip
    grant(services.store, by=by, connector=connector_id, purpose="benchmark", now=now)
    return services


async def full_then_again(
    services: Services, connector_id: str
) -> tuple[RunRecord, float, RunRecord, float]:
    """A full sync of the connector, then a sync with nothing changed; each run and its
    seconds."""
    t0 = time.perf_counter()
    full = await services.engine.sync(TENANT, connector_id, SyncMode.FULL)
    full_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = await services.engine.sync(TENANT, connector_id)
    return full, full_s, again, time.perf_counter() - t0
