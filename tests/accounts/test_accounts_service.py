"""The accounts service on a real store: invitations, enrolment, sign-in with a second
factor, backoff, sessions, step-up, API tokens and the register's audit entries."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest

from gateway.accounts.errors import (
    AccountExists,
    BadCode,
    Forbidden,
    InvitationInvalid,
    SignInFailed,
    StepUpRequired,
    Throttled,
    UnknownAccount,
    WeakPassword,
)
from gateway.accounts.policy import check_step_up
from gateway.accounts.principal import Principal, bootstrap_principal
from gateway.accounts.service import Accounts
from gateway.ledger.audit import AuditEntry
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.tenancy import create_tenant
from tests.principals import system

BOOTSTRAP = "bootstrap-token-for-account-tests-0123"
PASSWORD = "quiet lantern orbit 7 meadow"
EMAIL = "Dana.Jansen@Acme.example"
T0 = datetime(2026, 11, 30, 9, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def services(tmp_path: Path, clock: Clock) -> Iterator[Services]:
    key = base64.b64encode(bytes(range(32))).decode()
    s = Services.open(
        Settings(data_dir=tmp_path, admin_token=BOOTSTRAP, master_key=key, scheduler=False),
        clock=clock,
    )
    create_tenant(s.store, s.box, "acme", "Acme", clock(), by=system(s, "acme"))
    create_tenant(s.store, s.box, "globex", "Globex", clock(), by=system(s, "globex"))
    yield s
    s.close()


@pytest.fixture
def accounts(services: Services) -> Accounts:
    return services.accounts


def operator(accounts: Accounts) -> Principal:
    existing = accounts._accounts.list_accounts(None)
    if existing:
        return Principal(existing[0].id, "operator", None, "test")
    account, _ = accounts.create_active_account(
        tenant=None, role="operator", email="ops@gateway.example", name="Op",
        password=PASSWORD, totp_secret=pyotp.random_base32(),
    )  # fmt: skip
    return Principal(account.id, "operator", None, "test")


def enrol(
    accounts: Accounts, clock: Clock, *, role: str = "admin", email: str = EMAIL
) -> tuple[str, str, list[str]]:
    """Invite into acme and enrol; returns (account id, TOTP secret, recovery codes)."""
    by = operator(accounts) if role == "admin" else admin_of(accounts)
    invitation = accounts.invite(by, tenant="acme", role=role, email=email, name="Dana")  # type: ignore[arg-type]
    secret = accounts.begin_enrolment(invitation.token).secret
    codes = accounts.complete_enrolment(
        invitation.token, password=PASSWORD, code=pyotp.TOTP(secret).at(clock())
    )
    clock.advance(seconds=30)  # the enrolment code's step is used up
    return invitation.account_id, secret, codes


def admin_of(accounts: Accounts) -> Principal:
    found = accounts.list_accounts(bootstrap_principal_for(accounts), "acme")
    admin = next(a for a in found if a.role == "admin")
    return Principal(admin.id, "admin", "acme", "test")


def bootstrap_principal_for(accounts: Accounts) -> Principal:
    ops = accounts._accounts.list_accounts(None)
    return Principal(ops[0].id, "operator", None, "test")


def code_at(secret: str, clock: Clock) -> str:
    return pyotp.TOTP(secret).at(clock())


# --------------------------------------------------------------------------- invitations


def test_an_invitation_enrols_once_with_a_strong_password_and_a_right_code(
    accounts: Accounts, clock: Clock
) -> None:
    op = operator(accounts)
    invitation = accounts.invite(op, tenant="acme", role="admin", email=EMAIL, name="Dana")
    pending = accounts.invitation(invitation.token)
    assert (pending.email, pending.role, pending.tenant) == (
        "dana.jansen@acme.example",
        "admin",
        "acme",
    )
    first = accounts.begin_enrolment(invitation.token)
    assert accounts.begin_enrolment(invitation.token).secret == first.secret
    assert first.uri.startswith("otpauth://totp/Sluis:dana.jansen%40acme.example?secret=")
    good = code_at(first.secret, clock)
    for weak in ("short", "password1234", "dana.jansen@acme", "acmeacmeacmeacme", "x" * 300):
        with pytest.raises(WeakPassword):
            accounts.complete_enrolment(invitation.token, password=weak, code=good)
    with pytest.raises(BadCode):
        accounts.complete_enrolment(invitation.token, password=PASSWORD, code="000000")
    codes = accounts.complete_enrolment(invitation.token, password=PASSWORD, code=good)
    assert len(codes) == 10 and len(set(codes)) == 10
    with pytest.raises(InvitationInvalid, match="used already"):
        accounts.complete_enrolment(invitation.token, password=PASSWORD, code=good)
    with pytest.raises(InvitationInvalid):
        accounts.invitation("sluis_inv_made-up")
    assert accounts.get_account(invitation.account_id).status == "active"


def test_an_invitation_expires_and_an_email_is_taken_once(accounts: Accounts, clock: Clock) -> None:
    op = operator(accounts)
    invitation = accounts.invite(op, tenant="acme", role="admin", email=EMAIL, name="Dana")
    with pytest.raises(AccountExists):
        accounts.invite(op, tenant="globex", role="admin", email=EMAIL.upper(), name="Dana")
    clock.advance(hours=73)
    with pytest.raises(InvitationInvalid, match="expired"):
        accounts.begin_enrolment(invitation.token)


def test_who_may_invite_whom(accounts: Accounts, clock: Clock) -> None:
    op = operator(accounts)
    with pytest.raises(Forbidden):
        accounts.invite(op, tenant="acme", role="viewer", email="v@acme.example", name="V")
    enrol(accounts, clock)
    admin = admin_of(accounts)
    accounts.invite(admin, tenant="acme", role="auditor", email="dpo@acme.example", name="D")
    with pytest.raises(Forbidden):
        accounts.invite(admin, tenant="globex", role="viewer", email="v@globex.example", name="V")
    with pytest.raises(Forbidden):
        accounts.invite(admin, tenant=None, role="operator", email="o@x.example", name="O")
    viewer = Principal("acc_0000000000000009", "viewer", "acme", "test")
    with pytest.raises(Forbidden):
        accounts.invite(viewer, tenant="acme", role="viewer", email="w@acme.example", name="W")


# --------------------------------------------------------------------------- sign-in


def test_sign_in_needs_password_and_an_unused_code(accounts: Accounts, clock: Clock) -> None:
    account_id, secret, recovery = enrol(accounts, clock)
    code = code_at(secret, clock)
    signed = accounts.sign_in(email=EMAIL, password=PASSWORD, code=code, client="192.0.2.1")
    assert signed.principal.account_id == account_id and signed.principal.tenant == "acme"
    assert signed.principal.csrf and signed.principal.credential.startswith("ses_")
    with pytest.raises(SignInFailed):  # the same code twice
        accounts.sign_in(email=EMAIL, password=PASSWORD, code=code, client="192.0.2.1")
    clock.advance(seconds=30)
    with pytest.raises(SignInFailed):
        accounts.sign_in(email=EMAIL, password="wrong " + PASSWORD, code=code_at(secret, clock),
                         client="192.0.2.1")  # fmt: skip
    with pytest.raises(SignInFailed):
        accounts.sign_in(email="nobody@acme.example", password=PASSWORD, code="123456",
                         client="192.0.2.1")  # fmt: skip
    again = accounts.sign_in(email=EMAIL, password=PASSWORD, code=recovery[0], client="192.0.2.1")
    assert again.session != signed.session
    with pytest.raises(SignInFailed):
        accounts.sign_in(email=EMAIL, password=PASSWORD, code=recovery[0], client="192.0.2.1")


def test_failures_lock_the_attackers_address_not_the_victim(
    accounts: Accounts, clock: Clock, services: Services
) -> None:
    _, secret, _ = enrol(accounts, clock)
    attacker, victim = "203.0.113.66", "198.51.100.7"
    for _ in range(5):
        with pytest.raises(SignInFailed):
            accounts.sign_in(email=EMAIL, password="guess " * 3, code="000000", client=attacker)
    with pytest.raises(Throttled) as locked:
        accounts.sign_in(email=EMAIL, password=PASSWORD, code=code_at(secret, clock),
                         client=attacker)  # fmt: skip
    assert 1 <= locked.value.retry_after <= 31
    # The owner, from their own address, signs in while the attacker waits.
    accounts.sign_in(email=EMAIL, password=PASSWORD, code=code_at(secret, clock), client=victim)
    # The lock grows, but never beyond 15 minutes: the attacker cannot lock anyone for good.
    waits = []
    for _ in range(12):
        clock.advance(hours=1)
        with pytest.raises(SignInFailed):
            accounts.sign_in(email=EMAIL, password="guess " * 3, code="000000", client=attacker)
        with pytest.raises(Throttled) as t:
            accounts.sign_in(email=EMAIL, password="x" * 12, code="000000", client=attacker)
        waits.append(t.value.retry_after)
    assert waits == sorted(waits) and max(waits) <= 15 * 60 + 1
    ledger = services.ledger("acme").entries(limit=100)
    throttled = [r.entry for r in ledger if isinstance(r.entry, AuditEntry)
                 and r.entry.action == "signin.throttled"]  # fmt: skip
    assert len(throttled) == 1 and throttled[0].actor == "system"


def test_an_address_spraying_many_accounts_is_slowed(accounts: Accounts, clock: Clock) -> None:
    enrol(accounts, clock)
    for n in range(20):
        with pytest.raises(SignInFailed):
            accounts.sign_in(email=f"user{n}@acme.example", password="x" * 12, code="000000",
                             client="203.0.113.9")  # fmt: skip
    with pytest.raises(Throttled):
        accounts.sign_in(email="other@acme.example", password="x" * 12, code="000000",
                         client="203.0.113.9")  # fmt: skip


def test_sessions_end_when_idle_old_signed_out_or_disabled(
    accounts: Accounts, clock: Clock
) -> None:
    account_id, secret, _ = enrol(accounts, clock)

    def sign_in() -> str:
        clock.advance(seconds=30)
        return accounts.sign_in(email=EMAIL, password=PASSWORD, code=code_at(secret, clock),
                                client="192.0.2.1").session  # fmt: skip

    session = sign_in()
    clock.advance(minutes=29)
    assert accounts.session(session) is not None
    clock.advance(minutes=31)
    assert accounts.session(session) is None
    session = sign_in()
    for _ in range(25):  # active all along, but 12 hours is the most a session lives
        clock.advance(minutes=29)
        accounts.session(session)
    assert accounts.session(session) is None
    session = sign_in()
    accounts.sign_out(session)
    assert accounts.session(session) is None
    session = sign_in()
    op = bootstrap_principal_for(accounts)
    accounts.disable(op, account_id)
    assert accounts.session(session) is None


def test_step_up_takes_a_fresh_code_and_lasts_five_minutes(
    accounts: Accounts, clock: Clock
) -> None:
    _, secret, _ = enrol(accounts, clock)
    signed = accounts.sign_in(email=EMAIL, password=PASSWORD, code=code_at(secret, clock),
                              client="192.0.2.1")  # fmt: skip
    with pytest.raises(StepUpRequired):
        check_step_up(signed.principal, clock())
    with pytest.raises(BadCode):  # the sign-in's code is used up
        accounts.step_up(signed.principal, code_at(secret, clock))
    clock.advance(seconds=30)
    stepped = accounts.step_up(signed.principal, code_at(secret, clock))
    check_step_up(stepped, clock())
    assert accounts.session(signed.session).step_up_at == clock()  # type: ignore[union-attr]
    clock.advance(minutes=6)
    with pytest.raises(StepUpRequired):
        check_step_up(stepped, clock())


# --------------------------------------------------------------------------- tokens


def test_tokens_carry_no_more_than_their_account_and_stop_when_revoked(
    accounts: Accounts, clock: Clock
) -> None:
    enrol(accounts, clock)
    admin = admin_of(accounts)
    until = clock() + timedelta(days=30)
    record, plain = accounts.create_token(admin, name="ci", role="viewer", expires_at=until)
    principal = accounts.bearer(plain)
    assert principal is not None and (principal.role, principal.tenant) == ("viewer", "acme")
    with pytest.raises(Forbidden):
        accounts.create_token(principal, name="up", role="admin", expires_at=until)
    with pytest.raises(Forbidden):
        accounts.create_token(
            admin, name="long", role="admin", expires_at=clock() + timedelta(days=400)
        )
    assert [t.id for t in accounts.list_tokens(admin)] == [record.id]
    accounts.revoke_token(admin, record.id)
    assert accounts.bearer(plain) is None
    _, second = accounts.create_token(
        admin, name="short", role="admin", expires_at=clock() + timedelta(hours=1)
    )
    clock.advance(hours=2)
    assert accounts.bearer(second) is None
    with pytest.raises(UnknownAccount):
        accounts.revoke_token(Principal("acc_0000000000000001", "admin", "globex", "t"), record.id)


def test_the_bootstrap_token_closes_once_an_operator_has_enrolled(accounts: Accounts) -> None:
    assert accounts.bearer(BOOTSTRAP) == bootstrap_principal()
    assert accounts.bearer("wrong") is None
    operator(accounts)
    assert accounts.bearer(BOOTSTRAP) is None


def test_the_ledger_names_accounts_by_id_only(
    accounts: Accounts, clock: Clock, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        account_id, secret, _ = enrol(accounts, clock)
        accounts.sign_in(email=EMAIL, password=PASSWORD, code=code_at(secret, clock),
                         client="192.0.2.1")  # fmt: skip
        for _ in range(6):
            with pytest.raises((SignInFailed, Throttled)):
                accounts.sign_in(email=EMAIL, password="nope " * 3, code="1", client="192.0.2.44")
    entries = [r.entry for r in services.ledger("acme").entries(limit=100)]
    actions = [e.action for e in entries if isinstance(e, AuditEntry)]
    assert actions[-3:] == ["account.invited", "account.enrolled", "signin.throttled"]
    raw = b"".join(body for _, body, _ in services.store.ledger.iter_entries("acme"))
    for secret_text in ("dana", "acme.example", "192.0.2", PASSWORD, secret):
        assert secret_text.encode() not in raw.lower()
        assert secret_text.lower() not in caplog.text.lower()
    assert account_id.encode() in raw


def test_guessing_spread_over_addresses_stops_strangers_not_the_owner(
    accounts: Accounts, clock: Clock
) -> None:
    _, secret, _ = enrol(accounts, clock)
    home = "198.51.100.20"
    accounts.sign_in(email=EMAIL, password=PASSWORD, code=code_at(secret, clock), client=home)
    for n in range(20):  # one guess each from twenty addresses: no pair and no address locks
        with pytest.raises(SignInFailed):
            accounts.sign_in(email=EMAIL, password="guess " * 3, code="000000",
                             client=f"203.0.113.{n}")  # fmt: skip
    with pytest.raises(Throttled):
        accounts.sign_in(email=EMAIL, password=PASSWORD, code=code_at(secret, clock),
                         client="192.0.2.200")  # fmt: skip
    clock.advance(seconds=30)
    signed = accounts.sign_in(email=EMAIL, password=PASSWORD, code=code_at(secret, clock),
                              client=home)  # fmt: skip
    assert signed.principal.tenant == "acme"


def test_a_hash_made_with_other_parameters_is_remade_at_sign_in(
    accounts: Accounts, clock: Clock, services: Services
) -> None:
    from argon2 import PasswordHasher

    account_id, secret, _ = enrol(accounts, clock)
    old = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1).hash(PASSWORD)
    services.store.accounts.update_account(account_id, password_hash=old)
    accounts.sign_in(
        email=EMAIL, password=PASSWORD, code=code_at(secret, clock), client="192.0.2.1"
    )
    remade = services.store.accounts.get_account(account_id).password_hash
    assert remade is not None and remade != old and "m=9216,t=4,p=1" in remade
