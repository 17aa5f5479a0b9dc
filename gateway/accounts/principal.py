"""The principal: who an authenticated request acts as.

A principal is an account seen through the credential that authenticated the request: a
console session, an API token (which may carry a narrower role than its account), or the
bootstrap token from the configuration (which can only create the first operator).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from gateway.ledger.audit import Actor
from gateway.store.account_records import Role

ROLES: Final[tuple[Role, ...]] = ("operator", "admin", "auditor", "viewer")
#: Roles within a tenant, from most to least power: a token may carry its account's
#: role or a lower one.
TENANT_ROLES: Final[tuple[Role, ...]] = ("admin", "auditor", "viewer")
BOOTSTRAP: Final = "bootstrap"


@dataclass(frozen=True, slots=True)
class Principal:
    account_id: str
    role: Role
    tenant: str | None
    #: What authenticated: "ses_<hex>", "tok_<hex>" or "bootstrap".
    credential: str
    #: The last fresh TOTP code given on this credential.
    step_up_at: datetime | None = None
    #: Sessions only: the anti-CSRF token every console form must carry.
    csrf: str | None = None

    @property
    def is_bootstrap(self) -> bool:
        return self.credential == BOOTSTRAP

    def actor(self) -> Actor:
        """How the ledger names this principal (an opaque id and the role)."""
        return Actor(self.account_id, self.role, self.step_up_at)


def bootstrap_principal() -> Principal:
    return Principal(BOOTSTRAP, "operator", None, BOOTSTRAP)


def may_grant_role(by: Role, role: Role) -> bool:
    """Whether a principal of role `by` may give `role` (to an invitee or a token)."""
    if by == "operator":
        return role in ("operator", "admin")
    if by == "admin":
        return role in TENANT_ROLES
    return False


def at_most(role: Role, ceiling: Role) -> bool:
    """Whether `role` is no more powerful than `ceiling` (for a token's role)."""
    if ceiling == "operator":
        return role == "operator"
    if role == "operator":
        return False
    return TENANT_ROLES.index(role) >= TENANT_ROLES.index(ceiling)
