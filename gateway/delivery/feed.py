"""The pull feed (`/feed/v1/tenants/{tenant}/events`): minimised changes, in order, to a
platform consumer, never after revocation, and every page on the ledger.

Auth: `Authorization: Bearer <consumer token>`; the token is looked up by its SHA-256 (only
the hash is stored). An unknown or revoked token is a 401; a valid token of another tenant
is a 403.

Paging: events have a per-tenant sequence number; a page holds the next `limit` events
(1..1000, default 100) after the cursor, in sequence order, so pages never overlap and never
skip. The cursor is opaque to consumers: `v2.<seq>.<tenant tag>`, the sequence number of the
last event the page passed over and 8 hex digits of a hash of the tenant id (plain text, so
that the OpenAPI document can state its exact form). `next_cursor` is always returned, and
equals the request's cursor when nothing is new, so a consumer polls with it forever. Two
mistakes used to look exactly like "nothing new" and are now refused, so a consumer cannot
wait forever on them: a cursor of another tenant's feed (`CursorMismatch`, told by the tag;
cursors of the earlier form, base64url of `v1:<seq>`, carry no tag and are still accepted)
and a cursor beyond the newest event (`CursorBeyondHead`: not handed out by this feed as it
now is, e.g. a restored backup or another gateway).

Revocation is checked before every page: an event is delivered only if its source connector
has an active instruction *now* for the connector's current mapping (`active_among` over
`Store.source_standing`: the connector and its instructions in one read, once per connector
per page). Events of a connector without one are **withheld**: left out
of the page, with the cursor moving past them, so one revoked connector cannot stall the
feed of the others; a `subject.erased` event (no data) is the exception and always leaves,
recorded in its own `outbound` entry without an instruction, since the controller's erasure
request is its instruction. Withheld events are counted in the page's `withheld`, in the
`sluis_authorisation_refusals_total{reason="feed_withheld"}` metric, and on the ledger as a
`refused` entry with the count and no subject ids (no data moved). They are not queued for
later: the check is always against the instruction in force when a page is served. Instead,
a grant after such a gap re-emits the connector's current state as fresh events
(`gateway.delivery.outbox`), so a consumer that kept polling converges. If an instruction
covers fewer egress fields than an event carries (the mapping was re-authorised narrower),
the uncovered fields are sent as null.

A restricted person's events (GDPR Art. 18, `gateway.lifecycle.erasure.restrict`) are
withheld the same way, the restricted ids asked before every page; lifting the restriction
re-emits their newest state.

Each page that delivers something is written to the tenant's ledger BEFORE the response is
sent: one `outbound` entry per source connector in the page (instruction, mapping digest,
covered fields, keyed subject ids, count, destination `feed:<consumer id>`), appended in one
batch. Pages served at the same moment have their batches committed together, with one
checkpoint (`Ledger.append_grouped`); each page still waits for its own (the route waits in
its event loop, not in a worker thread: `deferred` of `serve_page`). If the ledger cannot
be written, the page is not sent.

Speed: each event is serialised once, when it is written: the store keeps its wire JSON
(`gateway.store.event_wire`), and a page is those bytes spliced together (`orjson.Fragment`)
with the cursor and `withheld` around them, so serving an event costs no decoding and no
rebuilding. The common page (every event from one source connector, all leaving as
stored) is read as one aggregate row, the database joining the wire bytes and subject ids
(`Store.feed_block`), so it costs no Python per event at all; other pages are read row by
row (`feed_rows`). Per page there is that one query, one standing per source connector (its
record and instructions, asked once per page whatever the number of its events), both in
one worker thread, and one ledger append, in its group's. Nothing else stored can leave
here: the wire bytes are built by one function from the egress field names alone
(`event_wire.DATA_FIELDS`, held equal to `EGRESS_FIELDS` below), and an event whose
instruction covers fewer fields is rebuilt from those names with the rest as null.

This module is the feed's logic only; its HTTP route is `gateway.api.feed`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import orjson

from gateway.delivery.blocks import FeedBlocks
from gateway.ledger import entry as entries
from gateway.ledger.entry import TransferEntry
from gateway.ledger.log import Ledger
from gateway.minimise.egress import EGRESS_FIELDS
from gateway.store.event_wire import DATA_FIELDS
from gateway.store.protocols import Store
from gateway.store.records import ConnectorRecord, Consumer, FeedAccess, FeedBlock, Instruction
from gateway.sync.instructions import InstructionRefused, active_among
from gateway.tenancy import token_hash

MAX_TOKEN_LENGTH: Final = 512
#: `v2.<seq>.<tenant tag>`: plain text, so that the OpenAPI document can state its exact
#: form (`gateway.api.schema_rules`); consumers treat it as opaque all the same.
_CURSOR_V2 = re.compile(r"v2\.(0|[1-9][0-9]{0,17})\.([0-9a-f]{8})")
#: The first gateways handed out base64url(`v1:<seq>`); still read, never written.
_CURSOR_V1_TEXT = re.compile(r"[A-Za-z0-9_-]{1,40}")
_CURSOR_V1_BODY = re.compile(r"v1:(0|[1-9][0-9]{0,17})")
_JSON: Final = orjson.OPT_UTC_Z
_ALL_FIELDS: Final = frozenset(EGRESS_FIELDS)
#: Events that carry no data and say a person is gone.
DELETIONS: Final = frozenset({"subject.deleted", "subject.erased"})
if DATA_FIELDS != EGRESS_FIELDS:  # pragma: no cover - the store's wire bytes would drift
    raise RuntimeError("gateway.store.event_wire.DATA_FIELDS must equal EGRESS_FIELDS")


class BadCursor(ValueError):
    """A cursor this feed did not hand out."""


class CursorMismatch(BadCursor):
    """A cursor this gateway handed out, but for another tenant's feed."""


class CursorBeyondHead(Exception):
    """A cursor past the newest event: not handed out by this feed as it now is."""

    def __init__(self, after: int, head: int) -> None:
        super().__init__(
            f"the cursor points after event {after}, but this feed's newest event is {head}: "
            "it was not handed out by this feed as it is now (a cursor of another gateway, "
            "or this gateway was restored from an older backup). Nothing was skipped "
            "silently: read again from the start (omit `after`) and apply events by "
            "subject_id, or continue from `head_cursor`"
        )
        self.after = after
        self.head = head


class FeedDenied(Exception):
    """A token that may not read the feed: `status` 401 (not a feed token) or 403 (another
    tenant's)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _tenant_tag(tenant: str) -> str:
    """Tells tenants' cursors apart; a check against mistakes, not a secret (a consumer can
    read only its own tenant's feed whatever cursor it sends)."""
    return hashlib.sha256(b"sluis-feed-cursor\0" + tenant.encode()).hexdigest()[:8]


def encode_cursor(seq: int, tenant: str) -> str:
    return f"v2.{seq}.{_tenant_tag(tenant)}"


def decode_cursor(cursor: str | None, tenant: str) -> int:
    """The sequence number in a cursor of `tenant`'s feed; `CursorMismatch` for another
    tenant's, `BadCursor` for anything this feed did not hand out."""
    if cursor is None:
        return 0
    bad = BadCursor("`after` is not a cursor this feed handed out")
    v2 = _CURSOR_V2.fullmatch(cursor)
    if v2 is not None:
        if v2.group(2) != _tenant_tag(tenant):
            raise CursorMismatch("`after` is a cursor of another tenant's feed, not of this one")
        return int(v2.group(1))
    if _CURSOR_V1_TEXT.fullmatch(cursor) is None:
        raise bad
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    v1 = _CURSOR_V1_BODY.fullmatch(text)
    if v1 is None:
        raise bad
    return int(v1.group(1))


@dataclass
class Standing:
    """One source connector's standing for this page."""

    instruction: Instruction | None
    refusal: InstructionRefused | None = None
    covered: frozenset[str] = _ALL_FIELDS
    subject_ids: list[str] = field(default_factory=list)
    withheld: int = 0
    #: A connector deleted with `subjects=delete`: only its `subject.deleted` (and
    #: `subject.erased`) events leave.
    deletes_only: bool = False
    #: Keyed ids of erasure notices sent although the source has no active instruction.
    erasures: list[str] = field(default_factory=list)

    @property
    def leaves_as_stored(self) -> bool:
        """Every event of this source leaves, each exactly as its wire bytes hold it."""
        return (
            self.instruction is not None and not self.deletes_only and (self.covered is _ALL_FIELDS)
        )


#: Sources' `Store.source_standing` read already this page, by (tenant, connector).
Standings = Mapping[tuple[str, str], tuple[ConnectorRecord | None, list[Instruction]]]


def standing(
    store: Store, tenant: str, connector: str, now: datetime, known: Standings | None = None
) -> Standing:
    """A source connector's standing now: its active instruction and the fields it covers,
    or why there is none (also what the push workers of `gateway.delivery.push` ask).
    `known`: standings this page read already (`admit`), used instead of asking again."""
    read = known.get((tenant, connector)) if known else None
    record, instructions = read if read is not None else store.source_standing(tenant, connector)
    if record is None:
        refusal = InstructionRefused("missing", f"connector {connector} no longer exists")
        deleted = store.deleted_connector(tenant, connector)
        if deleted is None or deleted.deleted_subjects != "delete":
            return Standing(None, refusal)
        # The deletions the admin asked for still reach the platform: they carry no data,
        # and are recorded under the connector's last instruction.
        last = store.list_instructions(tenant, connector)[-1:]
        if not last:
            return Standing(None, refusal)
        return Standing(last[0], refusal, covered=frozenset(), deletes_only=True)
    try:
        instruction = active_among(instructions, tenant, connector, record.mapping_digest, now)
    except InstructionRefused as refusal:
        return Standing(None, refusal)
    covered = frozenset(instruction.fields) & _ALL_FIELDS
    return Standing(instruction, covered=_ALL_FIELDS if covered == _ALL_FIELDS else covered)


def narrowed(wire: bytes, covered: frozenset[str]) -> bytes:
    """An event's wire bytes with the fields its instruction no longer covers sent as
    null: rebuilt from the egress field names, as every event once was."""
    event = orjson.loads(wire)
    data = event.get("data")
    if data is None:
        return wire
    event["data"] = {k: data.get(k) if k in covered else None for k in EGRESS_FIELDS}
    return orjson.dumps(event)


def _destination(consumer: Consumer) -> str:
    return f"feed:{consumer.id}"


def _outbound(
    consumer: Consumer, connector: str, ins: Instruction, src: Standing, now: datetime
) -> TransferEntry:
    """The entry for a source's events delivered to this consumer under `ins`."""
    return entries.outbound(
        time=now,
        tenant=consumer.tenant,
        connector=connector,
        instruction_id=ins.id,
        mapping_digest=ins.mapping_digest,
        subject_ids=src.subject_ids,
        fields={k: v for k, v in ins.fields.items() if k in src.covered},
        destination=_destination(consumer),
    )


def _ledger_entries(
    tenant: str, consumer: Consumer, sources: Iterable[tuple[str, Standing]], now: datetime
) -> list[TransferEntry]:
    found = []
    destination = _destination(consumer)
    for name, src in sources:
        if src.instruction is not None and src.subject_ids:
            found.append(_outbound(consumer, name, src.instruction, src, now))
        if src.erasures:
            found.append(
                entries.erasures_delivered(
                    time=now, tenant=tenant, connector=name, subject_ids=src.erasures,
                    destination=destination,
                )
            )  # fmt: skip
        if src.withheld:
            refusal = src.refusal
            found.append(
                entries.refused(
                    time=now,
                    tenant=tenant,
                    connector=name,
                    instruction_id=refusal.instruction_id if refusal else None,
                    records=src.withheld,
                    destination=destination,
                )
            )
    return found


def authenticate(store: Store, now: datetime, token: str, tenant: str) -> Consumer:
    """The consumer holding `token`, if it may read `tenant`'s feed (runs in a thread)."""
    return admit(store, now, token, tenant).consumer


def admit(
    store: Store, now: datetime, token: str, tenant: str, *, source: str | None = None
) -> FeedAccess:
    """`authenticate`, with the tenant's feed state read in the same statement (a page
    then asks the database nothing more before its kept block), and with `source` that
    connector's standing too (`FeedAccess.standings`, for `serve_page`): the page's checks
    in one statement rather than two (one round trip fewer on PostgreSQL, where each made
    a page wait for the GIL again among 64 consumers' threads)."""
    access = None
    if len(token) <= MAX_TOKEN_LENGTH:
        access = store.feed_access(token_hash(token), (tenant, source) if source else None)
    consumer = access.consumer if access is not None else None
    if consumer is None or (consumer.revoked_at is not None and consumer.revoked_at <= now):
        raise FeedDenied(401, "the bearer token is not a valid feed token")
    if consumer.tenant != tenant:
        raise FeedDenied(403, "this token may not read that tenant's feed")
    assert access is not None
    return access


def _serve_block(
    ledger: Ledger,
    consumer: Consumer,
    block: FeedBlock,
    src: Standing,
    *,
    body: bytes | None,
    now: datetime,
    after: int,
    blocks: FeedBlocks | None,
    deferred: list[Future[int]] | None,
) -> tuple[bytes, int, int]:
    """The common page: one source, every event leaving as stored; the block's joined bytes
    go out as they are, and its outbound entry is made once for every consumer of it."""
    src.subject_ids = block.subject_ids
    if body is None:
        body = _block_body(block, consumer.tenant)
    pairs = [(block.source, src)]
    ins = src.instruction
    if blocks is None or ins is None:
        written = _ledger_entries(consumer.tenant, consumer, pairs, now)
    else:
        key = (consumer.tenant, block.source, after, block.last_seq, block.count, ins.id,
               ins.mapping_digest, tuple(sorted(ins.fields.items())))  # fmt: skip
        made = blocks.outbound(
            key,
            lambda: _outbound(consumer, block.source, ins, src, now),
            now=now,
            destination=_destination(consumer),
        )
        written = [made]
    _append(ledger, written, deferred)
    return body, block.count, 0


def _append(
    ledger: Ledger, written: list[TransferEntry], deferred: list[Future[int]] | None
) -> None:
    """The page's entries on the ledger, grouped with other pages': committed now, or
    queued with their future in `deferred` (see `serve_page`)."""
    if deferred is None:
        ledger.append_grouped(written)
        return
    pending = ledger.append_grouped_later(written)
    if pending is not None:
        deferred.append(pending)


def _block_body(block: FeedBlock, tenant: str) -> bytes:
    return _body(block.wire, block.last_seq, tenant, 0)


def _body(events: bytes, next_seq: int, tenant: str, withheld: int) -> bytes:
    """A page: `events` (wire JSON joined by commas, as stored at write time) spliced in,
    so no event is decoded or rebuilt, with the cursor and the withheld count around."""
    page = {
        "events": orjson.Fragment(b"[" + events + b"]"),
        "next_cursor": encode_cursor(next_seq, tenant),
        "withheld": withheld,
    }
    return orjson.dumps(page, option=_JSON)


def serve_page(
    store: Store,
    ledger: Ledger,
    consumer: Consumer,
    *,
    now: datetime,
    after: int,
    limit: int,
    withheld_by: dict[str, int] | None = None,
    blocks: FeedBlocks | None = None,
    state: tuple[int, int] | None = None,
    standings: Standings | None = None,
    deferred: list[Future[int]] | None = None,
) -> tuple[bytes, int, int]:
    """Build one page, write its ledger entries, return (body, served, withheld).

    `withheld_by`, if given, receives the withheld count per source connector (metrics);
    `blocks`, if given, keeps full pages for other consumers (`gateway.delivery.blocks`);
    `state`, the tenant's `Store.feed_state` if the caller read it already (`admit`);
    `standings`, sources' standings it read with it (`FeedAccess.standings`), read now;
    `deferred`, if given, receives the future of the page's ledger entries instead of this
    thread waiting for their group's commit (`Ledger.append_grouped_later`): the caller
    must wait for every future in it before the body is sent. The feed route waits in its
    event loop, so a page holds a worker thread only while it is built, not while its
    entries are committed (see `gateway.ledger.group`).
    """
    tenant = consumer.tenant
    if blocks is not None:
        page = blocks.get(
            store, tenant, after, limit, lambda b: _block_body(b, tenant), state=state
        )
        block, body = (page.block, page.body) if page is not None else (None, None)
    else:
        block, body = store.feed_block(tenant, after, limit), None
    # Restricted people (GDPR Art. 18): asked before every page, like the instructions
    # (the block says how many there are, so the common page asks nothing more).
    held_back = store.restricted(tenant) if block is None or block.restricted else frozenset()
    if block is not None and not held_back.intersection(block.subject_ids):
        src = standing(store, tenant, block.source, now, standings)
        if src.leaves_as_stored:
            return _serve_block(
                ledger, consumer, block, src, body=body, now=now, after=after, blocks=blocks,
                deferred=deferred,
            )  # fmt: skip
    rows = store.feed_rows(tenant, after, limit)
    # Each source's standing once per page, in order of first appearance (ledger order).
    sources = {
        name: standing(store, tenant, name, now, standings)
        for name in dict.fromkeys(r[3] for r in rows)
    }
    withheld = 0
    only = next(iter(sources.values())) if len(sources) == 1 else None
    if only is not None and only.leaves_as_stored:
        # The common page: one source, fully covered; every event leaves as stored.
        parts = [r[4] for r in rows]
        only.subject_ids = [r[2] for r in rows]
    else:
        parts = []
        for _, kind, subject_id, source, wire in rows:
            src = sources[source]
            if src.instruction is None and kind == "subject.erased":
                parts.append(wire)  # no data: the controller's erasure request is its instruction
                src.erasures.append(subject_id)
                continue
            if (
                src.instruction is None
                or (src.deletes_only and kind not in DELETIONS)
                or subject_id in held_back
            ):
                src.withheld += 1
                withheld += 1
                continue
            parts.append(wire if src.covered is _ALL_FIELDS else narrowed(wire, src.covered))
            src.subject_ids.append(subject_id)
    if not rows and after:
        head = store.last_event_seq(tenant)
        if after > head:
            raise CursorBeyondHead(after, head)
    next_seq = rows[-1][0] if rows else after
    body = _body(b",".join(parts), next_seq, tenant, withheld)
    written = _ledger_entries(tenant, consumer, sources.items(), now)
    _append(ledger, written, deferred)
    if withheld_by is not None:
        withheld_by.update({name: src.withheld for name, src in sources.items() if src.withheld})
    return body, len(parts), withheld
