"""The shape of a ledger entry: a transfer described without any personal data values.

A `TransferEntry` says who (tenant, connector, keyed subject ids), what (egress field names
and their data categories, counts, names of dropped source fields), under which instruction
and mapping, to where and when. It cannot say anything else: every string is a hex id, a
known field name or category, or a short identifier, so a value cannot ride along by
mistake. Validation errors never echo their input (`hide_input_in_errors`), because a
rejected "id" may well be an email address.

`canonical_bytes` is the one serialisation the Merkle leaf hashes: sorted-key JSON with the
time always spelled `YYYY-MM-DDTHH:MM:SS.ffffffZ`.

The keyed ids a transfer carried are committed to, not listed: the body holds
`subjects: {count, digest}` (a `SubjectSet`, SHA-256 over the ids' 16-byte binary forms in
ascending order), and the ledger stores the ids beside the entry, 16 bytes each, each
distinct list once (`ledger_subject_sets`), indexed by id. A full sync every 15 minutes
repeats the same pages of people all year: as a JSON list in every body that was ~129 GB
a year; as commitments it is the bodies alone plus each distinct list once (see
`bench/bench_ledger_year.py`). Entries written before this (a `subject_ids` list in the
body) keep their bytes and verify as they are.

Writers build entries with the factories `inbound`, `outbound` and `refused`, one per
direction, and record them with `gateway.ledger.record` (which owns the lock order).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, cast

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_serializer,
    model_validator,
)

from gateway.ledger.checkpoint import format_time
from gateway.minimise.egress import (
    EGRESS_FIELDS,
    FIELD_CATEGORIES,
    is_reportable_field_name,
)

IDENTIFIER_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
MAX_SUBJECT_IDS: Final = 100_000
MAX_DROPPED_NAMES: Final = 1_000

Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)]
SubjectId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
MappingDigest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
SetDigest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
#: Bytes of one keyed id in its binary form (32 hex digits).
ID_BYTES: Final = 16
DESTINATION_PATTERN: Final = r"^[a-z][a-z0-9_-]{0,31}(:[A-Za-z0-9][A-Za-z0-9._-]{0,63})?$"
Destination = Annotated[str, StringConstraints(pattern=DESTINATION_PATTERN)]
EgressField = Literal["first_name", "last_name", "email", "job_title"]
Category = Literal[
    "user.name", "user.name.first", "user.name.last", "user.contact.email", "user.job_title"
]


def _field_name(value: str) -> str:
    if not is_reportable_field_name(value):
        raise ValueError("not a field name (empty, too long, or looks like a value)")
    return value


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("time must be timezone-aware (UTC)")
    return value.astimezone(UTC)


SourceFieldName = Annotated[str, AfterValidator(_field_name)]
UtcTime = Annotated[datetime, AfterValidator(_utc)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, hide_input_in_errors=True)


Direction = Literal["inbound", "outbound", "refused"]


class TransferCounts(_Strict):
    records: int = Field(ge=0)
    dropped_fields: int = Field(ge=0)
    quarantined: int = Field(ge=0)


class SubjectSet(_Strict):
    """The commitment to the keyed ids one transfer carried: how many, and the SHA-256 of
    their 16-byte binary forms in ascending order (`subject_blob`). Whoever holds the list
    can show it is the one the signed entry names; nobody can swap a person in or out."""

    count: int = Field(ge=0, le=MAX_SUBJECT_IDS)
    digest: SetDigest

    @property
    def raw_digest(self) -> bytes:
        """The digest's 32 bytes (how the ledger stores and looks up the list)."""
        return bytes.fromhex(self.digest.removeprefix("sha256:"))


def subject_blob(ids: Sequence[str]) -> bytes:
    """The binary form of sorted, distinct keyed ids: 16 bytes each, back to back."""
    return bytes.fromhex("".join(ids))


def blob_ids(blob: bytes) -> list[str]:
    """The keyed ids of a binary list, in its order."""
    text = blob.hex()
    return [text[i : i + 32] for i in range(0, len(text), 32)]


def set_digest(blob: bytes) -> str:
    """The digest a `SubjectSet` names for this binary list."""
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def commit(ids: Sequence[str]) -> SubjectSet:
    """The commitment to sorted, distinct keyed ids."""
    return SubjectSet(count=len(ids), digest=set_digest(subject_blob(ids)))


class TransferEntry(_Strict):
    """One transfer, described by names, categories, counts and keyed ids only.

    `subjects` commits to the keyed ids and `subject_ids` lists them: an entry a writer
    makes has both (the ledger stores the list beside the entry); one read from a body has
    the commitment, and the list once the ledger attached it (`Ledger.entries`). Entries
    written before commitments existed have only the list, in their body.
    """

    time: UtcTime
    #: "refused": processing was refused for lack of a valid instruction (no data moved).
    direction: Direction
    tenant: Identifier
    connector: Identifier
    instruction_id: Identifier | None
    mapping_digest: MappingDigest | None
    subject_ids: list[SubjectId] | None = Field(default=None, max_length=MAX_SUBJECT_IDS)
    subjects: SubjectSet | None = None
    fields: dict[EgressField, Category]
    counts: TransferCounts
    dropped_field_names: list[SourceFieldName] = Field(max_length=MAX_DROPPED_NAMES)
    destination: Destination | None
    run_id: Identifier | None = None
    #: The binary form of `subject_ids` when a factory made it (see `_committed`).
    _subject_blob: bytes | None = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:
        # What the entry says, not how it was made: the kept binary list is a cache.
        if not isinstance(other, TransferEntry):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = BaseModel.__hash__

    @model_validator(mode="after")
    def _categories_fit_fields(self) -> TransferEntry:
        for name, category in self.fields.items():
            if category not in FIELD_CATEGORIES[name]:
                raise ValueError(f"fields.{name}: category {category} does not fit this field")
        if self.subjects is None:
            if self.subject_ids is None:
                raise ValueError("subjects: an entry commits to its keyed ids or lists them")
        elif self.subject_ids is not None and (
            self.subject_ids != sorted(set(self.subject_ids))
            or commit(self.subject_ids) != self.subjects
        ):
            raise ValueError("subject_ids: not the sorted, distinct list `subjects` commits to")
        return self

    def with_subject_ids(self, ids: list[str]) -> TransferEntry:
        """This entry (read from its body) with the list its commitment names; `ValueError`
        if `ids` is not that list."""
        if self.subjects is None or commit(ids) != self.subjects:
            raise ValueError("subject_ids: not the list this entry commits to")
        made = self.model_copy(update={"subject_ids": ids})
        made._subject_blob = None
        return made

    @field_serializer("time")
    def _time_text(self, value: datetime) -> str:
        return format_time(value)


def _committed(entry: TransferEntry) -> TransferEntry:
    """A factory's entry (its ids validated, sorted and distinct) with the commitment to
    them: computed once here, where the list is known to be in its canonical order, not
    again by the model's consistency check; the binary list is kept on the entry for the
    ledger to store (`subject_list`), so it is not built a second time either."""
    blob = subject_blob(entry.subject_ids or [])
    made = entry.model_copy(
        update={"subjects": SubjectSet(count=len(blob) // ID_BYTES, digest=set_digest(blob))}
    )
    made._subject_blob = blob
    return made


def subject_list(entry: TransferEntry) -> tuple[bytes, bytes] | None:
    """(SHA-256, binary list) of the keyed ids a transfer entry carried, as the ledger
    stores them beside it; None when it lists none at all."""
    if entry.subject_ids is None:
        return None
    blob = entry._subject_blob
    if blob is None or entry.subjects is None:
        ids = entry.subject_ids if entry.subjects is not None else sorted(set(entry.subject_ids))
        blob = subject_blob(ids)
    return hashlib.sha256(blob).digest(), blob


def _fields(fields: Mapping[str, str]) -> dict[EgressField, Category]:
    # Validated by the model like any other input; the cast only names the intent.
    return cast("dict[EgressField, Category]", dict(fields))


def inbound(
    *,
    time: datetime,
    tenant: str,
    connector: str,
    instruction_id: str,
    mapping_digest: str,
    subject_ids: Iterable[str],
    fields: Mapping[str, str],
    records: int,
    quarantined: int,
    dropped: Mapping[str, int],
    run_id: str,
) -> TransferEntry:
    """A page fetched from a source into the gateway: `records` read, the keyed ids that
    passed, `quarantined` refused, and `dropped` source field names with their counts."""
    ids = sorted(set(subject_ids))
    entry = TransferEntry(
        time=time,
        direction="inbound",
        tenant=tenant,
        connector=connector,
        instruction_id=instruction_id,
        mapping_digest=mapping_digest,
        subject_ids=ids,
        fields=_fields(fields),
        counts=TransferCounts(
            records=records, dropped_fields=sum(dropped.values()), quarantined=quarantined
        ),
        dropped_field_names=sorted(dropped),
        destination="gateway",
        run_id=run_id,
    )
    return _committed(entry)


def outbound(
    *,
    time: datetime,
    tenant: str,
    connector: str,
    instruction_id: str | None,
    mapping_digest: str | None,
    subject_ids: Iterable[str],
    fields: Mapping[str, str],
    destination: str,
) -> TransferEntry:
    """Events of one source connector delivered to `destination` (e.g. `feed:<consumer>`):
    one record per event, and the distinct keyed ids they were about (under no instruction
    only for erasure notices, `erasures_delivered`)."""
    ids = list(subject_ids)
    distinct = sorted(set(ids))
    entry = TransferEntry(
        time=time,
        direction="outbound",
        tenant=tenant,
        connector=connector,
        instruction_id=instruction_id,
        mapping_digest=mapping_digest,
        subject_ids=distinct,
        fields=_fields(fields),
        counts=TransferCounts(records=len(ids), dropped_fields=0, quarantined=0),
        dropped_field_names=[],
        destination=destination,
    )
    return _committed(entry)


def erasures_delivered(
    *,
    time: datetime,
    tenant: str,
    connector: str,
    subject_ids: Iterable[str],
    destination: str,
) -> TransferEntry:
    """Erasure notices (`subject.erased`: a keyed id, no data) of a source without an active
    authorisation, delivered to `destination`: the controller's erasure request is their
    instruction, so they leave when that source's other events are withheld."""
    return outbound(
        time=time, tenant=tenant, connector=connector, instruction_id=None,
        mapping_digest=None, subject_ids=subject_ids, fields={}, destination=destination,
    )  # fmt: skip


def refused(
    *,
    time: datetime,
    tenant: str,
    connector: str,
    instruction_id: str | None,
    mapping_digest: str | None = None,
    records: int = 0,
    destination: str | None = None,
    run_id: str | None = None,
) -> TransferEntry:
    """Processing refused for want of a valid instruction: no data moved, so no subject ids
    and no fields; `records` counts what was held back (events withheld from a feed)."""
    return TransferEntry(
        time=time,
        direction="refused",
        tenant=tenant,
        connector=connector,
        instruction_id=instruction_id,
        mapping_digest=mapping_digest,
        subject_ids=[],
        subjects=commit([]),
        fields={},
        counts=TransferCounts(records=records, dropped_fields=0, quarantined=0),
        dropped_field_names=[],
        destination=destination,
        run_id=run_id,
    )


def canonical_bytes(entry: TransferEntry) -> bytes:
    """The bytes a leaf hashes: sorted-key JSON, one spelling per entry.

    Spelled out by hand rather than via `model_dump`, which costs more than hashing and
    storing the entry together; `_KEYS` below keeps the two from drifting apart.
    """
    c = entry.counts
    subjects: dict[str, Any] = (
        {"subject_ids": entry.subject_ids}
        if entry.subjects is None
        else {"subjects": {"count": entry.subjects.count, "digest": entry.subjects.digest}}
    )
    return orjson.dumps(
        {
            **subjects,
            "connector": entry.connector,
            "counts": {
                "dropped_fields": c.dropped_fields,
                "quarantined": c.quarantined,
                "records": c.records,
            },
            "destination": entry.destination,
            "direction": entry.direction,
            "dropped_field_names": entry.dropped_field_names,
            "fields": entry.fields,
            "instruction_id": entry.instruction_id,
            "mapping_digest": entry.mapping_digest,
            "run_id": entry.run_id,
            "tenant": entry.tenant,
            "time": format_time(entry.time),
        },
        option=orjson.OPT_SORT_KEYS,
    )


_KEYS: Final = {
    "connector", "counts", "destination", "direction", "dropped_field_names", "fields",
    "instruction_id", "mapping_digest", "run_id", "subject_ids", "subjects", "tenant", "time",
}  # fmt: skip
if set(TransferEntry.model_fields) != _KEYS or set(TransferCounts.model_fields) != {
    "dropped_fields",
    "quarantined",
    "records",
}:
    raise RuntimeError("TransferEntry changed: update canonical_bytes to match")


def is_destination(value: str) -> bool:
    """Whether `value` may name a transfer's destination (as the model checks it)."""
    return _DESTINATION.fullmatch(value) is not None


def is_identifier(value: str) -> bool:
    """Whether `value` may name a tenant, connector, instruction or run."""
    return _IDENTIFIER.fullmatch(value) is not None


def describe_errors(exc: ValidationError, limit: int = 3) -> str:
    """Where and which rule a validation failed, without the offending input."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:limit]:
        loc = ".".join(str(p) if isinstance(p, int) or p in _SAFE_LOC else "?" for p in err["loc"])
        parts.append(f"{loc or 'entry'}: {err['type']}")
    return "; ".join(parts)


_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
_DESTINATION = re.compile(DESTINATION_PATTERN)
_SAFE_LOC: Final = frozenset(
    {
        *TransferEntry.model_fields,
        *TransferCounts.model_fields,
        *SubjectSet.model_fields,
        *EGRESS_FIELDS,
        "[key]",
    }
)
