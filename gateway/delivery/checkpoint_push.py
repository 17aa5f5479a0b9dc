"""Checkpoints leave the operator's hands: each new signed checkpoint is POSTed to a URL the
tenant configured (its auditor's archive, a witness, a transparency service).

Once a checkpoint is kept somewhere we do not control, a history rewritten later, even by
someone holding the signing key, no longer matches it (`sluis audit verify --checkpoints`).
So pushing is about *getting the note out*, and the pusher is built to be boring:

* a poller, not a hook: every few seconds it compares each configured tenant's latest
  checkpoint with the last one pushed (kept in the store, so a restart or another replica
  carries on where the last push ended); it does not matter which code path appended;
* notes go out oldest first, one POST each (`text/plain`, the note exactly as signed), with
  retries on network errors, timeouts, 408, 429 and 5xx (tenacity, exponential back-off);
  anything else, a redirect included (never followed), fails the note, and the tenant is
  left alone for a minute before the next try;
* the backlog is bounded: a tenant more than `MAX_BACKLOG` checkpoints behind skips to the
  newest ones (counted as skipped; each later checkpoint vouches for the earlier log, and
  the auditor can fetch every one from the checkpoints route);
* the URL is judged like a connector's source (`connectors.netguard`): public addresses
  only, checked on every connection, unless `allow_private_sources`;
* several replicas poll, one posts: a tenant's pushes are claimed in the store for a
  minute at a time and renewed each round by the replica holding the claim, so a receiver
  gets each note once, and another replica carries on when the holder stops;
* failures are counted (`sluis_checkpoint_pushes_total{outcome="failed"}`) and stored as a
  short reason code; neither logs nor metrics nor the store ever hold the URL's answer.

Setting or clearing the URL is an admin action, recorded in the tenant's ledger as an audit
entry (without the URL: it is the tenant's configuration, not a fact about processing).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from connectors.netguard import PrivateAddress, PublicOnlyConnector, RefusedAddress, check_url
from gateway.ledger.record import Acting
from gateway.runtime.metrics import GatewayMetrics
from gateway.store.protocols import Store
from gateway.store.records import CheckpointPush, StoredCheckpoint

log = logging.getLogger("sluis.checkpoint_push")

#: Checkpoints a tenant may fall behind before older ones are skipped.
MAX_BACKLOG: Final = 100
#: Seconds a tenant whose push failed is left alone before the next try (a receiver that is
#: down is not hammered every round).
PAUSE_AFTER_FAILURE: Final = 60.0
#: Tenants pushed to at the same time in one round.
CONCURRENCY: Final = 8
CONTENT_TYPE: Final = "text/plain; charset=utf-8"
#: How long a replica's claim on a tenant's pushes lasts without renewal (at least three
#: polling intervals, so the holder renews it well before it runs out).
CLAIM_SECONDS: Final = 60.0


class PushFailed(Exception):
    """A note did not arrive; `reason` is a short code safe for logs and the store."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Transient(PushFailed):
    """Worth another attempt (network, timeout, 408, 429, 5xx)."""


@dataclass(frozen=True, slots=True)
class PushPolicy:
    """How hard one note is tried: attempts, back-off, and each attempt's time limit."""

    attempts: int = 4
    wait_first: float = 0.5
    wait_max: float = 10.0
    timeout: float = 10.0


def url_problem(url: str, *, allow_private: bool) -> str | None:
    """Why `url` cannot receive checkpoints (None if it can), judged as for sources."""
    if allow_private:
        return None
    try:
        check_url(url)
    except PrivateAddress as exc:
        return f"{exc}; push URLs must be public (or set allow_private_sources)"
    return None


def configure(store: Store, url: str, *, now: datetime, by: Acting) -> CheckpointPush:
    """Set the tenant's push URL; the ledger records who did (not the URL), in one
    transaction."""
    with by.recording(store, "checkpoint_push.configured", now):
        return store.set_checkpoint_push(by.tenant, url, now)


def clear(store: Store, *, now: datetime, by: Acting) -> bool:
    """Stop pushing; recorded in the ledger if a URL was configured. False if none was."""
    with store.transaction():
        if store.get_checkpoint_push(by.tenant) is None:
            return False
        with by.recording(store, "checkpoint_push.cleared", now):
            store.clear_checkpoint_push(by.tenant)
    return True


class CheckpointPusher:
    """Polls the configured tenants and POSTs their new checkpoints (see the module doc)."""

    def __init__(
        self,
        store: Store,
        metrics: GatewayMetrics,
        clock: Callable[[], datetime],
        *,
        allow_private: bool = False,
        interval: float = 5.0,
        policy: PushPolicy | None = None,
        backlog: int = MAX_BACKLOG,
        pause_after_failure: float = PAUSE_AFTER_FAILURE,
        owner: str = "sluis",
        claim_seconds: float = CLAIM_SECONDS,
    ) -> None:
        self._store = store
        self._owner = owner
        self._claim = timedelta(seconds=max(claim_seconds, interval * 3))
        self._metrics = metrics
        self._clock = clock
        self._allow_private = allow_private
        self._interval = interval
        self._policy = policy or PushPolicy()
        self._backlog = backlog
        self._pause = timedelta(seconds=pause_after_failure)

    async def run(self) -> None:
        """Push every `interval` seconds until cancelled; a failed round is logged, and
        the next one tries again."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.push_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("checkpoint push round failed: %s", type(exc).__name__)

    async def push_once(self) -> int:
        """One round over every configured tenant; returns the notes delivered."""
        configs = await asyncio.to_thread(self._store.list_checkpoint_pushes)
        if not configs:
            return 0
        gate = asyncio.Semaphore(CONCURRENCY)
        async with self._session() as session:

            async def one(config: CheckpointPush) -> int:
                async with gate:
                    return await self._push_tenant(session, config)

            done = await asyncio.gather(*(one(c) for c in configs))
        return sum(done)

    def _session(self) -> aiohttp.ClientSession:
        connector = None if self._allow_private else PublicOnlyConnector()
        return aiohttp.ClientSession(connector=connector)

    def _due(self, config: CheckpointPush) -> tuple[list[StoredCheckpoint], int]:
        """Checkpoints to push (oldest first) and how many are skipped for the bound."""
        ledger = self._store.ledger
        latest = ledger.latest_checkpoint(config.tenant)
        if latest is None:
            return [], 0
        if config.pushed_seq is None:
            return [latest], 0  # a new URL starts from the current checkpoint
        behind = latest.seq - config.pushed_seq
        if behind <= 0:
            return [], 0
        skipped = max(behind - self._backlog, 0)
        due = ledger.checkpoints_after(config.tenant, config.pushed_seq + skipped, self._backlog)
        return due, skipped

    async def _push_tenant(self, session: aiohttp.ClientSession, config: CheckpointPush) -> int:
        tenant = config.tenant
        self._metrics.prime_checkpoint_push(tenant)
        if config.failed_at is not None and self._clock() < config.failed_at + self._pause:
            return 0
        now = self._clock()
        mine = await asyncio.to_thread(
            self._store.claim_checkpoint_push, tenant, config.url, self._owner,
            now + self._claim, now,
        )  # fmt: skip
        if not mine:
            return 0  # another replica pushes this tenant's checkpoints
        due, skipped = await asyncio.to_thread(self._due, config)
        if skipped:
            self._metrics.checkpoint_pushes.labels(tenant, "skipped").inc(skipped)
        delivered = 0
        for cp in due:
            try:
                await self._deliver(session, config, cp)
            except PushFailed as failed:
                self._metrics.checkpoint_pushes.labels(tenant, "failed").inc()
                log.warning("checkpoint push for tenant %s failed: %s", tenant, failed.reason)
                await asyncio.to_thread(
                    self._store.checkpoint_push_failed,
                    tenant,
                    config.url,
                    failed.reason,
                    self._clock(),
                )
                break
            self._metrics.checkpoint_pushes.labels(tenant, "delivered").inc()
            delivered += 1
            await asyncio.to_thread(
                self._store.checkpoint_pushed, tenant, config.url, cp.seq, self._clock()
            )
        return delivered

    async def _deliver(
        self, session: aiohttp.ClientSession, config: CheckpointPush, cp: StoredCheckpoint
    ) -> None:
        problem = url_problem(config.url, allow_private=self._allow_private)
        if problem is not None:
            raise PushFailed("refused-address")
        p = self._policy
        retrying = AsyncRetrying(
            stop=stop_after_attempt(p.attempts),
            wait=wait_exponential(multiplier=p.wait_first, max=p.wait_max),
            retry=retry_if_exception_type(_Transient),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._post(session, config, cp)

    async def _post(
        self, session: aiohttp.ClientSession, config: CheckpointPush, cp: StoredCheckpoint
    ) -> None:
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Sluis-Tenant": config.tenant,
            "Sluis-Checkpoint-Seq": str(cp.seq),
            "Sluis-Checkpoint-Size": str(cp.size),
        }
        try:
            async with session.post(
                config.url,
                data=cp.note.encode("utf-8"),
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._policy.timeout),
            ) as resp:
                status = resp.status
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedAddress):
                raise PushFailed("refused-address") from None
            raise _Transient("network") from None
        except TimeoutError:
            raise _Transient("timeout") from None
        except aiohttp.ClientError:
            raise _Transient("network") from None
        if 200 <= status < 300:
            return
        if status in (408, 429) or status >= 500:
            raise _Transient(f"status-{status}")
        if 300 <= status < 400:
            raise PushFailed(f"redirect-{status}")
        raise PushFailed(f"status-{status}")
