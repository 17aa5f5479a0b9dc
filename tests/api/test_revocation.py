"""A revocation stops a sync that is waiting on its source, not only the next page.

End to end over real HTTP: the AFAS emulator answers 429 with `Retry-After: 30`, or 503s
that the connector backs off from for many seconds, or answers slowly. A sync started
through the admin API is waiting on it when the instruction is revoked through the admin
API. After the DELETE returns, the emulator (which records every request) must receive
nothing more, and the run must end "stopped" at once, not after the wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.base import RetryPolicy
from connectors.emulator_kit import CONTROL, Fault
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from tests.api.conftest import ADMIN_TOKEN, MASTER_KEY, Api, grant
from tests.api.test_syncs import afas_connector, wait_for_run

C = "/admin/v1/tenants/acme/connectors/hr"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """Retries that wait long (20 s and more), so a revocation lands during the wait."""
    s = Services.open(
        Settings(
            data_dir=tmp_path, admin_token=ADMIN_TOKEN, master_key=MASTER_KEY,
            scheduler=False, allow_private_sources=True,
        ),
        retry=RetryPolicy(attempts=5, max_seconds=300, initial_wait=20, max_wait=30),
    )  # fmt: skip
    # Polls far apart: a prompt stop in the API tests comes from the in-process signal.
    s.engine.revocation_poll = 60.0
    yield s
    s.close()


async def _until(predicate: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


FAULTS = {
    "rate_limited": Fault("rate_limit", seconds=30),
    "server_error": Fault("error", status=503),
    "slow_answer": Fault("slow", seconds=30),
}


@pytest.mark.parametrize("fault", FAULTS)
async def test_revocation_through_the_api_stops_a_waiting_sync(
    api: Api, aiohttp_server: Any, fault: str
) -> None:
    emulator = await afas_connector(api, aiohttp_server, people=30)
    control = emulator[CONTROL]
    control.inject(*[FAULTS[fault]] * 6)
    instruction = await grant(api)
    started = await api.post(f"{C}/syncs", {"mode": "full"})
    assert started.status == 202, started.body
    # The first request has reached the emulator and the connector is now waiting.
    await _until(lambda: len(control.faults) == 5)
    await asyncio.sleep(0.3)

    revoked = await api.delete(f"{C}/instructions/{instruction['id']}")
    assert revoked.status == 200, revoked.body
    returned = time.monotonic()
    faults_left, seen = len(control.faults), len(control.log)

    run = await wait_for_run(api, started.headers["Location"], seconds=5)
    assert time.monotonic() - returned < 3, "the run must stop well within the wait"
    assert run["status"] == "stopped", run
    assert "revoked" in run["error"]
    await asyncio.sleep(1.0)
    assert len(control.faults) == faults_left, "the source was asked again after the revoke"
    assert len(control.log) <= seen + (1 if fault == "slow_answer" else 0)
    assert all(r.at <= returned for r in control.log if fault != "slow_answer")


async def test_revocation_by_another_process_is_seen_during_a_wait(
    api: Api, aiohttp_server: Any, services: Services
) -> None:
    """Revoked in the store only (as another gateway process would): the run's poll of the
    store stops the wait within about a second, without the in-process signal."""
    services.engine.revocation_poll = 0.2
    emulator = await afas_connector(api, aiohttp_server, people=30)
    control = emulator[CONTROL]
    control.inject(*[Fault("rate_limit", seconds=30)] * 6)
    instruction = await grant(api)
    started = await api.post(f"{C}/syncs", {"mode": "full"})
    await _until(lambda: len(control.faults) == 5)
    await asyncio.to_thread(
        services.store.revoke_instruction, instruction["id"], "elsewhere", datetime.now(UTC)
    )
    revoked_at = time.monotonic()
    run = await wait_for_run(api, started.headers["Location"], seconds=5)
    assert time.monotonic() - revoked_at < 3
    assert run["status"] == "stopped" and "revoked" in run["error"]
    assert len(control.faults) == 5


async def test_the_connector_rechecks_before_every_attempt(aiohttp_server: Any) -> None:
    """The hook runs before the first attempt and before each retry; when it raises, the
    retry is not sent and the error is not retried."""
    import aiohttp

    from connectors.afas.client import AfasConnector
    from connectors.afas.emulator import EMULATOR_TOKEN, make_app
    from connectors.base import ConnectorConfig, PageRequest, SyncMode
    from gateway.minimise.mapping import parse_mapping
    from gateway.minimise.projector import Projector
    from gateway.sync.instructions import InstructionRefused
    from mappings import bundled_mapping

    emulator = make_app(people=5)
    server = await aiohttp_server(emulator, host="127.0.0.1")
    emulator[CONTROL].inject(*[Fault("error", status=503)] * 3)
    calls = 0

    async def before_attempt() -> None:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise InstructionRefused("revoked", "instruction ins_x was revoked", "ins_x")

    mapping = parse_mapping(bundled_mapping("afas").read_text(), "afas")
    config = ConnectorConfig(
        "afas", str(server.make_url("/profitrestservices")), {"token": EMULATOR_TOKEN}
    )
    async with aiohttp.ClientSession() as session:
        connector = AfasConnector(
            config, Projector(mapping, b"k" * 32), session,
            retry=RetryPolicy(initial_wait=0.01, max_wait=0.01), before_attempt=before_attempt,
        )  # fmt: skip
        with pytest.raises(InstructionRefused):
            await connector.fetch_page(PageRequest(SyncMode.FULL))
    assert calls == 2
    assert len(emulator[CONTROL].log) == 1
