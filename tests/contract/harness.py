"""What a connector brings to the contract suite: its emulator, steered from tests.

Every pull connector passes the same suite (`tests/contract/suite.py`), in the style of
singer_sdk's standard tap tests. A vendor adds `tests/contract/harness_<type>.py` defining
`HARNESS`, an object following `ConnectorHarness`; `conftest.py` finds it and the suite
runs against that vendor's real emulator on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from aiohttp import web

from connectors.base import ConnectorConfig
from connectors.emulator_kit import EmulatorControl


class ConnectorHarness(Protocol):
    #: Registry name of the connector type ("afas", "hubspot").
    type: str
    #: The mapping the suite projects with (usually the bundled one).
    mapping_path: Path
    #: Field names, in the emulator's raw records, that must never leave (BSN, phone, ...).
    sensitive_fields: tuple[str, ...]

    def make_app(
        self, people: int, *, seed: int = 1, page_size: int | None = None
    ) -> web.Application:
        """A fresh emulator app holding `people` synthetic records."""
        ...

    def control(self, app: web.Application) -> EmulatorControl:
        """The app's fault/rate-limit/log control (`app[CONTROL]`)."""
        ...

    def config(self, base_url: str, *, valid_credentials: bool = True) -> ConnectorConfig:
        """Connector config pointing at the emulator; invalid credentials on request."""
        ...

    def touch(self, app: web.Application, count: int) -> None:
        """Change `count` people now (new job title, fresh modification time)."""
        ...

    def retire(self, app: web.Application, count: int) -> None:
        """Make `count` active people leavers the way this source marks them
        (AFAS: an end date in the past; HubSpot: archived)."""
        ...

    def break_email(self, app: web.Application, count: int) -> None:
        """Remove the work email of `count` people (the records must be quarantined)."""
        ...

    def sensitive_values(self, app: web.Application) -> set[str]:
        """Every value of `sensitive_fields` the emulator holds, for leak scans."""
        ...
