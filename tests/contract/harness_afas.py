"""The AFAS emulator steered for the shared connector contract suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from connectors.afas.emulator import EMULATOR_TOKEN, ENVIRONMENT, make_app
from connectors.afas.synthetic import SENSITIVE_FIELDS
from connectors.base import ConnectorConfig
from connectors.emulator_kit import CONTROL, EmulatorControl
from mappings import bundled_mapping

#: A token the emulator does not know; well formed, so the refusal comes from AFAS.
WRONG_TOKEN = "f" * 64


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    return [value]


class AfasHarness:
    type = "afas"
    mapping_path: Path = bundled_mapping("afas")
    #: Nested `Noodcontact` (an emergency contact's name and phone) must not leave either.
    sensitive_fields = (*SENSITIVE_FIELDS, "Noodcontact")

    def make_app(
        self, people: int, *, seed: int = 1, page_size: int | None = None
    ) -> web.Application:
        return make_app(people=people, seed=seed, page_cap=page_size)

    def control(self, app: web.Application) -> EmulatorControl:
        return app[CONTROL]

    def config(self, base_url: str, *, valid_credentials: bool = True) -> ConnectorConfig:
        token = EMULATOR_TOKEN if valid_credentials else WRONG_TOKEN
        return ConnectorConfig(
            type="afas",
            base_url=f"{base_url.rstrip('/')}/profitrestservices",
            credentials={"token": f"<token><version>1</version><data>{token}</data></token>"},
            settings={"connector_id": "Sluis_Medewerkers"},
        )

    def touch(self, app: web.Application, count: int) -> None:
        app[ENVIRONMENT].touch(count)

    def retire(self, app: web.Application, count: int) -> None:
        app[ENVIRONMENT].retire(count)

    def break_email(self, app: web.Application, count: int) -> None:
        app[ENVIRONMENT].break_email(count)

    def sensitive_values(self, app: web.Application) -> set[str]:
        found: set[str] = set()
        for person in app[ENVIRONMENT].people:
            for name in self.sensitive_fields:
                found.update(str(v) for v in _leaves(person.get(name)) if v not in (None, ""))
        return found


HARNESS = AfasHarness()
