"""How the gateway reaches a source: one client session per run, public addresses only.

Everything that decides where a connector's requests (and so its credentials) may go lives
beside the connectors: the address rules in `connectors.netguard`, and here the session
factory the sync engine asks for a session.
"""

from __future__ import annotations

import aiohttp

from connectors.base import ConnectorError
from connectors.netguard import PrivateAddress, PublicOnlyConnector, check_url


def source_session(base_url: str, *, allow_private: bool = False) -> aiohttp.ClientSession:
    """A session for one run against `base_url`; unless `allow_private`, it reaches only
    public addresses (`connectors.netguard`): the URL is judged before any request, and
    every connection by its peer address before a byte of a request is written."""
    if allow_private:
        return aiohttp.ClientSession()
    try:
        check_url(base_url)
    except PrivateAddress as exc:
        raise ConnectorError(
            "config", f"the source address is refused: {exc} (allow_private_sources)"
        ) from None
    return aiohttp.ClientSession(connector=PublicOnlyConnector())
