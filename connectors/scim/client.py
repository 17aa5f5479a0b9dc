"""The SCIM source's `Connector`: there is nothing to fetch.

The registry needs a connector class per type, and the engine must never run one for a
pushed source (it refuses before a run starts: `ConnectorType.pushed`). Should anything
still call it, it fails with a config error that says why, never with a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from connectors.base import Connector, ConnectorError, PageRequest, RawPage


class ScimConnector(Connector):
    """A source an identity provider pushes to (`/scim/v2/...`); it is never fetched."""

    type: ClassVar[str] = "scim"

    def configure(self, settings: Mapping[str, Any]) -> None:
        if settings:
            raise ConnectorError("config", "a SCIM connector takes no settings")

    async def fetch_raw(self, request: PageRequest) -> RawPage:
        raise ConnectorError(
            "config",
            "a SCIM connector is not fetched: its identity provider pushes users to the "
            "gateway's /scim/v2 endpoint",
        )
