"""Sign-in through the customer's own identity provider (OpenID Connect).

A tenant's admin registers Sluis as a client at their IdP and gives Sluis the issuer, the
client id and secret (sealed like connector credentials). A person of that tenant then signs
in with the authorization code flow and PKCE (RFC 7636, S256): the browser goes to the IdP
with a fresh `state`, `nonce` and code challenge, comes back with a code, and Sluis
exchanges the code (with the verifier and the client secret) for an ID token, whose
signature (the IdP's JWKS), issuer, audience, expiry and nonce are checked with joserfc.
The verified email (`email_verified` must be true) must belong to an active account of that
tenant: the IdP proves who someone is, Sluis's register still says what they may do.
Step-up stays a Sluis TOTP code, so authorising processing still takes the factor the
customer enrolled with Sluis.

Requests to the IdP follow the connectors' network rules (public addresses only, unless
`allow_private_sources`), never follow redirects, read at most 1 MiB and time out. The
pending logins (state, nonce, verifier) are kept in this process for ten minutes: the
callback must reach the replica that began the login (sticky sessions behind a balancer).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote_plus, urlencode

import aiohttp
import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from connectors.base import ConnectorError
from connectors.http import source_session
from gateway.accounts.errors import AccountsError

PENDING_SECONDS: Final = 600
MAX_PENDING: Final = 1024
MAX_BODY: Final = 1024 * 1024
TIMEOUT: Final = aiohttp.ClientTimeout(total=10)
ALGORITHMS: Final = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA")


class OidcFailed(AccountsError):
    status = 401
    slug = "oidc-failed"


@dataclass(frozen=True)
class OidcClientConfig:
    """A tenant's registration at its identity provider (the secret opened)."""

    tenant: str
    issuer: str
    client_id: str
    client_secret: str


@dataclass(frozen=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


@dataclass(frozen=True)
class Pending:
    tenant: str
    nonce: str
    verifier: str
    redirect_uri: str
    provider: Provider
    started: float


@dataclass(frozen=True)
class Identity:
    tenant: str
    email: str


def code_challenge(verifier: str) -> str:
    """RFC 7636 section 4.2, S256: base64url(sha256(verifier)) without padding (two lines,
    not worth a dependency)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OidcLogins:
    """Begins and completes logins; one per gateway process."""

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._pending: OrderedDict[str, Pending] = OrderedDict()

    async def _get_json(self, url: str, *, data: dict[str, str] | None = None,
                        authorization: str | None = None) -> Any:  # fmt: skip
        try:
            async with source_session(url, allow_private=self._allow_private) as session:
                method = "POST" if data is not None else "GET"
                headers = {"Accept": "application/json"}
                if authorization is not None:
                    headers["Authorization"] = authorization
                async with session.request(
                    method, url, data=data, allow_redirects=False, timeout=TIMEOUT,
                    headers=headers,
                ) as response:  # fmt: skip
                    body = await response.content.read(MAX_BODY + 1)
                    if len(body) > MAX_BODY:
                        raise OidcFailed("the identity provider's answer is too large")
                    if response.status != 200:
                        raise OidcFailed(f"the identity provider answered HTTP {response.status}")
        except ConnectorError as exc:
            raise OidcFailed(f"the identity provider cannot be reached: {exc}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OidcFailed(
                f"the identity provider cannot be reached ({type(exc).__name__})"
            ) from None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise OidcFailed("the identity provider's answer is not JSON") from None

    async def discover(self, issuer: str) -> Provider:
        meta = await self._get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
        if not isinstance(meta, dict):
            raise OidcFailed("the identity provider's configuration is not an object")
        try:
            provider = Provider(
                issuer=str(meta["issuer"]),
                authorization_endpoint=str(meta["authorization_endpoint"]),
                token_endpoint=str(meta["token_endpoint"]),
                jwks_uri=str(meta["jwks_uri"]),
            )
        except KeyError as exc:
            raise OidcFailed(f"the identity provider's configuration lacks {exc}") from None
        if provider.issuer.rstrip("/") != issuer.rstrip("/"):
            raise OidcFailed("the identity provider names another issuer than configured")
        return provider

    def _remember(self, state: str, pending: Pending) -> None:
        now = time.monotonic()
        while self._pending and (
            len(self._pending) >= MAX_PENDING
            or now - next(iter(self._pending.values())).started > PENDING_SECONDS
        ):
            self._pending.popitem(last=False)
        self._pending[state] = pending

    async def begin(self, config: OidcClientConfig, redirect_uri: str) -> str:
        """The IdP URL to send the browser to."""
        provider = await self.discover(config.issuer)
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        self._remember(
            state,
            Pending(config.tenant, nonce, verifier, redirect_uri, provider, time.monotonic()),
        )
        query = urlencode({
            "response_type": "code", "client_id": config.client_id,
            "redirect_uri": redirect_uri, "scope": "openid email profile", "state": state,
            "nonce": nonce, "code_challenge": code_challenge(verifier),
            "code_challenge_method": "S256",
        })  # fmt: skip
        sep = "&" if "?" in provider.authorization_endpoint else "?"
        return f"{provider.authorization_endpoint}{sep}{query}"

    def pending_tenant(self, state: str) -> str | None:
        """The tenant a returning browser's login began for (None: unknown or expired)."""
        found = self._pending.get(state)
        if found is None or time.monotonic() - found.started > PENDING_SECONDS:
            return None
        return found.tenant

    async def complete(self, config: OidcClientConfig, state: str, code: str) -> Identity:
        """Exchange the code and verify the ID token; the verified email and tenant."""
        pending = self._pending.pop(state, None)
        if pending is None or time.monotonic() - pending.started > PENDING_SECONDS:
            raise OidcFailed("this sign-in expired or was used already; start again")
        if pending.tenant != config.tenant:
            raise OidcFailed("this sign-in began for another organisation")
        tokens = await self._get_json(
            pending.provider.token_endpoint,
            data={
                "grant_type": "authorization_code", "code": code,
                "redirect_uri": pending.redirect_uri, "code_verifier": pending.verifier,
                "client_id": config.client_id,
            },
            # RFC 6749 2.3.1: id and secret are form-encoded before the Basic encoding.
            authorization=aiohttp.encode_basic_auth(
                quote_plus(config.client_id), quote_plus(config.client_secret)
            ),
        )  # fmt: skip
        id_token = tokens.get("id_token") if isinstance(tokens, dict) else None
        if not isinstance(id_token, str):
            raise OidcFailed("the identity provider gave no ID token")
        jwks = await self._get_json(pending.provider.jwks_uri)
        claims = _verified_claims(id_token, jwks, pending, config)
        email = claims.get("email")
        if not isinstance(email, str) or claims.get("email_verified") is not True:
            raise OidcFailed("the identity provider did not give a verified email address")
        return Identity(config.tenant, email)


def _verified_claims(
    id_token: str, jwks: Any, pending: Pending, config: OidcClientConfig
) -> dict[str, Any]:
    try:
        keys = KeySet.import_key_set(jwks)
        token = jwt.decode(id_token, keys, algorithms=list(ALGORITHMS))
        jwt.JWTClaimsRegistry(
            leeway=60,
            iss={"essential": True, "value": pending.provider.issuer},
            aud={"essential": True, "value": config.client_id},
            exp={"essential": True},
            nonce={"essential": True, "value": pending.nonce},
        ).validate(token.claims)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise OidcFailed(f"the ID token is not valid ({type(exc).__name__})") from None
    return dict(token.claims)
