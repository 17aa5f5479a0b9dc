"""Nmbrs's part of the contract suite (the REST API, the connector's default).

People start all employed (`leaver_share=0`) so the suite counts only the leavers it makes;
`retire` ends their employment a week ago. Nmbrs has no updated-since filter: every run is
a full snapshot (the type is `full_only`), so the two incremental tests do not apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from aiohttp import web

from connectors.base import ConnectorConfig
from connectors.emulator_kit import CONTROL, EmulatorControl
from connectors.nmbrs.emulator import (
    ACCOUNT,
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    EMULATOR_DOMAIN,
    EMULATOR_REFRESH_TOKEN,
    EMULATOR_SUBSCRIPTION_KEY,
    EMULATOR_TOKEN,
    EMULATOR_USERNAME,
    make_app,
)
from mappings import bundled_mapping

FULL_ONLY: dict[str, str] = {
    "test_incremental_sync_never_misses_a_change": "Nmbrs has no updated-since filter: "
    "every run is a full snapshot (full_only)",
    "test_incremental_sync_without_changes_is_small": "every run is a full snapshot",
    "test_a_rate_limit_is_waited_out": "a run reads a company's lookups before its "
    "employees, more requests than fit one window of that limit, so more than one 429 is "
    "expected; test_nmbrs checks that each is waited out for Retry-After",
}
#: SOAP answers a company whole: the run's later pages come from that one answer.
SOAP_WHOLE = "SOAP answers a company whole: a fault queued before a later page meets no request"


class NmbrsHarness:
    type = "nmbrs"
    mapping_path: Path = bundled_mapping("nmbrs")
    #: Personal-info fields of the REST answer (nested as the projector names them).
    sensitive_fields = (
        "info.bsn", "info.birthInfo", "info.contactInfo.privateEmail", "info.partnerInfo",
    )  # fmt: skip
    not_applicable: ClassVar[dict[str, str]] = FULL_ONLY

    def __init__(self) -> None:
        #: Started emulators by base URL: the identity server rotates refresh tokens, and
        #: the gateway would have stored the newest one sealed (`keep_credentials`); the
        #: harness hands a new connector that newest token, as the store would.
        self._apps: dict[str, web.Application] = {}

    def base_url(self, app: web.Application, root: str) -> str:
        self._apps[root] = app
        return root

    def make_app(
        self, people: int, *, seed: int = 1, page_size: int | None = None
    ) -> web.Application:
        return make_app(people=people, seed=seed, leaver_share=0.0, max_page_size=page_size or 100)

    def control(self, app: web.Application) -> EmulatorControl:
        return app[CONTROL]

    def config(self, base_url: str, *, valid_credentials: bool = True) -> ConnectorConfig:
        secret = EMULATOR_CLIENT_SECRET if valid_credentials else "not-the-secret"
        return ConnectorConfig(
            type="nmbrs",
            base_url=base_url,
            credentials={
                "client_id": EMULATOR_CLIENT_ID,
                "client_secret": secret,
                "refresh_token": self._refresh_token(base_url),
                "subscription_key": EMULATOR_SUBSCRIPTION_KEY,
            },
        )

    def _refresh_token(self, base_url: str) -> str:
        app = self._apps.get(base_url)
        return app[ACCOUNT].refresh_token if app is not None else EMULATOR_REFRESH_TOKEN

    def touch(self, app: web.Application, count: int) -> None:
        app[ACCOUNT].touch(count)

    def retire(self, app: web.Application, count: int) -> None:
        app[ACCOUNT].retire(count)

    def break_email(self, app: web.Application, count: int) -> None:
        app[ACCOUNT].break_email(count)

    def sensitive_values(self, app: web.Application) -> set[str]:
        found: set[str] = set()
        for person in app[ACCOUNT].people:
            found.update(v for v in person.sensitive_values() if v)
        return found


class NmbrsSoapHarness(NmbrsHarness):
    """The same suite through the legacy SOAP API (`api = "soap"`)."""

    not_applicable: ClassVar[dict[str, str]] = {
        **FULL_ONLY,
        "test_a_page_that_fails_twice_with_503_is_retried": SOAP_WHOLE,
        "test_retry_after_is_honoured": SOAP_WHOLE,
        "test_a_cut_off_page_is_retried": SOAP_WHOLE,
    }

    def base_url(self, app: web.Application, root: str) -> str:
        return root + "/soap/v3"  # SOAP credentials do not rotate

    def config(self, base_url: str, *, valid_credentials: bool = True) -> ConnectorConfig:
        return ConnectorConfig(
            type="nmbrs",
            base_url=base_url,
            credentials={
                "username": EMULATOR_USERNAME,
                "token": EMULATOR_TOKEN if valid_credentials else "c" * 32,
                "domain": EMULATOR_DOMAIN,
            },
            settings={"api": "soap"},
        )


HARNESS: Any = NmbrsHarness()
