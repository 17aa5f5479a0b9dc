"""Provisioning: tenants (with their subject keys), connectors (with sealed credentials) and
feed consumers (with hashed tokens). Shared by the admin API and `sluis demo`.

Secrets are sealed with the owner's id as associated data (`gateway.keys.master`); tokens are
random, shown once, and kept only as SHA-256 hashes, so a copy of the database lets nobody
read a feed.

Connectors change after creation through `change_connector` (mapping, credentials, interval,
delete share; a new mapping gets a new digest, so syncing waits for a new authorisation)
and end through `delete_connector`, which stops everything in one commit: its instructions
are revoked (so no page is fetched or delivered any more), its running run is stopped, and
the admin's choice for the subjects already delivered is carried out: `delete` announces
`subject.deleted` for each of them, `keep` leaves them with the platform, no longer updated.
A deleted connector's id is never reused, so the ledger's entries keep naming one connector.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import orjson

from connectors.base import KeepCredentials
from connectors.registry import UnknownConnectorType, connector_type
from gateway.keys.master import SecretBox
from gateway.ledger.audit import AuditAction, AuditCounts, ChangedProperty
from gateway.ledger.record import Acting
from gateway.minimise.mapping import Mapping as MinimisationMapping
from gateway.minimise.mapping import parse_mapping
from gateway.store.records import ConnectorRecord, Consumer, NewEvent, Store, Tenant, new_event_id

SubjectsOnDelete = Literal["delete", "keep"]

DEFAULT_INTERVAL_SECONDS = 3600
DEFAULT_MAX_DELETE_SHARE = 0.2


def _tenant_owner(tenant: str) -> str:
    return f"tenant:{tenant}"


def _connector_owner(tenant: str, connector: str) -> str:
    return f"connector:{tenant}/{connector}"


def create_tenant(
    store: Store, box: SecretBox, tenant_id: str, name: str, now: datetime, *, by: Acting
) -> Tenant:
    """A tenant with a fresh 256-bit subject key, sealed under the master key; its ledger
    begins with who created it."""
    key = secrets.token_bytes(32)
    tenant = Tenant(tenant_id, name, now, box.seal(key, _tenant_owner(tenant_id)))
    with by.recording(store, "tenant.created", now):
        store.create_tenant(tenant)
    return tenant


def subject_key(box: SecretBox, tenant: Tenant) -> bytes:
    return box.open(tenant.sealed_key, _tenant_owner(tenant.id))


def create_connector(
    store: Store,
    box: SecretBox,
    *,
    tenant: str,
    connector_id: str,
    type_name: str,
    base_url: str,
    credentials: Mapping[str, str],
    mapping_text: str,
    now: datetime,
    by: Acting,
    settings: Mapping[str, Any] | None = None,
    interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
    max_delete_share: float = DEFAULT_MAX_DELETE_SHARE,
) -> tuple[ConnectorRecord, MinimisationMapping]:
    """Validate and store a connector; the mapping text is kept so its digest is stable.

    Raises `UnknownConnectorType`, `gateway.minimise.mapping.MappingError`, or ValueError with a
    message naming the field.
    """
    kind = connector_type(type_name)
    mapping = parse_mapping(mapping_text, f"mapping of connector {connector_id}")
    missing = [k for k in kind.credential_keys if not credentials.get(k)]
    if missing:
        raise ValueError(f"credentials.{missing[0]}: required for a {type_name} connector")
    record = ConnectorRecord(
        tenant=tenant,
        id=connector_id,
        type=type_name,
        base_url=base_url,
        sealed_credentials=box.seal(
            orjson.dumps(dict(credentials)), _connector_owner(tenant, connector_id)
        ),
        settings={**kind.default_settings, **(settings or {})},
        mapping_text=mapping_text,
        mapping_digest=mapping.digest,
        interval_seconds=interval_seconds,
        max_delete_share=max_delete_share,
        created_at=now,
    )
    with by.recording(
        store, "connector.created", now, connector=connector_id, mapping_digest=mapping.digest,
        fields=mapping.categories,
    ):  # fmt: skip
        store.create_connector(record)
    return record, mapping


def connector_credentials(box: SecretBox, record: ConnectorRecord) -> dict[str, str]:
    opened = orjson.loads(
        box.open(record.sealed_credentials, _connector_owner(record.tenant, record.id))
    )
    return {str(k): str(v) for k, v in opened.items()}


def credentials_keeper(
    store: Store, box: SecretBox, tenant: str, connector: str
) -> KeepCredentials:
    """Where a connector hands credentials its source replaced (a rotated refresh token):
    merged into the connector's current credentials and sealed in one write, awaited
    before the connector goes on, so the next run starts from what the source honours.

    No ledger entry: a provider rotating its own token changes no authorisation and no
    property an admin set (the console shows the credentials as set either way).
    """

    def write(changed: Mapping[str, str]) -> None:
        record = store.get_connector(tenant, connector)
        merged = {**connector_credentials(box, record), **changed}
        sealed = box.seal(orjson.dumps(merged), _connector_owner(tenant, connector))
        store.update_connector(tenant, connector, sealed_credentials=sealed)

    async def keep(changed: Mapping[str, str]) -> None:
        await asyncio.to_thread(write, dict(changed))

    return keep


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def create_consumer(
    store: Store, *, tenant: str, name: str, now: datetime, by: Acting
) -> tuple[Consumer, str]:
    """A feed consumer and its bearer token (returned once, stored only as a hash)."""
    consumer = Consumer(id=f"con_{secrets.token_hex(8)}", tenant=tenant, name=name, created_at=now)
    token = f"sluis_feed_{secrets.token_urlsafe(32)}"
    with by.recording(store, "consumer.created", now, target=consumer.id):
        store.create_consumer(consumer, token_hash(token))
    return consumer, token


def revoke_consumer(
    store: Store, *, tenant: str, consumer_id: str, now: datetime, by: Acting
) -> Consumer:
    """The consumer's token stops working at once; the consumer stays listed as revoked."""
    consumer = store.get_consumer(tenant, consumer_id)  # NotFound before any entry is made
    with by.recording(store, "consumer.revoked", now, target=consumer.id):
        return store.revoke_consumer(tenant, consumer.id, now)


def set_paused(
    store: Store, record: ConnectorRecord, *, paused: bool, now: datetime, by: Acting
) -> ConnectorRecord:
    """Pause (no run starts, a running one stops) or resume a connector."""
    action: AuditAction = "connector.paused" if paused else "connector.resumed"
    with by.recording(store, action, now, connector=record.id):
        return store.set_connector_paused(record.tenant, record.id, now if paused else None)


# --------------------------------------------------------------------------- lifecycle


def change_connector(
    store: Store,
    box: SecretBox,
    record: ConnectorRecord,
    *,
    credentials: Mapping[str, str] | None = None,
    mapping_text: str | None = None,
    interval_seconds: int | None = None,
    max_delete_share: float | None = None,
    now: datetime,
    by: Acting,
) -> ConnectorRecord:
    """Apply the given changes; new credentials are sealed like the first ones. The ledger's
    `connector.changed` entry names the properties changed (never their values).

    Raises `MappingError` for a mapping that does not parse, ValueError naming the field for
    missing credentials or a mapping written for another connector type.
    """
    sealed = digest = None
    if credentials is not None and connector_type(record.type).pushed:
        raise ValueError(
            f"credentials: a {record.type} connector has no credentials to set; its bearer "
            "token is issued by POST .../scim-token"
        )
    if credentials is not None:
        missing = [k for k in connector_type(record.type).credential_keys if not credentials.get(k)]
        if missing:
            raise ValueError(f"credentials.{missing[0]}: required for a {record.type} connector")
        sealed = box.seal(
            orjson.dumps(dict(credentials)), _connector_owner(record.tenant, record.id)
        )
    if mapping_text is not None:
        mapping = parse_mapping(mapping_text, f"mapping of connector {record.id}")
        if mapping.connector != record.type:
            raise ValueError(f"mapping: written for connector type {mapping.connector}")
        digest = mapping.digest
    given: dict[ChangedProperty, object] = {
        "credentials": credentials, "mapping": mapping_text,
        "interval_seconds": interval_seconds, "max_delete_share": max_delete_share,
    }  # fmt: skip
    changed = [k for k, v in given.items() if v is not None]
    if not changed:
        return record
    with by.recording(
        store, "connector.changed", now, connector=record.id, mapping_digest=digest,
        changed=changed,
    ):  # fmt: skip
        return store.update_connector(
            record.tenant,
            record.id,
            sealed_credentials=sealed,
            mapping_text=mapping_text,
            mapping_digest=digest,
            interval_seconds=interval_seconds,
            max_delete_share=max_delete_share,
        )


# --------------------------------------------------------------------------- versions
# An edit is based on what its author saw. The version names that view, property by
# property, so a save based on an older one is refused with the properties that moved on
# (console forms carry it; the admin API sends it as the connector's ETag).

VERSION_PARTS: Final = ("mapping", "interval", "delete_share", "paused", "credentials")


def version_parts(record: ConnectorRecord) -> dict[str, str]:
    return {
        "mapping": record.mapping_digest,
        "interval": str(record.interval_seconds),
        "delete_share": repr(record.max_delete_share),
        "paused": "1" if record.paused_at is not None else "0",
        "credentials": hashlib.sha256(record.sealed_credentials).hexdigest()[:16],
    }


def version(record: ConnectorRecord) -> str:
    """The connector's editable state, readable back by `changed_since`."""
    return "~".join(version_parts(record)[k] for k in VERSION_PARTS)


def changed_since(record: ConnectorRecord, seen: str) -> list[str]:
    """The properties that differ from the version `seen` (all of them when unreadable)."""
    old = seen.split("~")
    if len(old) != len(VERSION_PARTS):
        return list(VERSION_PARTS)
    now = version_parts(record)
    return [k for k, before in zip(VERSION_PARTS, old, strict=True) if now[k] != before]


@dataclass(frozen=True)
class Deletion:
    """What deleting a connector did."""

    subjects: SubjectsOnDelete
    instructions_revoked: list[str]
    runs_stopped: list[str]
    #: `subject.deleted` events appended (0 with `keep`).
    deletion_events: int
    #: Subjects left with the platform (0 with `delete`).
    subjects_kept: int


def delete_connector(
    store: Store,
    *,
    tenant: str,
    connector: str,
    subjects: SubjectsOnDelete,
    by: Acting,
    now: datetime,
) -> Deletion:
    """Stop and delete a connector in one commit (see the module docstring)."""
    with store.transaction():
        store.get_connector(tenant, connector)
        instructions = store.list_instructions(tenant, connector)
        revoked = [i.id for i in instructions if i.revoked_at is None]
        for instruction_id in revoked:
            store.revoke_instruction(instruction_id, by.actor.id, now)
        stopped = store.stop_running_runs(
            tenant, connector, now, f"connector {connector} was deleted"
        )
        present = store.present_subjects(tenant, connector)
        events = []
        if subjects == "delete" and instructions:
            events = deletion_events(store, tenant, connector, instructions[-1].id, now)
            store.append_events(tenant, events)
            store.set_subjects_absent(tenant, connector, [e.subject_id for e in events])
        store.mark_connector_deleted(tenant, connector, now, subjects)
        # Each authorisation ended by the deletion is revoked in the ledger by the same
        # person, so the chain "granted ... revoked" stays whole for the auditor.
        ended = [
            by.entry("authorisation.revoked", now, connector=connector, target=i.id,
                     mapping_digest=i.mapping_digest, fields=i.fields)
            for i in instructions if i.id in revoked
        ]  # fmt: skip
        deleted = by.entry(
            "connector.deleted", now, connector=connector, counts=AuditCounts(records=len(events))
        )
        by.ledger.append([*ended, deleted])
    return Deletion(
        subjects=subjects,
        instructions_revoked=revoked,
        runs_stopped=stopped,
        deletion_events=len(events),
        subjects_kept=len(present) if subjects == "keep" else 0,
    )


# --------------------------------------------------------------------------- SCIM tokens
# A pushed source (SCIM) is reached with a bearer token its identity provider holds. Only
# the token's SHA-256 is kept, sealed like any connector's credentials, so neither a copy
# of the database nor an admin reading the connector can use it.

SCIM_DIGEST_FIELD: Final = "token_sha256"


def issue_scim_token(
    store: Store, box: SecretBox, record: ConnectorRecord, *, now: datetime, by: Acting
) -> str:
    """A new bearer token for the connector's SCIM endpoint, shown once; the old one stops
    working in the same write. On the ledger as a change of the connector's credentials."""
    if not connector_type(record.type).pushed:
        raise ValueError(f"connector {record.id} is fetched, not pushed to: it has no SCIM token")
    token = f"sluis_scim_{secrets.token_urlsafe(32)}"
    sealed = box.seal(
        orjson.dumps({SCIM_DIGEST_FIELD: token_hash(token).hex()}),
        _connector_owner(record.tenant, record.id),
    )
    with by.recording(
        store, "connector.changed", now, connector=record.id, changed=["credentials"]
    ):
        store.update_connector(record.tenant, record.id, sealed_credentials=sealed)
    return token


def scim_token_matches(box: SecretBox, record: ConnectorRecord, token: str) -> bool:
    """Whether `token` is the connector's current SCIM token (compared in constant time)."""
    expected = connector_credentials(box, record).get(SCIM_DIGEST_FIELD)
    if not expected:
        return False
    return hmac.compare_digest(token_hash(token).hex().encode(), expected.encode())


def rotate_consumer_token(
    store: Store, *, tenant: str, consumer_id: str, now: datetime, by: Acting
) -> tuple[Consumer, str]:
    """A new token for the consumer; the old one stops working in the same write."""
    consumer = store.get_consumer(tenant, consumer_id)
    if consumer.revoked_at is not None:
        raise ValueError(f"consumer {consumer_id} is revoked; create a new one")
    token = f"sluis_feed_{secrets.token_urlsafe(32)}"
    with by.recording(store, "consumer.token_rotated", now, target=consumer_id):
        store.replace_consumer_token(tenant, consumer_id, token_hash(token))
    return consumer, token


__all__ = [
    "Deletion",
    "UnknownConnectorType",
    "change_connector",
    "changed_since",
    "connector_credentials",
    "create_connector",
    "create_consumer",
    "create_tenant",
    "delete_connector",
    "issue_scim_token",
    "revoke_consumer",
    "rotate_consumer_token",
    "scim_token_matches",
    "set_paused",
    "subject_key",
    "token_hash",
    "version",
]


def deletion_events(
    store: Store, tenant: str, connector: str, instruction_id: str, now: datetime
) -> list[NewEvent]:
    """`subject.deleted` for every subject the connector has delivered and not deleted."""
    base = new_event_id()
    return [
        NewEvent(
            id=f"{base}{n:05x}",
            type="subject.deleted",
            subject_id=sid,
            data=None,
            occurred_at=now,
            source=connector,
            instruction_id=instruction_id,
        )
        for n, sid in enumerate(store.present_subjects(tenant, connector))
    ]
