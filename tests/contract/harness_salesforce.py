"""Salesforce's part of the contract suite: its emulator, steered the way the suite needs.

Batches are capped at 100 records (Salesforce's own floor for `batchSize` is 200), so the
suite's 1,050 people take more than ten pages. `retire` deletes Contacts (to the recycle
bin), a CRM's leaver; `touch`, `retire` and `break_email` pick disjoint Contacts (the
first, the last and the middle live ones), and each moves `SystemModstamp` to now.
Salesforce answers a used-up API allocation with 403 `REQUEST_LIMIT_EXCEEDED` and no
`Retry-After`, so the suite's rate-limit tests count 403s, and the connector is told to
wait one second (`limit_wait_seconds`) where in production it waits a minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from connectors.base import ConnectorConfig
from connectors.emulator_kit import CONTROL, EmulatorControl
from connectors.salesforce.emulator import (
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    STATE,
    make_app,
)
from connectors.salesforce.synthetic import SENSITIVE_FIELDS
from tests.contract.harness import ConnectorHarness

MAPPING = Path(__file__).resolve().parents[2] / "mappings" / "salesforce.toml"


@dataclass
class SalesforceHarness:
    type: str = "salesforce"
    mapping_path: Path = MAPPING
    sensitive_fields: tuple[str, ...] = SENSITIVE_FIELDS
    #: The status a rate-limited request gets (Salesforce: 403 REQUEST_LIMIT_EXCEEDED).
    rate_limited_status: int = 403

    def make_app(
        self, people: int, *, seed: int = 1, page_size: int | None = None
    ) -> web.Application:
        return make_app(people=people, seed=seed, batch_cap=page_size or 100)

    def control(self, app: web.Application) -> EmulatorControl:
        return app[CONTROL]

    def config(self, base_url: str, *, valid_credentials: bool = True) -> ConnectorConfig:
        secret = EMULATOR_CLIENT_SECRET if valid_credentials else "not-the-secret"
        return ConnectorConfig(
            type=self.type,
            base_url=base_url,
            credentials={"client_id": EMULATOR_CLIENT_ID, "client_secret": secret},
            settings={"limit_wait_seconds": 1.0},
        )

    def touch(self, app: web.Application, count: int) -> None:
        app[STATE].touch(count)

    def retire(self, app: web.Application, count: int) -> None:
        app[STATE].delete(count)

    def break_email(self, app: web.Application, count: int) -> None:
        app[STATE].clear_email(count)

    def sensitive_values(self, app: web.Application) -> set[str]:
        return {
            value
            for contact in app[STATE].contacts
            for name in SENSITIVE_FIELDS
            if isinstance(value := contact.get(name), str) and value
        }


HARNESS: ConnectorHarness = SalesforceHarness()
