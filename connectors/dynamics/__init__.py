"""Microsoft Dynamics 365 / Dataverse (CRM): contacts over the Web API with change tracking.

A CRM has no end of employment: a deactivated contact (`statecode` 1) or one deleted since
the last run (a `$deletedEntity` row of the delta link) is the leaver, and one gone from a
full run is removed by the engine. See `client.py` for auth, paging, the delta links and
the service protection limits, and `emulator.py` for the local stand-in the tests and the
demo run against (imported only when they ask for it, never by a sync).
"""

from __future__ import annotations

from typing import Final

from connectors.dynamics.client import DynamicsConnector
from connectors.registry import ConnectorType, emulator_loader

CONNECTOR_TYPE: Final = ConnectorType(
    name="dynamics",
    connector=DynamicsConnector,
    load_emulator=emulator_loader(
        "connectors.dynamics.emulator",
        lambda emulator: {
            "client_id": emulator.EMULATOR_CLIENT_ID,
            "client_secret": emulator.EMULATOR_CLIENT_SECRET,
            "tenant_id": emulator.EMULATOR_TENANT,
        },
    ),
    default_settings={},
    credential_keys=("tenant_id", "client_id", "client_secret"),
    # The emulator serves Entra ID's token endpoint itself.
    emulator_settings=lambda base_url: {"authority": base_url},
)

__all__ = ["CONNECTOR_TYPE", "DynamicsConnector"]
