"""The gateway's long-lived parts, opened once from the settings and shared by the HTTP app,
the scheduler and the CLI: store, secret box, ledger signer, sync engine, metrics.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from connectors.base import RetryPolicy
from gateway.keys.master import SecretBox, load_or_create_master_key, parse_master_key
from gateway.keys.signing import load_or_create_signing_key
from gateway.ledger.checkpoint import CheckpointSigner
from gateway.ledger.log import Ledger
from gateway.runtime.config import Settings
from gateway.runtime.metrics import GatewayMetrics, GatewayState, KnownConnector
from gateway.store.protocols import Store
from gateway.store.sqlite import SqliteStore
from gateway.sync.engine import PageHook, SyncEngine, utcnow

ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name, not a secret


def _load_or_create_token(path: Path) -> str:
    """The bootstrap admin token kept in the data directory (owner-only), made on first use,
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
        signer = CheckpointSigner(load_or_create_signing_key(data_dir), settings.ledger_name)
        store: Store = SqliteStore(data_dir / "sluis.db")
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
        token = settings.admin_token or _load_or_create_token(data_dir / ADMIN_TOKEN_FILE)
        services = cls(settings, store, box, signer, engine, metrics, token, clock)
        metrics.state_reader = services.metrics_state
        return services

    def ledger(self, tenant: str) -> Ledger:
        return self.engine.ledger(tenant)

    def close(self) -> None:
        self.store.close()

    def metrics_state(self) -> GatewayState:
        """Ledger sizes and last successes as stored, for `/metrics` (one query each)."""
        sizes = {t.id: self.ledger(t.id).size() for t in self.store.list_tenants()}
        connectors = [
            KnownConnector(
                c.tenant, c.id, c.last_success_at.timestamp() if c.last_success_at else None
            )
            for c in self.store.list_connectors()
        ]
        return GatewayState(sizes, connectors)
