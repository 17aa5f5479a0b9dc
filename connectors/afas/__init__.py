"""AFAS Profit (HRM): employees from a GetConnector."""

from __future__ import annotations

from typing import Final

from connectors.afas.client import AfasConnector
from connectors.afas.emulator import EMULATOR_TOKEN, make_app
from connectors.registry import ConnectorType

CONNECTOR_TYPE: Final = ConnectorType(
    name="afas",
    connector=AfasConnector,
    emulator=make_app,
    default_settings={"connector_id": "Sluis_Medewerkers"},
    credential_keys=("token",),
    emulator_credentials={"token": EMULATOR_TOKEN},
    emulator_base_path="/profitrestservices",
)

__all__ = ["CONNECTOR_TYPE", "AfasConnector"]
