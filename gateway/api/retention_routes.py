"""A tenant's retention policy over the admin API (`gateway.lifecycle.retention.policy`).

`GET .../retention` shows the days in force for each rule, the gateway's defaults, the
statement maxima and which rules the tenant set itself (every role of the tenant: it is
how long their data stays, which anyone working with it may know). `PUT .../retention`
replaces the tenant's overrides (admins): a rule left out follows the default, a day above
the maximum is a 422 naming the rule, and the change is an audit entry on the ledger.
"""

from __future__ import annotations

from aiohttp import web

from gateway.api.auth import acting
from gateway.api.httpkit import model_response, read_body, services_of, store_call
from gateway.api.problems import invalid
from gateway.api.retention_models import RetentionDays, RetentionPolicyOut, RetentionSet
from gateway.lifecycle.retention.policy import (
    MAXIMA,
    PolicyError,
    RetentionPolicy,
    defaults_of,
    policy_for,
    set_policy,
)
from gateway.store.protocols import Store
from gateway.store.records import RETENTION_FIELDS, RetentionField


def _days(days: dict[RetentionField, int]) -> RetentionDays:
    return RetentionDays.model_validate(days)


def _out(store: Store, tenant: str, defaults: RetentionPolicy) -> RetentionPolicyOut:
    store.get_tenant(tenant)
    overrides = store.retention_policy(tenant)
    return RetentionPolicyOut(
        tenant=tenant,
        policy=_days(policy_for(store, tenant, defaults).days()),
        defaults=_days(defaults.days()),
        maxima=_days(dict(MAXIMA)),
        overrides=[f for f in RETENTION_FIELDS if overrides and f in overrides.days],
        updated_at=overrides.updated_at if overrides else None,
        updated_by=overrides.updated_by if overrides else None,
    )


async def get_retention(request: web.Request) -> web.Response:
    tenant = request.match_info["tenant"]
    s = services_of(request)
    return model_response(await store_call(_out, s.store, tenant, defaults_of(s.settings)))


async def put_retention(request: web.Request) -> web.Response:
    body = await read_body(request, RetentionSet, optional=True)
    tenant = request.match_info["tenant"]
    s = services_of(request)
    await store_call(s.store.get_tenant, tenant)
    given = body.model_dump(exclude_none=True)
    days: dict[RetentionField, int] = {f: given[f] for f in RETENTION_FIELDS if f in given}
    defaults = defaults_of(s.settings)
    try:
        await store_call(set_policy, s.store, acting(request, tenant), days, defaults, s.clock())
    except PolicyError as exc:
        raise invalid(exc.field, exc.message) from None
    return model_response(await store_call(_out, s.store, tenant, defaults))


def add_routes(router: web.UrlDispatcher, *, tenant_path: str) -> None:
    router.add_get(tenant_path + "/retention", get_retention, allow_head=False)
    router.add_put(tenant_path + "/retention", put_retention)
