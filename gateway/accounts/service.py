"""The accounts service: invitations, enrolment, sign-in, sessions, step-up, API tokens.

One object (`Accounts`, at `Services.accounts`) that the admin API, the console and the
CLI share; all methods are synchronous store work (call them from a worker thread).

Secrets handed out (invitation links, session cookies, API tokens, recovery codes) are
random, shown once and stored only as hashes. TOTP secrets are sealed under the master key
with the account id as associated data. Actions on a tenant's accounts (invited, enrolled,
disabled, tokens created and revoked, sign-ins throttled) are audit entries in that
tenant's ledger, naming accounts by their opaque id only.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from gateway.accounts import passwords, totp
from gateway.accounts.errors import (
    AccountExists,
    BadCode,
    Forbidden,
    InvitationInvalid,
    SignInFailed,
    Throttled,
    UnknownAccount,
)
from gateway.accounts.oidc import Identity, OidcClientConfig, OidcFailed
from gateway.accounts.policy import check
from gateway.accounts.principal import Principal, at_most, bootstrap_principal, may_grant_role
from gateway.accounts.throttle import Throttle
from gateway.keys.master import SecretBox
from gateway.ledger.audit import SYSTEM, Actor, AuditAction, AuditCounts, audit
from gateway.ledger.kinds import LedgerEntry
from gateway.ledger.log import Ledger
from gateway.ledger.record import recording
from gateway.store.account_records import (
    AccountRecord,
    ApiTokenRecord,
    InvitationRecord,
    OidcRecord,
    Role,
    SessionRecord,
)
from gateway.store.protocols import Store
from gateway.store.records import AlreadyExists, NotFound

log = logging.getLogger("sluis.accounts")

INVITATION_LIFETIME: Final = timedelta(hours=72)
SESSION_IDLE: Final = timedelta(minutes=30)
SESSION_ABSOLUTE: Final = timedelta(hours=12)
#: A session's last-seen time is written at most this often (not on every request).
SESSION_TOUCH: Final = timedelta(seconds=60)
MAX_TOKEN_LIFETIME: Final = timedelta(days=366)
_EMAIL: Final = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{1,63}$")


def secret_hash(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def normalise_email(email: str) -> str:
    return email.strip().lower()


def _totp_owner(account_id: str) -> str:
    return f"totp:{account_id}"


def _oidc_owner(tenant: str) -> str:
    return f"oidc:{tenant}"


@dataclass(frozen=True)
class Invitation:
    account_id: str
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class PendingInvitation:
    account_id: str
    email: str
    name: str
    role: Role
    tenant: str | None
    expires_at: datetime


@dataclass(frozen=True)
class Enrolment:
    secret: str
    uri: str


@dataclass(frozen=True)
class SignedIn:
    principal: Principal
    #: The session cookie's value: shown to the browser once, kept only as a hash.
    session: str


@dataclass(frozen=True)
class Account:
    """An account as shown to people allowed to see the register (no secrets)."""

    id: str
    tenant: str | None
    role: Role
    email: str
    name: str
    status: str
    created_at: datetime


def account_view(record: AccountRecord) -> Account:
    r = record
    return Account(r.id, r.tenant, r.role, r.email, r.name, r.status, r.created_at)


class Accounts:
    def __init__(
        self,
        store: Store,
        box: SecretBox,
        ledger_for: Callable[[str], Ledger],
        clock: Callable[[], datetime],
        bootstrap_token: str | None = None,
    ) -> None:
        self._store = store
        self._accounts = store.accounts
        self._box = box
        self._ledger_for = ledger_for
        self._clock = clock
        self._bootstrap_hash = secret_hash(bootstrap_token) if bootstrap_token else None
        self.throttle = Throttle(store.accounts, box.derive("sluis sign-in throttle keys"))

    # ------------------------------------------------------------------ plumbing

    def _audit(
        self,
        action: AuditAction,
        tenant: str | None,
        actor: Actor,
        *,
        target: str | None = None,
        counts: AuditCounts | None = None,
    ) -> list[LedgerEntry]:
        if tenant is None:
            # Operators belong to no tenant and have no tenant ledger; their account
            # changes are logged (by id) instead.
            log.info("operator account %s: %s by %s", target, action, actor.id)
            return []
        entry = audit(
            action, time=self._clock(), tenant=tenant, actor=actor, target=target, counts=counts
        )
        return [entry]

    def _write(
        self, tenant: str | None, entries: list[LedgerEntry]
    ) -> AbstractContextManager[None]:
        """The store's transaction, with the entries appended to the tenant's ledger in it."""
        if tenant is None or not entries:
            return self._store.transaction()
        return recording(self._store, self._ledger_for(tenant), entries)

    def _account(self, account_id: str) -> AccountRecord:
        try:
            return self._accounts.get_account(account_id)
        except NotFound:
            raise UnknownAccount(f"no account {account_id}") from None

    def _totp_secret(self, account: AccountRecord) -> str:
        if account.sealed_totp is None:
            raise BadCode("this account has no authenticator app enrolled")
        return self._box.open(account.sealed_totp, _totp_owner(account.id)).decode()

    def _use_totp(self, account: AccountRecord, code: str) -> bool:
        """True if `code` is a current, unused TOTP code of the account (and uses it)."""
        step = totp.matching_step(self._totp_secret(account), code, self._clock())
        return step is not None and self._accounts.advance_totp_step(account.id, step)

    def _use_second_factor(self, account: AccountRecord, code: str) -> bool:
        if totp.looks_like_totp(code):
            return self._use_totp(account, code)
        return self._accounts.use_recovery_code(account.id, totp.recovery_hash(code))

    # ------------------------------------------------------------------ bootstrap

    def bootstrap_open(self) -> bool:
        """The configuration's bootstrap token works only until an operator has enrolled."""
        return self._bootstrap_hash is not None and not any(
            a.status == "active" for a in self._accounts.list_accounts(None)
        )

    def bootstrap(self, token: str) -> Principal | None:
        if self._bootstrap_hash is None or not secrets.compare_digest(
            secret_hash(token), self._bootstrap_hash
        ):
            return None
        if not self.bootstrap_open():
            return None
        return bootstrap_principal()

    # ------------------------------------------------------------------ invitations

    def _new_account(
        self, *, tenant: str | None, role: Role, email: str, name: str
    ) -> AccountRecord:
        email = normalise_email(email)
        if not _EMAIL.match(email):
            raise AccountExists("that is not an email address")  # pragma: no cover - API checks
        if (role == "operator") != (tenant is None):
            raise Forbidden("operators belong to no tenant; every other role to one")
        if tenant is not None:
            try:
                self._store.get_tenant(tenant)
            except NotFound:
                raise UnknownAccount(f"no tenant {tenant}") from None
        return AccountRecord(
            id=f"acc_{secrets.token_hex(8)}", tenant=tenant, role=role, email=email,
            name=name.strip(), status="invited", created_at=self._clock(),
        )  # fmt: skip

    def invite(
        self, by: Principal, *, tenant: str | None, role: Role, email: str, name: str
    ) -> Invitation:
        """A new account waiting for its owner, and the one-time link token to give them."""
        if by.is_bootstrap:
            if role != "operator":
                raise Forbidden("the bootstrap token can only invite operators")
        elif by.role == "operator":
            check(by, "gateway.operate", None)
        else:
            check(by, "tenant.accounts", tenant)
        if not may_grant_role(by.role, role):
            raise Forbidden(f"a {by.role} may not invite a {role}")
        account = self._new_account(tenant=tenant, role=role, email=email, name=name)
        token = f"sluis_inv_{secrets.token_urlsafe(32)}"
        now = self._clock()
        invitation = InvitationRecord(
            secret_hash(token), account.id, now, now + INVITATION_LIFETIME
        )
        entries = self._audit("account.invited", tenant, by.actor(), target=account.id)
        try:
            with self._write(tenant, entries):
                self._accounts.create_account(account)
                self._accounts.add_invitation(invitation)
        except AlreadyExists:
            raise AccountExists("an account with that email exists already") from None
        return Invitation(account.id, token, invitation.expires_at)

    def _open_invitation(self, token: str) -> tuple[InvitationRecord, AccountRecord]:
        found = self._accounts.invitation_by_hash(secret_hash(token))
        if found is None:
            raise InvitationInvalid("this invitation link is not valid; ask for a new one")
        if found.used_at is not None:
            raise InvitationInvalid("this invitation link was used already; sign in instead")
        if found.expires_at <= self._clock():
            raise InvitationInvalid("this invitation link has expired; ask for a new one")
        account = self._account(found.account_id)
        if account.status != "invited":
            raise InvitationInvalid("this invitation is no longer valid; ask for a new one")
        return found, account

    def invitation(self, token: str) -> PendingInvitation:
        found, a = self._open_invitation(token)
        return PendingInvitation(a.id, a.email, a.name, a.role, a.tenant, found.expires_at)

    def begin_enrolment(self, token: str) -> Enrolment:
        """The TOTP secret the invitee's app is to learn (the same one until confirmed)."""
        found, account = self._open_invitation(token)
        owner = _totp_owner(account.id)
        if found.sealed_pending_totp is not None:
            secret = self._box.open(found.sealed_pending_totp, owner).decode()
        else:
            secret = totp.new_secret()
            self._accounts.set_invitation_totp(
                found.token_hash, self._box.seal(secret.encode(), owner)
            )
        return Enrolment(secret, totp.provisioning_uri(secret, account.email))

    def complete_enrolment(self, token: str, *, password: str, code: str) -> list[str]:
        """Set the password, confirm the authenticator with a code; the recovery codes."""
        found, account = self._open_invitation(token)
        if found.sealed_pending_totp is None:
            raise BadCode("open the invitation page first to get the authenticator secret")
        passwords.check_rules(password, context=(account.email, account.name))
        owner = _totp_owner(account.id)
        secret = self._box.open(found.sealed_pending_totp, owner).decode()
        step = totp.matching_step(secret, code, self._clock())
        if step is None:
            raise BadCode("the code does not match; check the app's clock and try a new code")
        codes = totp.new_recovery_codes()
        actor = Actor(account.id, account.role)
        entries = self._audit("account.enrolled", account.tenant, actor, target=account.id)
        with self._write(account.tenant, entries):
            if not self._accounts.use_invitation(found.token_hash, self._clock()):
                raise InvitationInvalid("this invitation link was used already; sign in instead")
            self._accounts.update_account(
                account.id,
                status="active",
                password_hash=passwords.hash_password(password),
                sealed_totp=found.sealed_pending_totp,
                recovery_hashes=[totp.recovery_hash(c) for c in codes],
            )
            self._accounts.advance_totp_step(account.id, step)
        return codes

    def create_active_account(
        self,
        *,
        tenant: str | None,
        role: Role,
        email: str,
        name: str,
        password: str,
        totp_secret: str,
    ) -> tuple[Account, list[str]]:
        """An enrolled account made directly, for `sluis demo` and local provisioning
        (someone with the data directory and the master key); the API always invites."""
        passwords.check_rules(password, context=(email, name))
        account = self._new_account(tenant=tenant, role=role, email=email, name=name)
        codes = totp.new_recovery_codes()
        ready = AccountRecord(
            id=account.id, tenant=tenant, role=role, email=account.email, name=account.name,
            status="active", created_at=account.created_at,
            password_hash=passwords.hash_password(password),
            sealed_totp=self._box.seal(totp_secret.encode(), _totp_owner(account.id)),
            recovery_hashes=tuple(totp.recovery_hash(c) for c in codes),
        )  # fmt: skip
        entries = self._audit("account.enrolled", tenant, SYSTEM, target=account.id)
        try:
            with self._write(tenant, entries):
                self._accounts.create_account(ready)
        except AlreadyExists:
            raise AccountExists("an account with that email exists already") from None
        return account_view(ready), codes

    # ------------------------------------------------------------------ sign-in and sessions

    def sign_in(self, *, email: str, password: str, code: str, client: str) -> SignedIn:
        """A new session for a right email, password and second factor.

        Raises `Throttled` while this account-and-address pair (or the address) is locked,
        `SignInFailed` for every other failure, with one message whatever was wrong."""
        email = normalise_email(email)
        now = self._clock()
        wait = self.throttle.retry_after(email, client, now)
        if wait is not None:
            raise Throttled(wait)
        account = self._accounts.account_by_email(email)
        ok = passwords.verify_password(
            account.password_hash if account is not None else None, password
        )
        ok = ok and account is not None and account.status == "active"
        if ok and account is not None:
            ok = self._use_second_factor(account, code)
        if not ok or account is None:
            self._failed(email, client, account, now)
            raise SignInFailed()
        self.throttle.succeeded(email, client, now)
        if account.password_hash and passwords.needs_rehash(account.password_hash):
            self._accounts.update_account(
                account.id, password_hash=passwords.hash_password(password)
            )
        return self._new_session(account)

    def _new_session(self, account: AccountRecord) -> SignedIn:
        now = self._clock()
        value = secrets.token_urlsafe(32)
        session = SessionRecord(
            id=f"ses_{secrets.token_hex(8)}", token_hash=secret_hash(value),
            account_id=account.id, created_at=now, last_seen_at=now,
            csrf=secrets.token_urlsafe(24),
        )  # fmt: skip
        self._accounts.create_session(session)
        principal = Principal(
            account.id, account.role, account.tenant, session.id, None, session.csrf
        )
        return SignedIn(principal, value)

    def _failed(
        self, email: str, client: str, account: AccountRecord | None, now: datetime
    ) -> None:
        locked = self.throttle.failed(email, client, now)
        if locked and account is not None:
            entries = self._audit(
                "signin.throttled", account.tenant, SYSTEM, target=account.id,
                counts=AuditCounts(records=5),
            )  # fmt: skip
            with self._write(account.tenant, entries):
                pass

    def session(self, value: str) -> Principal | None:
        """The principal of a live session; None when unknown or expired (and then gone)."""
        found = self._accounts.session_by_hash(secret_hash(value))
        if found is None:
            return None
        now = self._clock()
        if now - found.last_seen_at > SESSION_IDLE or now - found.created_at > SESSION_ABSOLUTE:
            self._accounts.delete_session(found.id)
            return None
        account = self._accounts.get_account(found.account_id)
        if account.status != "active":
            self._accounts.delete_session(found.id)
            return None
        if now - found.last_seen_at > SESSION_TOUCH:
            self._accounts.touch_session(found.id, now)
        return Principal(
            account.id, account.role, account.tenant, found.id, found.step_up_at, found.csrf
        )

    def sign_out(self, value: str) -> None:
        found = self._accounts.session_by_hash(secret_hash(value))
        if found is not None:
            self._accounts.delete_session(found.id)

    def step_up(self, principal: Principal, code: str) -> Principal:
        """Check a fresh TOTP code and stamp the credential, for the guarded actions."""
        if principal.is_bootstrap:
            raise Forbidden("the bootstrap token cannot step up; sign in as an operator")
        account = self._account(principal.account_id)
        if not totp.looks_like_totp(code) or not self._use_totp(account, code):
            raise BadCode("the code is wrong, expired or used already; wait for a new code")
        now = self._clock()
        if principal.credential.startswith("ses_"):
            self._accounts.set_session_step_up(principal.credential, now)
        else:
            self._accounts.set_token_step_up(principal.credential, now)
        return Principal(
            principal.account_id, principal.role, principal.tenant, principal.credential,
            now, principal.csrf,
        )  # fmt: skip

    # ------------------------------------------------------------------ API tokens

    def create_token(
        self, by: Principal, *, name: str, role: Role, expires_at: datetime
    ) -> tuple[ApiTokenRecord, str]:
        """A token for automation, acting as `by`'s account with `role` (no more than the
        account's own), until `expires_at`; the plain token is returned once."""
        check(by, "self", by.tenant)  # refuses the bootstrap token too
        if not at_most(role, by.role):
            raise Forbidden(f"a {by.role} may not make a token with the {role} role")
        now = self._clock()
        if expires_at <= now or expires_at - now > MAX_TOKEN_LIFETIME:
            raise Forbidden("a token must expire in the future and within a year")
        plain = f"sluis_tok_{secrets.token_urlsafe(32)}"
        record = ApiTokenRecord(
            id=f"tok_{secrets.token_hex(8)}", token_hash=secret_hash(plain),
            account_id=by.account_id, tenant=by.tenant, role=role, name=name.strip(),
            created_at=now, expires_at=expires_at,
        )  # fmt: skip
        entries = self._audit("token.created", by.tenant, by.actor(), target=record.id)
        with self._write(by.tenant, entries):
            self._accounts.create_token(record)
        return record, plain

    def list_tokens(self, by: Principal) -> list[ApiTokenRecord]:
        """An admin sees the tenant's tokens, an operator the operators'; others their own."""
        found = self._accounts.list_tokens(by.tenant)
        if by.role in ("admin", "operator"):
            return found
        return [t for t in found if t.account_id == by.account_id]

    def revoke_token(self, by: Principal, token_id: str) -> ApiTokenRecord:
        try:
            token = self._accounts.get_token(token_id)
        except NotFound:
            raise UnknownAccount(f"no API token {token_id}") from None
        if token.tenant != by.tenant or (
            token.account_id != by.account_id and by.role not in ("admin", "operator")
        ):
            raise UnknownAccount(f"no API token {token_id}")
        entries = self._audit("token.revoked", by.tenant, by.actor(), target=token.id)
        with self._write(by.tenant, entries):
            return self._accounts.revoke_token(token.id, self._clock())

    def bearer(self, token: str) -> Principal | None:
        """The principal of an API token (or the open bootstrap token); None if not valid."""
        if not token.startswith("sluis_tok_"):
            return self.bootstrap(token)
        found = self._accounts.token_by_hash(secret_hash(token))
        if found is None or found.revoked_at is not None or found.expires_at <= self._clock():
            return None
        return Principal(found.account_id, found.role, found.tenant, found.id, found.step_up_at)

    # ------------------------------------------------------------------ identity providers

    def configure_oidc(
        self, by: Principal, tenant: str, *, issuer: str, client_id: str, client_secret: str
    ) -> OidcRecord:
        """Let the tenant's people sign in through its identity provider."""
        check(by, "tenant.accounts", tenant)
        now = self._clock()
        record = OidcRecord(
            tenant, issuer.rstrip("/"), client_id,
            self._box.seal(client_secret.encode(), _oidc_owner(tenant)), now,
        )  # fmt: skip
        with self._write(tenant, self._audit("oidc.configured", tenant, by.actor())):
            self._accounts.put_oidc(record)
        return record

    def remove_oidc(self, by: Principal, tenant: str) -> bool:
        check(by, "tenant.accounts", tenant)
        with self._write(tenant, self._audit("oidc.removed", tenant, by.actor())):
            return self._accounts.delete_oidc(tenant)

    def oidc_record(self, tenant: str) -> OidcRecord | None:
        return self._accounts.get_oidc(tenant)

    def oidc_client(self, tenant: str) -> OidcClientConfig | None:
        """The tenant's registration with its secret opened (None: not configured)."""
        found = self._accounts.get_oidc(tenant)
        if found is None:
            return None
        secret = self._box.open(found.sealed_secret, _oidc_owner(tenant)).decode()
        return OidcClientConfig(tenant, found.issuer, found.client_id, secret)

    def sign_in_oidc(self, identity: Identity) -> SignedIn:
        """A session for the active account of the identity's tenant with its verified
        email; the IdP vouched for the person, the register decides what they may do."""
        account = self._accounts.account_by_email(normalise_email(identity.email))
        if account is None or account.tenant != identity.tenant or account.status != "active":
            raise OidcFailed(
                "your organisation's sign-in worked, but no active Sluis account of this "
                "organisation has that email address; ask your administrator for an invitation"
            )
        return self._new_session(account)

    # ------------------------------------------------------------------ the register

    def list_accounts(self, by: Principal, tenant: str | None) -> list[Account]:
        if tenant is None:
            check(by, "gateway.operate", None)
        elif by.role != "operator":
            check(by, "tenant.audit" if by.role == "auditor" else "tenant.accounts", tenant)
        return [account_view(a) for a in self._accounts.list_accounts(tenant)]

    def get_account(self, account_id: str) -> Account:
        return account_view(self._account(account_id))

    def disable(self, by: Principal, account_id: str) -> Account:
        """Disable an account: its sessions end and its tokens are revoked at once."""
        account = self._account(account_id)
        if by.role == "operator":
            check(by, "gateway.operate", None)
        else:
            check(by, "tenant.accounts", account.tenant)  # another tenant's: refused here
        if account.id == by.account_id:
            raise Forbidden("you cannot disable your own account")
        now = self._clock()
        entries = self._audit("account.disabled", account.tenant, by.actor(), target=account.id)
        with self._write(account.tenant, entries):
            updated = self._accounts.update_account(account.id, status="disabled", disabled_at=now)
            self._accounts.delete_sessions_of(account.id)
            self._accounts.revoke_tokens_of(account.id, now)
        return account_view(updated)
