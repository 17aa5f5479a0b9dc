"""Loket.nl's part of the contract suite: its emulator, steered the way the suite needs.

People start all employed (`leaver_share=0`), so a suite can count leavers it made itself;
`retire` ends their employment a week ago, as a Loket admin's termination does. The suite
builds a new connector for every run from fixed credentials, as a gateway that kept
nothing would, so the emulator here keeps its refresh token (`rotate=False`); rotation is
tested through a real gateway in `tests/test_loket.py`. Pages of 100 (the connector's
`page_size` setting) give the suite's 1,050 people eleven employee pages.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from aiohttp import web

from connectors.base import ConnectorConfig
from connectors.emulator_kit import CONTROL, EmulatorControl
from connectors.loket.emulator import (
    ACCOUNT,
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_REFRESH_TOKEN,
    make_app,
)
from mappings import bundled_mapping

#: Raw employee fields that must never leave, as the projector names them when it drops
#: them (nested objects are dropped whole).
SENSITIVE_FIELDS: tuple[str, ...] = (
    "personalDetails.dateOfBirth",
    "personalDetails.placeOfBirth",
    "personalDetails.nationality",
    "personalDetails.civilStatus",
    "contactInformation.emailAddress",
    "contactInformation.phoneNumber",
    "contactInformation.mobilePhoneNumber",
    "identityDocument",
    "address",
)


def sensitive_values(app: web.Application) -> set[str]:
    """Every private value the emulator holds: what the employee resource carries beyond
    the mapped fields, and the BSN, IBAN and salary Loket keeps on their own endpoints."""
    found: set[str] = set()
    for person in app[ACCOUNT].people:
        v = person.values
        found.update(
            str(x)
            for x in (
                v["dateOfBirth"],
                v["placeOfBirth"],
                v["emailAddress"],
                v["phoneNumber"],
                v["mobilePhoneNumber"],
                v["passport"],
                v["postalCode"],
                person.bsn,
            )
        )
        for job in person.employments:
            found.update((job.iban, f"{job.salary}"))
    return found


class LoketHarness:
    type = "loket"
    mapping_path: Path = bundled_mapping("loket")
    sensitive_fields = SENSITIVE_FIELDS
    not_applicable: ClassVar[dict[str, str]] = {
        "test_incremental_sync_never_misses_a_change": "Loket offers no modification time "
        "to filter on: every run reads everyone (full_only)",
        "test_incremental_sync_without_changes_is_small": "Loket offers no modification "
        "time to filter on: every run reads everyone (full_only)",
    }

    def make_app(
        self, people: int, *, seed: int = 1, page_size: int | None = None
    ) -> web.Application:
        # Loket's page cap is above what the suite asks for, so `page_size` is unused.
        return make_app(people=people, seed=seed, leaver_share=0.0, rotate=False)

    def control(self, app: web.Application) -> EmulatorControl:
        return app[CONTROL]

    def base_url(self, app: web.Application, root: str) -> str:
        return root + "/v2"

    def config(self, base_url: str, *, valid_credentials: bool = True) -> ConnectorConfig:
        refresh = EMULATOR_REFRESH_TOKEN if valid_credentials else "not-the-refresh-token"
        return ConnectorConfig(
            type="loket",
            base_url=base_url,
            credentials={
                "client_id": EMULATOR_CLIENT_ID,
                "client_secret": EMULATOR_CLIENT_SECRET,
                "refresh_token": refresh,
            },
            settings={"page_size": 100},
        )

    def touch(self, app: web.Application, count: int) -> None:
        app[ACCOUNT].touch(count)

    def retire(self, app: web.Application, count: int) -> None:
        app[ACCOUNT].retire(count)

    def break_email(self, app: web.Application, count: int) -> None:
        app[ACCOUNT].break_email(count)

    def sensitive_values(self, app: web.Application) -> set[str]:
        return sensitive_values(app)


HARNESS = LoketHarness()
