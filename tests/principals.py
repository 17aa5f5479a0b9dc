"""People for tests: enrolled accounts with API tokens, made through the real `Accounts`.

`People(services)` makes, on first use, an operator and per tenant an account of each role,
each with a known password and TOTP secret and an API token; `token(tenant, role)` gives the
token with a fresh step-up stamped on it (as `POST /admin/v1/step-up` would), so tests of
other things do not each have to walk through sign-in. Tests of sign-in and step-up
themselves use `code()` and the real routes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

import pyotp

from gateway.accounts.principal import Principal
from gateway.ledger.audit import SYSTEM, Actor
from gateway.ledger.record import Acting
from gateway.runtime.services import Services
from gateway.store.account_records import Role

PASSWORD: Final = "correct horse battery staple 42"
TOTP_SECRET: Final = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def code(secret: str = TOTP_SECRET, at: datetime | None = None) -> str:
    return pyotp.TOTP(secret).at(at or datetime.now(UTC))


def email_of(role: Role, tenant: str | None) -> str:
    return f"{role}@{tenant or 'operators'}.example.test"


class People:
    def __init__(self, services: Services) -> None:
        self.services = services
        #: (tenant, role) -> (account id, token id, plain token)
        self._made: dict[tuple[str | None, Role], tuple[str, str, str]] = {}

    def _make(self, tenant: str | None, role: Role) -> tuple[str, str, str]:
        key = (tenant, role)
        if key not in self._made:
            accounts = self.services.accounts
            account, _ = accounts.create_active_account(
                tenant=tenant, role=role, email=email_of(role, tenant),
                name=f"{role.title()} Person", password=PASSWORD, totp_secret=TOTP_SECRET,
            )  # fmt: skip
            me = Principal(account.id, role, tenant, "test")
            until = datetime.now(UTC) + timedelta(days=30)
            record, plain = accounts.create_token(me, name="tests", role=role, expires_at=until)
            self._made[key] = (account.id, record.id, plain)
        return self._made[key]

    def account(self, tenant: str | None, role: Role = "admin") -> str:
        return self._make(tenant, role)[0]

    def token(self, tenant: str | None, role: Role = "admin", *, step_up: bool = True) -> str:
        """The (tenant, role) account's API token; with a fresh step-up stamped on it."""
        if tenant is None:
            role = "operator"
        _, token_id, plain = self._make(tenant, role)
        if step_up:
            self.services.store.accounts.set_token_step_up(token_id, self.services.clock())
        return plain

    def operator(self) -> str:
        return self.token(None, "operator")

    def acting(self, tenant: str, role: Role = "admin") -> Acting:
        """Acting as the tenant's account of `role`, for direct domain calls."""
        actor = Actor(self.account(tenant, role), role, self.services.clock())
        return Acting(actor, self.services.ledger(tenant))


def system(services: Services, tenant: str) -> Acting:
    """The gateway acting on its own (for tests that set up state below the API)."""
    return Acting(SYSTEM, services.ledger(tenant))
