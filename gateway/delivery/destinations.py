"""Push destinations: where a tenant's feed events go besides the pull feed (issue #10).

A destination is configured by the tenant's admin and changes only through here, each
change an audit entry in the same transaction (who, which destination; never its URL or
secret: those are configuration, not facts about processing). Its worker is
`gateway.delivery.push`.

The signing secrets are Standard Webhooks secrets (`whsec_` and base64 of 32 random bytes),
made here, shown once, and kept sealed under the master key with the destination as
associated data, so a sealed blob copied onto another destination does not open. A rotation
keeps the previous secret valid for an overlap (a day by default): until then every
request carries a signature under each, so a receiver can switch at its own pace and
never sees a request it cannot verify.

A SCIM destination (`gateway.delivery.scim_push`) is the platform's SCIM server: its base
URL and the bearer token the platform issued. The token is the platform's, not ours: the
admin gives it at creation and replaces it when the platform rotates it; it is sealed the
same way and never shown again.

The URL is judged as a source's is (`connectors.netguard`): public addresses only unless
`allow_private_sources`; the worker's session checks every connection again.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

import orjson

from connectors.netguard import PrivateAddress, check_url
from gateway.keys.master import SecretBox
from gateway.ledger.audit import AuditAction
from gateway.ledger.record import Acting
from gateway.store.records import Destination, DestinationKind, Store

#: Event types a destination can take; `subject.erased` is sent whatever it takes (an
#: erasure reaches every destination).
EVENT_TYPES: Final = ("subject.upserted", "subject.deleted", "subject.erased")
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the format's prefix, not a secret
DEFAULT_OVERLAP: Final = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Secrets:
    """A destination's signing secrets, opened: the current one, and the previous one while
    its overlap lasts."""

    current: str
    previous: str | None = None

    def valid(self, previous_until: datetime | None, now: datetime) -> tuple[str, ...]:
        """The secrets to sign with now (the current one first)."""
        if self.previous is not None and previous_until is not None and now < previous_until:
            return (self.current, self.previous)
        return (self.current,)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _owner(tenant: str, destination: str) -> str:
    return f"destination:{tenant}/{destination}"


def _seal(box: SecretBox, tenant: str, destination: str, held: Secrets) -> bytes:
    text = orjson.dumps({"current": held.current, "previous": held.previous})
    return box.seal(text, _owner(tenant, destination))


def open_secrets(box: SecretBox, d: Destination) -> Secrets:
    opened = orjson.loads(box.open(d.sealed_secrets, _owner(d.tenant, d.id)))
    return Secrets(str(opened["current"]), opened.get("previous"))


def url_problem(url: str, *, allow_private: bool) -> str | None:
    """Why `url` cannot receive webhooks (None if it can), judged as for sources."""
    if allow_private:
        return None
    try:
        check_url(url)
    except PrivateAddress as exc:
        return f"{exc}; destinations must be public (or set allow_private_sources)"
    return None


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """What an admin chooses for a webhook destination."""

    url: str
    event_types: tuple[str, ...] = EVENT_TYPES
    thin: bool = False
    batch_size: int = 100
    max_attempts: int = 10
    max_age_seconds: int = 86_400
    #: True: the first delivery starts at the tenant's first event (the whole feed, as a
    #: consumer reading from the start gets it); False: only events after now.
    from_start: bool = True


def create_webhook(
    store: Store, box: SecretBox, settings: WebhookSettings, *, now: datetime, by: Acting
) -> tuple[Destination, str]:
    """A webhook destination and its signing secret (returned once)."""
    secret = new_secret()
    return _create(store, box, "webhook", settings, secret, now=now, by=by), secret


def create_scim(
    store: Store,
    box: SecretBox,
    settings: WebhookSettings,
    token: str,
    *,
    now: datetime,
    by: Acting,
) -> Destination:
    """A SCIM destination: `settings.url` is the platform's SCIM base URL, `token` the
    bearer token it issued (sealed; never returned). A SCIM server takes users, not ids:
    such a destination is never thin."""  # fmt: skip
    return _create(store, box, "scim", replace(settings, thin=False), token, now=now, by=by)


def _create(
    store: Store,
    box: SecretBox,
    kind: DestinationKind,
    settings: WebhookSettings,
    secret: str,
    *,
    now: datetime,
    by: Acting,
) -> Destination:
    tenant = by.tenant
    dest_id = f"dst_{secrets.token_hex(8)}"
    with by.recording(store, "destination.created", now, target=dest_id):
        head = 0 if settings.from_start else store.last_event_seq(tenant)
        made = Destination(
            tenant=tenant, id=dest_id, kind=kind, url=settings.url,
            sealed_secrets=_seal(box, tenant, dest_id, Secrets(secret)),
            event_types=tuple(t for t in EVENT_TYPES if t in settings.event_types),
            thin=settings.thin, batch_size=settings.batch_size,
            max_attempts=settings.max_attempts, max_age_seconds=settings.max_age_seconds,
            created_at=now, after_seq=head,
        )  # fmt: skip
        store.create_destination(made)
    return made


def replace_token(
    store: Store, box: SecretBox, d: Destination, token: str, *, now: datetime, by: Acting
) -> Destination:
    """A SCIM destination's new bearer token (the platform rotated it): in use from the
    worker's next batch, the old one forgotten. Recorded as `destination.secret_rotated`."""
    if d.kind != "scim":
        raise ValueError("only a SCIM destination takes a token")
    new = replace(d, sealed_secrets=_seal(box, d.tenant, d.id, Secrets(token)), previous_until=None)
    with by.recording(store, "destination.secret_rotated", now, target=d.id):
        return store.change_destination(new)


def change(
    store: Store,
    d: Destination,
    *,
    now: datetime,
    by: Acting,
    paused: bool | None = None,
    event_types: tuple[str, ...] | None = None,
    thin: bool | None = None,
    batch_size: int | None = None,
    max_attempts: int | None = None,
    max_age_seconds: int | None = None,
) -> Destination:
    """Pause, resume or retune a destination; a pause stops its worker before its next
    attempt. Recorded as `destination.paused`, `.resumed` or `.changed`."""
    if thin and d.kind == "scim":
        raise ValueError("a SCIM destination takes users, not ids: it cannot be thin")
    new = replace(
        d,
        paused_at=d.paused_at if paused is None else (d.paused_at or now) if paused else None,
        event_types=d.event_types
        if event_types is None
        else tuple(t for t in EVENT_TYPES if t in event_types),
        thin=d.thin if thin is None else thin,
        batch_size=batch_size or d.batch_size,
        max_attempts=max_attempts or d.max_attempts,
        max_age_seconds=max_age_seconds or d.max_age_seconds,
    )
    if new == d:
        return d
    action: AuditAction = "destination.changed"
    if replace(new, paused_at=d.paused_at) == d:
        action = "destination.paused" if new.paused_at is not None else "destination.resumed"
    with by.recording(store, action, now, target=d.id):
        return store.change_destination(new)


def rotate_secret(
    store: Store,
    box: SecretBox,
    d: Destination,
    *,
    overlap: timedelta = DEFAULT_OVERLAP,
    now: datetime,
    by: Acting,
) -> tuple[Destination, str]:
    """A new signing secret (returned once); the current one stays valid for `overlap`."""
    if d.kind != "webhook":
        raise ValueError("only a webhook destination has a signing secret of ours")
    old = open_secrets(box, d)
    secret = new_secret()
    held = Secrets(secret, old.current if overlap > timedelta(0) else None)
    new = replace(
        d,
        sealed_secrets=_seal(box, d.tenant, d.id, held),
        previous_until=now + overlap if held.previous else None,
    )
    with by.recording(store, "destination.secret_rotated", now, target=d.id):
        return store.change_destination(new), secret


def delete(store: Store, d: Destination, *, now: datetime, by: Acting) -> bool:
    """Stop delivering and forget the destination (its dead letters with it)."""
    with by.recording(store, "destination.deleted", now, target=d.id):
        return store.delete_destination(d.tenant, d.id)


def replay(store: Store, d: Destination, *, now: datetime, by: Acting) -> int:
    """Ask the worker to send the dead letters again, in order; how many there are."""
    with by.recording(store, "destination.replayed", now, target=d.id):
        return store.request_replay(d.tenant, d.id, now)
