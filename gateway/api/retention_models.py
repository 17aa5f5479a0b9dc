"""Request and response shapes of a tenant's retention policy (`gateway.api.retention_routes`).

Kept beside `gateway.api.models` (whose conventions they follow) so each module stays small.
Each rule's bound is the statement maximum (`RETENTION_MAXIMA`): a body asking for more is
a 422 naming the rule, before anything is stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from pydantic import Field

from gateway.api.models import WHOLE, _Request, _Response
from gateway.runtime.config import RETENTION_MAXIMA

_M = RETENTION_MAXIMA
_Compaction = Annotated[int, Field(ge=1, le=_M["feed_compaction_days"]), WHOLE]
_Grace = Annotated[int, Field(ge=1, le=_M["leaver_grace_days"]), WHOLE]
_Runs = Annotated[int, Field(ge=1, le=_M["run_history_days"]), WHOLE]
_Requests = Annotated[int, Field(ge=1, le=_M["request_history_days"]), WHOLE]
_ShortLived = Annotated[int, Field(ge=1, le=_M["short_lived_days"]), WHOLE]
_DEFAULT: Final = " (omitted or null: the gateway's default)"


class RetentionSet(_Request):
    """The tenant's retention policy; a rule left out follows the gateway's default."""

    feed_compaction_days: _Compaction | None = Field(
        default=None,
        description="days after which a person's superseded feed events are deleted" + _DEFAULT,
    )
    leaver_grace_days: _Grace | None = Field(
        default=None, description="days after leaving that a leaver is removed" + _DEFAULT
    )
    run_history_days: _Runs | None = Field(
        default=None, description="days finished sync runs are kept" + _DEFAULT
    )
    request_history_days: _Requests | None = Field(
        default=None, description="days closed data-subject requests are kept" + _DEFAULT
    )
    short_lived_days: _ShortLived | None = Field(
        default=None,
        description="days sessions, invitations, API tokens, pending sign-ins and throttles "
        "are kept after they end" + _DEFAULT,
    )


class RetentionDays(_Response):
    feed_compaction_days: int = Field(ge=1)
    leaver_grace_days: int = Field(ge=1)
    run_history_days: int = Field(ge=1)
    request_history_days: int = Field(ge=1)
    short_lived_days: int = Field(ge=1)


class RetentionPolicyOut(_Response):
    tenant: str
    policy: RetentionDays = Field(description="the days in force for this tenant")
    defaults: RetentionDays = Field(description="the gateway's defaults")
    maxima: RetentionDays = Field(
        description="the most any policy may keep: what the platforms' privacy statements allow"
    )
    overrides: list[str] = Field(description="the rules this tenant set itself")
    updated_at: datetime | None = Field(description="when the tenant last set its policy")
    updated_by: str | None = Field(description="the account that did (an opaque id)")
