"""The gateway's long-lived parts, opened once from the settings and shared by the HTTP app,
the scheduler and the CLI: store, secret box, ledger signer, sync engine, metrics.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from connectors.base import RetryPolicy
from gateway.accounts.oidc import OidcLogins
from gateway.accounts.service import Accounts
from gateway.delivery.blocks import FeedBlocks
from gateway.keys.location import MASTER_KEY_FILE, KeyFile, locate
from gateway.keys.master import (
    SecretBox,
    SecretError,
    load_or_create_master_key,
    parse_master_key,
)
from gateway.keys.signing import SIGNING_KEY_FILE, load_or_create_signing_key
from gateway.ledger.checkpoint import CheckpointSigner
from gateway.ledger.log import Ledger
from gateway.lifecycle.retention.job import JOB_NAME as RETENTION_JOB
from gateway.lifecycle.retention.rules import RULE_NAMES
from gateway.runtime.config import Settings
from gateway.runtime.metrics import GatewayMetrics, GatewayState, KnownConnector, KnownDestination
from gateway.runtime.storage import open_store
from gateway.store.protocols import Store
from gateway.sync.engine import PageHook, SyncEngine, utcnow
from gateway.sync.scim_inbound import ScimInbound
from gateway.sync.source_process import SourceWorkers
from gateway.tenancy import subject_key

ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name, not a secret

log = logging.getLogger("sluis.keys")
ledger_log = logging.getLogger("sluis.ledger")


def _open_keys(settings: Settings) -> tuple[SecretBox, CheckpointSigner]:
    """The master key (environment, else key file) and the ledger signing key, each made on
    first use in the key directory; a warning for every key file left beside the database."""
    data_dir, key_dir = settings.data_dir, settings.keys
    if _inside(key_dir, data_dir):
        log.warning("key_dir %s is inside the data directory; keep keys apart from data", key_dir)
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if settings.master_key:
        master = parse_master_key(settings.master_key)
    else:
        found = locate(MASTER_KEY_FILE, data_dir, key_dir)
        _warn_co_located(found, key_dir)
        master = load_or_create_master_key(found.path)
    signing = locate(SIGNING_KEY_FILE, data_dir, key_dir)
    _warn_co_located(signing, key_dir)
    key = load_or_create_signing_key(signing.path.parent)
    return SecretBox(master), CheckpointSigner(key, settings.ledger_name)


def _inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


def _warn_co_located(found: KeyFile, key_dir: Path) -> None:
    if found.co_located and not _inside(key_dir, found.path.parent):
        log.warning(
            "%s lies in the data directory beside the database; move it to %s",
            found.path,
            key_dir,
        )


def _check_master_key(store: Store, box: SecretBox) -> None:
    """Refuse a master key that does not open the stored secrets: every sync and every new
    connector would fail later, one by one, while /readyz said ready."""
    for tenant in store.list_tenants():
        try:
            subject_key(box, tenant)
        except SecretError:
            raise SecretError(
                f"the master key does not open the stored secrets (tenant {tenant.id}); "
                "give the master key this data directory was created with"
            ) from None


def admin_token_path(settings: Settings) -> Path:
    """Where the made-up bootstrap admin token is kept: with the keys (an older
    installation's stays in the data directory)."""
    return locate(ADMIN_TOKEN_FILE, settings.data_dir, settings.keys).path


def _load_or_create_token(path: Path) -> str:
    """The bootstrap admin token kept in a file (owner-only), made on first use,
    so that it survives restarts without ever being written to a log."""
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    return token


@dataclass
class Services:
    settings: Settings
    store: Store
    box: SecretBox
    signer: CheckpointSigner
    engine: SyncEngine
    metrics: GatewayMetrics
    admin_token: str = field(repr=False)
    clock: Callable[[], datetime] = utcnow
    accounts: Accounts = field(init=False, repr=False)
    #: Sign-ins through tenants' own identity providers (pending ones kept in the store,
    #: so any replica finishes a login another began).
    oidc: OidcLogins = field(init=False, repr=False)
    #: Full feed pages kept a few seconds for every consumer of this replica.
    feed_blocks: FeedBlocks = field(default_factory=FeedBlocks, repr=False)
    #: Identity providers pushing users (`/scim/v2`).
    scim: ScimInbound = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.accounts = Accounts(
            self.store,
            self.box,
            self.ledger,
            lambda: self.clock(),  # noqa: PLW0108 - tests may replace the clock
            bootstrap_token=self.admin_token,
        )
        self.scim = ScimInbound(
            self.store,
            self.box,
            self.ledger,
            self.metrics,
            lambda: self.clock(),  # noqa: PLW0108 - tests may replace the clock
        )
        self.oidc = OidcLogins(
            self.store.accounts,
            self.box,
            allow_private=self.settings.allow_private_sources,
            clock=lambda: self.clock(),  # noqa: PLW0108 - tests may replace the clock
        )

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        retry: RetryPolicy | None = None,
        after_page: PageHook | None = None,
    ) -> Services:
        data_dir = settings.data_dir
        # Owner-only: the database holds names and work emails (minimised, but personal).
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        box, signer = _open_keys(settings)
        store = open_store(settings)
        try:
            _check_master_key(store, box)
        except BaseException:
            store.close()
            raise
        metrics = GatewayMetrics()
        metrics.prime_retention(RULE_NAMES)
        engine = SyncEngine(
            store,
            box,
            signer,
            metrics=metrics,
            clock=clock,
            retry=retry,
            after_page=after_page,
            allow_private_sources=settings.allow_private_sources,
            lease_seconds=settings.run_lease_seconds,
            commit_records=settings.commit_records,
            source_workers=(
                SourceWorkers(
                    settings.source_processes,
                    log_format=settings.log_format,
                    log_level=settings.log_level,
                )
                if settings.source_processes
                else None
            ),
        )
        token = settings.admin_token or _load_or_create_token(admin_token_path(settings))
        services = cls(settings, store, box, signer, engine, metrics, token, clock)
        metrics.state_reader = services.metrics_state
        return services

    def ledger(self, tenant: str) -> Ledger:
        return self.engine.ledger(tenant)

    async def start_workers(self) -> None:
        """Start the source worker processes now rather than at a run's first use
        (`SourceWorkers.start`), as `sluis serve` does; nothing without them."""
        if self.engine.source_workers is not None:
            await self.engine.source_workers.start()

    def close(self) -> None:
        if self.engine.source_workers is not None:
            self.engine.source_workers.close()
        self.store.close()

    def metrics_state(self) -> GatewayState:
        """Ledger sizes, connectors' schedules and last successes, feed heads and consumers
        as stored, for `/metrics` (a few queries per tenant)."""
        tenants = [t.id for t in self.store.list_tenants()]
        sizes = {t: self.ledger(t).size() for t in tenants}
        connectors = [
            KnownConnector(
                c.tenant,
                c.id,
                c.last_success_at.timestamp() if c.last_success_at else None,
                connector_type=c.type,
                interval=c.interval_seconds,
                paused=c.paused_at is not None,
                created=c.created_at.timestamp(),
            )
            for c in self.store.list_connectors()
        ]
        heads = {t: self.store.last_event_seq(t) for t in tenants}
        consumers = [
            (c.tenant, c.id)
            for t in tenants
            for c in self.store.list_consumers(t)
            if c.revoked_at is None
        ]
        requests = self.store.request_counts(self.clock())
        job = self.store.job_state(RETENTION_JOB)
        dead = self.store.dead_letter_counts()
        destinations = [
            KnownDestination(d.tenant, d.id, d.after_seq, d.paused_at is not None,
                             dead.get((d.tenant, d.id), 0))
            for d in self.store.list_destinations()
        ]  # fmt: skip
        return GatewayState(
            sizes, connectors, heads, consumers, requests,
            retention_last_success=(
                job.last_success_at.timestamp() if job and job.last_success_at else None
            ),
            retention_first_run=job.first_run_at.timestamp() if job else None,
            retention_interval=self.settings.retention_interval,
            destinations=destinations,
        )  # fmt: skip

    def index_ledgers(self, batch: int) -> int:
        """Index every tenant's subject lists stored since the last round (`batch` lists a
        transaction, until none is left); how many were indexed."""
        done = 0
        ledger = self.store.ledger
        # The tenants table, not `ledger.tenants()`: that one also reads every entry's
        # tenant (a verification must see entries without a head), too much every 15 s.
        for tenant in self.store.list_tenants():
            while (n := ledger.index_subject_lists(tenant.id, batch)) > 0:
                done += n
        return done

    def _repair_index(self, tenant: str) -> None:
        """Rebuild the index rows of any list they no longer match (the index of keyed ids
        is derived data, outside the signatures: a damaged one would make a subject
        lookup miss transfers)."""
        bad = self.store.ledger.unsound_index(tenant)
        if bad:
            ledger_log.warning(
                "the index of keyed ids of tenant %s did not match %d of its lists; rebuilt",
                tenant, len(bad), extra={"tenant": tenant},
            )  # fmt: skip
            self.store.ledger.reindex_subject_lists(tenant, bad)

    def verify_ledgers(self, *, resume: bool = False) -> dict[str, bool]:
        """Recompute every tenant's ledger against its signed checkpoints (the self-check
        `sluis serve` runs at start and daily); each outcome goes to the metrics, and a
        failure to the log with the tenant and the reason, which names the first bad index
        and never an entry's content. Where a check ends is recorded; with `resume` a check
        goes on from there (only the entries since are read), else it starts at entry 0 and
        the index of keyed ids is checked against the lists too (and rebuilt where not)."""
        outcomes = {}
        for tenant in self.store.ledger.tenants():
            report = self.ledger(tenant).verify(self.signer.public_key, resume=resume, record=True)
            if not resume:
                self._repair_index(tenant)
            outcomes[tenant] = report.ok
            self.metrics.ledger_verified(tenant, report.ok)
            if not report.ok:
                ledger_log.error(
                    "the ledger of tenant %s failed its self-check: %s; "
                    "run `sluis audit verify --tenant %s`",
                    tenant, report.reason, tenant,
                    extra={"tenant": tenant},
                )  # fmt: skip
        return outcomes
