"""A SCIM User, as an identity provider sends it, read into the record a mapping projects.

The projector reads plain and dotted names; SCIM holds the address in a multi-valued
`emails` list. So the door does one thing before the projector sees the user: it puts
the one address that may pass under `emails.primary` (the entry marked primary, else the
work one, else the first) and discards the other entries' values at once. Everything else
is handed to the projector as it came, which keeps only what the mapping names and counts
the names of the rest (phone numbers, addresses, the enterprise extension's employee
number, manager and cost centre, ...): the values are never stored, logged or passed on.

`userName` is folded to lower case (SCIM compares it case-insensitively; the keyed subject
id must not depend on how a provider capitalises it), and `active` given as the strings
"True"/"False" (Entra ID sends them so) is read as the boolean it means.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

#: The core User schema; attributes may arrive prefixed with it (`urn:...:User:title`).
USER_SCHEMA: Final = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_SCHEMA: Final = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
#: Attributes a provider may send that describe the request, not the person.
_PROTOCOL: Final = frozenset({"schemas", "meta", "id"})


class DoorError(ValueError):
    """A user the door cannot read (wrong JSON types); says which attribute, never a value."""


def truthy(value: Any, where: str) -> bool:
    """A SCIM boolean, also when sent as the text "True"/"False" (Entra ID)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise DoorError(f"{where}: expected a boolean")


def primary_email(emails: Any) -> str | None:
    """The one address that may pass: primary, else type work, else the first."""
    if emails is None:
        return None
    if not isinstance(emails, list) or not all(isinstance(e, Mapping) for e in emails):
        raise DoorError("emails: expected a list of objects")

    def primary(e: Mapping[str, Any]) -> bool:
        return e.get("primary") is True or str(e.get("primary")).lower() == "true"

    def work(e: Mapping[str, Any]) -> bool:
        return str(e.get("type", "")).lower() == "work"

    def any_entry(e: Mapping[str, Any]) -> bool:
        return True

    for pick in (primary, work, any_entry):
        for entry in emails:
            if pick(entry) and isinstance(entry.get("value"), str):
                return str(entry["value"])
    return None


def record_of(user: Mapping[str, Any]) -> dict[str, Any]:
    """The record the mapping projects (see the module docstring). Raises `DoorError`."""
    record: dict[str, Any] = {}
    for key, value in user.items():
        name = key[len(USER_SCHEMA) + 1 :] if key.startswith(USER_SCHEMA + ":") else key
        if name in _PROTOCOL:
            continue
        record[name] = value
    user_name = record.get("userName")
    if user_name is not None:
        if not isinstance(user_name, str):
            raise DoorError("userName: expected a string")
        record["userName"] = user_name.strip().lower()
    if "emails" in record:
        email = primary_email(record.pop("emails"))
        record["emails"] = {"primary": email} if email is not None else {}
    if "active" in record and record["active"] is not None:
        record["active"] = truthy(record["active"], "active")
    if "name" in record and not isinstance(record["name"], Mapping | None):
        raise DoorError("name: expected an object")
    return record
