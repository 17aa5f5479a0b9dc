"""SCIM PATCH (RFC 7644 §3.5.2) applied to a user, as Entra ID and Okta send it.

The gateway keeps no copy of what a provider sent, so a PATCH is applied to the user as
the gateway holds it (its minimised view) and the result goes through the door again.
The providers' habits are read as they mean them, not refused:

* op names in any case (`Replace`, `Add`: Entra ID);
* a replace or add without a path whose value holds attribute names, plain, dotted
  (`name.givenName`) or prefixed with a schema URN (Entra ID);
* value filters on multi-valued attributes, `emails[type eq "work"].value` (Entra ID):
  the matching entries are changed, or one is added when none matches;
* booleans as the text "True"/"False" (Entra ID), read by the door.

Attributes outside the view (phone numbers, addresses, the enterprise extension) may be
patched like any other: they reach the door, which drops them. Errors name the operation
and the attribute, never a value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from connectors.scim.door import USER_SCHEMA

PATCH_SCHEMA: Final = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MAX_OPERATIONS: Final = 100
_FILTERED: Final = re.compile(
    r'^(?P<attr>\w+)\[\s*(?P<sub>\w+)\s+eq\s+"(?P<val>[^"]*)"\s*\](?:\.(?P<leaf>\w+))?$',
    re.IGNORECASE,
)
_PLAIN: Final = re.compile(r"^\w+(\.\w+)?$")


class PatchError(ValueError):
    """A PATCH the gateway cannot apply; `scim_type` is RFC 7644's error keyword."""

    def __init__(self, scim_type: str, detail: str) -> None:
        super().__init__(detail)
        self.scim_type = scim_type


def operations(body: Any) -> list[tuple[str, str | None, Any]]:
    """The body's (op, path, value) triples, checked for shape."""
    if not isinstance(body, Mapping):
        raise PatchError("invalidSyntax", "the body is not a PatchOp object")
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or PATCH_SCHEMA not in schemas:
        raise PatchError("invalidSyntax", f"schemas must list {PATCH_SCHEMA}")
    ops = body.get("Operations", body.get("operations"))
    if not isinstance(ops, list) or not ops or len(ops) > MAX_OPERATIONS:
        raise PatchError("invalidSyntax", f"Operations must list 1 to {MAX_OPERATIONS} operations")
    found = []
    for n, op in enumerate(ops):
        if not isinstance(op, Mapping) or not isinstance(op.get("op"), str):
            raise PatchError("invalidSyntax", f"Operations[{n}]: an object with an op is needed")
        name = op["op"].lower()
        if name not in ("add", "replace", "remove"):
            raise PatchError("invalidSyntax", f"Operations[{n}]: op must be add, replace or remove")
        path = op.get("path")
        if path is not None and (not isinstance(path, str) or not path.strip()):
            raise PatchError("invalidPath", f"Operations[{n}]: path must be a non-empty string")
        if name == "remove" and path is None:
            raise PatchError("noTarget", f"Operations[{n}]: remove needs a path")
        if name != "remove" and "value" not in op:
            raise PatchError("invalidValue", f"Operations[{n}]: {name} needs a value")
        if path is None and not isinstance(op.get("value"), Mapping):
            raise PatchError(
                "invalidValue", f"Operations[{n}]: without a path, value must be an object"
            )
        found.append((name, path.strip() if path else None, op.get("value")))
    return found


def apply(user: dict[str, Any], body: Any) -> dict[str, Any]:
    """`user` with the PatchOp `body` applied (a new dict; `user` is left as it was)."""
    out: dict[str, Any] = _copy(user)
    for n, (op, path, value) in enumerate(operations(body)):
        if path is None:
            for key, item in value.items():
                _at(out, op, str(key), item, n)
        else:
            _at(out, op, path, value, n)
    return out


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _strip_urn(path: str) -> str | None:
    """The path within the core User schema; None for an extension's attribute."""
    if path.lower().startswith(USER_SCHEMA.lower() + ":"):
        return path[len(USER_SCHEMA) + 1 :]
    if path.lower().startswith("urn:"):
        return None
    return path


def _at(user: dict[str, Any], op: str, raw_path: str, value: Any, n: int) -> None:
    path = _strip_urn(raw_path)
    if path is None:
        # An extension's attribute (e.g. the enterprise employee number): nothing of it is
        # kept, so there is nothing to change.
        return
    filtered = _FILTERED.match(path)
    if filtered is not None:
        _filtered(user, op, filtered, value)
        return
    if not _PLAIN.match(path):
        raise PatchError("invalidPath", f"Operations[{n}]: the path is not one this server reads")
    head, _, leaf = path.partition(".")
    head = _key(user, head)
    if not leaf:
        if op == "remove":
            user.pop(head, None)
        elif op == "add" and isinstance(user.get(head), list) and isinstance(value, list):
            user[head] = [*user[head], *value]
        elif isinstance(value, Mapping) and isinstance(user.get(head), dict):
            user[head] = {**user[head], **value}
        else:
            user[head] = value
        return
    parent = user.get(head)
    if not isinstance(parent, dict):
        if op == "remove":
            return
        parent = user[head] = {}
    leaf = _key(parent, leaf)
    if op == "remove":
        parent.pop(leaf, None)
    else:
        parent[leaf] = value


def _key(holder: Mapping[str, Any], name: str) -> str:
    """Attribute names are case-insensitive: the key already held, else `name`."""
    for key in holder:
        if key.lower() == name.lower():
            return key
    return name


def _filtered(user: dict[str, Any], op: str, match: re.Match[str], value: Any) -> None:
    attr = _key(user, match["attr"])
    sub, wanted, leaf = match["sub"], match["val"], match["leaf"]
    entries = user.get(attr)
    if not isinstance(entries, list):
        entries = []
    hits = [
        e for e in entries
        if isinstance(e, dict) and str(e.get(sub, "")).lower() == wanted.lower()
    ]  # fmt: skip
    if op == "remove":
        if leaf is None:
            entries = [e for e in entries if not any(e is h for h in hits)]
        else:
            for entry in hits:
                entry.pop(leaf, None)
        user[attr] = entries
        return
    if not hits:
        added: dict[str, Any] = {sub: wanted}
        entries.append(added)
        hits = [added]
    for entry in hits:
        if leaf is None:
            if isinstance(value, Mapping):
                entry.update(value)
        else:
            entry[leaf] = value
    user[attr] = entries
