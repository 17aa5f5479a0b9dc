"""Role checks and step-up for console pages, on top of `gateway.accounts.policy`.

Pages check with the same policy the API uses, so a page can never show or do more than the
principal's role allows; `allowed` only decides which buttons a page draws (the action
behind a button checks again).
"""

from __future__ import annotations

from datetime import datetime

from gateway.accounts.errors import BadCode, Forbidden, StepUpRequired
from gateway.accounts.policy import Capability, check, check_step_up
from gateway.accounts.principal import Principal
from gateway.console.i18n import Translate
from gateway.console.kit import Form, call
from gateway.ledger.record import Acting
from gateway.runtime.services import Services


def allowed(principal: Principal, capability: Capability, tenant: str | None) -> bool:
    try:
        check(principal, capability, tenant)
    except Forbidden:
        return False
    return True


def fresh(principal: Principal, now: datetime) -> bool:
    """A TOTP code was confirmed on this session recently enough for a step-up action."""
    try:
        check_step_up(principal, now)
    except StepUpRequired:
        return False
    return True


async def stepped_up(
    services: Services,
    principal: Principal,
    form: Form,
    errors: dict[str, str],
    t: Translate,
) -> Principal | None:
    """The principal stamped with a fresh code from the form (or already fresh), or None
    with the reason under `errors["code"]`."""
    code = form.get("code", "").strip()[:64]
    if code:
        try:
            stamped: Principal = await call(services.accounts.step_up, principal, code)
        except BadCode:
            errors["code"] = t("common.code_bad")
            return None
        return stamped
    if fresh(principal, services.clock()):
        return principal
    errors["code"] = t("common.code_missing")
    return None


def acting(services: Services, principal: Principal, tenant: str) -> Acting:
    """Who acts, on which tenant's ledger: what every domain function that changes a
    tenant records in the same transaction as its change."""
    return Acting(principal.actor(), services.ledger(tenant))
