"""The gateway's long-lived parts, opened once from the settings and shared by the HTTP app,
the scheduler and the CLI: store, secret box, ledger signer, sync engine, metrics.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from connectors.base import RetryPolicy
from gateway.checkpoint import CheckpointSigner, load_or_create_signing_key
from gateway.config import Settings
from gateway.ledger import Ledger
from gateway.metrics import GatewayMetrics
from gateway.secrets import SecretBox, load_or_create_master_key, parse_master_key
from gateway.store.sqlite import SqliteStore
from gateway.sync import PageHook, SyncEngine, utcnow


@dataclass
class Services:
    settings: Settings
    store: SqliteStore
    box: SecretBox
    signer: CheckpointSigner
    engine: SyncEngine
    metrics: GatewayMetrics
    admin_token: str = field(repr=False)
    clock: Callable[[], datetime] = utcnow

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
        master = (
            parse_master_key(settings.master_key)
            if settings.master_key
            else load_or_create_master_key(data_dir / "master.key")
        )
        box = SecretBox(master)
        signer = CheckpointSigner(load_or_create_signing_key(data_dir))
        store = SqliteStore(data_dir / "sluis.db")
        metrics = GatewayMetrics()
        engine = SyncEngine(
            store,
            box,
            signer,
            metrics=metrics,
            clock=clock,
            retry=retry,
            after_page=after_page,
            allow_private_sources=settings.allow_private_sources,
        )
        token = settings.admin_token or secrets.token_urlsafe(32)
        return cls(settings, store, box, signer, engine, metrics, token, clock)

    def ledger(self, tenant: str) -> Ledger:
        return self.engine.ledger(tenant)

    def close(self) -> None:
        self.store.close()
