"""Provisioning: tenants (with their subject keys), connectors (with sealed credentials) and
feed consumers (with hashed tokens). Shared by the admin API and `sluis demo`.

Secrets are sealed with the owner's id as associated data (`gateway.keys.master`); tokens are
random, shown once, and kept only as SHA-256 hashes, so a copy of the database lets nobody
read a feed.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from connectors.registry import UnknownConnectorType, connector_type
from gateway.keys.master import SecretBox
from gateway.minimise.mapping import Mapping as MinimisationMapping
from gateway.minimise.mapping import parse_mapping
from gateway.store.records import ConnectorRecord, Consumer, Store, Tenant

DEFAULT_INTERVAL_SECONDS = 3600
DEFAULT_MAX_DELETE_SHARE = 0.2


def _tenant_owner(tenant: str) -> str:
    return f"tenant:{tenant}"


def _connector_owner(tenant: str, connector: str) -> str:
    return f"connector:{tenant}/{connector}"


def create_tenant(store: Store, box: SecretBox, tenant_id: str, name: str, now: datetime) -> Tenant:
    """A tenant with a fresh 256-bit subject key, sealed under the master key."""
    key = secrets.token_bytes(32)
    tenant = Tenant(tenant_id, name, now, box.seal(key, _tenant_owner(tenant_id)))
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
    store.create_connector(record)
    return record, mapping


def connector_credentials(box: SecretBox, record: ConnectorRecord) -> dict[str, str]:
    opened = orjson.loads(
        box.open(record.sealed_credentials, _connector_owner(record.tenant, record.id))
    )
    return {str(k): str(v) for k, v in opened.items()}


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def create_consumer(store: Store, *, tenant: str, name: str, now: datetime) -> tuple[Consumer, str]:
    """A feed consumer and its bearer token (returned once, stored only as a hash)."""
    consumer = Consumer(id=f"con_{secrets.token_hex(8)}", tenant=tenant, name=name, created_at=now)
    token = f"sluis_feed_{secrets.token_urlsafe(32)}"
    store.create_consumer(consumer, token_hash(token))
    return consumer, token


__all__ = [
    "UnknownConnectorType",
    "connector_credentials",
    "create_connector",
    "create_consumer",
    "create_tenant",
    "subject_key",
    "token_hash",
]
