"""Nmbrs (Visma, Dutch payroll): employees from the REST API or the legacy SOAP API.

The REST API is connected by a customer admin's sign-in at Nmbrs (the console's "Connect
with Nmbrs", OAuth authorization code: `authorization_server`); the SOAP API takes an API
user's token.

The emulator (`emulator.py`) and its synthetic people (`synthetic.py`) are named here by
module path only: they are imported when a test or the demo asks for them, never by a sync.
"""

from __future__ import annotations

from typing import Final

from yarl import URL

from connectors.nmbrs.client import NmbrsConnector, authorization_server
from connectors.registry import ConnectorType, emulator_loader

#: REST credentials (the default) and SOAP credentials (setting `api = "soap"`): the
#: connector checks that the set its API needs is complete. The REST API's refresh token
#: is stored by "Connect", never typed; it stays an accepted key of the admin API so a
#: connector given one by hand before "Connect" existed keeps working.
REST_KEYS: Final = ("client_id", "client_secret", "subscription_key")
SOAP_KEYS: Final = ("username", "token", "domain")

CONNECTOR_TYPE: Final = ConnectorType(
    name="nmbrs",
    connector=NmbrsConnector,
    load_emulator=emulator_loader(
        "connectors.nmbrs.emulator",
        lambda emulator: {
            "client_id": emulator.EMULATOR_CLIENT_ID,
            "client_secret": emulator.EMULATOR_CLIENT_SECRET,
            "refresh_token": emulator.EMULATOR_REFRESH_TOKEN,
            "subscription_key": emulator.EMULATOR_SUBSCRIPTION_KEY,
            # The SOAP API's user (setting api = "soap", base URL <root>/soap/v3).
            "username": emulator.EMULATOR_USERNAME,
            "token": emulator.EMULATOR_TOKEN,
            "domain": emulator.EMULATOR_DOMAIN,
        },
    ),
    default_settings={},
    credential_keys=(),
    optional_credential_keys=(*REST_KEYS, "refresh_token", *SOAP_KEYS),
    authorization=authorization_server,
    # The identity server is the emulator itself (its /connect/authorize and /connect/token).
    emulator_settings=lambda base: {"identity_url": str(URL(base).origin())},
    # No updated-since in either API: every run reads every company whole, and people
    # missing from it are the ones deleted.
    full_only=True,
)

__all__ = ["CONNECTOR_TYPE", "NmbrsConnector"]
