"""The connector form: reading and checking it, the mapping it names, and the version
that protects a save from overwriting someone else's.

The edit form carries `version`: the connector's mapping digest, interval, delete share,
pause state and a digest of its sealed credentials, as the form saw them. A save whose
version no longer matches the stored connector is refused, and the page says which of
those changed (credentials only as "changed", never a value).
"""

from __future__ import annotations

import re
from collections.abc import Mapping as Fields
from dataclasses import dataclass, field
from typing import Final

from connectors.netguard import PrivateAddress, check_url
from connectors.oauth import REFRESH_TOKEN_KEY
from connectors.registry import UnknownConnectorType, connector_type, pull_types
from gateway.console.i18n import Translate
from gateway.minimise.mapping import Mapping, MappingError, parse_mapping
from gateway.minimise.mapping_diff import MappingDiff, diff_mappings
from gateway.store.records import ConnectorRecord
from gateway.tenancy import changed_since, version
from mappings import bundled_mapping, bundled_names

ID_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
CUSTOM: Final = "custom"
MAX_TOML_CHARS: Final = 64 * 1024
MIN_INTERVAL: Final = 60
MAX_INTERVAL: Final = 7 * 24 * 3600


@dataclass
class ConnectorInput:
    """What the form asked for, checked; `errors` maps a field name to its message."""

    id: str = ""
    type: str = ""
    base_url: str = ""
    token: str = ""
    mapping_choice: str = ""
    mapping_toml: str = ""
    interval: str = ""
    delete_share: str = ""
    paused: bool = False
    #: The credentials typed in (`credential_<key>` fields of the type's keys); sealed on
    #: save, never shown again.
    credentials: dict[str, str] = field(default_factory=dict, repr=False)
    errors: dict[str, str] = field(default_factory=dict)
    mapping: Mapping | None = None
    mapping_text: str | None = None

    @property
    def interval_seconds(self) -> int:
        return int(self.interval)

    @property
    def max_delete_share(self) -> float:
        return float(self.delete_share)


def type_options() -> list[str]:
    """The types this form can create: a pushed source (SCIM) has no address or credentials
    to fill in; it is created through the admin API, which also issues its token."""
    return pull_types()


@dataclass(frozen=True)
class CredentialField:
    """One credential input of the form: `credential_<key>`."""

    key: str
    multiline: bool = False

    @property
    def name(self) -> str:
        return f"credential_{self.key}"


#: Credentials typed as several lines (a private key in PEM or OpenSSH form).
_MULTILINE: Final = frozenset({"private_key"})
MAX_CREDENTIAL_CHARS: Final = 8192


def typed_keys(type_name: str) -> tuple[str, ...]:
    """The credential keys of a type that are typed in: all, except the refresh token of
    a type connected by signing in at the vendor (stored by "Connect", never typed)."""
    kind = connector_type(type_name)
    keys = (*kind.credential_keys, *kind.optional_credential_keys)
    if kind.authorization is not None:
        keys = tuple(k for k in keys if k != REFRESH_TOKEN_KEY)
    return keys


def credential_fields(types: list[str]) -> list[CredentialField]:
    """The credential inputs for these types, each key once, in the types' order."""
    keys: dict[str, None] = {}
    for name in types:
        keys.update(dict.fromkeys(typed_keys(name)))
    return [CredentialField(key, key in _MULTILINE) for key in keys]


def _read_credentials(form: Fields[str, str], type_name: str) -> dict[str, str]:
    try:
        keys = typed_keys(type_name)
    except UnknownConnectorType:
        return {}
    found = {}
    for key in keys:
        value = str(form.get(f"credential_{key}", "")).strip()[:MAX_CREDENTIAL_CHARS]
        if value:
            found[key] = value.replace("\r\n", "\n") + ("\n" if key in _MULTILINE else "")
    return found


def mapping_options() -> list[str]:
    return bundled_names()


def _mapping_text(choice: str, toml: str, t: Translate, errors: dict[str, str]) -> str | None:
    if choice == CUSTOM:
        if not toml.strip():
            errors["mapping_toml"] = t("common.required")
            return None
        return toml
    try:
        return bundled_mapping(choice).read_text(encoding="utf-8")
    except (FileNotFoundError, ValueError):
        errors["mapping"] = t("connector.no_bundled")
        return None


def usable_mapping(text: str, type_name: str, t: Translate) -> tuple[Mapping | None, str | None]:
    """The parsed mapping, or the message to show (line and field named)."""
    try:
        mapping = parse_mapping(text, "mapping")
    except MappingError as exc:
        where = f"line {exc.line}: " if exc.line else ""
        what = f"{exc.field}: " if exc.field else ""
        return None, t("connector.bad_mapping", problem=f"{where}{what}{exc.problem}")
    if mapping.connector != type_name:
        return None, t(
            "connector.bad_mapping", problem=f"written for {mapping.connector}, not {type_name}"
        )
    return mapping, None


def read_connector(
    form: Fields[str, str],
    t: Translate,
    *,
    existing: ConnectorRecord | None,
    allow_private: bool,
) -> ConnectorInput:
    """Check a create (no `existing`) or edit form. Edits keep type, id and base URL."""
    get = form.get
    got = ConnectorInput(
        id=str(get("id", "")).strip() if existing is None else existing.id,
        type=str(get("type", "")).strip() if existing is None else existing.type,
        base_url=str(get("base_url", "")).strip()[:2048],
        token=str(get("credential_token", "")).strip()[:4096],
        mapping_choice=str(get("mapping", "")).strip(),
        mapping_toml=str(get("mapping_toml", ""))[:MAX_TOML_CHARS].replace("\r\n", "\n"),
        interval=str(get("interval", "")).strip(),
        delete_share=str(get("delete_share", "")).strip(),
        paused=get("paused", "") == "on",
    )
    got.credentials = _read_credentials(form, got.type)
    got.token = got.credentials.get("token", "")
    errors = got.errors
    if existing is None:
        if not ID_PATTERN.fullmatch(got.id):
            errors["id"] = t("connector.bad_id")
        try:
            connector_type(got.type)
        except UnknownConnectorType:
            errors["type"] = t("connector.unknown_type")
    if "type" not in errors and (existing is None or got.credentials):
        # A new connector needs its credentials; an edit replaces them whole or not at all.
        for key in connector_type(got.type).credential_keys:
            if not got.credentials.get(key):
                errors[f"credential_{key}"] = (
                    t("connector.token_required")
                    if key == "token"
                    else t("connector.credential_required", name=key)
                )
    if "type" not in errors and existing is None and not got.credentials:
        # A type whose credentials are all optional (a HubSpot private app's token or a
        # public app's client id and secret) still needs some.
        first = typed_keys(got.type)[:1]
        if first and not connector_type(got.type).credential_keys:
            errors[f"credential_{first[0]}"] = t("connector.credentials_needed")
    if existing is None or got.base_url != existing.base_url:
        _check_url(got, t, allow_private)
    try:
        seconds = int(got.interval)
        if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
            raise ValueError
    except ValueError:
        errors["interval"] = t("connector.bad_interval")
    try:
        share = float(got.delete_share)
        if not 0.0 <= share <= 1.0:
            raise ValueError
    except ValueError:
        errors["delete_share"] = t("connector.bad_share")
    if got.mapping_choice:
        text = _mapping_text(got.mapping_choice, got.mapping_toml, t, errors)
        if text is not None and "type" not in errors:
            mapping, problem = usable_mapping(text, got.type, t)
            if problem:
                errors["mapping_toml" if got.mapping_choice == CUSTOM else "mapping"] = problem
            got.mapping, got.mapping_text = mapping, text
    elif existing is None:
        errors["mapping"] = t("common.required")
    return got


def _check_url(got: ConnectorInput, t: Translate, allow_private: bool) -> None:
    try:
        schemes = connector_type(got.type).url_schemes
    except UnknownConnectorType:
        schemes = ("http", "https")
    if not re.match(rf"(?:{'|'.join(map(re.escape, schemes))})://[^/\s]+", got.base_url):
        got.errors["base_url"] = t("connector.bad_url")
        return
    if not allow_private:
        try:
            check_url(got.base_url)
        except PrivateAddress:
            got.errors["base_url"] = t("connector.private_url")
        except ValueError:
            got.errors["base_url"] = t("connector.bad_url")


def mapping_changes(record: ConnectorRecord, proposed: Mapping) -> MappingDiff:
    current = parse_mapping(record.mapping_text, f"mapping of connector {record.id}")
    return diff_mappings(current, proposed)


# --------------------------------------------------------------------------- versions


def now_showing(record: ConnectorRecord, changed: list[str]) -> dict[str, str]:
    """What the stored connector now says for each changed property (credentials: nothing,
    they are never shown)."""
    shown = {
        "mapping": record.mapping_digest,
        "interval": str(record.interval_seconds),
        "delete_share": str(record.max_delete_share),
        "paused": "1" if record.paused_at is not None else "0",
        "credentials": "",
    }
    return {k: shown[k] for k in changed}


__all__ = ["changed_since", "version"]
