"""Microsoft Entra ID (identity): users pulled from Microsoft Graph's delta query with an
app registration's client credentials. (Entra ID can also push users to the gateway's
inbound SCIM endpoint, the `scim` type; this is the pull alternative.)

The emulator (`emulator.py`) and its synthetic users (`synthetic.py`) are named here by
module path only: they are imported when a test or the demo asks for them, never by a sync.
"""

from __future__ import annotations

from typing import Final

from connectors.entra.client import EntraConnector
from connectors.registry import ConnectorType, emulator_loader

CONNECTOR_TYPE: Final = ConnectorType(
    name="entra",
    connector=EntraConnector,
    load_emulator=emulator_loader(
        "connectors.entra.emulator",
        lambda emulator: {
            "tenant_id": emulator.EMULATOR_TENANT_ID,
            "client_id": emulator.EMULATOR_CLIENT_ID,
            "client_secret": emulator.EMULATOR_CLIENT_SECRET,
        },
    ),
    default_settings={},
    credential_keys=("tenant_id", "client_id", "client_secret"),
    emulator_base_path="/v1.0",
)

__all__ = ["CONNECTOR_TYPE", "EntraConnector"]
