"""What changes for the platform when a connector's mapping is replaced.

An admin replacing a mapping needs to see, before authorising it, which egress fields start
or stop leaving, which change source or category, and whether subject ids change with the
identity rule (then every person looks new to the platform, and the old ids are deleted by
the next full sync). Computed from both mappings' canonical forms, so it covers exactly
what the digest covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.minimise.mapping import Mapping


@dataclass(frozen=True)
class FieldSide:
    """One egress field as a mapping fills it."""

    category: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class MappingDiff:
    before_digest: str
    after_digest: str
    added: dict[str, FieldSide]
    removed: dict[str, FieldSide]
    #: Field → (before, after) for fields whose category, sources or rule changed.
    changed: dict[str, tuple[FieldSide, FieldSide]]
    source_fields_added: tuple[str, ...]
    source_fields_removed: tuple[str, ...]
    identity_changed: bool
    leaver_rules_changed: bool

    @property
    def same(self) -> bool:
        return self.before_digest == self.after_digest


def _side(rule: dict[str, Any]) -> FieldSide:
    return FieldSide(category=rule["category"], sources=tuple(rule["sources"]))


def diff_mappings(before: Mapping, after: Mapping) -> MappingDiff:
    old, new = before.canonical(), after.canonical()
    old_fields: dict[str, Any] = old["fields"]
    new_fields: dict[str, Any] = new["fields"]
    return MappingDiff(
        before_digest=before.digest,
        after_digest=after.digest,
        added={k: _side(v) for k, v in new_fields.items() if k not in old_fields},
        removed={k: _side(v) for k, v in old_fields.items() if k not in new_fields},
        changed={
            k: (_side(old_fields[k]), _side(v))
            for k, v in new_fields.items()
            if k in old_fields and old_fields[k] != v
        },
        source_fields_added=tuple(sorted(after.source_fields - before.source_fields)),
        source_fields_removed=tuple(sorted(before.source_fields - after.source_fields)),
        identity_changed=old["identity"] != new["identity"],
        leaver_rules_changed=old["leaver"] != new["leaver"],
    )
