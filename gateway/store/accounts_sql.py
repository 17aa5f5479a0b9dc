"""The account register in SQL (`SqlStore.accounts`), for both engines.

It shares the gateway store's database and transactions, so an admin action, its account
change and its ledger entry commit together. Compare-and-set updates (`UPDATE ... WHERE
step < ?`) make one-time codes and links single-use even under concurrent requests, from
any number of processes; a pending OIDC login is taken the same way, by the one DELETE
that removes its row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, cast

import orjson

from gateway.store.account_records import (
    AccountRecord,
    AccountStatus,
    ApiTokenRecord,
    InvitationRecord,
    OidcPendingRecord,
    OidcRecord,
    Role,
    SessionRecord,
    ThrottleRecord,
)
from gateway.store.database import Database
from gateway.store.database import need_time as _need
from gateway.store.database import read_time as _dt
from gateway.store.records import NotFound

_ACCOUNT: Final = (
    "id, tenant, role, email, name, status, created_at, password_hash, sealed_totp,"
    " totp_step, recovery_hashes, disabled_at"
)
_SESSION: Final = "id, token_hash, account_id, created_at, last_seen_at, csrf, step_up_at"
_API_KEY_COLUMNS: Final = (
    "id, token_hash, account_id, tenant, role, name, created_at, expires_at, revoked_at, step_up_at"
)
_PENDING: Final = "state_hash, tenant, sealed_login, created_at, expires_at"


def _account(r: Sequence[Any]) -> AccountRecord:
    hashes = tuple(bytes.fromhex(h) for h in orjson.loads(r[10]))
    return AccountRecord(
        id=r[0], tenant=r[1], role=cast("Role", r[2]), email=r[3], name=r[4],
        status=cast("AccountStatus", r[5]), created_at=_need(r[6]), password_hash=r[7],
        sealed_totp=r[8], totp_step=r[9], recovery_hashes=hashes, disabled_at=_dt(r[11]),
    )  # fmt: skip


def _session(r: Sequence[Any]) -> SessionRecord:
    return SessionRecord(r[0], r[1], r[2], _need(r[3]), _need(r[4]), r[5], _dt(r[6]))


def _pending(r: Sequence[Any]) -> OidcPendingRecord:
    return OidcPendingRecord(bytes(r[0]), r[1], bytes(r[2]), _need(r[3]), _need(r[4]))


def _token(r: Sequence[Any]) -> ApiTokenRecord:
    return ApiTokenRecord(
        r[0], r[1], r[2], r[3], cast("Role", r[4]), r[5], _need(r[6]), _need(r[7]),
        _dt(r[8]), _dt(r[9]),
    )  # fmt: skip


class SqlAccountStore:
    """`AccountStore` over a `Database` shared with the gateway store."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._t = database.time

    def _all(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        return self._db.all(sql, params)

    def _write(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._db.execute(sql, params)

    # ------------------------------------------------------------------ accounts

    def create_account(self, account: AccountRecord) -> None:
        a = account
        self._write(
            f"INSERT INTO accounts ({_ACCOUNT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                a.id, a.tenant, a.role, a.email, a.name, a.status, self._t(a.created_at),
                a.password_hash, a.sealed_totp, a.totp_step,
                orjson.dumps([h.hex() for h in a.recovery_hashes]).decode(), self._t(a.disabled_at),
            ),
        )  # fmt: skip

    def get_account(self, account_id: str) -> AccountRecord:
        rows = self._all(f"SELECT {_ACCOUNT} FROM accounts WHERE id = ?", (account_id,))
        if not rows:
            raise NotFound(f"account {account_id}")
        return _account(rows[0])

    def account_by_email(self, email: str) -> AccountRecord | None:
        rows = self._all(f"SELECT {_ACCOUNT} FROM accounts WHERE email = ?", (email,))
        return _account(rows[0]) if rows else None

    def list_accounts(self, tenant: str | None) -> list[AccountRecord]:
        if tenant is None:
            sql = f"SELECT {_ACCOUNT} FROM accounts WHERE tenant IS NULL ORDER BY created_at, id"
            return [_account(r) for r in self._all(sql)]
        sql = f"SELECT {_ACCOUNT} FROM accounts WHERE tenant = ? ORDER BY created_at, id"
        return [_account(r) for r in self._all(sql, (tenant,))]

    def update_account(
        self,
        account_id: str,
        *,
        status: AccountStatus | None = None,
        password_hash: str | None = None,
        sealed_totp: bytes | None = None,
        recovery_hashes: Sequence[bytes] | None = None,
        disabled_at: datetime | None = None,
    ) -> AccountRecord:
        hashes = (
            None
            if recovery_hashes is None
            else orjson.dumps([h.hex() for h in recovery_hashes]).decode()
        )
        with self._db.transaction():
            self.get_account(account_id)
            self._db.execute(
                "UPDATE accounts SET status = COALESCE(?, status),"
                " password_hash = COALESCE(?, password_hash),"
                " sealed_totp = COALESCE(?, sealed_totp),"
                " recovery_hashes = COALESCE(?, recovery_hashes),"
                " disabled_at = COALESCE(?, disabled_at) WHERE id = ?",
                (status, password_hash, sealed_totp, hashes, self._t(disabled_at), account_id),
            )
            return self.get_account(account_id)

    def advance_totp_step(self, account_id: str, step: int) -> bool:
        done = self._write(
            "UPDATE accounts SET totp_step = ? WHERE id = ? AND totp_step < ?",
            (step, account_id, step),
        )
        return done == 1

    def use_recovery_code(self, account_id: str, code_hash: bytes) -> bool:
        with self._db.transaction():
            account = self.get_account(account_id)
            if code_hash not in account.recovery_hashes:
                return False
            left = [h.hex() for h in account.recovery_hashes if h != code_hash]
            self._db.execute(
                "UPDATE accounts SET recovery_hashes = ? WHERE id = ?",
                (orjson.dumps(left).decode(), account_id),
            )
            return True

    # ------------------------------------------------------------------ invitations

    def add_invitation(self, invitation: InvitationRecord) -> None:
        i = invitation
        self._write(
            "INSERT INTO invitations (token_hash, account_id, created_at, expires_at, used_at,"
            " sealed_pending_totp) VALUES (?, ?, ?, ?, ?, ?)",
            (i.token_hash, i.account_id, self._t(i.created_at), self._t(i.expires_at),
             self._t(i.used_at), i.sealed_pending_totp),
        )  # fmt: skip

    def invitation_by_hash(self, token_hash: bytes) -> InvitationRecord | None:
        rows = self._all(
            "SELECT token_hash, account_id, created_at, expires_at, used_at,"
            " sealed_pending_totp FROM invitations WHERE token_hash = ?",
            (token_hash,),
        )
        if not rows:
            return None
        r = rows[0]
        return InvitationRecord(r[0], r[1], _need(r[2]), _need(r[3]), _dt(r[4]), r[5])

    def set_invitation_totp(self, token_hash: bytes, sealed_totp: bytes) -> None:
        if not self._write(
            "UPDATE invitations SET sealed_pending_totp = ? WHERE token_hash = ?",
            (sealed_totp, token_hash),
        ):
            raise NotFound("invitation")

    def use_invitation(self, token_hash: bytes, at: datetime) -> bool:
        done = self._write(
            "UPDATE invitations SET used_at = ? WHERE token_hash = ? AND used_at IS NULL",
            (self._t(at), token_hash),
        )
        return done == 1

    # ------------------------------------------------------------------ sessions

    def create_session(self, session: SessionRecord) -> None:
        s = session
        self._write(
            f"INSERT INTO sessions ({_SESSION}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (s.id, s.token_hash, s.account_id, self._t(s.created_at), self._t(s.last_seen_at),
             s.csrf, self._t(s.step_up_at)),
        )  # fmt: skip

    def session_by_hash(self, token_hash: bytes) -> SessionRecord | None:
        rows = self._all(f"SELECT {_SESSION} FROM sessions WHERE token_hash = ?", (token_hash,))
        return _session(rows[0]) if rows else None

    def touch_session(self, session_id: str, at: datetime) -> None:
        self._write("UPDATE sessions SET last_seen_at = ? WHERE id = ?", (self._t(at), session_id))

    def set_session_step_up(self, session_id: str, at: datetime) -> None:
        self._write("UPDATE sessions SET step_up_at = ? WHERE id = ?", (self._t(at), session_id))

    def delete_session(self, session_id: str) -> None:
        self._write("DELETE FROM sessions WHERE id = ?", (session_id,))

    def delete_sessions_of(self, account_id: str) -> int:
        return self._write("DELETE FROM sessions WHERE account_id = ?", (account_id,))

    # ------------------------------------------------------------------ API tokens

    def create_token(self, token: ApiTokenRecord) -> None:
        t = token
        self._write(
            f"INSERT INTO api_tokens ({_API_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (t.id, t.token_hash, t.account_id, t.tenant, t.role, t.name, self._t(t.created_at),
             self._t(t.expires_at), self._t(t.revoked_at), self._t(t.step_up_at)),
        )  # fmt: skip

    def token_by_hash(self, token_hash: bytes) -> ApiTokenRecord | None:
        sql = f"SELECT {_API_KEY_COLUMNS} FROM api_tokens WHERE token_hash = ?"
        rows = self._all(sql, (token_hash,))
        return _token(rows[0]) if rows else None

    def get_token(self, token_id: str) -> ApiTokenRecord:
        rows = self._all(f"SELECT {_API_KEY_COLUMNS} FROM api_tokens WHERE id = ?", (token_id,))
        if not rows:
            raise NotFound(f"API token {token_id}")
        return _token(rows[0])

    def list_tokens(self, tenant: str | None) -> list[ApiTokenRecord]:
        if tenant is None:
            sql = (
                f"SELECT {_API_KEY_COLUMNS} FROM api_tokens WHERE tenant IS NULL"
                " ORDER BY created_at, id"
            )
            return [_token(r) for r in self._all(sql)]
        sql = f"SELECT {_API_KEY_COLUMNS} FROM api_tokens WHERE tenant = ? ORDER BY created_at, id"
        return [_token(r) for r in self._all(sql, (tenant,))]

    def revoke_token(self, token_id: str, at: datetime) -> ApiTokenRecord:
        with self._db.transaction():
            self.get_token(token_id)
            self._db.execute(
                "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
                (self._t(at), token_id),
            )
            return self.get_token(token_id)

    def revoke_tokens_of(self, account_id: str, at: datetime) -> int:
        return self._write(
            "UPDATE api_tokens SET revoked_at = ? WHERE account_id = ? AND revoked_at IS NULL",
            (self._t(at), account_id),
        )

    def set_token_step_up(self, token_id: str, at: datetime) -> None:
        self._write("UPDATE api_tokens SET step_up_at = ? WHERE id = ?", (self._t(at), token_id))

    # ------------------------------------------------------------------ throttles

    def get_throttle(self, key: str) -> ThrottleRecord | None:
        rows = self._all(
            "SELECT key, failures, first_failure_at, locked_until FROM signin_throttles"
            " WHERE key = ?",
            (key,),
        )
        if not rows:
            return None
        r = rows[0]
        return ThrottleRecord(r[0], r[1], _need(r[2]), _dt(r[3]))

    def put_throttle(self, record: ThrottleRecord) -> None:
        r = record
        self._write(
            "INSERT INTO signin_throttles (key, failures, first_failure_at, locked_until)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET failures = excluded.failures,"
            " first_failure_at = excluded.first_failure_at,"
            " locked_until = excluded.locked_until",
            (r.key, r.failures, self._t(r.first_failure_at), self._t(r.locked_until)),
        )

    def clear_throttle(self, key: str) -> None:
        self._write("DELETE FROM signin_throttles WHERE key = ?", (key,))

    # ------------------------------------------------------------------ identity providers

    def put_oidc(self, record: OidcRecord) -> None:
        r = record
        self._write(
            "INSERT INTO tenant_oidc (tenant, issuer, client_id, sealed_secret, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant) DO UPDATE SET issuer = excluded.issuer,"
            " client_id = excluded.client_id, sealed_secret = excluded.sealed_secret,"
            " updated_at = excluded.updated_at",
            (r.tenant, r.issuer, r.client_id, r.sealed_secret, self._t(r.updated_at)),
        )

    def get_oidc(self, tenant: str) -> OidcRecord | None:
        rows = self._all(
            "SELECT tenant, issuer, client_id, sealed_secret, updated_at FROM tenant_oidc"
            " WHERE tenant = ?",
            (tenant,),
        )
        if not rows:
            return None
        r = rows[0]
        return OidcRecord(r[0], r[1], r[2], r[3], _need(r[4]))

    def delete_oidc(self, tenant: str) -> bool:
        return self._write("DELETE FROM tenant_oidc WHERE tenant = ?", (tenant,)) == 1

    # ------------------------------------------------------------------ pending logins

    def put_oidc_pending(self, record: OidcPendingRecord, *, keep: int) -> int:
        r = record
        with self._db.transaction():
            self._db.execute(
                f"INSERT INTO oidc_pending ({_PENDING}) VALUES (?, ?, ?, ?, ?)",
                (r.state_hash, r.tenant, r.sealed_login, self._t(r.created_at),
                 self._t(r.expires_at)),
            )  # fmt: skip
            count = self._db.all("SELECT COUNT(*) FROM oidc_pending WHERE tenant = ?", (r.tenant,))
            excess = int(count[0][0]) - max(keep, 1)
            if excess <= 0:
                return 0
            # Oldest first; the new one is spared even when its clock ties with others.
            return self._db.execute(
                "DELETE FROM oidc_pending WHERE state_hash IN (SELECT state_hash FROM"
                " oidc_pending WHERE tenant = ? AND state_hash <> ?"
                " ORDER BY created_at, state_hash LIMIT ?)",
                (r.tenant, r.state_hash, excess),
            )

    def get_oidc_pending(self, state_hash: bytes) -> OidcPendingRecord | None:
        rows = self._all(f"SELECT {_PENDING} FROM oidc_pending WHERE state_hash = ?", (state_hash,))
        return _pending(rows[0]) if rows else None

    def take_oidc_pending(self, state_hash: bytes) -> OidcPendingRecord | None:
        # Read, then delete: only the caller whose DELETE removed the row has it. Another
        # replica's DELETE of the same row waits for this one's commit and then finds none.
        with self._db.transaction():
            found = self.get_oidc_pending(state_hash)
            if found is None:
                return None
            done = self._db.execute("DELETE FROM oidc_pending WHERE state_hash = ?", (state_hash,))
            return found if done == 1 else None

    def purge_oidc_pending(self, now: datetime) -> int:
        return self._write("DELETE FROM oidc_pending WHERE expires_at <= ?", (self._t(now),))
