"""Personio's part of the contract suite: its emulator, steered the way the suite needs.

People start all employed (`leaver_share=0`), so a suite can count leavers it made itself;
`retire` terminates people a week ago and sets them inactive, as Personio does once someone
has left. The emulator keeps Personio's own rate limits on: the connector's pacing must
stay under them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from connectors.base import ConnectorConfig
from connectors.emulator_kit import CONTROL, EmulatorControl
from connectors.personio.emulator import (
    ACCOUNT,
    EMULATOR_CLIENT_ID,
    EMULATOR_CLIENT_SECRET,
    make_app,
)
from connectors.personio.synthetic import SENSITIVE_ATTRIBUTES
from mappings import bundled_mapping


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


#: Leaves of Personio's object shapes (type names, labels), not anyone's data.
_STRUCTURE = frozenset({"Employee", "Office", "Department", "ID", "id", "integer", "standard"})


class PersonioHarness:
    type = "personio"
    mapping_path: Path = bundled_mapping("personio")
    #: As the projector names them when it drops them: nested under `attributes`.
    sensitive_fields = tuple(f"attributes.{name}" for name in SENSITIVE_ATTRIBUTES)

    def make_app(
        self, people: int, *, seed: int = 1, page_size: int | None = None
    ) -> web.Application:
        # Personio caps no page below what a client asks for, so `page_size` is unused.
        return make_app(people=people, seed=seed, leaver_share=0.0)

    def control(self, app: web.Application) -> EmulatorControl:
        return app[CONTROL]

    def config(self, base_url: str, *, valid_credentials: bool = True) -> ConnectorConfig:
        secret = EMULATOR_CLIENT_SECRET if valid_credentials else "papi-not-the-right-secret"
        return ConnectorConfig(
            type="personio",
            base_url=base_url,
            credentials={"client_id": EMULATOR_CLIENT_ID, "client_secret": secret},
        )

    def touch(self, app: web.Application, count: int) -> None:
        app[ACCOUNT].touch(count)

    def retire(self, app: web.Application, count: int) -> None:
        app[ACCOUNT].retire(count)

    def break_email(self, app: web.Application, count: int) -> None:
        app[ACCOUNT].break_email(count)

    def sensitive_values(self, app: web.Application) -> set[str]:
        found: set[str] = set()
        for person in app[ACCOUNT].people:
            for name in SENSITIVE_ATTRIBUTES:
                found.update(
                    str(v)
                    for v in _leaves(person.values.get(name))
                    # Whole numbers are ids (a supervisor's, an office's): short digit
                    # runs that any hex subject id may hold.
                    if isinstance(v, str | float) and v != "" and str(v) not in _STRUCTURE
                )
        return found


HARNESS = PersonioHarness()
