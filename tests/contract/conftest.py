"""Fixtures of the connector contract suite: one run of every test per connector harness.

Every `tests/contract/harness_<type>.py` that defines `HARNESS` joins the suite. A harness
that fails to import fails its own tests only, so one vendor in progress cannot hide the
results of the others.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from connectors.base import Connector, RetryPolicy
from connectors.emulator_kit import EmulatorControl
from connectors.registry import connector_type
from gateway.minimise.mapping import load_mapping
from gateway.minimise.projector import Projector
from tests.contract.harness import ConnectorHarness

HERE = Path(__file__).resolve().parent
#: Tenant key for subject ids in the suite (any 32 bytes).
KEY = b"sluis contract suite: tenant key"
#: More than ten pages at a page size of 100.
PEOPLE = 1050
#: Retries without the waiting, so the suite stays fast; Retry-After is still honoured.
FAST = RetryPolicy(attempts=4, max_seconds=30.0, initial_wait=0.001, max_wait=0.01)


@dataclass
class BrokenHarness:
    """Stands in for a harness module that did not import."""

    module: str
    error: str


def _discover() -> list[Any]:
    params = []
    for path in sorted(HERE.glob("harness_*.py")):
        label = path.stem.removeprefix("harness_")
        try:
            found = importlib.import_module(f"tests.contract.{path.stem}").HARNESS
        except Exception as exc:  # a broken harness must not break the others' collection
            broken = BrokenHarness(path.name, f"{type(exc).__name__}: {exc}")
            params.append(pytest.param(broken, id=label))
            continue
        params.append(pytest.param(found, id=found.type))
    return params


@dataclass
class Emulator:
    """A running emulator: the app (to steer it), where it listens, and its control."""

    app: web.Application
    base_url: str
    control: EmulatorControl


@pytest.fixture(params=_discover())
def harness(request: pytest.FixtureRequest) -> ConnectorHarness:
    found = request.param
    if isinstance(found, BrokenHarness):
        pytest.fail(f"{found.module} did not import: {found.error}")
    reason = getattr(found, "not_applicable", {}).get(request.node.originalname)
    if reason:
        pytest.skip(f"not for {found.type}: {reason}")
    assert isinstance(found.type, str)
    return found  # type: ignore[no-any-return]


StartEmulator = Callable[..., Awaitable[Emulator]]


@pytest.fixture
def start_emulator(harness: ConnectorHarness, aiohttp_server: Any) -> StartEmulator:
    """Start another emulator of the harness's kind (own size, seed or page cap)."""

    async def start(
        people: int = PEOPLE, *, seed: int = 1, page_size: int | None = None
    ) -> Emulator:
        app = harness.make_app(people, seed=seed, page_size=page_size)
        server = await aiohttp_server(app, host="127.0.0.1")
        root = str(server.make_url("/")).rstrip("/")
        where = getattr(harness, "base_url", None)
        url = where(app, root) if where is not None else root
        return Emulator(app, url, harness.control(app))

    return start


@pytest.fixture
async def emulator(start_emulator: StartEmulator) -> Emulator:
    """The default emulator: `PEOPLE` people, the vendor's own page limits."""
    return await start_emulator()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


MakeConnector = Callable[..., Connector]


@pytest.fixture
def make_connector(
    harness: ConnectorHarness, emulator: Emulator, session: aiohttp.ClientSession
) -> MakeConnector:
    """Build the harness's connector the way the gateway does: through the registry."""

    def make(
        *,
        valid_credentials: bool = True,
        retry: RetryPolicy = FAST,
        target: Emulator | None = None,
    ) -> Connector:
        where = target or emulator
        config = harness.config(where.base_url, valid_credentials=valid_credentials)
        projector = Projector(load_mapping(harness.mapping_path), KEY)
        kind = connector_type(harness.type)
        return kind.connector(config, projector, session, retry=retry)

    return make


@pytest.fixture
def connector(make_connector: MakeConnector) -> Connector:
    return make_connector()


@pytest.fixture
def sensitive(harness: ConnectorHarness, emulator: Emulator) -> set[str]:
    """Every sensitive value the default emulator holds (never to be seen past the door)."""
    values = harness.sensitive_values(emulator.app)
    assert values, "the harness reports no sensitive values: the leak checks would be empty"
    return values
