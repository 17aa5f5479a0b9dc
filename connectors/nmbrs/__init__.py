"""Nmbrs (Visma, Dutch payroll): employees from the REST API or the legacy SOAP API.

The emulator (`emulator.py`) and its synthetic people (`synthetic.py`) are named here by
module path only: they are imported when a test or the demo asks for them, never by a sync.
"""

from __future__ import annotations

from typing import Final

from connectors.nmbrs.client import NmbrsConnector
from connectors.registry import ConnectorType, emulator_loader

#: REST credentials (the default) and SOAP credentials (setting `api = "soap"`): the
#: connector checks that the set its API needs is complete.
REST_KEYS: Final = ("client_id", "client_secret", "refresh_token", "subscription_key")
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
    optional_credential_keys=(*REST_KEYS, *SOAP_KEYS),
    # No updated-since in either API: every run reads every company whole, and people
    # missing from it are the ones deleted.
    full_only=True,
)

__all__ = ["CONNECTOR_TYPE", "NmbrsConnector"]
