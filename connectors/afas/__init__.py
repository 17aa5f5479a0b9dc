"""AFAS Profit (HRM): employees from a GetConnector.

The emulator (`emulator.py`) and its synthetic employees (`synthetic.py`) are named here by
module path only: they are imported when a test or the demo asks for them, never by a sync.
"""

from __future__ import annotations

from typing import Final

from connectors.afas.client import AfasConnector
from connectors.registry import ConnectorType, emulator_loader

CONNECTOR_TYPE: Final = ConnectorType(
    name="afas",
    connector=AfasConnector,
    load_emulator=emulator_loader(
        "connectors.afas.emulator", lambda emulator: {"token": emulator.EMULATOR_TOKEN}
    ),
    default_settings={"connector_id": "Sluis_Medewerkers"},
    credential_keys=("token",),
    emulator_base_path="/profitrestservices",
)

__all__ = ["CONNECTOR_TYPE", "AfasConnector"]
