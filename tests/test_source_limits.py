"""A source cannot make the gateway buffer without bound: bodies are read with a cap.

End to end over real HTTP: the AFAS emulator streams an oversized or endless page (its
"huge" fault), and the run must fail at once with a clear, non-retried error naming
`max_response_bytes`, having read little more than the cap.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.afas.emulator import EMULATOR_TOKEN, make_app
from connectors.base import (
    DEFAULT_MAX_RESPONSE_BYTES,
    ConnectorError,
    SyncMode,
    max_response_bytes,
)
from connectors.emulator_kit import CONTROL, Fault
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.sync.instructions import grant
from gateway.tenancy import create_connector, create_tenant
from mappings import bundled_mapping
from tests.principals import system

MIB = 1024 * 1024
#: Loopback socket buffers (sender and receiver) can hold this much past the reader.
KERNEL_SLACK = 16 * MIB


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    s = Services.open(Settings(data_dir=tmp_path, admin_token="g" * 32, allow_private_sources=True))
    create_tenant(s.store, s.box, "acme", "Acme", datetime.now(UTC), by=system(s, "acme"))
    yield s
    s.close()


async def _sync(services: Services, emulator_url: str, **settings: Any) -> Any:
    now = datetime.now(UTC)
    create_connector(
        services.store,
        services.box,
        tenant="acme",
        by=system(services, "acme"),
        connector_id="hr",
        type_name="afas",
        base_url=emulator_url,
        credentials={"token": EMULATOR_TOKEN},
        now=now,
        mapping_text=bundled_mapping("afas").read_text(),
        settings=settings,
    )
    grant(services.store, by=system(services, "acme"), connector="hr", purpose="p", now=now)
    started = time.monotonic()
    run = await services.engine.sync("acme", "hr", SyncMode.FULL)
    return run, time.monotonic() - started


@pytest.mark.parametrize("declare_length", [False, True])
async def test_an_endless_or_huge_page_fails_fast_without_retries(
    services: Services, aiohttp_server: Any, declare_length: bool
) -> None:
    emulator = make_app(people=10)
    server = await aiohttp_server(emulator, host="127.0.0.1")
    control = emulator[CONTROL]
    size = 500 * MIB if declare_length else None  # 500 MB announced, or no end at all
    control.inject(*[Fault("huge", size=size, declare_length=declare_length)] * 5)
    cap = 1 * MIB
    run, seconds = await _sync(
        services, str(server.make_url("/profitrestservices")), max_response_bytes=cap
    )
    assert run.status == "failed"
    assert "max_response_bytes" in (run.error or "") and str(cap) in (run.error or "")
    assert seconds < 10, seconds
    assert len(control.log) == 1, "an oversized page must not be fetched again"
    assert control.streamed_bytes < cap + KERNEL_SLACK, control.streamed_bytes


async def test_the_default_cap_applies(services: Services, aiohttp_server: Any) -> None:
    emulator = make_app(people=10)
    server = await aiohttp_server(emulator, host="127.0.0.1")
    emulator[CONTROL].inject(Fault("huge", size=DEFAULT_MAX_RESPONSE_BYTES + 1))
    run, _ = await _sync(services, str(server.make_url("/profitrestservices")))
    assert run.status == "failed"
    assert str(DEFAULT_MAX_RESPONSE_BYTES) in (run.error or "")


async def test_a_page_under_the_cap_is_read(services: Services, aiohttp_server: Any) -> None:
    emulator = make_app(people=30)
    server = await aiohttp_server(emulator, host="127.0.0.1")
    run, _ = await _sync(
        services, str(server.make_url("/profitrestservices")), max_response_bytes=256 * 1024
    )
    assert run.status == "succeeded", run.error


@pytest.mark.parametrize("value", [0, 1023, -5, "32MiB", True, 2 * 1024 * MIB, 1.5])
def test_a_nonsensical_cap_is_a_config_error(value: Any) -> None:
    with pytest.raises(ConnectorError, match="max_response_bytes") as caught:
        max_response_bytes({"max_response_bytes": value})
    assert caught.value.kind == "config"
    assert not caught.value.retryable


def test_too_large_is_not_retried() -> None:
    assert not ConnectorError("too_large", "x").retryable
