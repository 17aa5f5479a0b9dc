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

Where that refresh token comes from is the third use of the endpoint: `exchange_code`, the
`authorization_code` grant with PKCE that ends a customer admin's "Connect" in the console
(the vendor's endpoints as an `AuthorizationServer`). All three post their form through
one function, `post_form`, so the client authentication, the capped read and the error
reading are written once.

A token is reused until `margin` seconds before its `expires_in` ends, and fetched again
once after the source refuses it (`call`): providers revoke early, clocks differ. The
token endpoint's `error` code (RFC 6749 5.2) is reported when it is a plain code; its
`error_description` never is, since providers quote the submitted values there.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
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
        self._url = _endpoint(connector, token_url)
        if not client.client_id:
            raise ConnectorError("auth", f"{connector.type}: credentials need a client_id")
        self._connector = connector
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
        answer = await post_form(self._connector, self._url, self._client, form)
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


@dataclass(frozen=True)
class AuthorizationServer:
    """A vendor's authorization-code endpoints (RFC 6749 4.1, with PKCE, RFC 7636), as a
    connector type declares them (`ConnectorType.authorization`): where a customer admin's
    browser is sent to consent, where the code is exchanged, what to ask for, and how the
    client authenticates there. The client's id and secret are the connector's own
    credentials (`client_id`, `client_secret`)."""

    authorize_url: str
    token_url: str
    scopes: tuple[str, ...] = ()
    client_auth: ClientAuth = "post"
    #: Further query parameters of the authorize URL a vendor wants (e.g. a prompt).
    extra: Mapping[str, str] = field(default_factory=dict)
    #: The vendor's name as the console's "Connect with ..." button says it.
    vendor: str = ""

    def client(self, credentials: Mapping[str, str]) -> Client:
        """The registered client, from a connector's credentials."""
        secret = credentials.get("client_secret") or None
        return Client(credentials.get("client_id", ""), secret, self.client_auth)

    def authorize(self, client_id: str, redirect_uri: str, state: str, verifier: str) -> str:
        """The URL the browser is sent to: `response_type=code` with an S256 challenge."""
        query = {
            **self.extra,
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "code_challenge": code_challenge(verifier),
            "code_challenge_method": "S256",
        }
        if self.scopes:
            query["scope"] = " ".join(self.scopes)
        sep = "&" if "?" in self.authorize_url else "?"
        return f"{self.authorize_url}{sep}{urllib.parse.urlencode(query)}"


#: The credential a completed "Connect" adds to a connector's sealed credentials.
REFRESH_TOKEN_KEY: Final = "refresh_token"  # noqa: S105 - a key name


def new_verifier() -> str:
    """A PKCE code verifier (RFC 7636 4.1: 43-128 unreserved characters; 64 here)."""
    return secrets.token_urlsafe(48)


def code_challenge(verifier: str) -> str:
    """RFC 7636 4.2, S256: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


async def exchange_code(
    connector: Connector,
    server: AuthorizationServer,
    client: Client,
    *,
    code: str,
    redirect_uri: str,
    verifier: str,
) -> str:
    """The refresh token an authorization code is exchanged for (RFC 6749 4.1.3), through
    the connector's `send`. The access token that comes with it is not kept: the connector
    gets its own from the refresh token when it runs."""
    url = _endpoint(connector, server.token_url)
    if not client.client_id:
        raise ConnectorError("auth", f"{connector.type}: credentials need a client_id")
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    answer = await post_form(connector, url, client, form)
    refresh = answer.get("refresh_token")
    if not isinstance(refresh, str) or not refresh.strip() or len(refresh) > MAX_TOKEN_CHARS:
        raise ConnectorError(
            "malformed", f"{connector.type}: the token endpoint's answer holds no refresh token"
        )
    return refresh.strip()


def connected_refresh_token(connector: Connector) -> str:
    """The refresh token a "Connect" stored for this connector, or a plain "auth" error
    saying no one has connected it yet (rather than the vendor's refusal of nothing)."""
    refresh = connector.config.credentials.get(REFRESH_TOKEN_KEY, "").strip()
    if not refresh:
        raise ConnectorError(
            "auth",
            f"{connector.type}: not connected: an admin must use Connect on the connector's "
            "page and sign in at the vendor first",
        )
    return refresh


async def post_form(
    connector: Connector, url: str, client: Client, form: Mapping[str, str]
) -> dict[str, Any]:
    """One form POST to a token endpoint, the client authenticated as `client` says; the
    answer's JSON object, or a `ConnectorError` quoting at most the RFC 6749 error code."""
    body = dict(form)
    headers = {"Accept": "application/json"}
    if client.auth == "basic":
        # RFC 6749 2.3.1: both parts form-urlencoded before the Basic encoding.
        pair = f"{_form(client.client_id)}:{_form(client.secret or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    else:
        body["client_id"] = client.client_id
        if client.secret is not None:
            body["client_secret"] = client.secret
    reply = await connector.send("POST", url, headers=headers, data=body)
    if reply.status >= 400:
        raise _refused(
            connector, form.get("grant_type", ""), reply.status, reply.body,
            reply.headers.get("Retry-After"),
        )  # fmt: skip
    answer = connector.json_of(reply.body)
    return answer if isinstance(answer, dict) else {}


_INVALID_GRANT_HINTS: Final = {
    "refresh_token": "; the refresh token was refused: connect the source again",
    "authorization_code": "; the code was refused (used already, expired, or issued for "
    "another redirect or verifier): connect again",
}


def _refused(
    connector: Connector, grant: str, status: int, payload: bytes, retry_after: str | None
) -> ConnectorError:
    vendor = connector.type
    if status == 429:
        connector.stats.rate_limited += 1
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
    if code == "invalid_grant":
        hint = _INVALID_GRANT_HINTS.get(grant, "")
    elif code == "invalid_client":
        hint = "; check the client id and secret"
    else:
        hint = ""
    return ConnectorError(
        "auth",
        f"{vendor}: the token endpoint refused the credentials (HTTP {status}){detail}{hint}",
        status=status,
    )


def _endpoint(connector: Connector, token_url: str) -> str:
    url = URL(token_url)
    if url.scheme not in ("http", "https") or not url.host or url.user or url.password:
        raise ConnectorError(
            "config", f"{connector.type}: the token endpoint must be a plain http(s) URL"
        )
    return str(url)


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
