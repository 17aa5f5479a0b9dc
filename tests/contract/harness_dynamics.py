"""Dynamics 365 / Dataverse's part of the contract suite: its emulator, steered as the
suite needs.

Pages are capped at 100 rows (Dataverse's own cap is 5,000), so the suite's 1,050 people
take more than ten pages. Contacts start all active; `retire` deactivates them
(`statecode` 1), a CRM's leaver. The emulator serves Entra ID's token endpoint too, so the
connector's `authority` is the emulator itself; its service protection limit stays on
(Dataverse's 6,000 requests in 5 minutes), which the suite never comes near.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from connectors.base import ConnectorConfig
from connectors.dynamics.emulator import (
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_TENANT,
    ENVIRONMENT,
    make_app,
)
from connectors.dynamics.synthetic import SENSITIVE_FIELDS
from connectors.emulator_kit import CONTROL, EmulatorControl
from mappings import bundled_mapping


class DynamicsHarness:
    type = "dynamics"
    mapping_path: Path = bundled_mapping("dynamics")
    sensitive_fields = SENSITIVE_FIELDS

    def make_app(
        self, people: int, *, seed: int = 1, page_size: int | None = None
    ) -> web.Application:
        return make_app(people=people, seed=seed, inactive_share=0.0, page_cap=page_size or 100)

    def control(self, app: web.Application) -> EmulatorControl:
        return app[CONTROL]

    def config(self, base_url: str, *, valid_credentials: bool = True) -> ConnectorConfig:
        secret = EMULATOR_CLIENT_SECRET if valid_credentials else "dyn~not-the-secret"
        return ConnectorConfig(
            type=self.type,
            base_url=base_url,
            credentials={
                "tenant_id": EMULATOR_TENANT,
                "client_id": EMULATOR_CLIENT_ID,
                "client_secret": secret,
            },
            settings={"authority": base_url},
        )

    def touch(self, app: web.Application, count: int) -> None:
        app[ENVIRONMENT].touch(count)

    def retire(self, app: web.Application, count: int) -> None:
        app[ENVIRONMENT].retire(count)

    def break_email(self, app: web.Application, count: int) -> None:
        app[ENVIRONMENT].break_email(count)

    def sensitive_values(self, app: web.Application) -> set[str]:
        # Text values only: option-set codes (1, 2) are digits any subject id holds.
        return {
            value
            for row in app[ENVIRONMENT].rows.values()
            for name in SENSITIVE_FIELDS
            if isinstance(value := row.get(name), str) and value
        }


HARNESS = DynamicsHarness()
