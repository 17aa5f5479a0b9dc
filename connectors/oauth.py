"""OAuth 2.0 access tokens for connectors (RFC 6749 token endpoint; RFC 6750 bearer use).

Why hand-written rather than authlib or requests-oauthlib: what a connector needs of OAuth is
one form POST to a token endpoint and the reading of its answer, and that POST must go
through the connector's own session (the public-only connector that keeps the gateway off
private addresses, the capped body read, the no-redirect rule) and fail as a
`ConnectorError` that quotes no body. authlib's async client is built on httpx, a second
HTTP stack beside aiohttp with its own address handling, and would need those rules again.

Two grants, chosen by the credentials:

* `client_credentials` (Microsoft Entra ID for Graph and Dataverse, Salesforce): the client
  id and secret give an access token; nothing to keep.
* `refresh_token` (Nmbrs, Loket.nl: authorization-code systems where a customer admin once
  signed in): the refresh token gives an access token and, where the provider rotates
  refresh tokens (each usable once), a new refresh token. The new one is handed to the
  connector's `keep_credentials` and stored sealed *before* the access token is used: a
  gateway that lost it would hold a refresh token the provider no longer honours.

A token is reused until `margin` seconds before its `expires_in` ends, and fetched again
once after the source refuses it (`call`): providers revoke early, clocks differ. The
token endpoint's `error` code (RFC 6749 5.2) is reported when it is a plain code; its
`error_description` never is, since providers quote the submitted values there.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import orjson
from yarl import URL

from connectors.base import Connector, ConnectorError, parse_retry_after

T = TypeVar("T")

#: Fetch a new token this long before the old one's end.
DEFAULT_MARGIN_SECONDS: Final = 60.0
#: An answer without `expires_in` is taken to last this long (RFC 6749 leaves it to the
#: provider; an hour is what Entra ID, Nmbrs and Loket hand out).
DEFAULT_LIFETIME_SECONDS: Final = 3600.0
#: Larger tokens than this are refused as malformed (Entra ID's JWTs are 1.5-3 KB).
MAX_TOKEN_CHARS: Final = 16_384
_CODE: Final = re.compile(r"[a-z_]{1,64}")

ClientAuth = Literal["post", "basic"]


@dataclass(frozen=True)
class Client:
    """The registered client: its id, its secret (None for a public client) and how the
    provider wants them sent: in the form body (`post`) or as HTTP Basic (`basic`)."""

    client_id: str
    secret: str | None = None
    auth: ClientAuth = "post"


class Tokens:
    """Bearer tokens from one token endpoint, for one connector's life."""

    def __init__(
        self,
        connector: Connector,
        token_url: str,
        client: Client,
        *,
        scope: str | None = None,
        refresh_token: str | None = None,
        margin: float = DEFAULT_MARGIN_SECONDS,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        """`refresh_token` given: the refresh-token grant, else client credentials.
        `extra` adds form fields a provider wants beside the standard ones."""
        url = URL(token_url)
        if url.scheme not in ("http", "https") or not url.host or url.user or url.password:
            raise ConnectorError(
                "config", f"{connector.type}: the token endpoint must be a plain http(s) URL"
            )
        if not client.client_id:
            raise ConnectorError("auth", f"{connector.type}: credentials need a client_id")
        self._connector = connector
        self._url = str(url)
        self._client = client
        self._scope = scope
        self._refresh = refresh_token
        self._margin = margin
        self._extra = dict(extra or {})
        self._token: str | None = None
        self._until = 0.0
        self._lock = asyncio.Lock()
        #: How many tokens were fetched: `call` tells a fresh token from a kept one by it.
        self._fetched = 0

    @property
    def refresh_token(self) -> str | None:
        """The refresh token in force (the newest one the provider handed out)."""
        return self._refresh

    async def bearer(self) -> str:
        """A token that has not run out, fetched if there is none."""
        async with self._lock:
            if self._token is None or time.monotonic() >= self._until:
                await self._fetch()
            assert self._token is not None
            return self._token

    def expire(self, token: str) -> None:
        """Forget `token` (the source refused it); the next `bearer` fetches a new one.
        A token fetched meanwhile by another request is kept."""
        if self._token == token:
            self._token = None

    async def call(self, request: Callable[[str], Awaitable[T]]) -> T:
        """`request(token)`, and once more with a new token if the source refused a token
        that was not fresh ("auth"). A refusal of a fresh token is the caller's error."""
        fetched_before = self._fetched
        token = await self.bearer()
        try:
            return await request(token)
        except ConnectorError as exc:
            if exc.kind != "auth" or self._fetched != fetched_before:
                raise
        self.expire(token)
        return await request(await self.bearer())

    async def _fetch(self) -> None:
        self._token = None
        vendor = self._connector.type
        form: dict[str, str] = dict(self._extra)
        if self._refresh is not None:
            form["grant_type"] = "refresh_token"
            form["refresh_token"] = self._refresh
        else:
            form["grant_type"] = "client_credentials"
        if self._scope:
            form["scope"] = self._scope
        headers = {"Accept": "application/json"}
        client = self._client
        if client.auth == "basic":
            # RFC 6749 2.3.1: both parts form-urlencoded before the Basic encoding.
            pair = f"{_form(client.client_id)}:{_form(client.secret or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = client.client_id
            if client.secret is not None:
                form["client_secret"] = client.secret
        reply = await self._connector.send("POST", self._url, headers=headers, data=form)
        if reply.status >= 400:
            raise self._refused(reply.status, reply.body, reply.headers.get("Retry-After"))
        body = self._connector.json_of(reply.body)
        answer = body if isinstance(body, dict) else {}
        token = answer.get("access_token")
        kind = answer.get("token_type", "Bearer")
        if (
            not isinstance(token, str)
            or not token.strip()
            or len(token) > MAX_TOKEN_CHARS
            or not isinstance(kind, str)
            or kind.lower() != "bearer"
        ):
            raise ConnectorError(
                "malformed", f"{vendor}: the token endpoint's answer holds no bearer token"
            )
        rotated = answer.get("refresh_token")
        if self._refresh is not None and isinstance(rotated, str) and rotated.strip():
            await self._rotate(rotated.strip())
        self._token = token.strip()
        self._until = time.monotonic() + max(_lifetime(answer.get("expires_in")) - self._margin, 0)
        self._fetched += 1

    async def _rotate(self, refresh: str) -> None:
        if refresh == self._refresh:
            return
        if len(refresh) > MAX_TOKEN_CHARS:
            raise ConnectorError(
                "malformed",
                f"{self._connector.type}: the token endpoint's refresh token is oversized",
            )
        self._refresh = refresh
        keep = self._connector.keep_credentials
        if keep is not None:
            await keep({"refresh_token": refresh})

    def _refused(self, status: int, payload: bytes, retry_after: str | None) -> ConnectorError:
        vendor = self._connector.type
        if status == 429:
            self._connector.stats.rate_limited += 1
            return ConnectorError(
                "rate_limited",
                f"{vendor}: the token endpoint is rate limiting (HTTP 429)",
                status=status,
                retry_after=parse_retry_after(retry_after),
            )
        if status >= 500:
            return ConnectorError(
                "unavailable", f"{vendor}: the token endpoint failed (HTTP {status})", status=status
            )
        code = _error_code(payload)
        detail = f" [error {code}]" if code else ""
        if code == "invalid_grant" and self._refresh is not None:
            hint = "; the refresh token was refused: connect the source again"
        elif code == "invalid_client":
            hint = "; check the client id and secret"
        else:
            hint = ""
        return ConnectorError(
            "auth",
            f"{vendor}: the token endpoint refused the credentials (HTTP {status}){detail}{hint}",
            status=status,
        )


def _form(value: str) -> str:
    return urllib.parse.quote_plus(value, safe="")


def _lifetime(value: Any) -> float:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 10**8:
        return float(value)
    return DEFAULT_LIFETIME_SECONDS


def _error_code(payload: bytes) -> str:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return ""
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else ""
