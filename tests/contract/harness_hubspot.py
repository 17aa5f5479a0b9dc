"""HubSpot's part of the contract suite: its emulator, steered the way the suite needs.

People start all active (`archived_share=0`), so a suite can count leavers it made itself;
`retire` archives contacts, HubSpot's only leaver signal. `touch`, `retire` and
`break_email` pick disjoint contacts (the first, the last and the middle active ones), and
each moves `lastmodifieddate` to now, as an edit in HubSpot does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from connectors.base import ConnectorConfig
from connectors.emulator_kit import CONTROL, EmulatorControl
from connectors.hubspot.emulator import EMULATOR_TOKEN, STATE, make_app
from connectors.hubspot.synthetic import SENSITIVE_PROPERTIES
from tests.contract.harness import ConnectorHarness

MAPPING = Path(__file__).resolve().parents[2] / "mappings" / "hubspot.toml"


@dataclass
class HubSpotHarness:
    type: str = "hubspot"
    mapping_path: Path = MAPPING
    #: As the projector names them when it drops them: nested under `properties`.
    sensitive_fields: tuple[str, ...] = tuple(f"properties.{p}" for p in SENSITIVE_PROPERTIES)

    def make_app(
        self, people: int, *, seed: int = 1, page_size: int | None = None
    ) -> web.Application:
        return make_app(people=people, seed=seed, archived_share=0.0, page_cap=page_size)

    def control(self, app: web.Application) -> EmulatorControl:
        return app[CONTROL]

    def config(self, base_url: str, *, valid_credentials: bool = True) -> ConnectorConfig:
        token = EMULATOR_TOKEN if valid_credentials else "pat-eu1-not-the-right-token"
        return ConnectorConfig(type=self.type, base_url=base_url, credentials={"token": token})

    def touch(self, app: web.Application, count: int) -> None:
        app[STATE].touch(count)

    def retire(self, app: web.Application, count: int) -> None:
        app[STATE].archive(count)

    def break_email(self, app: web.Application, count: int) -> None:
        app[STATE].clear_email(count)

    def sensitive_values(self, app: web.Application) -> set[str]:
        return {
            value
            for contact in app[STATE].contacts
            for name in SENSITIVE_PROPERTIES
            if isinstance(value := contact["properties"].get(name), str) and value
        }


HARNESS: ConnectorHarness = HubSpotHarness()
