"""Connecting a source by signing in at the vendor (OAuth 2.0 authorization code with PKCE).

Some vendors (Nmbrs, Loket.nl; HubSpot's public apps) hand out API access only to an app a
customer admin has signed in to and approved: the admin is sent to the vendor's consent
screen, the vendor sends the browser back with a one-time code, and the gateway exchanges
that code for a refresh token, which the connector keeps (sealed) and uses from then on
(`connectors.oauth.Tokens`). A connector type that works this way says so with
`ConnectorType.authorization`.

What the browser's round trip needs is kept by the browser, sealed: `begin` seals the
tenant, connector, the admin who began it, their step-up time, the PKCE verifier, the
redirect URI and an expiry under the master key, with the `state` sent to the vendor in the
associated data. Any replica holding the master key can finish it (replicas share nothing
else for it), nobody can read or change it, and it opens only with the state it was made
for. It is single-use without a table: it also names the connector's credentials as they
were when it began, and a finished connect changes them, so the same one (or any other
begun before a change of credentials) is refused before its code is sent anywhere.

The exchange goes through the connector's own client and its public-only session, so the
token endpoint is held to the same address rules, body cap and no-redirect rule as the
source (`connectors.oauth.exchange_code`). The refresh token is merged into the sealed
credentials by `gateway.tenancy.change_connector`: the ledger's `connector.changed` entry
names `credentials` and the admin, never a value.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import orjson

from connectors.base import ConnectorConfig, ConnectorError
from connectors.http import source_session
from connectors.oauth import REFRESH_TOKEN_KEY, AuthorizationServer, exchange_code, new_verifier
from connectors.registry import connector_type
from gateway.keys.master import SecretBox, SecretError
from gateway.ledger.record import Acting
from gateway.minimise.mapping import parse_mapping
from gateway.minimise.projector import Projector
from gateway.store.protocols import Store
from gateway.store.records import ConnectorRecord
from gateway.tenancy import change_connector, connector_credentials, subject_key, version_parts

#: How long a begun connect can be finished (the vendor's consent screen included).
PENDING_SECONDS: Final = 600
#: The largest sealed state a browser is trusted to hand back.
MAX_SEALED_CHARS: Final = 4096


class ConnectFailed(Exception):
    """A connect that cannot go on: `key` names the message in the console's catalogue,
    `status` the HTTP status, `values` what the message quotes (never a secret)."""

    def __init__(self, status: int, key: str, **values: str) -> None:
        super().__init__(key)
        self.status = status
        self.key = key
        self.values = values


@dataclass(frozen=True)
class Pending:
    """A begun connect, as the browser keeps it (sealed)."""

    tenant: str
    connector: str
    account_id: str
    credential: str
    step_up_at: datetime | None
    #: The connector's credentials' version part when the connect began.
    credentials_seen: str
    verifier: str
    redirect_uri: str
    expires_at: datetime

    def to_bytes(self) -> bytes:
        return orjson.dumps({
            "tenant": self.tenant, "connector": self.connector, "account": self.account_id,
            "credential": self.credential,
            "step_up_at": self.step_up_at.isoformat() if self.step_up_at else None,
            "seen": self.credentials_seen, "verifier": self.verifier,
            "redirect_uri": self.redirect_uri, "expires_at": self.expires_at.isoformat(),
        })  # fmt: skip

    @classmethod
    def from_bytes(cls, raw: bytes) -> Pending:
        d = orjson.loads(raw)
        step_up = d["step_up_at"]
        return cls(
            str(d["tenant"]), str(d["connector"]), str(d["account"]), str(d["credential"]),
            datetime.fromisoformat(step_up) if step_up else None, str(d["seen"]),
            str(d["verifier"]), str(d["redirect_uri"]), datetime.fromisoformat(d["expires_at"]),
        )  # fmt: skip


@dataclass(frozen=True)
class Begun:
    """Where to send the browser, the `state` it carries, and what the browser keeps."""

    authorize_url: str
    state: str
    sealed: str


def _owner(state: str) -> str:
    return "source-connect:" + hashlib.sha256(state.encode()).hexdigest()


def server_of(record: ConnectorRecord) -> AuthorizationServer:
    """The connector type's authorization server for this connector; `ConnectFailed` for a
    type that is not connected by signing in, or settings that name no usable one."""
    kind = connector_type(record.type)
    if kind.authorization is None:
        raise ConnectFailed(404, "connect.not_supported")
    try:
        return kind.authorization(record.base_url, record.settings)
    except ConnectorError as exc:
        raise ConnectFailed(422, "connect.bad_settings", reason=str(exc)) from None


@dataclass(frozen=True)
class Connection:
    """What a connector's page says about connecting it."""

    vendor: str
    connected: bool
    #: Why the type's authorization server cannot be used with these settings, if so.
    problem: str | None = None


def connection(box: SecretBox, record: ConnectorRecord) -> Connection | None:
    """None for a connector that is not connected by signing in: its type has no
    `authorization`, or its credentials hold no `client_id` (a HubSpot private app's
    token, where the type offers both)."""
    kind = connector_type(record.type)
    if kind.authorization is None:
        return None
    credentials = connector_credentials(box, record)
    if not credentials.get("client_id"):
        return None
    has = bool(credentials.get(REFRESH_TOKEN_KEY))
    try:
        server = kind.authorization(record.base_url, record.settings)
    except ConnectorError as exc:
        return Connection(record.type, has, str(exc))
    return Connection(server.vendor or record.type, has)


def begin(
    box: SecretBox,
    record: ConnectorRecord,
    *,
    redirect_uri: str,
    account_id: str,
    credential: str,
    step_up_at: datetime | None,
    now: datetime,
) -> Begun:
    """Start connecting `record`: the vendor's authorize URL (with the connector's
    `client_id`, a fresh state and an S256 challenge) and the sealed state to keep."""
    server = server_of(record)
    client_id = connector_credentials(box, record).get("client_id", "").strip()
    if not client_id:
        raise ConnectFailed(422, "connect.no_client")
    state, verifier = secrets.token_urlsafe(24), new_verifier()
    pending = Pending(
        record.tenant, record.id, account_id, credential, step_up_at,
        version_parts(record)["credentials"], verifier, redirect_uri,
        now + timedelta(seconds=PENDING_SECONDS),
    )  # fmt: skip
    sealed = base64.urlsafe_b64encode(box.seal(pending.to_bytes(), _owner(state))).decode()
    return Begun(server.authorize(client_id, redirect_uri, state, verifier), state, sealed)


def opened(box: SecretBox, sealed: str, state: str, now: datetime) -> Pending:
    """The begun connect the browser kept for `state`; `ConnectFailed` when it is missing,
    made for another state (another browser's, or a forged one), damaged or expired."""
    if not sealed or not state or len(sealed) > MAX_SEALED_CHARS:
        raise ConnectFailed(400, "connect.bad_state")
    try:
        raw = box.open(base64.urlsafe_b64decode(sealed.encode()), _owner(state))
        pending = Pending.from_bytes(raw)
    except (SecretError, binascii.Error, ValueError, KeyError, TypeError):
        raise ConnectFailed(400, "connect.bad_state") from None
    if pending.expires_at <= now:
        raise ConnectFailed(400, "connect.expired")
    return pending


def still_current(record: ConnectorRecord, pending: Pending) -> None:
    """Refuse a connect whose connector's credentials changed since it began (a finished
    connect changes them, so this also makes each one single-use)."""
    if version_parts(record)["credentials"] != pending.credentials_seen:
        raise ConnectFailed(409, "connect.used")


async def exchange(
    store: Store,
    box: SecretBox,
    record: ConnectorRecord,
    pending: Pending,
    code: str,
    *,
    allow_private: bool,
) -> str:
    """The refresh token the vendor gives for `code`, asked through the connector's own
    client and session; `ConnectFailed` (quoting the vendor's error code at most)."""
    server = server_of(record)
    credentials = connector_credentials(box, record)
    config = ConnectorConfig(record.type, record.base_url, credentials, record.settings)
    mapping = parse_mapping(record.mapping_text, f"mapping of connector {record.id}")
    tenant = await asyncio.to_thread(store.get_tenant, record.tenant)
    projector = Projector(mapping, subject_key(box, tenant))
    try:
        async with source_session(record.base_url, allow_private=allow_private) as session:
            client = connector_type(record.type).connector(config, projector, session)
            return await exchange_code(
                client, server, server.client(credentials), code=code,
                redirect_uri=pending.redirect_uri, verifier=pending.verifier,
            )  # fmt: skip
    except ConnectorError as exc:
        status = 400 if exc.kind == "auth" else 502
        raise ConnectFailed(status, "connect.exchange_failed", reason=str(exc)) from None


def keep_refresh_token(
    store: Store,
    box: SecretBox,
    pending: Pending,
    refresh_token: str,
    *,
    now: datetime,
    by: Acting,
) -> ConnectorRecord:
    """Merge the refresh token into the connector's sealed credentials, in one transaction
    with its `connector.changed` entry, unless the credentials moved on meanwhile."""
    with store.transaction():
        current = store.get_connector(pending.tenant, pending.connector)
        still_current(current, pending)
        merged = {**connector_credentials(box, current), REFRESH_TOKEN_KEY: refresh_token}
        return change_connector(store, box, current, credentials=merged, now=now, by=by)
