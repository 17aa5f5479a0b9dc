"""Errors of the accounts package: each carries the HTTP status and problem slug it maps
to, and a message a person can act on that never holds the email, password or code given
(one message for every reason a sign-in fails, so it tells an attacker nothing)."""

from __future__ import annotations

from typing import ClassVar


class AccountsError(Exception):
    status: ClassVar[int] = 400
    slug: ClassVar[str] = "accounts-error"


class Forbidden(AccountsError):
    status = 403
    slug = "forbidden"


class StepUpRequired(AccountsError):
    status = 403
    slug = "step-up-required"


class SignInFailed(AccountsError):
    status = 401
    slug = "sign-in-failed"

    def __init__(self) -> None:
        super().__init__("the email, password or code is not right")


class Throttled(AccountsError):
    status = 429
    slug = "throttled"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed sign-ins; try again in {retry_after} seconds")
        self.retry_after = retry_after


class InvitationInvalid(AccountsError):
    status = 410
    slug = "invitation-invalid"


class BadCode(AccountsError):
    status = 422
    slug = "bad-code"


class WeakPassword(AccountsError):
    status = 422
    slug = "weak-password"


class AccountExists(AccountsError):
    status = 409
    slug = "account-exists"


class UnknownAccount(AccountsError):
    status = 404
    slug = "not-found"
