"""Entra ID's part of the contract suite: its emulator, steered the way the suite needs.

Users start all enabled (`leaver_share=0`), so a suite can count leavers it made itself;
`retire` blocks sign-ins (`accountEnabled` false), as offboarding does first. Graph is
served under `/v1.0` and the token endpoint at the root, so the connector takes the
emulator's origin as its authority (a base URL outside Microsoft's clouds). The emulator
keeps Graph's resource-unit budget on: the connector's pacing must stay under it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from connectors.base import ConnectorConfig
from connectors.emulator_kit import CONTROL, EmulatorControl
from connectors.entra.emulator import (
    DIRECTORY,
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_TENANT_ID,
    make_app,
)
from connectors.entra.synthetic import SENSITIVE_PROPERTIES
from mappings import bundled_mapping


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


class EntraHarness:
    type = "entra"
    mapping_path: Path = bundled_mapping("entra")
    sensitive_fields = SENSITIVE_PROPERTIES

    def make_app(
        self, people: int, *, seed: int = 1, page_size: int | None = None
    ) -> web.Application:
        return make_app(people=people, seed=seed, leaver_share=0.0, page_size=page_size or 100)

    def base_url(self, app: web.Application, root: str) -> str:
        return root.rstrip("/") + "/v1.0"

    def control(self, app: web.Application) -> EmulatorControl:
        return app[CONTROL]

    def config(self, base_url: str, *, valid_credentials: bool = True) -> ConnectorConfig:
        secret = EMULATOR_CLIENT_SECRET if valid_credentials else "Xq8~not-the-right-secret"
        return ConnectorConfig(
            type="entra",
            base_url=base_url,
            credentials={
                "tenant_id": EMULATOR_TENANT_ID,
                "client_id": EMULATOR_CLIENT_ID,
                "client_secret": secret,
            },
        )

    def touch(self, app: web.Application, count: int) -> None:
        app[DIRECTORY].touch(count)

    def retire(self, app: web.Application, count: int) -> None:
        app[DIRECTORY].retire(count)

    def break_email(self, app: web.Application, count: int) -> None:
        app[DIRECTORY].break_email(count)

    def sensitive_values(self, app: web.Application) -> set[str]:
        found: set[str] = set()
        for stored in app[DIRECTORY].users.values():
            for name in SENSITIVE_PROPERTIES:
                found.update(
                    str(v) for v in _leaves(stored.values.get(name)) if isinstance(v, str) and v
                )
        return found


HARNESS = EntraHarness()
