"""The end of a tenant's contract: termination, then crypto-shredding.

`terminate` stops the tenant's processing at once: every active authorisation is revoked
(so syncs stop before their next page and the feed withholds everything, by the same
checks a revocation always meets), no new one can be given (`TenantEnded`), and the ledger
records it. The data stays for the grace period the platforms promise (the contract plus
90 days, `tenant_grace_days`), so a customer can still take it back.

`destroy` (an operator's action, and the scheduler's once the grace period is over) is
crypto-shredding: the tenant's subject key, the one secret that links keyed ids to
identifiers, is overwritten, and every row of the tenant's data is deleted: events,
subjects, connectors with their sealed credentials, consumers, requests, accounts. SQLite
zeroes deleted content (`secure_delete`) and the WAL is emptied (`Store.scrub`). The
ledger stays and still verifies: it holds keyed ids, field names and counts, which no one
can link to a person any more, and it ends with a signed `tenant.destroyed` entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from gateway.ledger.record import Acting
from gateway.lifecycle.erasure import scrub
from gateway.store.protocols import Store
from gateway.store.records import Instruction, Tenant, TenantEnded
from gateway.sync.instructions import revoke

log = logging.getLogger("sluis.lifecycle")


def terminate(store: Store, by: Acting, now: datetime) -> list[Instruction]:
    """Terminate `by.tenant`; the instructions revoked (the caller stops their fetches)."""
    revoked: list[Instruction] = []
    with store.transaction():
        tenant = store.get_tenant(by.tenant)
        if tenant.terminated_at is not None:
            raise TenantEnded(f"tenant {tenant.id} was terminated already")
        for connector in store.list_connectors(by.tenant):
            for instruction in store.list_instructions(by.tenant, connector.id):
                if instruction.state(now) == "active":
                    revoked.append(revoke(store, by=by, instruction=instruction, now=now))
        store.terminate_tenant(by.tenant, now)
        with by.recording(store, "tenant.terminated", now):
            pass
    return revoked


def destroy_after(tenant: Tenant, grace: timedelta) -> datetime | None:
    """When the tenant's data may be destroyed (None: not terminated)."""
    return None if tenant.terminated_at is None else tenant.terminated_at + grace


def destroy(store: Store, by: Acting, grace: timedelta, now: datetime) -> None:
    """Crypto-shred `by.tenant` once its grace period is over (see the module docstring)."""
    tenant = store.get_tenant(by.tenant)
    due = destroy_after(tenant, grace)
    if tenant.destroyed_at is not None:
        raise TenantEnded(f"tenant {tenant.id}'s data was destroyed already")
    if due is None:
        raise TenantEnded(f"tenant {tenant.id} is not terminated: terminate it first")
    if now < due:
        raise TenantEnded(
            f"tenant {tenant.id}'s data is kept until {due.isoformat()} (its grace period)"
        )
    with store.transaction(), by.recording(store, "tenant.destroyed", now):
        store.destroy_tenant_data(by.tenant, now)
    scrub(store, f"tenant {by.tenant} destroyed")


def destroy_due(
    store: Store, acting_for: Callable[[str], Acting], grace: timedelta, now: datetime
) -> list[str]:
    """Crypto-shred every terminated tenant whose grace period is over; the ids destroyed.
    Safe on several replicas at once: the first does it, the others find it done."""
    destroyed = []
    for tenant in store.list_tenants():
        due = destroy_after(tenant, grace)
        if tenant.destroyed_at is not None or due is None or now < due:
            continue
        try:
            destroy(store, acting_for(tenant.id), grace, now)
        except TenantEnded:
            continue
        log.info("tenant %s destroyed: its grace period ended", tenant.id)
        destroyed.append(tenant.id)
    return destroyed
