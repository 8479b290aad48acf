"""Users, roles, scrypt logins, lockout, idle lock, break-glass (REGULATIONS.md §5, #45-47)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pharmacy import users
from pharmacy.errors import BadInput
from pharmacy.store import Store


def test_roles_and_permissions_live_in_the_core() -> None:
    assert users.can("pharmacist", "verify_rx")
    for role in ("technician", "cashier", "manager"):
        assert not users.can(role, "verify_rx")
    assert not users.can("cashier", "read_med_history")
    assert users.can("cashier", "pickup_rx")
    assert users.can("manager", "manage_users")
    with pytest.raises(BadInput):
        users.can("pharmacist", "fly")


def test_cashier_med_history_is_min_necessary() -> None:
    with pytest.raises(users.PermissionDenied) as e:
        users.require({"id": "u1", "role": "cashier"}, "read_med_history")
    assert e.value.code == "HIPAA_MIN_NECESSARY"
    assert "164.502(b)" in e.value.message
    with pytest.raises(users.PermissionDenied) as e2:
        users.require({"id": "u2", "role": "technician"}, "verify_rx")
    assert e2.value.code == "ROLE_NOT_PERMITTED"
    with pytest.raises(users.PermissionDenied) as e3:
        users.require({"role": "pharmacist"}, "verify_rx")
    assert e3.value.code == "HIPAA_UNIQUE_USER"


def test_secret_is_scrypt_and_never_stored_plain(store: Store) -> None:
    users.add_user(store, "paula", "Paula P", "pharmacist", "2580")
    row = users.get_user(store.conn, "PAULA")
    assert row["secret_hash"].startswith("scrypt$16384$8$1$")
    assert "2580" not in row["secret_hash"]
    s = users.login(store, "paula", "2580")
    assert s.role == "pharmacist" and s.user == {"id": row["user_id"], "role": "pharmacist",
                                                 "name": "Paula P"}
    actions = [r[0] for r in store.conn.execute("SELECT action FROM audit_log ORDER BY seq")]
    assert actions == ["user.add", "login"]


@pytest.mark.parametrize(("kind", "secret"), [("pin", "12"), ("pin", "1111"), ("pin", "1234"),
                                              ("pin", "12ab"), ("password", "short")])
def test_weak_secrets_are_refused(store: Store, kind: str, secret: str) -> None:
    with pytest.raises(BadInput) as e:
        users.add_user(store, "x1", "X", "cashier", secret, kind=kind)
    assert e.value.code == "WEAK_SECRET"


def test_bad_usernames_roles_and_duplicates(store: Store) -> None:
    with pytest.raises(BadInput, match="username"):
        users.add_user(store, "1x", "X", "cashier", "2580")
    with pytest.raises(BadInput) as e:
        users.add_user(store, "xx", "X", "owner", "2580")
    assert e.value.code == "BAD_ROLE"
    users.add_user(store, "xx", "X", "cashier", "2580")
    with pytest.raises(BadInput) as e2:
        users.add_user(store, "XX", "X", "cashier", "2580")
    assert e2.value.code == "USER_EXISTS"


def test_wrong_pin_locks_after_max_failures(store: Store, clock: Any) -> None:
    store.set_setting("auth.max_failures", "3")
    store.set_setting("auth.lockout_seconds", "60")
    users.add_user(store, "cara", "Cara", "cashier", "2580")
    for _ in range(2):
        with pytest.raises(users.AuthFailed) as e:
            users.login(store, "cara", "0000")
        assert e.value.code == "LOGIN_FAILED"
    with pytest.raises(users.AuthFailed) as e:
        users.login(store, "cara", "0000")
    assert e.value.code == "ACCOUNT_LOCKED"
    with pytest.raises(users.AuthFailed) as e:  # even the right PIN, while locked
        users.login(store, "cara", "2580")
    assert e.value.code == "ACCOUNT_LOCKED"
    clock.advance(seconds=61)
    assert users.login(store, "cara", "2580").username == "cara"


def test_unknown_and_disabled_users(store: Store) -> None:
    with pytest.raises(users.AuthFailed) as e:
        users.login(store, "ghost", "2580")
    assert e.value.code == "LOGIN_FAILED"
    users.add_user(store, "tom", "Tom", "technician", "longpassword", kind="password")
    users.set_active(store, "tom", False)
    with pytest.raises(users.AuthFailed) as e:
        users.login(store, "tom", "longpassword")
    assert e.value.code == "ACCOUNT_DISABLED"
    users.set_active(store, "tom", True)
    users.set_secret(store, "tom", "7391", kind="pin")
    assert users.login(store, "tom", "7391").role == "technician"
    assert [u["username"] for u in users.list_users(store.conn)] == ["tom"]


def test_idle_lock_policy(store: Store) -> None:
    assert users.idle_lock_seconds(store) == users.DEFAULT_IDLE_LOCK_SECONDS
    store.set_setting("auth.idle_lock_seconds", "30")
    assert users.idle_lock_seconds(store) == 30
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    lock = users.IdleLock(30, t0)
    assert not lock.expired(t0 + timedelta(seconds=29))
    lock.touch(t0 + timedelta(seconds=20))
    assert not lock.expired(t0 + timedelta(seconds=49))
    assert lock.expired(t0 + timedelta(seconds=50))
    assert lock.seconds_left(t0 + timedelta(seconds=45)) == 5


def test_break_glass_needs_a_reason_and_is_flagged(store: Store) -> None:
    users.add_user(store, "tom", "Tom", "cashier", "2580")
    s = users.login(store, "tom", "2580")
    with pytest.raises(BadInput):
        users.break_glass(store, s, "verify_rx", "short")
    grant = users.break_glass(store, s, "read_med_history", "patient collapsed at counter")
    assert grant["flagged"] and grant["review"] == "pending"
    row = store.conn.execute("SELECT detail FROM audit_log WHERE action = "
                             "'hipaa.break_glass'").fetchone()
    assert "patient collapsed" in row[0]
    # the grant opens the history to this session, for a while, and only that
    assert s.can("read_med_history") and not s.can("verify_rx")
    users.require(s, "read_med_history")
    users.require(s.user, "read_med_history")  # as the counter passes it on
    assert s.user["break_glass"] == ["read_med_history"]
    with pytest.raises(users.PermissionDenied):
        users.require(s, "verify_rx")
    assert not s.granted("read_med_history", store.clock() + timedelta(minutes=16))
    again = users.login(store, "tom", "2580")
    assert not again.can("read_med_history")  # a new sign-in has no grants
    with pytest.raises(BadInput) as ei:
        users.break_glass(store, s, "verify_rx", "pharmacist is away, patient waiting")
    assert ei.value.code == "BREAK_GLASS_NOT_ALLOWED"  # never a licence
    # a review closes it; by someone else, once
    users.add_user(store, "mia", "Mia", "manager", "1357")
    boss = users.login(store, "mia", "1357")
    assert [p["seq"] for p in users.pending_break_glass(store.conn)] == [grant["seq"]]
    with pytest.raises(users.PermissionDenied):
        users.review_break_glass(store, again, grant["seq"], "looked at it")
    done = users.review_break_glass(store, boss, grant["seq"], "confirmed with the pharmacist")
    assert done["reviewed"] == grant["seq"] and users.pending_break_glass(store.conn) == []
    with pytest.raises(BadInput) as ei:
        users.review_break_glass(store, boss, grant["seq"], "again")
    assert ei.value.code == "NO_PENDING_REVIEW"


@settings(max_examples=20, deadline=None)
@given(st.text(min_size=1, max_size=20))
def test_hash_roundtrip_law(secret: str) -> None:
    encoded = users.hash_secret(secret, n=2**8)
    assert users.verify_secret(secret, encoded)
    assert not users.verify_secret(secret + "x", encoded)
    assert not users.verify_secret(secret, "garbage")
