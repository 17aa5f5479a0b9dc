"""Connector types by name: the client class, its emulator and its bundled mapping.

Each vendor package exports a `CONNECTOR_TYPE`; this module only knows where to find them,
so adding a vendor is adding a package and one line here. Imports are lazy twice over: the
CLI and the gateway load only the vendors they use, and a vendor's emulator and synthetic
people are imported only when a test, the demo or a local stand-in asks for them
(`ConnectorType.emulator`), never by a production sync.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from connectors.base import Connector
from connectors.oauth import AuthorizationServer

if TYPE_CHECKING:
    from aiohttp import web

_PACKAGES: Final = {
    "afas": "connectors.afas",
    "dynamics": "connectors.dynamics",
    "entra": "connectors.entra",
    "hubspot": "connectors.hubspot",
    "loket": "connectors.loket",
    "nmbrs": "connectors.nmbrs",
    "personio": "connectors.personio",
    "salesforce": "connectors.salesforce",
    "scim": "connectors.scim",
    "sftp": "connectors.sftp",
}


@dataclass(frozen=True)
class Emulator:
    """A vendor's local stand-in, as the demo and the tests start it."""

    #: `make_app(people=N, seed=S, **options) -> web.Application`, served on 127.0.0.1.
    make_app: Callable[..., web.Application]
    #: Credentials the emulator accepts.
    credentials: Mapping[str, str]


@dataclass(frozen=True)
class ConnectorType:
    """Everything the gateway needs to know about one kind of source."""

    name: str
    connector: type[Connector]
    #: Imports the vendor's emulator module and describes it. Called only on demand, so the
    #: emulator code and its synthetic data stay out of a gateway that just syncs.
    load_emulator: Callable[[], Emulator]
    #: Connector settings that work against the emulator (e.g. a GetConnector id).
    default_settings: Mapping[str, Any] = field(default_factory=dict)
    #: Names of the credential keys the connector expects (e.g. ("token",)).
    credential_keys: tuple[str, ...] = ("token",)
    #: The URL schemes a base URL of this type may have.
    url_schemes: tuple[str, ...] = ("http", "https")
    #: Credential keys a connector may also be given (e.g. SFTP: a key or a password).
    optional_credential_keys: tuple[str, ...] = ()
    #: The path under the emulator's root that is the API's base URL: what the demo needs
    #: to point a connector at a local emulator.
    emulator_base_path: str = ""
    #: True for a source that pushes to the gateway (SCIM): it is never fetched, so the
    #: engine and the scheduler leave it alone, and it has no emulator.
    pushed: bool = False
    #: True for a source whose every read is the whole population (a file export): each
    #: run is a full sync handed the last run's watermark, whatever mode was asked for.
    full_only: bool = False
    #: Where a connector reaches a started emulator app, given the app and its HTTP root;
    #: None: the root plus `emulator_base_path` (an HTTP API). The SFTP emulator answers
    #: on a port of its own.
    emulator_url: Callable[[web.Application, str], str] | None = None
    #: Settings a connector needs to reach a started emulator, given its base URL (a
    #: token endpoint on another host in production, the emulator's own in the demo).
    emulator_settings: Callable[[str], Mapping[str, Any]] | None = None

    #: For a source a customer admin connects by signing in at the vendor (OAuth 2.0
    #: authorization code with PKCE): the vendor's endpoints, given the connector's base URL
    #: and settings. The console's "Connect" sends the admin there with the connector's
    #: `client_id` and stores the refresh token it gets back as `refresh_token` (never a
    #: typed credential). None: the type is not connected that way.
    authorization: Callable[[str, Mapping[str, Any]], AuthorizationServer] | None = None

    def settings_for_emulator(self, base_url: str) -> dict[str, Any]:
        """`default_settings` plus what reaching the emulator at `base_url` needs."""
        extra = self.emulator_settings(base_url) if self.emulator_settings else {}
        return {**self.default_settings, **extra}

    def emulator_base_url(self, app: web.Application, root: str) -> str:
        """The base URL a connector uses for a started emulator served at `root`."""
        if self.emulator_url is not None:
            return self.emulator_url(app, root)
        return root.rstrip("/") + self.emulator_base_path

    def emulator(self, **options: Any) -> web.Application:
        """A fresh emulator app (`people=N, seed=S, ...`); imports the emulator on first use."""
        app: web.Application = self.load_emulator().make_app(**options)
        return app

    @property
    def emulator_credentials(self) -> Mapping[str, str]:
        """Credentials the emulator accepts (imports the emulator on first use)."""
        return self.load_emulator().credentials


def emulator_loader(
    module: str, credentials: Callable[[Any], Mapping[str, str]]
) -> Callable[[], Emulator]:
    """A `load_emulator` that imports `module` by name when called: `module.make_app`
    builds the app, and `credentials(module)` reads the credentials it accepts."""

    def load() -> Emulator:
        found = importlib.import_module(module)
        return Emulator(make_app=found.make_app, credentials=credentials(found))

    return load


class UnknownConnectorType(KeyError):
    pass


def known_types() -> list[str]:
    return sorted(_PACKAGES)


def pull_types() -> list[str]:
    """The types the gateway fetches from (every one but the pushed ones)."""
    return [name for name in known_types() if not connector_type(name).pushed]


def connector_type(name: str) -> ConnectorType:
    """The `ConnectorType` registered under `name`."""
    package = _PACKAGES.get(name)
    if package is None:
        raise UnknownConnectorType(name)
    found = importlib.import_module(package).CONNECTOR_TYPE
    if not isinstance(found, ConnectorType):  # pragma: no cover - a packaging mistake
        raise TypeError(f"{package}.CONNECTOR_TYPE is not a ConnectorType")
    return found
