"""Push delivery: a worker per destination reads the tenant's feed events and hands them,
batch by batch, to the destination's sender, with the pull feed's guarantees.

* **Only under an active authorisation.** A batch is built as a feed page is
  (`gateway.delivery.feed.standing`, asked per source connector per batch): events of a
  source without an active instruction for its current mapping are withheld (counted, on
  the ledger as `refused`, never queued for later: a new grant re-emits the state),
  restricted people are held back, fields an instruction no longer covers go as null, and
  a `subject.erased` always leaves (the controller's erasure request is its instruction).
  A delivered erasure is the destination's receipt, shown on the suppression and on the
  erasure request as the feed consumer's acknowledgement is.
* **On the ledger before it leaves.** A batch's `outbound` entries (one per source
  connector, destination `<kind>:<destination id>`, the keyed ids it carries) are recorded
  through `gateway.ledger.record` before the first attempt; a retry of the same batch is
  the same transfer and is not recorded again.
* **Never after a revocation.** Before every retry the batch's sources are asked again; if
  any lost its instruction (or its covered fields changed), the batch is dropped and the
  next one is built under the instructions in force now.
* **In order, at least once.** One batch at a time per destination; the cursor moves past
  a batch only once it was delivered (or dead-lettered), in the same write that records
  it, so a crash sends the batch again (same `webhook-id`: receivers drop the repeat).
  Retries back off exponentially with jitter, or wait as long as `Retry-After` asks.
* **Dead letters, per person.** A batch that was refused for good, or failed
  `max_attempts` times, or has been failing for `max_age_seconds`, is parked as dead
  letters and the cursor moves on: one poisoned batch does not stop the destination. Its
  people are parked with it: their later events become dead letters behind it rather than
  overtaking it, so each person's events still arrive in order once an admin replays them
  (`replay`, which this worker carries out before anything new); everyone else's flow on.
  An erasure is never parked: it reaches the destination at once.
* **One owner.** A destination's worker runs on the replica holding its lease in the
  store (renewed every round and during waits; every progress write is fenced by it, as a
  sync run's page commits are). A destination that stays down holds up no other: each has
  its own task, and a paused one has none.

The sender is a seam of one method, `send(batch) -> Outcome`: the webhook sender
(`gateway.delivery.webhook`) is one, the SCIM push sender (`gateway.delivery.scim_push`)
the other.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal, Protocol

import orjson

from gateway.delivery.feed import DELETIONS, Standing, narrowed, standing
from gateway.ledger import entry as entries
from gateway.ledger.entry import TransferEntry
from gateway.ledger.log import Ledger
from gateway.ledger.record import record
from gateway.minimise.egress import EGRESS_FIELDS
from gateway.runtime.metrics import GatewayMetrics
from gateway.store.protocols import LeaseLost, StoreError
from gateway.store.records import Destination, FeedRow, NotFound, Store

log = logging.getLogger("sluis.push")

OutcomeKind = Literal["delivered", "retry", "rejected"]
_ALL: Final = frozenset(EGRESS_FIELDS)
_JSON: Final = orjson.OPT_UTC_Z
#: What a batch's body says it is (Standard Webhooks' `type`).
BATCH_TYPE: Final = "subject.events"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to: `delivered`; `retry` (with the seconds a `Retry-After`
    asked for, if any); `rejected` for good. `reason` is a short code, never a body."""

    kind: OutcomeKind
    reason: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """One request's worth of events, as it goes out; `message_id` depends only on what it
    carries, so every attempt of it, on any replica, has the same id."""

    tenant: str
    destination: str
    message_id: str
    body: bytes
    seqs: tuple[int, ...]


class Sender(Protocol):
    """Delivers a batch to one destination (`webhook.WebhookSender`, `scim_push.ScimSender`)."""

    async def send(self, batch: Batch) -> Outcome: ...


#: Opens a destination's sender for as long as its worker runs.
SenderFactory = Callable[[Destination], AbstractAsyncContextManager[Sender]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Waits between attempts: exponential from `first` seconds up to `cap`, each drawn
    between half and all of that (jitter, so receivers coming back are not stampeded)."""

    first: float = 1.0
    cap: float = 300.0

    def delay(self, attempt: int, asked: float | None) -> float:
        if asked is not None:
            return asked
        top = min(self.cap, self.first * 2 ** max(attempt - 1, 0))
        return random.uniform(top / 2, top)


@dataclass
class Page:
    """What the worker does with the next events: send `batch` (None: nothing to send),
    then move past `last_seq`, parking `parked` behind their people's dead letters."""

    batch: Batch | None
    last_seq: int
    seqs_and_ids: list[tuple[int, str]] = field(default_factory=list)
    parked: list[tuple[int, str]] = field(default_factory=list)
    erased: list[str] = field(default_factory=list)
    withheld: dict[str, int] = field(default_factory=dict)
    #: Each source's instruction and covered fields when the batch was built.
    covering: dict[str, tuple[str | None, frozenset[str]]] = field(default_factory=dict)
    #: Replay pages: the dead letters this page settles (sent, withheld or gone).
    letters: list[int] | None = None


def _thin(wire: bytes) -> bytes:
    event = orjson.loads(wire)
    event.pop("data", None)
    return orjson.dumps(event)


def destination_name(d: Destination) -> str:
    """How the ledger names the destination (`webhook:dst_...`)."""
    return f"{d.kind}:{d.id}"


def _message_id(d: Destination, parts: list[bytes]) -> str:
    h = hashlib.sha256(f"{d.tenant}/{d.id}\0".encode())
    for part in parts:
        h.update(part)
        h.update(b"\0")
    return "msg_" + h.hexdigest()[:32]


def _ledger(
    d: Destination, sources: dict[str, Standing], thin: bool, now: datetime
) -> list[TransferEntry]:
    found: list[TransferEntry] = []
    name = destination_name(d)
    for source, src in sources.items():
        ins = src.instruction
        if ins is not None and src.subject_ids:
            fields = {} if thin else {k: v for k, v in ins.fields.items() if k in src.covered}
            found.append(
                entries.outbound(
                    time=now, tenant=d.tenant, connector=source, instruction_id=ins.id,
                    mapping_digest=ins.mapping_digest, subject_ids=src.subject_ids,
                    fields=fields, destination=name,
                )
            )  # fmt: skip
        if src.erasures:
            found.append(
                entries.erasures_delivered(
                    time=now, tenant=d.tenant, connector=source, subject_ids=src.erasures,
                    destination=name,
                )
            )  # fmt: skip
        if src.withheld:
            refusal = src.refusal
            found.append(
                entries.refused(
                    time=now, tenant=d.tenant, connector=source,
                    instruction_id=refusal.instruction_id if refusal else None,
                    records=src.withheld, destination=name,
                )
            )  # fmt: skip
    return found


def build_page(
    store: Store,
    ledger: Ledger,
    d: Destination,
    rows: list[FeedRow],
    now: datetime,
    *,
    parked: frozenset[str] = frozenset(),
) -> Page:
    """Select what of `rows` may leave now, record it on the ledger, and make the batch
    (runs in a worker thread)."""
    tenant = d.tenant
    held_back = store.restricted(tenant)
    sources = {
        name: standing(store, tenant, name, now) for name in dict.fromkeys(r[3] for r in rows)
    }
    page = Page(None, rows[-1][0] if rows else d.after_seq)
    parts: list[bytes] = []
    for seq, kind, subject_id, source, stored in rows:
        wire = stored
        if subject_id in parked and kind != "subject.erased":
            # Behind the person's dead letter; an erasure is never held back (its
            # person's earlier events are deleted with it, so nothing can overtake them).
            page.parked.append((seq, subject_id))
            continue
        src = sources[source]
        if kind == "subject.erased" and src.instruction is None:
            src.erasures.append(subject_id)
        elif (
            src.instruction is None
            or (src.deletes_only and kind not in DELETIONS)
            or subject_id in held_back
        ):
            src.withheld += 1
            continue
        elif kind not in d.event_types and kind != "subject.erased":
            continue  # a type this destination does not take
        else:
            src.subject_ids.append(subject_id)
            if src.covered != _ALL:
                wire = narrowed(wire, src.covered)
        if kind == "subject.erased":
            page.erased.append(subject_id)
        parts.append(_thin(wire) if d.thin else wire)
        page.seqs_and_ids.append((seq, subject_id))
    page.withheld = {name: src.withheld for name, src in sources.items() if src.withheld}
    page.covering = {
        name: (src.instruction.id if src.instruction else None, src.covered)
        for name, src in sources.items()
    }
    written = _ledger(d, sources, d.thin, now)
    if written:
        record(store, ledger, written)
    if parts:
        body = orjson.dumps(
            {
                "type": BATCH_TYPE,
                "timestamp": now,
                "data": {
                    "tenant": tenant,
                    "destination": d.id,
                    "thin": d.thin,
                    "events": orjson.Fragment(b"[" + b",".join(parts) + b"]"),
                },
            },
            option=_JSON,
        )
        seqs = tuple(s for s, _ in page.seqs_and_ids)
        page.batch = Batch(tenant, d.id, _message_id(d, parts), body, seqs)
    return page


def still_covered(store: Store, page: Page, tenant: str, now: datetime) -> bool:
    """Whether every source of the page is covered now as when its batch was built."""
    for name, (instruction, covered) in page.covering.items():
        src = standing(store, tenant, name, now)
        if (src.instruction.id if src.instruction else None) != instruction:
            return False
        if src.covered != covered:
            return False
    return True


class _Stop(Exception):
    """The worker ends: the destination is gone or paused, or another replica holds it."""


class PushWorker:
    """One destination's delivery loop, for as long as this replica holds its lease."""

    def __init__(
        self,
        store: Store,
        ledger_of: Callable[[str], Ledger],
        metrics: GatewayMetrics,
        clock: Callable[[], datetime],
        open_sender: SenderFactory,
        *,
        owner: str,
        lease: float = 30.0,
        idle: float = 1.0,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._store = store
        self._ledger_of = ledger_of
        self._metrics = metrics
        self._clock = clock
        self._open_sender = open_sender
        self._owner = owner
        self._lease = lease
        self._idle = idle
        self._policy = policy or RetryPolicy()

    async def run(self, tenant: str, destination: str) -> None:
        """Deliver until the destination is paused, deleted or taken by another replica."""
        opened: tuple[object, ...] | None = None
        async with AsyncExitStack() as stack:
            try:
                while True:
                    d = await self._fresh(tenant, destination)
                    # A new URL or secret, or the end of a rotation's overlap: a new sender.
                    now = self._clock()
                    key = (d.url, d.sealed_secrets, d.previous_until is not None
                           and now < d.previous_until)  # fmt: skip
                    if key != opened:
                        await stack.aclose()
                        sender = await stack.enter_async_context(self._open_sender(d))
                        opened = key
                    if not await self._round(d, sender):
                        await asyncio.sleep(self._idle)
            except (_Stop, LeaseLost):
                return

    async def _fresh(self, tenant: str, destination: str) -> Destination:
        """The destination as stored now, with this replica's lease renewed."""
        now = self._clock()

        def read() -> Destination:
            try:
                d = self._store.get_destination(tenant, destination)
            except NotFound:
                raise _Stop from None
            if d.paused_at is not None:
                raise _Stop
            until = now + timedelta(seconds=self._lease)
            if not self._store.claim_destination(tenant, destination, self._owner, until, now):
                raise _Stop
            return d

        return await asyncio.to_thread(read)

    async def _round(self, d: Destination, sender: Sender) -> bool:
        """One batch (or replay batch); False when there was nothing to do."""
        page = await asyncio.to_thread(self._next_page, d)
        if page is None:
            return False
        self._count_withheld(d, page)
        if page.batch is None:
            await asyncio.to_thread(self._settle, d, page, None)
            return True
        await self._deliver(d, page, sender)
        return True

    def _next_page(self, d: Destination) -> Page | None:
        store, now = self._store, self._clock()
        ledger = self._ledger_of(d.tenant)
        if d.replay_requested_at is not None:
            letters = store.dead_letters(d.tenant, d.id, 0, d.batch_size)
            if not letters:
                store.replayed(d.tenant, d.id, self._owner, [], done=True)
                return None
            rows = store.events_by_seq(d.tenant, [x.seq for x in letters])
            page = build_page(store, ledger, d, rows, now)
            page.letters = [x.seq for x in letters]
            return page
        rows = store.feed_rows(d.tenant, d.after_seq, d.batch_size)
        if not rows:
            return None
        parked = store.parked_subjects(d.tenant, d.id)
        return build_page(store, ledger, d, rows, now, parked=parked)

    async def _deliver(self, d: Destination, page: Page, sender: Sender) -> None:
        assert page.batch is not None
        replaying = page.letters is not None
        # A replay counts its own attempts: the main cursor's failures are not its own.
        attempts = 0 if replaying else d.attempts
        since = self._clock() if replaying or d.failing_since is None else d.failing_since
        while True:
            outcome = await sender.send(page.batch)
            now = self._clock()
            if outcome.kind == "delivered":
                self._count(d, "attempts", "delivered")
                await asyncio.to_thread(self._settle, d, page, None)
                return
            attempts += 1
            gave_up = (
                outcome.kind == "rejected"
                or attempts >= d.max_attempts
                or (now - since).total_seconds() >= d.max_age_seconds
            )
            self._count(d, "attempts", "rejected" if outcome.kind == "rejected" else "retried")
            log.warning(
                "push to destination %s of tenant %s failed: %s (attempt %d)",
                d.id, d.tenant, outcome.reason, attempts,
            )  # fmt: skip
            if gave_up:
                await asyncio.to_thread(self._settle, d, page, outcome.reason)
                return
            if not replaying:
                await asyncio.to_thread(
                    self._store.destination_failed, d.tenant, d.id, self._owner,
                    attempts=attempts, since=since, reason=outcome.reason,
                )  # fmt: skip
            await self._wait(d, self._policy.delay(attempts, outcome.retry_after))
            await self._fresh(d.tenant, d.id)
            if not await asyncio.to_thread(
                still_covered, self._store, page, d.tenant, self._clock()
            ):
                return  # rebuilt next round under the instructions in force now

    async def _wait(self, d: Destination, seconds: float) -> None:
        """Sleep, renewing the lease (and noticing a pause or deletion) as it goes."""
        step = max(self._lease / 3, 0.01)
        end = asyncio.get_running_loop().time() + seconds
        while (left := end - asyncio.get_running_loop().time()) > 0:
            await asyncio.sleep(min(left, step))
            if left > step:
                await self._fresh(d.tenant, d.id)

    def _settle(self, d: Destination, page: Page, dead_reason: str | None) -> None:
        """Move past the page: delivered (`dead_reason` None) or dead-lettered."""
        store, now = self._store, self._clock()
        sent = page.seqs_and_ids if page.batch is not None else []
        if page.letters is not None:
            if dead_reason is None:
                store.replayed(d.tenant, d.id, self._owner, page.letters, done=False)
                self._receipts(d, page, now)
                self._count(d, "events", "delivered", len(sent))
            else:
                store.replayed(d.tenant, d.id, self._owner, [], done=True)
            return
        if dead_reason is None:
            store.advance_destination(
                d.tenant, d.id, self._owner, page.last_seq, at=now,
                delivered=page.batch is not None, dead=page.parked, reason="parked",
            )  # fmt: skip
            self._receipts(d, page, now)
            self._count(d, "events", "delivered", len(sent))
        else:
            store.advance_destination(
                d.tenant, d.id, self._owner, page.last_seq, at=now, delivered=False,
                dead=sorted([*sent, *page.parked]), reason=dead_reason,
            )  # fmt: skip
            self._count(d, "events", "dead_lettered", len(sent))

    def _receipts(self, d: Destination, page: Page, now: datetime) -> None:
        for subject_id in page.erased:
            self._store.add_erasure_receipt(d.tenant, subject_id, destination_name(d), now)

    def _count_withheld(self, d: Destination, page: Page) -> None:
        for connector, n in page.withheld.items():
            self._metrics.refused(d.tenant, connector, "feed_withheld", n)
            self._count(d, "events", "withheld", n)

    def _count(self, d: Destination, what: str, outcome: str, n: int = 1) -> None:
        counter = self._metrics.push_events if what == "events" else self._metrics.push_attempts
        if n:
            counter.labels(d.tenant, d.id, outcome).inc(n)


class PushWorkers:
    """Starts a worker for every destination not paused that has none on this replica,
    every `interval` seconds; a worker whose lease another replica holds ends at once and
    is tried again next round (so one takes over when its owner stops renewing)."""

    def __init__(self, store: Store, worker: PushWorker, *, interval: float = 1.0) -> None:
        self._store = store
        self._worker = worker
        self._interval = interval
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.start_due()
                except StoreError as exc:
                    log.warning("push workers: %s", type(exc).__name__)
                await asyncio.sleep(self._interval)
        finally:
            await self.stop()

    async def start_due(self) -> int:
        """Start the workers that are missing; how many were started."""
        found = await asyncio.to_thread(self._store.list_destinations)
        started = 0
        for d in found:
            key = (d.tenant, d.id)
            task = self._tasks.get(key)
            if d.paused_at is not None or (task is not None and not task.done()):
                continue
            self._tasks[key] = asyncio.create_task(self._guarded(d.tenant, d.id))
            started += 1
        return started

    async def _guarded(self, tenant: str, destination: str) -> None:
        try:
            await self._worker.run(tenant, destination)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "push worker of destination %s of tenant %s stopped: %s",
                destination, tenant, type(exc).__name__,
            )  # fmt: skip

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
