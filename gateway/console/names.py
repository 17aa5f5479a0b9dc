"""Account ids to names, for the people of a tenant who may see who did what.

The ledger and the authorisation records hold only opaque account ids; the account register
maps them to names for the tenant's own admins and auditors. A principal the register does
not answer (another role, an error) sees the ids.
"""

from __future__ import annotations

from gateway.accounts.errors import AccountsError
from gateway.accounts.principal import Principal
from gateway.console.kit import call
from gateway.runtime.services import Services


async def account_names(services: Services, principal: Principal, tenant: str) -> dict[str, str]:
    try:
        accounts = await call(services.accounts.list_accounts, principal, tenant)
    except AccountsError:
        return {}
    return {a.id: a.name for a in accounts}
