"""Contract tests of the account register (`Store.accounts`), run on every backend."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from gateway.store.account_records import (
    AccountRecord,
    ApiTokenRecord,
    InvitationRecord,
    OidcPendingRecord,
    OidcRecord,
    SessionRecord,
    ThrottleRecord,
)
from gateway.store.protocols import Store
from gateway.store.records import AlreadyExists, NotFound, Tenant

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def _account(
    id_: str = "acc_0000000000000001", tenant: str | None = "acme", **kw: object
) -> AccountRecord:
    base: dict[str, object] = {
        "id": id_, "tenant": tenant, "role": "admin" if tenant else "operator",
        "email": f"{id_}@example.test", "name": "A. Person", "status": "invited",
        "created_at": T0,
    }  # fmt: skip
    base.update(kw)
    return AccountRecord(**base)  # type: ignore[arg-type]


@pytest.fixture
def register(store: Store) -> Store:
    store.create_tenant(Tenant("acme", "Acme", T0, b"k" * 40))
    store.create_tenant(Tenant("other", "Other", T0, b"k" * 40))
    return store


def test_accounts_are_created_found_and_listed_per_tenant(register: Store) -> None:
    a = register.accounts
    a.create_account(_account())
    a.create_account(_account("acc_0000000000000002", tenant=None))
    a.create_account(_account("acc_0000000000000003", tenant="other", role="viewer"))
    assert a.get_account("acc_0000000000000001").email == "acc_0000000000000001@example.test"
    found = a.account_by_email("acc_0000000000000003@example.test")
    assert found is not None and found.tenant == "other" and found.role == "viewer"
    assert a.account_by_email("nobody@example.test") is None
    assert [x.id for x in a.list_accounts("acme")] == ["acc_0000000000000001"]
    assert [x.id for x in a.list_accounts(None)] == ["acc_0000000000000002"]
    with pytest.raises(NotFound):
        a.get_account("acc_ffffffffffffffff")


def test_an_email_or_id_is_taken_once_and_the_tenant_must_exist(register: Store) -> None:
    a = register.accounts
    a.create_account(_account())
    with pytest.raises(AlreadyExists):
        a.create_account(
            _account("acc_0000000000000009", email="acc_0000000000000001@example.test")
        )
    with pytest.raises(AlreadyExists):
        a.create_account(_account(email="x@example.test"))
    with pytest.raises(NotFound):
        a.create_account(_account("acc_000000000000000a", tenant="nope"))


def test_update_changes_only_what_is_given(register: Store) -> None:
    a = register.accounts
    a.create_account(_account())
    updated = a.update_account(
        "acc_0000000000000001", status="active", password_hash="$argon2id$x",
        sealed_totp=b"sealed", recovery_hashes=[b"\x01" * 32, b"\x02" * 32],
    )  # fmt: skip
    assert (updated.status, updated.password_hash, updated.sealed_totp) == (
        "active", "$argon2id$x", b"sealed")  # fmt: skip
    assert updated.recovery_hashes == (b"\x01" * 32, b"\x02" * 32)
    later = a.update_account("acc_0000000000000001", status="disabled", disabled_at=T0)
    assert later.password_hash == "$argon2id$x" and later.disabled_at == T0
    with pytest.raises(NotFound):
        a.update_account("acc_ffffffffffffffff", status="active")


def test_totp_steps_only_move_forward(register: Store) -> None:
    a = register.accounts
    a.create_account(_account())
    assert a.advance_totp_step("acc_0000000000000001", 100)
    assert not a.advance_totp_step("acc_0000000000000001", 100)
    assert not a.advance_totp_step("acc_0000000000000001", 99)
    assert a.advance_totp_step("acc_0000000000000001", 101)
    assert a.get_account("acc_0000000000000001").totp_step == 101


def test_a_recovery_code_works_once(register: Store) -> None:
    a = register.accounts
    a.create_account(_account(recovery_hashes=(b"\x01" * 32, b"\x02" * 32)))
    assert a.use_recovery_code("acc_0000000000000001", b"\x02" * 32)
    assert not a.use_recovery_code("acc_0000000000000001", b"\x02" * 32)
    assert a.get_account("acc_0000000000000001").recovery_hashes == (b"\x01" * 32,)


def test_an_invitation_is_used_once(register: Store) -> None:
    a = register.accounts
    a.create_account(_account())
    a.add_invitation(
        InvitationRecord(b"h" * 32, "acc_0000000000000001", T0, T0 + timedelta(hours=1))
    )
    assert a.invitation_by_hash(b"x" * 32) is None
    a.set_invitation_totp(b"h" * 32, b"sealed-secret")
    found = a.invitation_by_hash(b"h" * 32)
    assert found is not None and found.sealed_pending_totp == b"sealed-secret"
    assert a.use_invitation(b"h" * 32, T0)
    assert not a.use_invitation(b"h" * 32, T0)
    used = a.invitation_by_hash(b"h" * 32)
    assert used is not None and used.used_at == T0
    with pytest.raises(NotFound):
        a.set_invitation_totp(b"x" * 32, b"s")


def test_sessions_are_found_by_hash_touched_stamped_and_ended(register: Store) -> None:
    a = register.accounts
    a.create_account(_account())
    a.create_session(SessionRecord("ses_1", b"s" * 32, "acc_0000000000000001", T0, T0, "csrf"))
    a.create_session(SessionRecord("ses_2", b"t" * 32, "acc_0000000000000001", T0, T0, "csrf2"))
    a.touch_session("ses_1", T0 + timedelta(minutes=5))
    a.set_session_step_up("ses_1", T0 + timedelta(minutes=6))
    found = a.session_by_hash(b"s" * 32)
    assert found is not None and found.last_seen_at == T0 + timedelta(minutes=5)
    assert found.step_up_at == T0 + timedelta(minutes=6) and found.csrf == "csrf"
    a.delete_session("ses_1")
    assert a.session_by_hash(b"s" * 32) is None
    assert a.delete_sessions_of("acc_0000000000000001") == 1
    assert a.session_by_hash(b"t" * 32) is None


def test_tokens_are_listed_revoked_and_stamped(register: Store) -> None:
    a = register.accounts
    a.create_account(_account())
    until = T0 + timedelta(days=30)
    a.create_token(
        ApiTokenRecord(
            "tok_1", b"1" * 32, "acc_0000000000000001", "acme", "viewer", "ci", T0, until
        )
    )
    a.create_token(
        ApiTokenRecord(
            "tok_2", b"2" * 32, "acc_0000000000000001", "acme", "admin", "ops", T0, until
        )
    )
    found = a.token_by_hash(b"1" * 32)
    assert found is not None and (found.id, found.role, found.tenant) == ("tok_1", "viewer", "acme")
    assert a.token_by_hash(b"9" * 32) is None
    assert [t.id for t in a.list_tokens("acme")] == ["tok_1", "tok_2"]
    assert a.list_tokens(None) == []
    a.set_token_step_up("tok_1", T0)
    assert a.get_token("tok_1").step_up_at == T0
    assert a.revoke_token("tok_1", T0).revoked_at == T0
    assert a.revoke_token("tok_1", T0 + timedelta(hours=1)).revoked_at == T0
    assert a.revoke_tokens_of("acc_0000000000000001", T0) == 1
    assert a.get_token("tok_2").revoked_at == T0
    with pytest.raises(NotFound):
        a.get_token("tok_9")


def test_throttles_are_kept_replaced_and_cleared(register: Store) -> None:
    a = register.accounts
    assert a.get_throttle("pair:x") is None
    a.put_throttle(ThrottleRecord("pair:x", 1, T0))
    a.put_throttle(ThrottleRecord("pair:x", 5, T0, T0 + timedelta(seconds=30)))
    assert a.get_throttle("pair:x") == ThrottleRecord("pair:x", 5, T0, T0 + timedelta(seconds=30))
    a.clear_throttle("pair:x")
    assert a.get_throttle("pair:x") is None


def test_account_writes_join_the_gateway_transaction(register: Store) -> None:
    def write_then_fail() -> None:
        with register.transaction():
            register.accounts.create_account(_account())
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert register.accounts.list_accounts("acme") == []


def test_a_tenants_identity_provider_is_set_replaced_and_removed(register: Store) -> None:
    a = register.accounts
    assert a.get_oidc("acme") is None
    a.put_oidc(OidcRecord("acme", "https://idp.example", "sluis", b"sealed", T0))
    a.put_oidc(OidcRecord("acme", "https://idp2.example", "sluis2", b"sealed2", T0))
    assert a.get_oidc("acme") == OidcRecord(
        "acme", "https://idp2.example", "sluis2", b"sealed2", T0
    )
    assert a.get_oidc("other") is None
    assert a.delete_oidc("acme") and not a.delete_oidc("acme")
    with pytest.raises(NotFound):
        a.put_oidc(OidcRecord("nope", "https://idp.example", "x", b"s", T0))


def _pending(n: int, tenant: str = "acme", at: datetime = T0) -> OidcPendingRecord:
    return OidcPendingRecord(
        n.to_bytes(32, "big"), tenant, b"sealed-%d" % n, at, at + timedelta(minutes=10)
    )


def test_a_pending_login_is_kept_found_and_taken_once(register: Store) -> None:
    a = register.accounts
    assert a.get_oidc_pending(_pending(1).state_hash) is None
    assert a.put_oidc_pending(_pending(1), keep=10) == 0
    assert a.get_oidc_pending(_pending(1).state_hash) == _pending(1)
    assert a.get_oidc_pending(_pending(1).state_hash) == _pending(1)  # looking leaves it
    assert a.take_oidc_pending(_pending(1).state_hash) == _pending(1)
    assert a.take_oidc_pending(_pending(1).state_hash) is None
    assert a.get_oidc_pending(_pending(1).state_hash) is None
    a.put_oidc_pending(_pending(2), keep=10)
    with pytest.raises(AlreadyExists):
        a.put_oidc_pending(_pending(2), keep=10)
    with pytest.raises(NotFound):
        a.put_oidc_pending(_pending(3, tenant="nope"), keep=10)


def test_a_pending_login_is_taken_by_one_of_many_racing_callers(register: Store) -> None:
    """Two callbacks with one state (a replay, or a browser retrying through another
    replica) race; on PostgreSQL the threads hold connections of their own."""
    a = register.accounts
    a.put_oidc_pending(_pending(1), keep=10)
    start = threading.Barrier(4)
    won: list[OidcPendingRecord | None] = []

    def take() -> None:
        start.wait()
        won.append(a.take_oidc_pending(_pending(1).state_hash))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(w is not None for w in won) == [False, False, False, True]


def test_a_tenants_pending_logins_are_capped_oldest_first(register: Store) -> None:
    a = register.accounts
    for n in range(1, 4):
        assert a.put_oidc_pending(_pending(n, at=T0 + timedelta(seconds=n)), keep=3) == 0
    a.put_oidc_pending(_pending(9, tenant="other"), keep=3)
    assert a.put_oidc_pending(_pending(4, at=T0 + timedelta(seconds=4)), keep=3) == 1
    kept = [n for n in range(1, 5) if a.get_oidc_pending(_pending(n).state_hash)]
    assert kept == [2, 3, 4]
    assert a.get_oidc_pending(_pending(9).state_hash) is not None  # other tenants untouched
    # A clock that stands still: the newest is never the one evicted.
    for n in range(10, 15):
        a.put_oidc_pending(_pending(n, at=T0), keep=2)
        assert a.get_oidc_pending(_pending(n).state_hash) is not None
    assert sum(a.get_oidc_pending(_pending(n).state_hash) is not None
               for n in (2, 3, 4, *range(10, 15))) == 2  # fmt: skip


def test_expired_pending_logins_are_purged(register: Store) -> None:
    a = register.accounts
    a.put_oidc_pending(_pending(1, at=T0), keep=10)
    a.put_oidc_pending(_pending(2, at=T0 + timedelta(minutes=5)), keep=10)
    a.put_oidc_pending(_pending(3, tenant="other", at=T0), keep=10)
    assert a.purge_oidc_pending(T0 + timedelta(minutes=9)) == 0
    assert a.purge_oidc_pending(T0 + timedelta(minutes=10)) == 2
    assert a.get_oidc_pending(_pending(1).state_hash) is None
    assert a.get_oidc_pending(_pending(2).state_hash) is not None
