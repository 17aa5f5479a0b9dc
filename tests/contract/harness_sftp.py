"""The SFTP export emulator steered for the shared connector contract suite.

A file source differs from an API in three ways the suite has to be told: every run reads
the whole file (an incremental run handed the last watermark reads nothing when the file is
unchanged, and everything when it is new), an SFTP server has no rate limit or Retry-After,
and it cannot redirect. Those tests are skipped with the reason; the rest run as they are,
with faults applied to SFTP read requests (see `connectors.sftp.emulator`).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from aiohttp import web

from connectors.base import ConnectorConfig
from connectors.emulator_kit import CONTROL, EmulatorControl
from connectors.sftp.emulator import (
    EMULATOR_CREDENTIALS,
    ENVIRONMENT,
    base_url,
    make_app,
)
from connectors.sftp.synthetic import SENSITIVE_FIELDS
from mappings import bundled_mapping


class SftpHarness:
    type = "sftp"
    mapping_path: Path = bundled_mapping("sftp")
    sensitive_fields = SENSITIVE_FIELDS
    #: Tests of the shared suite that do not apply to a file source, and why.
    not_applicable: ClassVar[dict[str, str]] = {
        "test_incremental_sync_never_misses_a_change": "every export is whole: a new file "
        "is read in full (an unchanged one not at all)",
        "test_retry_after_is_honoured": "SFTP has no Retry-After",
        "test_a_rate_limit_is_waited_out": "SFTP servers do not rate-limit requests",
        "test_redirects_are_not_followed": "SFTP cannot redirect",
    }

    def make_app(
        self, people: int, *, seed: int = 1, page_size: int | None = None
    ) -> web.Application:
        return make_app(people=people, seed=seed)

    def control(self, app: web.Application) -> EmulatorControl:
        return app[CONTROL]

    def base_url(self, app: web.Application, root: str) -> str:
        return base_url(app)

    def config(self, base_url: str, *, valid_credentials: bool = True) -> ConnectorConfig:
        credentials = dict(EMULATOR_CREDENTIALS)
        if not valid_credentials:
            credentials["username"] = "someone-else"
        return ConnectorConfig(
            type="sftp",
            base_url=base_url,
            credentials=credentials,
            settings={"pattern": "medewerkers_*.csv", "page_size": 100, "settle_seconds": 0},
        )

    def touch(self, app: web.Application, count: int) -> None:
        app[ENVIRONMENT].touch(count)

    def retire(self, app: web.Application, count: int) -> None:
        app[ENVIRONMENT].retire(count)

    def break_email(self, app: web.Application, count: int) -> None:
        app[ENVIRONMENT].break_email(count)

    def sensitive_values(self, app: web.Application) -> set[str]:
        found: set[str] = set()
        for person in app[ENVIRONMENT].rows:
            found.update(person[name] for name in self.sensitive_fields if person.get(name))
        return found


HARNESS = SftpHarness()
