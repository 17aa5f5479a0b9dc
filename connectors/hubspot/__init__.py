"""HubSpot CRM (contacts): the CRM v3 objects API, read with only the mapped properties.

HubSpot is a CRM, so it has no employment end: an archived (soft-deleted) contact is the
leaver signal, found by the full sync's pass over `archived=true`; incremental runs use the
search API on `lastmodifieddate`. See `client.py` for the cursor and watermark semantics and
`emulator.py` for the local stand-in the tests and the demo run against (imported only when
they ask for it, never by a sync).

A portal is read with a private app's token, or by a public app a portal admin installs
through the console's "Connect" (OAuth authorization code: `authorization_server`); the
emulator serves both.
"""

from __future__ import annotations

from typing import Final

from connectors.hubspot.client import HubSpotConnector, authorization_server
from connectors.registry import ConnectorType, emulator_loader

CONNECTOR_TYPE: Final = ConnectorType(
    name="hubspot",
    connector=HubSpotConnector,
    load_emulator=emulator_loader(
        "connectors.hubspot.emulator", lambda emulator: {"token": emulator.EMULATOR_TOKEN}
    ),
    default_settings={},
    # A private app's token, or a public app's id and secret (and "Connect" for the rest).
    credential_keys=(),
    optional_credential_keys=("token", "client_id", "client_secret"),
    authorization=authorization_server,
    emulator_settings=lambda base: {"authorize_url": base.rstrip("/") + "/oauth/authorize"},
)

__all__ = ["CONNECTOR_TYPE", "HubSpotConnector"]
