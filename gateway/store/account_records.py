"""Row types of the account register (`gateway.store.protocols.AccountStore`).

The register is the only place that ties an opaque account id (`acc_<16 hex>`, the id the
ledger names) to a person's name and email. Secrets are never kept in the clear: passwords
as argon2 hashes, TOTP secrets sealed under the master key, recovery codes, invitation,
session and API tokens as SHA-256 hashes, so a copy of the database signs nobody in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Role = Literal["operator", "admin", "auditor", "viewer"]
AccountStatus = Literal["invited", "active", "disabled"]


@dataclass(frozen=True)
class AccountRecord:
    id: str
    #: None for operators: they belong to the gateway, not to a tenant.
    tenant: str | None
    role: Role
    #: Lower-cased; unique over the gateway (it is what a person signs in with).
    email: str
    name: str
    status: AccountStatus
    created_at: datetime
    password_hash: str | None = field(default=None, repr=False)
    sealed_totp: bytes | None = field(default=None, repr=False)
    #: The last TOTP time step accepted: a code of that step or earlier is never taken again.
    totp_step: int = 0
    recovery_hashes: tuple[bytes, ...] = field(default=(), repr=False)
    disabled_at: datetime | None = None


@dataclass(frozen=True)
class InvitationRecord:
    token_hash: bytes = field(repr=False)
    account_id: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    #: The TOTP secret offered during enrolment (sealed), kept until the invitee confirms it.
    sealed_pending_totp: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SessionRecord:
    id: str
    token_hash: bytes = field(repr=False)
    account_id: str
    created_at: datetime
    last_seen_at: datetime
    #: The anti-CSRF token every state-changing console form carries.
    csrf: str = field(repr=False)
    step_up_at: datetime | None = None


@dataclass(frozen=True)
class ApiTokenRecord:
    id: str
    token_hash: bytes = field(repr=False)
    account_id: str
    tenant: str | None
    role: Role
    name: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    step_up_at: datetime | None = None


@dataclass(frozen=True)
class ThrottleRecord:
    """Failed sign-ins counted under one key (an account, or a keyed client address)."""

    key: str
    failures: int
    first_failure_at: datetime
    locked_until: datetime | None = None


@dataclass(frozen=True)
class OidcRecord:
    """A tenant's registration at its own identity provider (the secret sealed)."""

    tenant: str
    issuer: str
    client_id: str
    sealed_secret: bytes = field(repr=False)
    updated_at: datetime


@dataclass(frozen=True)
class OidcPendingRecord:
    """A sign-in begun at a tenant's identity provider, waiting for the provider's callback.

    Found by the SHA-256 of the login's `state`, never the state itself: a copy of the
    database must not let anyone finish someone else's login. What the callback needs
    (nonce, PKCE verifier, the provider's endpoints, the redirect URI) is one blob sealed
    under the master key by `gateway.accounts.oidc`; the store never opens it.
    """

    state_hash: bytes = field(repr=False)
    tenant: str
    sealed_login: bytes = field(repr=False)
    created_at: datetime
    expires_at: datetime
