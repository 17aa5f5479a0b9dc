"""Request and response shapes of push destinations (`gateway.api.destination_routes`).

Kept beside `gateway.api.models`, whose conventions they follow. A destination's signing
secret appears in exactly two answers, once each: the creation and a rotation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from gateway.api.models import WHOLE, HttpUrl, _Request, _Response

EventType = Literal["subject.upserted", "subject.deleted", "subject.erased"]
_Types = Annotated[list[EventType], Field(min_length=1, max_length=3)]
_Batch = Annotated[int, Field(ge=1, le=1000), WHOLE]
_Attempts = Annotated[int, Field(ge=1, le=100), WHOLE]
_Age = Annotated[int, Field(ge=60, le=30 * 86400), WHOLE]
#: A JSON true or false, not "yes" or 1: a body that means something else is refused.
_Flag = Annotated[bool, Field(strict=True)]
_ALWAYS = " (`subject.erased` is sent whatever this says: an erasure reaches every destination)"


#: A bearer token as a platform issues it (RFC 6750's characters; no spaces).
_Token = Annotated[str, Field(min_length=8, max_length=4096, pattern=r"^[A-Za-z0-9._~+/=-]+$")]


class DestinationCreate(_Request):
    """A push destination. `webhook`: events are POSTed to `url`, signed (Standard
    Webhooks). `scim`: people become SCIM 2.0 Users on the platform's SCIM server at `url`
    (its base URL, such as `https://lms.example/scim/v2`), with the bearer `token` the
    platform issued."""

    kind: Literal["webhook", "scim"] = "webhook"
    url: HttpUrl = Field(
        description="the webhook receiver, or the SCIM server's base URL; must reach a "
        "public address unless the gateway allows private sources; redirects are not followed"
    )
    token: _Token | None = Field(
        default=None,
        description="`scim` only, and required there: the bearer token the platform's SCIM "
        "server accepts (kept sealed, never shown again)",
    )
    event_types: _Types = Field(
        default=["subject.upserted", "subject.deleted", "subject.erased"],
        description="the event types sent" + _ALWAYS,
    )
    thin: _Flag = Field(default=False, description="send ids only, never the egress fields")
    batch_size: _Batch = Field(default=100, description="events per request at most")
    max_attempts: _Attempts = Field(
        default=10, description="failed attempts after which a batch becomes dead letters"
    )
    max_age_seconds: _Age = Field(
        default=86_400,
        description="seconds of failing after which a batch becomes dead letters",
    )
    from_start: _Flag = Field(
        default=True,
        description="begin with the tenant's first feed event (everyone the feed holds); "
        "false: only events after now",
    )

    @model_validator(mode="after")
    def _fits_the_kind(self) -> DestinationCreate:
        if self.kind == "scim" and self.token is None:
            raise ValueError("a scim destination needs the platform's bearer token (token)")
        if self.kind == "webhook" and self.token is not None:
            raise ValueError("a webhook destination signs with a secret of ours: no token")
        if self.kind == "scim" and self.thin:
            raise ValueError("a scim destination takes users, not ids: it cannot be thin")
        return self


class DestinationChange(_Request):
    """Pause or resume a destination, or retune it; fields left out stay as they are."""

    paused: _Flag | None = None
    event_types: _Types | None = Field(default=None, description="the event types sent" + _ALWAYS)
    thin: _Flag | None = None
    batch_size: _Batch | None = None
    max_attempts: _Attempts | None = None
    max_age_seconds: _Age | None = None


class SecretRotate(_Request):
    """Webhook: a new signing secret; the current one stays valid for the overlap. SCIM:
    the platform's new bearer token (`token`, required), in use from the next batch."""

    overlap_seconds: Annotated[int, Field(ge=0, le=7 * 86400), WHOLE] = Field(
        default=86_400,
        description="seconds the current secret stays valid beside the new one (requests "
        "carry a signature under each meanwhile); 0 ends it at once",
    )
    token: _Token | None = Field(
        default=None, description="`scim` destinations only: the platform's new bearer token"
    )


class DeadLettersQuery(_Request):
    after: Annotated[int, Field(ge=0, le=10**18)] = Field(
        default=0, description="an event's `seq`: only later dead letters are listed"
    )
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


class DestinationOut(_Response):
    id: str
    kind: Literal["webhook", "scim"]
    url: str
    event_types: list[EventType]
    thin: bool
    batch_size: int
    max_attempts: int
    max_age_seconds: int
    created_at: datetime
    paused: bool
    paused_at: datetime | None
    after_seq: int = Field(description="every feed event up to this number is dealt with")
    lag: int = Field(ge=0, description="feed events after `after_seq`")
    attempts: int = Field(description="failed attempts of the current batch")
    failing_since: datetime | None
    failure: str | None = Field(description="the last failure's reason code, never a body")
    delivered_at: datetime | None
    dead_letters: int
    replay_requested_at: datetime | None
    previous_secret_valid_until: datetime | None


class DestinationCreated(DestinationOut):
    secret: str | None = Field(
        description="a webhook's signing secret (`whsec_...`), shown this once; null for a "
        "SCIM destination (its token is the platform's)"
    )


class DestinationList(_Response):
    destinations: list[DestinationOut]


class DeadLetterOut(_Response):
    seq: int
    subject_id: str
    reason: str
    dead_at: datetime


class DeadLetterPage(_Response):
    destination: str
    dead_letters: list[DeadLetterOut]
    next_after: int


class ReplayOut(_Response):
    destination: str
    dead_letters: int = Field(description="dead letters the worker will send again, in order")
    replay_requested_at: datetime
