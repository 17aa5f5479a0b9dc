"""Request and response bodies of the account routes (`gateway.api.accounts`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StringConstraints

from gateway.api.models import HttpUrl, PlainText, _Request, _Response

RoleName = Literal["operator", "admin", "auditor", "viewer"]
Email = Annotated[
    str,
    StringConstraints(max_length=254, pattern=r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{1,63}$"),
]
TotpCode = Annotated[str, StringConstraints(pattern=r"^\s*\d{3}\s?\d{3}\s*$")]


class StepUp(_Request):
    code: TotpCode = Field(description="a current code from the authenticator app")


class StepUpDone(_Response):
    step_up_at: datetime
    valid_seconds: int


class Me(_Response):
    account: str
    role: RoleName
    tenant: str | None
    credential: str
    step_up_at: datetime | None


class TokenCreate(_Request):
    name: Annotated[PlainText, Field(max_length=100)]
    role: RoleName | None = Field(
        default=None, description="default: the account's own role; never more than it"
    )
    expires_at: AwareDatetime = Field(strict=True, description="within a year from now")


class TokenOut(_Response):
    id: str
    account: str
    tenant: str | None
    role: RoleName
    name: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="shown once; only a hash is kept")


class TokenList(_Response):
    tokens: list[TokenOut]


class InvitationCreate(_Request):
    """An invitation into a tenant: operators invite its admins, its admins anyone."""

    email: Email
    name: Annotated[PlainText, Field(max_length=200)]
    role: Literal["admin", "auditor", "viewer"] = Field(
        description="an operator may invite admins; a tenant's admin any of the three"
    )


class OperatorInvitationCreate(_Request):
    """An invitation to run the gateway (operators belong to no tenant)."""

    email: Email
    name: Annotated[PlainText, Field(max_length=200)]
    role: Literal["operator"] = "operator"


class AccountOut(_Response):
    id: str
    tenant: str | None
    role: RoleName
    email: str
    name: str
    status: Literal["invited", "active", "disabled"]
    created_at: datetime


class InvitationCreated(_Response):
    account: AccountOut
    invitation_url: str = Field(
        description="the one-time link (a path on this gateway) to give the invitee; shown once"
    )
    expires_at: datetime


class AccountList(_Response):
    accounts: list[AccountOut]


class OidcSet(_Request):
    issuer: HttpUrl = Field(description="the identity provider's issuer URL (https)")
    client_id: Annotated[
        str, StringConstraints(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")
    ]
    client_secret: Annotated[
        str, StringConstraints(min_length=1, max_length=1024, pattern=r"^[\x21-\x7e]+$")
    ] = Field(description="sealed like connector credentials; never returned")


class OidcOut(_Response):
    tenant: str
    issuer: str
    client_id: str
    updated_at: datetime
    redirect_path: str = Field(
        description="register this path on the gateway's public URL as the redirect URI"
    )
