"""Live preview: a connector's mapping on one small page of the customer's own data, before
any authorisation exists.

A customer admin deciding whether to authorise a mapping should see what it does to real
records, not only its rules: which egress fields fill from which source fields, what the
first few people look like after minimisation, which source fields are dropped, which
records would be quarantined and why, and which mapped fields the source never sends (a
typo that would leave a field empty for everyone).

The page is fetched exactly as a sync fetches one (the connector's own client, its sealed
credentials and settings, the public-addresses-only session unless `allow_private_sources`,
the response-size cap) and minimised by the same `Projector` and guard, with one
difference: it is bounded. The connector is asked for a page of `limit` records (the
`page_size` setting every pull connector reads) and the projector never sees more than
`limit` raw records, whatever the source sends. Retries are few and the whole fetch has a
deadline, because an admin is waiting.

Nothing is written to subjects, events, runs or the feed: a preview moves no data anywhere.
What it did is an audit entry in the tenant's ledger (`preview.made`: who asked, which
mapping, how many records were read and quarantined, which source fields were dropped, by
name), because reading people's records from a source is processing, authorised or not. The
result itself holds personal data (the sample people), so callers keep it only briefly
(`gateway.sync.preview_cache`) and never log it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from connectors.base import (
    ConnectorConfig,
    ConnectorError,
    ErrorKind,
    KeepCredentials,
    MinimisedPage,
    PageRequest,
    RetryPolicy,
    SyncMode,
)
from connectors.http import source_session
from connectors.registry import connector_type
from gateway.keys.master import SecretBox
from gateway.ledger.audit import Actor, AuditCounts, audit
from gateway.ledger.log import Ledger
from gateway.ledger.record import record
from gateway.minimise.bounded import BoundedDoor
from gateway.minimise.egress import EGRESS_FIELDS
from gateway.minimise.mapping import Mapping, parse_mapping
from gateway.minimise.mapping_diff import MappingDiff, diff_mappings
from gateway.minimise.projector import Projector
from gateway.store.protocols import Store
from gateway.sync.engine import utcnow
from gateway.sync.source_process import SourceWorkerFailed, SourceWorkers
from gateway.tenancy import connector_credentials, credentials_keeper, subject_key

log = logging.getLogger("sluis.preview")

DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 50
#: The whole fetch (every attempt and wait) must end within this; an admin is waiting.
TIMEOUT_SECONDS: Final = 30.0
#: Two attempts, short waits: enough for a blip, not for a source that is down.
RETRY: Final = RetryPolicy(attempts=2, max_seconds=10.0, initial_wait=0.5, max_wait=2.0)


class PreviewFailed(Exception):
    """The source could not give the page. `kind` is the connector's error kind ("auth",
    "unavailable", "too_large", "config" for a refused address or bad setting, ...); the
    message is the connector's, which never quotes a response body."""

    def __init__(self, kind: ErrorKind, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


class PreviewRefused(ValueError):
    """The preview cannot be made as asked (a limit out of range, a mapping for another
    connector type); nothing was fetched."""


@dataclass(frozen=True, slots=True)
class PreviewField:
    """One egress field the previewed mapping fills."""

    name: str
    category: str
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class QuarantinedRecord:
    """A record of the page that would be quarantined: its position and the reason (field
    names and rules, never values)."""

    position: int
    reason: str


@dataclass(frozen=True)
class Preview:
    """What a mapping makes of one small page. `people` holds personal data: keep it
    briefly, never log it."""

    id: str
    tenant: str
    connector: str
    made_at: datetime
    #: The actor's opaque id (who asked), as the ledger names them.
    actor: str
    #: The mapping previewed (the proposed one when given, else the connector's own).
    mapping_digest: str
    current_digest: str
    proposed: bool
    limit: int
    records_read: int
    #: The source had more records than were read (another page, or a longer one).
    more_available: bool
    fields: tuple[PreviewField, ...]
    #: Minimised sample people: `subject_id`, the mapped egress fields and `active`.
    people: tuple[dict[str, Any], ...]
    dropped: dict[str, int]
    quarantined: tuple[QuarantinedRecord, ...]
    unseen_source_fields: tuple[str, ...]
    #: Current mapping → proposed one; None when no mapping was proposed.
    diff: MappingDiff | None


def preview_id() -> str:
    """128 random bits: the id is the only thing standing between a result and a guess."""
    return f"prv_{secrets.token_hex(16)}"


async def make_preview(
    store: Store,
    box: SecretBox,
    ledger: Ledger,
    *,
    tenant: str,
    connector: str,
    actor: Actor,
    proposed: Mapping | None = None,
    limit: int = DEFAULT_LIMIT,
    allow_private_sources: bool = False,
    retry: RetryPolicy = RETRY,
    timeout: float = TIMEOUT_SECONDS,
    clock: Callable[[], datetime] = utcnow,
    workers: SourceWorkers | None = None,
) -> Preview:
    """Fetch and minimise one bounded page of `connector`, record the preview in the
    tenant's ledger, and return it.

    Raises `gateway.store.records.NotFound` (no such tenant or connector),
    `PreviewRefused` (nothing fetched) or `PreviewFailed` (the source failed; nothing is
    recorded, as nothing was read).
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise PreviewRefused(f"limit must be from 1 to {MAX_LIMIT}")
    found = await asyncio.to_thread(store.get_connector, tenant, connector)
    owner = await asyncio.to_thread(store.get_tenant, tenant)
    current = parse_mapping(found.mapping_text, f"mapping of connector {found.id}")
    if proposed is not None and proposed.connector != found.type:
        raise PreviewRefused(
            f"the proposed mapping is written for connector type {proposed.connector}, "
            f"not {found.type}"
        )
    mapping = proposed or current
    key = subject_key(box, owner)
    config = ConnectorConfig(
        type=found.type,
        base_url=found.base_url,
        credentials=connector_credentials(box, found),
        settings={**found.settings, "page_size": limit},
    )
    keep = credentials_keeper(store, box, tenant, connector)
    door: _Door
    if workers is not None:
        page, door = await _fetch_remote(
            workers, config, mapping, key, limit=limit, allow_private=allow_private_sources,
            retry=retry, timeout=timeout, keep=keep,
        )  # fmt: skip
    else:
        local = BoundedDoor(Projector(mapping, key), limit)
        page = await _fetch_one(config, local, allow_private_sources, retry, timeout, keep=keep)
        door = local
    made_at = clock()
    pid = preview_id()
    rejected = tuple(QuarantinedRecord(position, reason) for position, reason in page.rejected)
    dropped = dict(sorted(page.dropped.items()))
    entry = audit(
        "preview.made",
        time=made_at,
        tenant=tenant,
        actor=actor,
        connector=connector,
        target=pid,
        mapping_digest=mapping.digest,
        fields=mapping.categories,
        counts=AuditCounts(
            records=door.read, quarantined=len(rejected), dropped_fields=sum(dropped.values())
        ),
        dropped=dropped,
    )
    await asyncio.to_thread(record, store, ledger, [entry])
    log.info(
        "preview %s of %s/%s: %d records read, %d quarantined",
        pid, tenant, connector, door.read, len(rejected),
    )  # fmt: skip
    return Preview(
        id=pid,
        tenant=tenant,
        connector=connector,
        made_at=made_at,
        actor=actor.id,
        mapping_digest=mapping.digest,
        current_digest=current.digest,
        proposed=proposed is not None,
        limit=limit,
        records_read=door.read,
        more_available=door.more or page.next_cursor is not None,
        fields=tuple(
            PreviewField(rule.name, rule.category, rule.sources) for rule in mapping.fields.values()
        ),
        people=tuple(_person(subject, mapping) for subject in page.subjects),
        dropped=dropped,
        quarantined=rejected,
        unseen_source_fields=tuple(door.unseen_source_fields) if door.records_seen else (),
        diff=diff_mappings(current, proposed) if proposed is not None else None,
    )


class _Door(Protocol):
    """What a preview reads off the door, in this process (`BoundedDoor`) or from a
    source worker (`RemoteConnector`)."""

    @property
    def read(self) -> int: ...
    @property
    def more(self) -> bool: ...
    @property
    def records_seen(self) -> int: ...
    @property
    def unseen_source_fields(self) -> list[str]: ...


async def _fetch_remote(
    workers: SourceWorkers,
    config: ConnectorConfig,
    mapping: Mapping,
    key: bytes,
    *,
    limit: int,
    allow_private: bool,
    retry: RetryPolicy,
    timeout: float,
    keep: KeepCredentials,
) -> tuple[MinimisedPage, _Door]:
    """`_fetch_one` in a source worker: the raw page never enters this process."""

    async def no_check() -> None:
        return None

    with _failures_as_preview_failed(config, timeout):
        async with asyncio.timeout(timeout):
            remote = await workers.open(
                config, mapping.text, key, retry=retry, allow_private=allow_private,
                before_attempt=no_check, keep_credentials=keep, limit=limit,
            )  # fmt: skip
            try:
                page = await remote.fetch_page(PageRequest(SyncMode.FULL))
            finally:
                await remote.aclose()
    return page, remote


@contextmanager
def _failures_as_preview_failed(config: ConnectorConfig, timeout: float) -> Iterator[None]:
    """Connector failures, a worker's and the deadline become `PreviewFailed`."""
    try:
        yield
    except ConnectorError as exc:
        raise PreviewFailed(exc.kind, str(exc), status=exc.status) from None
    except SourceWorkerFailed as exc:
        raise PreviewFailed("unavailable", f"{config.type}: {exc}; try again") from None
    except TimeoutError:
        raise PreviewFailed(
            "unavailable", f"{config.type}: the source did not answer within {timeout:g} s"
        ) from None


async def _fetch_one(
    config: ConnectorConfig,
    door: BoundedDoor,
    allow_private: bool,
    retry: RetryPolicy,
    timeout: float,
    *,
    keep: KeepCredentials,
) -> MinimisedPage:
    """One page through the connector's own client, as a sync's first page; connector
    failures (and the deadline) become `PreviewFailed`."""
    with _failures_as_preview_failed(config, timeout):
        async with (
            asyncio.timeout(timeout),
            source_session(config.base_url, allow_private=allow_private) as session,
        ):
            client = connector_type(config.type).connector(
                config, door, session, retry=retry, keep_credentials=keep
            )
            try:
                page = await client.fetch_page(PageRequest(SyncMode.FULL))
            finally:
                await client.aclose()
    return page


def _person(subject: dict[str, Any], mapping: Mapping) -> dict[str, Any]:
    """A sample person as the platform would get them: the keyed id, the egress fields
    the mapping fills (in output order) and whether they are a leaver."""
    out = {"subject_id": subject["subject_id"]}
    out.update({name: subject.get(name) for name in EGRESS_FIELDS if name in mapping.fields})
    out["active"] = subject["active"]
    return out
