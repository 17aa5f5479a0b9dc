"""What the SCIM endpoint says about itself (RFC 7643 §5-7): `/ServiceProviderConfig`,
`/Schemas`, `/ResourceTypes`, built with scim2-models.

The User schema published is the core one cut down to what the gateway keeps: `name`
(given and family name), `emails` (value, type, primary), `title` and `active`. `userName`
is required of a provider, as SCIM requires, but `returned: never`: it only computes the
keyed id and is not stored. So a client that reads the schema (scim2-tester, Okta's and
Entra ID's attribute pickers) knows not to expect anything else back. There are no
Groups: Entra ID and Okta provision users without them (group push is optional and off).
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

from scim2_models import (
    Context,
    Required,
    ResourceType,
    Returned,
    Schema,
    ServiceProviderConfig,
    User,
)

from connectors.scim.door import USER_SCHEMA

#: Attributes of the core User schema the gateway keeps (and their kept sub-attributes).
KEPT: Final[dict[str, tuple[str, ...]]] = {
    "userName": (),
    "name": ("givenName", "familyName"),
    "title": (),
    "active": (),
    "emails": ("value", "type", "primary"),
}
MAX_RESULTS: Final = 1000


def _dump(model: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    return dumped


@cache
def user_schema() -> dict[str, Any]:
    full = User.to_schema()
    kept = []
    for attribute in full.attributes or []:
        if attribute.name not in KEPT:
            continue
        subs = KEPT[attribute.name]
        if subs and attribute.sub_attributes:
            attribute.sub_attributes = [s for s in attribute.sub_attributes if s.name in subs]
        if attribute.name == "userName":
            attribute.returned = Returned.never
            attribute.description = (
                "Unique login of the user at the identity provider; used only to compute the "
                "keyed id, never stored or returned"
            )
        if attribute.name == "emails":
            # The mapping quarantines a user without an address: say so up front.
            attribute.required = Required.true
            for sub in attribute.sub_attributes or []:
                if sub.name == "value":
                    sub.required = Required.true
        kept.append(attribute)
    schema = Schema(
        id=USER_SCHEMA, name="User", description="User as Sluis keeps it (minimised)",
        attributes=kept,
    )  # fmt: skip
    return _dump(schema)


def resource_type(base: str) -> dict[str, Any]:
    found = ResourceType.from_resource(User)
    found.description = "Users provisioned by the identity provider (minimised at the door)"
    dumped = _dump(found)
    dumped["meta"] = {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/User"}
    return dumped


def schema_with_meta(base: str) -> dict[str, Any]:
    return {
        **user_schema(),
        "meta": {"resourceType": "Schema", "location": f"{base}/Schemas/{USER_SCHEMA}"},
    }


def service_provider_config(base: str, documentation: str) -> dict[str, Any]:
    config = ServiceProviderConfig.model_validate({
        "documentationUri": documentation,
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": False},
        "authenticationSchemes": [{
            "type": "oauthbearertoken", "name": "Bearer token", "primary": True,
            "description": "The connector's SCIM token, issued by a customer admin "
            "(POST /admin/v1/tenants/{t}/connectors/{c}/scim-token)",
        }],
    })  # fmt: skip
    dumped = _dump(config)
    dumped["meta"] = {
        "resourceType": "ServiceProviderConfig",
        "location": f"{base}/ServiceProviderConfig",
    }
    return dumped
