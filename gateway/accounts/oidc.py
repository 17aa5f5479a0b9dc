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
`allow_private_sources`), never follow redirects, read at most 1 MiB and time out.

Pending logins live in the store for ten minutes, so the IdP's callback may reach any
replica, not only the one that began the login. A row is found by the SHA-256 of the
`state`, never the state itself. The nonce, the verifier, the redirect URI and the
provider's endpoints are one blob sealed under the master key with the tenant and state
hash as associated data: a copy of the database finishes nobody's login, and someone who
can write to it cannot point the code exchange (which carries the client secret) at a
server of their own, nor move a login to another row or tenant. A callback takes its login
from the store once (`AccountStore.take_oidc_pending`): a replayed callback fails, on
whichever replica it lands. Each tenant keeps at most `MAX_PENDING_PER_TENANT`; beyond
that the oldest is dropped rather than the new one refused, so someone starting logins in
bulk must outpace a real person's minute at their IdP, not just fill the table once every
ten minutes, to keep that person out. Logins can be begun only for tenants with an IdP
configured, so the table stays within that many caps; expired ones are purged whenever a
login begins.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
from gateway.keys.master import SecretBox, SecretError
from gateway.store.account_records import OidcPendingRecord
from gateway.store.protocols import AccountStore

PENDING_SECONDS: Final = 600
MAX_PENDING_PER_TENANT: Final = 1024
MAX_BODY: Final = 1024 * 1024
#: How long a provider's discovery document is kept, and for how many issuers at most.
DISCOVERY_SECONDS: Final = 300.0
MAX_PROVIDERS: Final = 256
TIMEOUT: Final = aiohttp.ClientTimeout(total=10)
ALGORITHMS: Final = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA")

log = logging.getLogger("sluis.accounts")


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
    """What the callback needs to finish a login (sealed in the store)."""

    tenant: str
    nonce: str
    verifier: str
    redirect_uri: str
    provider: Provider

    def to_bytes(self) -> bytes:
        p = self.provider
        return orjson.dumps({
            "nonce": self.nonce, "verifier": self.verifier, "redirect_uri": self.redirect_uri,
            "issuer": p.issuer, "authorization_endpoint": p.authorization_endpoint,
            "token_endpoint": p.token_endpoint, "jwks_uri": p.jwks_uri,
        })  # fmt: skip

    @classmethod
    def from_bytes(cls, tenant: str, raw: bytes) -> Pending:
        d = orjson.loads(raw)
        provider = Provider(
            d["issuer"], d["authorization_endpoint"], d["token_endpoint"], d["jwks_uri"]
        )
        return cls(tenant, d["nonce"], d["verifier"], d["redirect_uri"], provider)


@dataclass(frozen=True)
class Identity:
    tenant: str
    email: str


def state_hash(state: str) -> bytes:
    return hashlib.sha256(state.encode()).digest()


def _sealed_owner(tenant: str, hashed: bytes) -> str:
    """The associated data of a pending login's seal: it opens on its own row only."""
    return f"oidc-pending:{tenant}:{hashed.hex()}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def code_challenge(verifier: str) -> str:
    """RFC 7636 section 4.2, S256: base64url(sha256(verifier)) without padding (two lines,
    not worth a dependency)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OidcLogins:
    """Begins and completes logins; one per gateway process, any of which may complete a
    login another began (they share the store and the master key)."""

    def __init__(
        self,
        accounts: AccountStore,
        box: SecretBox,
        *,
        allow_private: bool,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._accounts = accounts
        self._box = box
        self._allow_private = allow_private
        self._clock = clock
        #: issuer -> (provider, monotonic expiry): the sign-in page is open to anyone, so a
        #: burst of it must not become a burst of requests to the customer's IdP.
        self._providers: OrderedDict[str, tuple[Provider, float]] = OrderedDict()

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
        """The provider's endpoints, from its discovery document (kept for
        `DISCOVERY_SECONDS` per issuer, at most `MAX_PROVIDERS` issuers)."""
        kept = self._providers.get(issuer)
        if kept is not None and kept[1] > time.monotonic():
            return kept[0]
        provider = await self._discover(issuer)
        self._providers[issuer] = (provider, time.monotonic() + DISCOVERY_SECONDS)
        self._providers.move_to_end(issuer)
        while len(self._providers) > MAX_PROVIDERS:
            self._providers.popitem(last=False)
        return provider

    async def _discover(self, issuer: str) -> Provider:
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
        now = self._clock()
        hashed = state_hash(state)
        sealed = self._box.seal(pending.to_bytes(), _sealed_owner(pending.tenant, hashed))
        record = OidcPendingRecord(
            hashed, pending.tenant, sealed, now, now + timedelta(seconds=PENDING_SECONDS)
        )
        self._accounts.purge_oidc_pending(now)
        dropped = self._accounts.put_oidc_pending(record, keep=MAX_PENDING_PER_TENANT)
        if dropped:
            log.warning(
                "tenant %s has more than %d sign-ins pending at its identity provider; "
                "the oldest %d were dropped",
                pending.tenant, MAX_PENDING_PER_TENANT, dropped,
            )  # fmt: skip

    async def begin(self, config: OidcClientConfig, redirect_uri: str) -> str:
        """The IdP URL to send the browser to."""
        provider = await self.discover(config.issuer)
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        pending = Pending(config.tenant, nonce, verifier, redirect_uri, provider)
        await asyncio.to_thread(self._remember, state, pending)
        query = urlencode({
            "response_type": "code", "client_id": config.client_id,
            "redirect_uri": redirect_uri, "scope": "openid email profile", "state": state,
            "nonce": nonce, "code_challenge": code_challenge(verifier),
            "code_challenge_method": "S256",
        })  # fmt: skip
        sep = "&" if "?" in provider.authorization_endpoint else "?"
        return f"{provider.authorization_endpoint}{sep}{query}"

    async def pending_tenant(self, state: str) -> str | None:
        """The tenant a returning browser's login began for (None: unknown or expired)."""
        found = await asyncio.to_thread(self._accounts.get_oidc_pending, state_hash(state))
        if found is None or found.expires_at <= self._clock():
            return None
        return found.tenant

    def _open(self, record: OidcPendingRecord | None) -> Pending:
        if record is None or record.expires_at <= self._clock():
            raise OidcFailed("this sign-in expired or was used already; start again")
        try:
            raw = self._box.open(
                record.sealed_login, _sealed_owner(record.tenant, record.state_hash)
            )
            return Pending.from_bytes(record.tenant, raw)
        except (SecretError, orjson.JSONDecodeError, KeyError, TypeError):
            raise OidcFailed("this sign-in cannot be finished here; start again") from None

    async def complete(self, config: OidcClientConfig, state: str, code: str) -> Identity:
        """Exchange the code and verify the ID token; the verified email and tenant."""
        taken = await asyncio.to_thread(self._accounts.take_oidc_pending, state_hash(state))
        pending = self._open(taken)
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
