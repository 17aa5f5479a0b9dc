"""A mapping as the admin API takes and shows it: chosen by bundled name or given as TOML
text, checked with errors that name the line and field, and compared with another.

Shared by the routes that accept a mapping (the live preview; `gateway.api.admin` has the
same helpers for connectors and can import these instead).
"""

from __future__ import annotations

from gateway.api.models import FieldChangeOut, FieldSideOut, MappingChange, MappingText
from gateway.api.problems import Problem, field_error, invalid
from gateway.minimise.mapping import Mapping, MappingError, parse_mapping
from gateway.minimise.mapping_diff import FieldSide, MappingDiff
from mappings import bundled_mapping


def mapping_text(choice: str | MappingText) -> str:
    """The TOML text of a bundled mapping (by name) or of one given inline."""
    if isinstance(choice, MappingText):
        return choice.toml
    try:
        return bundled_mapping(choice).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise invalid("mapping", "there is no bundled mapping of that name") from None


def usable_mapping(text: str, connector_type_name: str) -> Mapping:
    """The parsed mapping, or a 422 naming the line and field (or the wrong type)."""
    try:
        mapping = parse_mapping(text, "mapping")
    except MappingError as exc:
        where = f"line {exc.line}" if exc.line else "mapping"
        message = f"{where}: {exc.field}: {exc.problem}" if exc.field else f"{where}: {exc.problem}"
        raise Problem(
            422,
            f"the mapping cannot be used: {message}",
            errors=[field_error("mapping", message, line=exc.line, mapping_field=exc.field)],
        ) from None
    if mapping.connector != connector_type_name:
        raise invalid(
            "mapping",
            f"written for connector type {mapping.connector}, not {connector_type_name}",
        )
    return mapping


def _side(side: FieldSide) -> FieldSideOut:
    return FieldSideOut(category=side.category, sources=list(side.sources))


def change_out(d: MappingDiff) -> MappingChange:
    """A mapping diff as the API shows it."""
    return MappingChange(
        before_digest=d.before_digest,
        after_digest=d.after_digest,
        same=d.same,
        added={k: _side(v) for k, v in d.added.items()},
        removed={k: _side(v) for k, v in d.removed.items()},
        changed={
            k: FieldChangeOut(before=_side(b), after=_side(a)) for k, (b, a) in d.changed.items()
        },
        source_fields_added=list(d.source_fields_added),
        source_fields_removed=list(d.source_fields_removed),
        identity_changed=d.identity_changed,
        leaver_rules_changed=d.leaver_rules_changed,
        needs_authorisation=not d.same,
    )
