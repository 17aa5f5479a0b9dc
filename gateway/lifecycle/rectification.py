"""Rectification (GDPR Art. 16): where a person's wrong data comes from, and getting the
correction through once it is made.

The source is the system of record: Sluis passes a first name, last name, email and job
title from the customer's HR or CRM system and holds nothing it could correct on its own
(an edit here would be undone by the next sync, and would make the platform disagree with
the customer's own records). So a rectification request is answered with where to correct
each field: the source connector (its type and address) and, from its authorised mapping,
the source fields that fill each egress field. Once the customer has corrected the record,
a sync of what changed since the last run of each of those sources (the record's
modification time moves with the correction) brings it through at once instead of at the
next scheduled run; the feed then sends the corrected `subject.upserted` to every consumer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.minimise.mapping import MappingError, parse_mapping
from gateway.store.protocols import Store
from gateway.store.records import NotFound


@dataclass(frozen=True, slots=True)
class SourceOfRecord:
    """A source holding the person, and which of its fields fill each egress field."""

    connector: str
    connector_type: str
    base_url: str
    #: Egress field → the source fields (paths) it is taken from, in the mapping's order.
    fields: dict[str, tuple[str, ...]]


def sources_of_record(
    store: Store, tenant: str, subject_ids: Sequence[str]
) -> list[SourceOfRecord]:
    """Every live source connector the person's events came from, with its field origins
    (a connector deleted since is left out: nothing syncs from it any more)."""
    names = sorted({e.source for e in store.events_of_subjects(tenant, subject_ids)})
    found = []
    for name in names:
        try:
            connector = store.get_connector(tenant, name)
        except NotFound:
            continue
        try:
            mapping = parse_mapping(connector.mapping_text)
        except MappingError:  # pragma: no cover - stored mappings were validated
            continue
        fields = {n: rule.sources for n, rule in sorted(mapping.fields.items())}
        found.append(SourceOfRecord(name, connector.type, connector.base_url, fields))
    return found
