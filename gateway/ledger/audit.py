"""Audit entries: who did what to a tenant's processing, in the tenant's own ledger.

A transfer entry (`gateway.ledger.entry`) says what data moved; an audit entry says who
allowed it and who changed the conditions: an authorisation granted or revoked, a live
preview, a connector created, changed, paused or deleted, credentials rotated, a feed
consumer created or revoked, an account invited or disabled, sign-ins throttled. Both kinds
sit in one Merkle log, so an auditor holding only the export and the public key reads the
whole chain: who authorised what, which transfers happened under it, who revoked it.

The actor is named by an opaque account id (`acc_<16 hex>`), never by name or email: the
account register (kept in the store, readable by the tenant's own auditor) maps ids to
people, and erasing a person there leaves the ledger intact and free of personal data. The
one free-text value, an authorisation's purpose, is refused when it looks like it carries
personal data (an email address, a long number).

Entries are told apart by their keys: an audit entry has `action`, a transfer entry
`direction`; `parse_entry` reads either. Existing logs keep their bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final, Literal

import orjson
from pydantic import AfterValidator, Field, StringConstraints, field_serializer

from gateway.ledger.checkpoint import format_time
from gateway.ledger.entry import (
    Category,
    EgressField,
    Identifier,
    MappingDigest,
    SourceFieldName,
    UtcTime,
    _fields,
    _Strict,
)
from gateway.minimise.egress import FORBIDDEN_CHARS

AuditAction = Literal[
    "tenant.created",
    "authorisation.granted",
    "authorisation.revoked",
    "preview.made",
    "connector.created",
    "connector.changed",
    "connector.paused",
    "connector.resumed",
    "connector.deleted",
    "credentials.rotated",
    "consumer.created",
    "consumer.revoked",
    "consumer.token_rotated",
    "account.invited",
    "account.enrolled",
    "account.disabled",
    "token.created",
    "token.revoked",
    "signin.throttled",
    "checkpoint_push.configured",
    "checkpoint_push.cleared",
    "destination.created",
    "destination.changed",
    "destination.paused",
    "destination.resumed",
    "destination.secret_rotated",
    "destination.deleted",
    "destination.replayed",
    "oidc.configured",
    "oidc.removed",
    "subject.searched",
    "subject.exported",
    "subject.erased",
    "subject.restricted",
    "subject.resynced",
    "suppression.lifted",
    "request.opened",
    "request.closed",
    "tenant.terminated",
    "tenant.destroyed",
    "retention.changed",
    "retention.applied",
]
ActorRole = Literal["operator", "admin", "auditor", "viewer", "system"]
#: Properties a `connector.changed` entry may name (names only, never values).
ChangedProperty = Literal[
    "mapping",
    "credentials",
    "interval_seconds",
    "max_delete_share",
    "paused",
    "settings",
    # A tenant's retention policy (`retention.changed`): the rules whose days changed.
    "feed_compaction_days",
    "leaver_grace_days",
    "run_history_days",
    "request_history_days",
    "short_lived_days",
]
ActorId = Annotated[str, StringConstraints(pattern=r"^(acc_[0-9a-f]{16}|bootstrap|system)$")]

#: Longest purpose kept; a purpose is a short statement ("LMS accounts for staff").
MAX_PURPOSE_LENGTH: Final = 200
_EMAIL_LIKE: Final = re.compile(r"\S@\S")
_LONG_NUMBER: Final = re.compile(r"\d[\d .-]{6,}\d")


def purpose_problem(text: str) -> str | None:
    """Why `text` cannot be an authorisation's purpose (None if it can).

    The purpose goes into the immutable ledger, so what looks like personal data (an
    email address, a number as long as a BSN, IBAN or phone number) is refused up front
    rather than kept forever."""
    if not text.strip():
        return "must not be empty"
    if len(text) > MAX_PURPOSE_LENGTH:
        return f"at most {MAX_PURPOSE_LENGTH} characters"
    if FORBIDDEN_CHARS.search(text):
        return "must be one line of text without control characters"
    if _EMAIL_LIKE.search(text):
        return "must not contain an email address (the ledger keeps it forever)"
    if _LONG_NUMBER.search(text):
        return "must not contain long numbers (the ledger keeps it forever)"
    return None


def _purpose(value: str) -> str:
    problem = purpose_problem(value)
    if problem is not None:
        raise ValueError(f"purpose {problem}")
    return value


Purpose = Annotated[str, AfterValidator(_purpose)]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted, as the ledger names them: an opaque id, a role, and when they last proved
    possession of their second factor (None: not for this action)."""

    id: str
    role: ActorRole
    step_up_at: datetime | None = None


SYSTEM: Final = Actor("system", "system")


class AuditCounts(_Strict):
    """Counts an action reports: records read and quarantined by a preview, subjects a
    deletion announced, failed sign-ins before a throttle."""

    records: int = Field(ge=0)
    quarantined: int = Field(default=0, ge=0)
    dropped_fields: int = Field(default=0, ge=0)


class AuditEntry(_Strict):
    """One action on a tenant's processing, by names, ids and counts only."""

    time: UtcTime
    action: AuditAction
    tenant: Identifier
    actor: ActorId
    role: ActorRole
    #: When the actor last gave a fresh second factor on this credential (step-up).
    step_up_at: UtcTime | None = None
    connector: Identifier | None = None
    #: The instruction, consumer, account, token or preview the action was about.
    target: Identifier | None = None
    mapping_digest: MappingDigest | None = None
    fields: dict[EgressField, Category] = Field(default_factory=dict)
    purpose: Purpose | None = None
    valid_until: UtcTime | None = None
    counts: AuditCounts | None = None
    dropped_field_names: list[SourceFieldName] = Field(default_factory=list, max_length=1_000)
    changed: list[ChangedProperty] = Field(default_factory=list, max_length=16)

    @field_serializer("time", "step_up_at", "valid_until")
    def _time_text(self, value: datetime | None) -> str | None:
        return None if value is None else format_time(value)


def audit(
    action: AuditAction,
    *,
    time: datetime,
    tenant: str,
    actor: Actor,
    connector: str | None = None,
    target: str | None = None,
    mapping_digest: str | None = None,
    fields: Mapping[str, str] | None = None,
    purpose: str | None = None,
    valid_until: datetime | None = None,
    counts: AuditCounts | None = None,
    dropped: Mapping[str, int] | None = None,
    changed: Iterable[ChangedProperty] = (),
) -> AuditEntry:
    """An audit entry for `action` by `actor`; the step-up time comes from the actor."""
    return AuditEntry(
        time=time,
        action=action,
        tenant=tenant,
        actor=actor.id,
        role=actor.role,
        step_up_at=actor.step_up_at,
        connector=connector,
        target=target,
        mapping_digest=mapping_digest,
        fields=_fields(fields or {}),
        purpose=purpose,
        valid_until=valid_until,
        counts=counts,
        dropped_field_names=sorted(dropped or {}),
        changed=sorted(set(changed)),
    )


def audit_bytes(entry: AuditEntry) -> bytes:
    """The bytes a leaf hashes: sorted-key JSON, times spelled like transfer entries'."""
    return orjson.dumps(entry.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
