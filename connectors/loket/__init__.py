"""Loket.nl (Visma Loket, Dutch payroll): employees per employer, OAuth refresh tokens.

The emulator (`emulator.py`) and its synthetic employees (`synthetic.py`) are named here by
module path only: they are imported when a test or the demo asks for them, never by a sync.
"""

from __future__ import annotations

from typing import Final

from connectors.loket.client import LoketConnector
from connectors.registry import ConnectorType, emulator_loader

CONNECTOR_TYPE: Final = ConnectorType(
    name="loket",
    connector=LoketConnector,
    load_emulator=emulator_loader(
        "connectors.loket.emulator",
        lambda emulator: {
            "client_id": emulator.EMULATOR_CLIENT_ID,
            "client_secret": emulator.EMULATOR_CLIENT_SECRET,
            "refresh_token": emulator.EMULATOR_REFRESH_TOKEN,
        },
    ),
    default_settings={},
    credential_keys=("client_id", "client_secret", "refresh_token"),
    emulator_base_path="/v2",
    # No modification time to filter on: every run reads everyone (client docstring).
    full_only=True,
)

__all__ = ["CONNECTOR_TYPE", "LoketConnector"]
