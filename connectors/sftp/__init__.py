"""CSV over SFTP: the newest HR export in an SFTP directory, each file a full sync.

The universal fallback: most Dutch HR systems can write a scheduled CSV export to an SFTP
drop. See `client.py` for file selection, streaming and host-key pinning, and `emulator.py`
for the local SFTP server the tests and the demo use (imported only when they ask for it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

from connectors.registry import ConnectorType, emulator_loader
from connectors.sftp.client import SftpConnector

if TYPE_CHECKING:
    from aiohttp import web


def _emulator_url(app: web.Application, root: str) -> str:
    url: str = importlib.import_module("connectors.sftp.emulator").base_url(app)
    return url


CONNECTOR_TYPE: Final = ConnectorType(
    name="sftp",
    connector=SftpConnector,
    load_emulator=emulator_loader(
        "connectors.sftp.emulator", lambda emulator: dict(emulator.EMULATOR_CREDENTIALS)
    ),
    default_settings={"pattern": "medewerkers_*.csv", "settle_seconds": 0.2},
    credential_keys=("username", "host_key"),
    optional_credential_keys=("private_key", "password", "passphrase"),
    full_only=True,
    url_schemes=("sftp",),
    emulator_url=_emulator_url,
)

__all__ = ["CONNECTOR_TYPE", "SftpConnector"]
