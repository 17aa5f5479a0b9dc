"""HubSpot CRM (contacts): the CRM v3 objects API, read with only the mapped properties.

HubSpot is a CRM, so it has no employment end: an archived (soft-deleted) contact is the
leaver signal, found by the full sync's pass over `archived=true`; incremental runs use the
search API on `lastmodifieddate`. See `client.py` for the cursor and watermark semantics and
`emulator.py` for the local stand-in the tests and the demo run against.
"""

from __future__ import annotations

from connectors.hubspot.client import HubSpotConnector
from connectors.hubspot.emulator import EMULATOR_TOKEN, make_app
from connectors.registry import ConnectorType

CONNECTOR_TYPE = ConnectorType(
    name="hubspot",
    connector=HubSpotConnector,
    emulator=make_app,
    default_settings={},
    credential_keys=("token",),
    emulator_credentials={"token": EMULATOR_TOKEN},
)

__all__ = ["CONNECTOR_TYPE", "HubSpotConnector", "make_app"]
