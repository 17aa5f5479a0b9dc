"""Loket.nl (Visma Loket, Dutch payroll): employees per employer, OAuth refresh tokens.

A customer admin connects the source by signing in at Loket through the console's "Connect
with Loket" (OAuth authorization code: `authorization_server`); the connector is created
with the app's client id and secret only, and the refresh token is stored by that connect.

The emulator (`emulator.py`) and its synthetic employees (`synthetic.py`) are named here by
module path only: they are imported when a test or the demo asks for them, never by a sync.
"""

from __future__ import annotations

from typing import Final

from connectors.loket.client import LoketConnector, authorization_server
from connectors.registry import ConnectorType, emulator_loader


def _emulator_settings(base_url: str) -> dict[str, str]:
    """The emulator serves Loket's consent screen and token endpoint on its own root."""
    root = base_url.rstrip("/").removesuffix("/v2")
    return {"authorize_url": root + "/authorize", "token_url": root + "/token"}


CONNECTOR_TYPE: Final = ConnectorType(
    name="loket",
    connector=LoketConnector,
    load_emulator=emulator_loader(
        "connectors.loket.emulator",
        # The demo and `sluis emulator` hand the connector a refresh token the emulator
        # issued, as if an admin had connected it already.
        lambda emulator: {
            "client_id": emulator.EMULATOR_CLIENT_ID,
            "client_secret": emulator.EMULATOR_CLIENT_SECRET,
            "refresh_token": emulator.EMULATOR_REFRESH_TOKEN,
        },
    ),
    default_settings={},
    # The app's; the refresh token comes from "Connect with Loket", never typed.
    credential_keys=("client_id", "client_secret"),
    authorization=authorization_server,
    emulator_base_path="/v2",
    emulator_settings=_emulator_settings,
    # No modification time to filter on: every run reads everyone (client docstring).
    full_only=True,
)

__all__ = ["CONNECTOR_TYPE", "LoketConnector"]
