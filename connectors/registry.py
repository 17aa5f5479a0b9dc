"""Connector types by name: the client class, its emulator and its bundled mapping.

Each vendor package exports a `CONNECTOR_TYPE`; this module only knows where to find them,
so adding a vendor is adding a package and one line here. Imports are lazy: the CLI and the
gateway load only the vendors they use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from connectors.base import Connector

_PACKAGES: Final = {
    "afas": "connectors.afas",
    "hubspot": "connectors.hubspot",
}


@dataclass(frozen=True)
class ConnectorType:
    """Everything the gateway needs to know about one kind of source."""

    name: str
    connector: type[Connector]
    #: `emulator(people=N, seed=S, **options) -> web.Application`, served on 127.0.0.1.
    emulator: Callable[..., web.Application]
    #: Connector settings that work against the emulator (e.g. a GetConnector id).
    default_settings: Mapping[str, Any] = field(default_factory=dict)
    #: Names of the credential keys the connector expects (e.g. ("token",)).
    credential_keys: tuple[str, ...] = ("token",)
    #: Credentials the emulator accepts, and the path under its root that is the API's
    #: base URL: what the demo needs to point a connector at a local emulator.
    emulator_credentials: Mapping[str, str] = field(default_factory=dict)
    emulator_base_path: str = ""


class UnknownConnectorType(KeyError):
    pass


def known_types() -> list[str]:
    return sorted(_PACKAGES)


def connector_type(name: str) -> ConnectorType:
    """The `ConnectorType` registered under `name`."""
    package = _PACKAGES.get(name)
    if package is None:
        raise UnknownConnectorType(name)
    found = importlib.import_module(package).CONNECTOR_TYPE
    if not isinstance(found, ConnectorType):  # pragma: no cover - a packaging mistake
        raise TypeError(f"{package}.CONNECTOR_TYPE is not a ConnectorType")
    return found
