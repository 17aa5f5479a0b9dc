"""SCIM 2.0 (an identity provider such as Microsoft Entra ID or Okta) as a source.

An identity provider pushes: it creates, replaces, patches and deletes users at the
gateway's `/scim/v2/...` endpoint, so this type has no fetch, no emulator and no schedule
(`ConnectorType.pushed`). What this package knows is the vendor side of the door: how a
SCIM User is read into the record the bundled mapping (`mappings/scim.toml`) projects
(`connectors.scim.door`). The endpoint itself is the gateway's (`gateway.api.scim`,
`gateway.sync.scim_inbound`).
"""

from __future__ import annotations

from typing import Final

from connectors.registry import ConnectorType, Emulator
from connectors.scim.client import ScimConnector


def _no_emulator() -> Emulator:
    raise LookupError("a SCIM connector has no emulator: an identity provider pushes to it")


CONNECTOR_TYPE: Final = ConnectorType(
    name="scim",
    connector=ScimConnector,
    load_emulator=_no_emulator,
    default_settings={},
    credential_keys=(),
    pushed=True,
)

__all__ = ["CONNECTOR_TYPE", "ScimConnector"]
