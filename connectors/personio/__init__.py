"""Personio (HRM): employees from the v1 API with client-credential tokens.

The emulator (`emulator.py`) and its synthetic employees (`synthetic.py`) are named here by
module path only: they are imported when a test or the demo asks for them, never by a sync.
"""

from __future__ import annotations

from typing import Final

from connectors.personio.client import PersonioConnector
from connectors.registry import ConnectorType, emulator_loader

CONNECTOR_TYPE: Final = ConnectorType(
    name="personio",
    connector=PersonioConnector,
    load_emulator=emulator_loader(
        "connectors.personio.emulator",
        lambda emulator: {
            "client_id": emulator.EMULATOR_CLIENT_ID,
            "client_secret": emulator.EMULATOR_CLIENT_SECRET,
        },
    ),
    default_settings={},
    credential_keys=("client_id", "client_secret"),
)

__all__ = ["CONNECTOR_TYPE", "PersonioConnector"]
