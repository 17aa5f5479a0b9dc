"""The SCIM PATCH applier (`connectors.scim.patch`) against scim2-models' own.

scim2-models applies Entra ID's and Okta's habits correctly, but refuses what Sluis must
accept (addresses on reserved test domains such as Okta's `okta.local`; paths into
extension schemas it does not know, which the door drops anyway), so the gateway applies
PATCH itself, on the user as it keeps it. Here both apply the providers' literal bodies to
the same user and must agree on everything Sluis keeps; then the cases only ours takes."""

from __future__ import annotations

from typing import Any

import pytest
from scim2_models import Context, EnterpriseUser, PatchOp, User

from connectors.scim.door import primary_email, record_of
from connectors.scim.patch import PATCH_SCHEMA, PatchError, apply

VIEW: dict[str, Any] = {
    "userName": "anna@contoso.example",
    "name": {"givenName": "Anna", "familyName": "Jansen"},
    "emails": [{"value": "anna@contoso.example", "type": "work", "primary": True}],
    "title": "Trainer",
    "active": True,
}
BODIES: list[list[dict[str, Any]]] = [
    [{"op": "Replace", "path": 'emails[type eq "work"].value', "value": "a.j@contoso.example"}],
    [{"op": "Replace", "value": {"name.givenName": "Ann", "name.familyName": "Jansens"}}],
    [{"op": "Replace", "path": "active", "value": "False"}],
    [{"op": "Add", "path": "title", "value": "Senior trainer"}],
    [{"op": "replace", "value": {"active": False}}],
    [
        {"op": "remove", "path": "title"},
        {"op": "replace", "path": "name", "value": {"givenName": "Q"}},
    ],
    [
        {
            "op": "Add",
            "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
            "value": "701984",
        }
    ],
]


def _kept(user: dict[str, Any]) -> dict[str, Any]:
    record = record_of(user)
    return {
        "name": {
            k: v for k, v in (record.get("name") or {}).items() if k in ("givenName", "familyName")
        },
        "email": record.get("emails", {}).get("primary"),
        "title": record.get("title"),
        "active": record.get("active"),
    }


@pytest.mark.parametrize("operations", BODIES)
def test_ours_agrees_with_scim2_models(operations: list[dict[str, Any]]) -> None:
    body = {"schemas": [PATCH_SCHEMA], "Operations": operations}
    ours = apply(VIEW, body)
    theirs_model = User[EnterpriseUser].model_validate(VIEW)
    PatchOp[User[EnterpriseUser]].model_validate(
        body, scim_ctx=Context.RESOURCE_PATCH_REQUEST
    ).patch(theirs_model)
    theirs = theirs_model.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    assert _kept(ours) == _kept(theirs)
    assert VIEW["title"] == "Trainer"  # the input is left as it was


def test_what_only_ours_takes() -> None:
    local = {**VIEW, "emails": [{"value": "test.user@okta.local", "primary": True}]}
    custom = "urn:ietf:params:scim:schemas:extension:Custom:2.0:User:badge"
    body = {
        "schemas": [PATCH_SCHEMA],
        "Operations": [
            {"op": "add", "path": custom, "value": "123"},
            {"op": "replace", "path": "title", "value": "Coach"},
        ],
    }
    patched = apply(local, body)
    assert (
        patched["title"] == "Coach" and primary_email(patched["emails"]) == "test.user@okta.local"
    )
    # A filtered path with no match adds the entry (Entra ID sends replace for a new address).
    bare = {k: v for k, v in VIEW.items() if k != "emails"}
    added = apply(
        bare,
        {
            "schemas": [PATCH_SCHEMA],
            "Operations": [
                {"op": "replace", "path": 'emails[type eq "work"].value', "value": "n@x.example"}
            ],
        },
    )
    assert primary_email(added["emails"]) == "n@x.example"


@pytest.mark.parametrize(
    ("body", "keyword"),
    [
        ({"Operations": [{"op": "add", "path": "title", "value": "x"}]}, "invalidSyntax"),
        ({"schemas": [PATCH_SCHEMA], "Operations": []}, "invalidSyntax"),
        ({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "move", "path": "x"}]}, "invalidSyntax"),
        ({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "remove"}]}, "noTarget"),
        (
            {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "path": "title"}]},
            "invalidValue",
        ),
        ({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "value": "x"}]}, "invalidValue"),
        (
            {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "path": "a b c", "value": 1}]},
            "invalidPath",
        ),
    ],
)
def test_bad_patches_name_the_rule(body: dict[str, Any], keyword: str) -> None:
    with pytest.raises(PatchError) as raised:
        apply(VIEW, body)
    assert raised.value.scim_type == keyword
