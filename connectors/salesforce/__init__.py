"""Salesforce (CRM): Contacts over the REST API, a SOQL query of only the mapped fields.

A CRM has no employment end: a deleted Contact (in the recycle bin, found by incremental
runs through `queryAll` with `IsDeleted = true`) is the leaver, and one gone from a full
sync is removed by the engine. See `client.py` for auth, paging, the watermark and API
limits, and `emulator.py` for the local stand-in the tests and the demo run against
(imported only when they ask for it, never by a sync).
"""

from __future__ import annotations

from typing import Final

from connectors.registry import ConnectorType, emulator_loader
from connectors.salesforce.client import SalesforceConnector

CONNECTOR_TYPE: Final = ConnectorType(
    name="salesforce",
    connector=SalesforceConnector,
    load_emulator=emulator_loader(
        "connectors.salesforce.emulator",
        lambda emulator: {
            "client_id": emulator.EMULATOR_CLIENT_ID,
            "client_secret": emulator.EMULATOR_CLIENT_SECRET,
        },
    ),
    default_settings={},
    credential_keys=("client_id", "client_secret"),
)

__all__ = ["CONNECTOR_TYPE", "SalesforceConnector"]
