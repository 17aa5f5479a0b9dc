"""Which role may do what, in one table.

Routes and console pages name a capability; `check` compares it with the principal's role
and tenant. Nothing is allowed by default: a route without a rule is refused (and the route
matrix test fails). Operators run the gateway but never see a tenant's people or change its
authorisations; auditors read the ledger and history but no secrets; viewers read status.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final, Literal

from gateway.accounts.errors import Forbidden, StepUpRequired
from gateway.accounts.principal import Principal
from gateway.store.account_records import Role

Capability = Literal[
    "gateway.bootstrap",
    "gateway.operate",
    "tenant.read",
    "tenant.configure",
    "tenant.authorise",
    "tenant.audit",
    "tenant.accounts",
    "self",
]

GRANTS: Final[dict[Capability, frozenset[Role]]] = {
    #: Inviting operators: the only thing the configuration's bootstrap token may do.
    "gateway.bootstrap": frozenset({"operator"}),
    "gateway.operate": frozenset({"operator"}),
    "tenant.read": frozenset({"admin", "auditor", "viewer"}),
    "tenant.configure": frozenset({"admin"}),
    "tenant.authorise": frozenset({"admin"}),
    "tenant.audit": frozenset({"admin", "auditor"}),
    "tenant.accounts": frozenset({"admin"}),
    "self": frozenset({"operator", "admin", "auditor", "viewer"}),
}
#: How long a fresh TOTP code given on a credential lets it take guarded actions.
STEP_UP_SECONDS: Final = 300


def allowed(principal: Principal, capability: Capability, tenant: str | None) -> bool:
    if principal.role not in GRANTS[capability]:
        return False
    if capability.startswith("tenant."):
        return tenant is not None and principal.tenant == tenant
    return True


def check(principal: Principal, capability: Capability, tenant: str | None) -> None:
    """Raise `Forbidden` unless the principal's role has the capability for this tenant."""
    if principal.is_bootstrap and capability != "gateway.bootstrap":
        raise Forbidden("the bootstrap token can only create the first operator account")
    if not allowed(principal, capability, tenant):
        article = "an" if principal.role[0] in "aeiou" else "a"
        raise Forbidden(
            f"{article} {principal.role} may not do this"
            + ("" if tenant is None or principal.tenant == tenant else " for this tenant")
        )


def check_step_up(principal: Principal, now: datetime) -> None:
    """Raise `StepUpRequired` unless a fresh TOTP code was given on this credential within
    the last `STEP_UP_SECONDS`."""
    at = principal.step_up_at
    if (
        at is None
        or now - at > timedelta(seconds=STEP_UP_SECONDS)
        or at > now + timedelta(seconds=5)
    ):
        raise StepUpRequired(
            "this action needs a fresh code from your authenticator app (step-up) first"
        )
