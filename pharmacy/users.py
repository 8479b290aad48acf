"""Users, roles and permissions; login with a memory-hard KDF; the idle-lock policy.

Every person has their own account (45 CFR 164.312(a)(2)(i): no shared counter logins).
Secrets (a PIN or a password) are hashed with scrypt, whose parameters are stored with each
hash so they can be raised later without breaking old hashes. Role checks live here, not in
the screens: ``can(role, "verify_rx")``, ``require(user, "read_med_history")``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pharmacy.clock import iso, parse_iso, utcnow
from pharmacy.errors import BadInput, DomainRefusal, NotFound
from pharmacy.ids import new_id
from pharmacy.store import Store

ROLES = ("pharmacist", "technician", "cashier", "manager")

_ALL = frozenset(ROLES)
_PHARMACY = frozenset({"pharmacist", "technician"})

# action -> roles allowed. Minimum necessary (45 CFR 164.502(b)): a cashier sees what a
# pick-up needs, never a medication history; only a pharmacist verifies or overrides.
PERMISSIONS: dict[str, frozenset[str]] = {
    "sell": _ALL,
    "reprint_receipt": _ALL,
    "sync_now": _ALL,
    "pickup_rx": _ALL,
    "read_pickup_essentials": _ALL,
    "rx_intake": _PHARMACY,
    "fill_rx": _PHARMACY,
    "label_rx": _PHARMACY,
    "will_call": _PHARMACY,
    "read_med_history": _PHARMACY,
    "verify_rx": frozenset({"pharmacist"}),
    "override_alert": frozenset({"pharmacist"}),
    "counsel": frozenset({"pharmacist"}),
    "return_to_stock": frozenset({"pharmacist"}),
    "refund_sale": frozenset({"pharmacist", "manager"}),
    "receive_stock": frozenset({"pharmacist", "technician", "manager"}),
    "quarantine_lot": frozenset({"pharmacist", "technician", "manager"}),
    "stocktake": frozenset({"pharmacist", "technician", "manager"}),
    "adjust_stock": frozenset({"pharmacist", "manager"}),
    "recall_lot": frozenset({"pharmacist", "manager"}),
    "release_lot": frozenset({"pharmacist", "manager"}),
    "view_register": frozenset({"pharmacist", "manager"}),
    "manage_users": frozenset({"manager"}),
    "review_break_glass": frozenset({"pharmacist", "manager"}),
    "day_report": frozenset({"pharmacist", "manager"}),
}

# Emergency access (45 CFR 164.312(a)(2)(ii)) opens patient information a role is not
# normally shown, for a while, with a reason and a review; it never stands in for a licence
# (a technician cannot verify a prescription by breaking the glass).
BREAK_GLASS_ACTIONS = frozenset({"read_med_history"})
DEFAULT_BREAK_GLASS_MINUTES = 15


def break_glass_actions(role: str) -> list[str]:
    """What emergency access could open for ``role`` (what it may not do already)."""
    return sorted(a for a in BREAK_GLASS_ACTIONS if not can(role, a))

ACTION_LABELS = {
    "verify_rx": "verify a prescription",
    "read_med_history": "open a medication history",
    "rx_intake": "enter a prescription",
    "fill_rx": "fill a prescription",
    "label_rx": "print a prescription label",
    "will_call": "place a fill in will-call",
    "override_alert": "override an interaction alert",
    "counsel": "record patient counselling",
    "return_to_stock": "return a filled prescription to stock",
    "refund_sale": "refund a sale",
    "receive_stock": "receive stock",
    "quarantine_lot": "quarantine a lot",
    "stocktake": "enter a stocktake",
    "adjust_stock": "adjust stock",
    "recall_lot": "recall a lot",
    "release_lot": "release a lot",
    "view_register": "view the controlled register",
    "manage_users": "manage users",
    "review_break_glass": "review an emergency access",
    "day_report": "see the day report",
}

# scrypt: n=2**14, r=8 -> 16 MiB of memory per hash (OWASP's minimum for scrypt is 2**17/8/1
# at 128 MiB for servers; a counter terminal verifies one login at a time).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_DKLEN = 32

DEFAULT_IDLE_LOCK_SECONDS = 120
DEFAULT_MAX_FAILURES = 5
DEFAULT_LOCKOUT_SECONDS = 300

_USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
_PIN = re.compile(r"^[0-9]{4,12}$")  # ASCII digits: what a keypad types


class PermissionDenied(DomainRefusal):
    """The signed-in role may not do this (checked in the core, not the screen)."""

    code = "ROLE_NOT_PERMITTED"


class AuthFailed(DomainRefusal):
    code = "LOGIN_FAILED"


def can(role: str, action: str) -> bool:
    if action not in PERMISSIONS:
        raise BadInput(f"unknown action {action!r}", code="UNKNOWN_ACTION")
    return role in PERMISSIONS[action]


def require(user: dict[str, Any] | Session | None, action: str) -> None:
    """Raise PermissionDenied unless ``user`` (a Session or {"id", "role"}) may do ``action``."""
    if user is None:
        raise PermissionDenied("sign in first", code="HIPAA_UNIQUE_USER")
    role = user.role if isinstance(user, Session) else str(user.get("role", ""))
    uid = user.user_id if isinstance(user, Session) else user.get("id")
    if not uid:
        raise PermissionDenied("every action needs a signed-in user", code="HIPAA_UNIQUE_USER")
    if can(role, action):
        return
    if isinstance(user, Session):
        if user.granted(action):
            return
    elif action in (user.get("break_glass") or ()):  # a grant of the session it came from
        return
    what = ACTION_LABELS.get(action, action)
    if action == "read_med_history":
        raise PermissionDenied(
            f"a {role} may not {what}: minimum necessary (45 CFR 164.502(b), 164.514(d)); "
            "ask a pharmacist", code="HIPAA_MIN_NECESSARY", action=action, role=role)
    allowed = ", ".join(sorted(PERMISSIONS[action]))
    raise PermissionDenied(f"a {role} may not {what}; this needs: {allowed}",
                           action=action, role=role)


# ---- hashing --------------------------------------------------------------------------------
def hash_secret(secret: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P,
                salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                            dklen=SCRYPT_DKLEN, maxmem=256 * n * r + 1024 * 1024)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def _scrypt_params(encoded: str) -> tuple[int, int, int, bytes, bytes] | None:
    """(n, r, p, salt, digest) of a stored hash, or None for one this module would not write
    or could not check in bounded memory (n a power of 2 up to 2**20, r up to 32, p up to 16:
    at most 1 GiB)."""
    try:
        scheme, n_s, r_s, p_s, salt_s, digest_s = encoded.split("$")
        salt = base64.b64decode(salt_s, validate=True)
        expected = base64.b64decode(digest_s, validate=True)
        n, r, p = int(n_s), int(r_s), int(p_s)
    except ValueError:
        return None
    if (scheme != "scrypt" or not 2 <= n <= 2**20 or n & (n - 1) or not 1 <= r <= 32
            or not 1 <= p <= 16 or not salt or not 16 <= len(expected) <= 64):
        return None
    return n, r, p, salt, expected


def verify_secret(secret: str, encoded: str) -> bool:
    params = _scrypt_params(encoded)
    if params is None:
        return False
    n, r, p, salt, expected = params
    try:
        got = hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                             dklen=len(expected), maxmem=256 * n * r + 1024 * 1024)
    except UnicodeEncodeError:  # a secret that is not text never matches
        return False
    return hmac.compare_digest(got, expected)


@functools.cache
def _dummy_hash() -> str:
    return hash_secret("not-a-user", salt=b"\x00" * 16)


def _encodable(text: str, what: str) -> None:
    """Text that came from undecodable bytes (surrogate escapes) cannot be stored or hashed."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"the {what} has characters that are not text (check the keyboard "
                       "layout or the file's encoding)", code="BAD_TEXT") from None


def check_secret_policy(kind: str, secret: str) -> None:
    _encodable(secret, "password or PIN")
    if kind == "pin":
        if not _PIN.match(secret):
            raise BadInput("a PIN is 4 to 12 digits", code="WEAK_SECRET")
        if len(set(secret)) == 1 or secret in "0123456789012" or secret in "9876543210":
            raise BadInput("this PIN is too easy to guess (repeated or sequential digits)",
                           code="WEAK_SECRET")
    elif kind == "password":
        if len(secret) < 8:
            raise BadInput("a password has at least 8 characters", code="WEAK_SECRET")
    else:
        raise BadInput(f"secret kind {kind!r} is not 'pin' or 'password'", code="BAD_SECRET_KIND")


# ---- users ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Session:
    """A signed-in person. ``user`` is what the dispense request and the audit log carry."""

    user_id: str
    username: str
    display_name: str
    role: str
    started_at: datetime
    # break-glass grants of this session: action -> until when (a new sign-in has none),
    # judged by the store's clock
    grants: dict[str, datetime] = field(default_factory=dict, compare=False, repr=False)
    clock: Callable[[], datetime] = field(default=utcnow, compare=False, repr=False)

    @property
    def user(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.user_id, "role": self.role, "name": self.display_name}
        granted = sorted(a for a in self.grants if self.granted(a))
        if granted:
            out["break_glass"] = granted
        return out

    def granted(self, action: str, now: datetime | None = None) -> bool:
        until = self.grants.get(action)
        return until is not None and (now or self.clock()) < until

    def can(self, action: str) -> bool:
        return can(self.role, action) or self.granted(action)

    def to_json(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "username": self.username,
                "display_name": self.display_name, "role": self.role,
                "started_at": iso(self.started_at)}


@dataclass(frozen=True)
class UserChanged:
    user_id: str
    username: str
    role: str
    active: bool


def _audit(c: sqlite3.Connection, now_s: str, user_id: str | None, action: str,
           subject: str | None, detail: dict[str, Any] | None = None) -> None:
    c.execute("INSERT INTO audit_log(created_at, user_id, action, subject, detail) "
              "VALUES (?, ?, ?, ?, ?)",
              (now_s, user_id, action, subject, json.dumps(detail or {}, sort_keys=True)))


def _new_account(username: str, role: str, kind: str, secret: str,
                 display_name: str | None = None) -> str:
    """A new account's username, normalised, once it, its role, its display name (when
    one is required) and its secret pass."""
    uname = username.strip().lower()
    if not _USERNAME.match(uname):
        raise BadInput("a username is 2-32 lower-case letters, digits, '.', '_' or '-', "
                       "starting with a letter", code="BAD_USERNAME")
    if role not in ROLES:
        raise BadInput(f"role {role!r} is not one of {', '.join(ROLES)}", code="BAD_ROLE")
    if display_name is not None:
        _encodable(display_name, "name")
    if display_name is not None and not display_name.strip():
        raise BadInput("a user needs a display name", code="BAD_USERNAME")
    check_secret_policy(kind, secret)
    return uname


def add_user(store: Store, username: str, display_name: str, role: str, secret: str, *,
             kind: str = "pin", by: str | None = None) -> UserChanged:
    uname = _new_account(username, role, kind, secret, display_name)
    encoded = hash_secret(secret)
    now_s = iso(store.clock())
    uid = new_id()
    with store.transaction() as c:
        if c.execute("SELECT 1 FROM users WHERE username = ?", (uname,)).fetchone():
            raise BadInput(f"user {uname} already exists", code="USER_EXISTS")
        c.execute(
            "INSERT INTO users(user_id, username, display_name, role, secret_kind, secret_hash, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (uid, uname, display_name.strip(), role, kind, encoded, now_s, now_s))
        _audit(c, now_s, by, "user.add", uid, {"username": uname, "role": role})
    return UserChanged(uid, uname, role, True)


def set_secret(store: Store, username: str, secret: str, *, kind: str | None = None,
               by: str | None = None) -> UserChanged:
    row = get_user(store.conn, username)
    k = kind or str(row["secret_kind"])
    check_secret_policy(k, secret)
    encoded = hash_secret(secret)
    now_s = iso(store.clock())
    with store.transaction() as c:
        c.execute("UPDATE users SET secret_kind = ?, secret_hash = ?, failed_attempts = 0, "
                  "locked_until = NULL, updated_at = ? WHERE user_id = ?",
                  (k, encoded, now_s, row["user_id"]))
        _audit(c, now_s, by, "user.secret", row["user_id"], {})
    return UserChanged(row["user_id"], row["username"], row["role"], bool(row["active"]))


def set_active(store: Store, username: str, active: bool, *, by: str | None = None
               ) -> UserChanged:
    row = get_user(store.conn, username)
    now_s = iso(store.clock())
    with store.transaction() as c:
        c.execute("UPDATE users SET active = ?, updated_at = ? WHERE user_id = ?",
                  (int(active), now_s, row["user_id"]))
        _audit(c, now_s, by, "user.enable" if active else "user.disable", row["user_id"], {})
    return UserChanged(row["user_id"], row["username"], row["role"], active)


# ---- users published by head office ---------------------------------------------------------
# Head office may publish users to a store (or the whole chain): the same account then signs
# in at every terminal of the store. Only head office publishes them (terminals never push a
# user); a terminal's own accounts stay local to it.
_PUBLISHED_FIELDS = ("user_id", "username", "display_name", "role", "secret_kind",
                     "secret_hash", "active", "updated_at")


def user_publication(username: str, display_name: str, role: str, secret: str, *,
                     kind: str = "pin", now: datetime, user_id: str | None = None
                     ) -> dict[str, Any]:
    """The body head office publishes for a new user (or a new secret for ``user_id``)."""
    uname = _new_account(username, role, kind, secret)
    uid = user_id or new_id()
    return {"target": uid, "user_id": uid, "username": uname,
            "display_name": display_name.strip() or uname, "role": role, "secret_kind": kind,
            "secret_hash": hash_secret(secret), "active": True, "updated_at": iso(now)}


def install_published_user(store: Store, body: dict[str, Any]) -> dict[str, Any]:
    """Apply a user head office published: newer than what this terminal holds, it replaces
    the account's name, role, secret and state (failed attempts and lockouts stay local). A
    local account already using the username is not overwritten (``USER_EXISTS``)."""
    missing = [k for k in _PUBLISHED_FIELDS if k not in body]
    if missing or body.get("role") not in ROLES or body.get("secret_kind") not in (
            "pin", "password") or _scrypt_params(str(body.get("secret_hash", ""))) is None \
            or not _USERNAME.match(str(body.get("username", ""))):
        what = ", ".join(missing) or "a field"
        raise BadInput(f"not a user publication (missing or bad: {what})",
                       code="BAD_USER_PUBLICATION")
    uid, uname = str(body["user_id"]), str(body["username"])
    with store.transaction() as c:
        row = c.execute("SELECT updated_at FROM users WHERE user_id = ?", (uid,)).fetchone()
        if row is not None and str(row[0]) >= str(body["updated_at"]):
            return {"user": uname, "applied": False}
        holder = c.execute("SELECT user_id FROM users WHERE username = ? AND user_id != ?",
                           (uname, uid)).fetchone()
        if holder is not None:
            raise BadInput(f"user {uname} already exists on this terminal as a local "
                           "account; publish the head-office account under another username",
                           code="USER_EXISTS", user_id=str(holder[0]))
        values = (uname, str(body["display_name"]), str(body["role"]),
                  str(body["secret_kind"]), str(body["secret_hash"]), int(bool(body["active"])),
                  str(body["updated_at"]))
        if row is None:
            c.execute("INSERT INTO users(username, display_name, role, secret_kind, "
                      "secret_hash, active, updated_at, user_id, created_at) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (*values, uid, body["updated_at"]))
        else:
            c.execute("UPDATE users SET username = ?, display_name = ?, role = ?, "
                      "secret_kind = ?, secret_hash = ?, active = ?, updated_at = ? "
                      "WHERE user_id = ?", (*values, uid))
        _audit(c, iso(store.clock()), None, "user.published", uid,
               {"username": uname, "role": body["role"], "active": bool(body["active"])})
    return {"user": uname, "role": str(body["role"]), "applied": True}


def get_user(conn: sqlite3.Connection, username: str) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM users WHERE username = ?",
                       (username.strip().lower(),)).fetchone()
    if row is None:
        raise NotFound(f"no user {username}", code="UNKNOWN_USER")
    return row  # type: ignore[no-any-return]


def list_users(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT user_id, username, display_name, role, secret_kind, active, "
                        "locked_until FROM users ORDER BY username").fetchall()
    return [{"user_id": r["user_id"], "username": r["username"],
             "display_name": r["display_name"], "role": r["role"],
             "secret_kind": r["secret_kind"], "active": bool(r["active"]),
             "locked_until": r["locked_until"]} for r in rows]


def user_count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM users WHERE active = 1").fetchone()[0])


def _int_setting(store: Store, key: str, default: int) -> int:
    raw = store.get_setting(key)
    try:
        return int(raw) if raw is not None else default
    except ValueError:
        return default


def login(store: Store, username: str, secret: str) -> Session:
    """Check a PIN or password. Repeated failures lock the account for a while."""
    now = store.clock()
    now_s = iso(now)
    uname = username.strip().lower()
    try:
        uname.encode("utf-8")
    except UnicodeEncodeError:
        uname = uname.encode("utf-8", "replace").decode("utf-8")  # never a stored name
    row = store.conn.execute("SELECT * FROM users WHERE username = ?", (uname,)).fetchone()
    if row is None:
        verify_secret(secret, _dummy_hash())  # same work whether or not the user exists
        with store.transaction() as c:
            _audit(c, now_s, None, "login.failed", uname, {"why": "unknown user"})
        raise AuthFailed("user name or PIN is wrong")
    if not row["active"]:
        with store.transaction() as c:
            _audit(c, now_s, row["user_id"], "login.failed", uname, {"why": "disabled"})
        raise AuthFailed(f"the account {uname} is disabled; ask a manager",
                         code="ACCOUNT_DISABLED")
    if row["locked_until"] and parse_iso(row["locked_until"]) > now:
        left = int((parse_iso(row["locked_until"]) - now).total_seconds()) + 1
        raise AuthFailed(f"too many wrong attempts: {uname} is locked for {left} more seconds",
                         code="ACCOUNT_LOCKED", seconds_left=left)
    if not verify_secret(secret, row["secret_hash"]):
        failures = int(row["failed_attempts"]) + 1
        max_failures = _int_setting(store, "auth.max_failures", DEFAULT_MAX_FAILURES)
        lock_s = _int_setting(store, "auth.lockout_seconds", DEFAULT_LOCKOUT_SECONDS)
        locked = None
        if failures >= max_failures:
            locked = iso(now + timedelta(seconds=lock_s))
            failures = 0
        with store.transaction() as c:
            c.execute("UPDATE users SET failed_attempts = ?, locked_until = ? WHERE user_id = ?",
                      (failures, locked, row["user_id"]))
            _audit(c, now_s, row["user_id"], "login.failed", uname,
                   {"why": "wrong secret", "locked_until": locked})
        if locked:
            raise AuthFailed(f"too many wrong attempts: {uname} is locked for {lock_s} seconds",
                             code="ACCOUNT_LOCKED", seconds_left=lock_s)
        raise AuthFailed("user name or PIN is wrong")
    with store.transaction() as c:
        c.execute("UPDATE users SET failed_attempts = 0, locked_until = NULL WHERE user_id = ?",
                  (row["user_id"],))
        _audit(c, now_s, row["user_id"], "login", uname, {"role": row["role"]})
    return Session(row["user_id"], row["username"], row["display_name"], row["role"], now,
                   clock=store.clock)


def logout(store: Store, session: Session, *, reason: str = "logout") -> None:
    with store.transaction() as c:
        _audit(c, iso(store.clock()), session.user_id, reason, session.username, {})


def break_glass(store: Store, session: Session, action: str, reason: str) -> dict[str, Any]:
    """Emergency access (45 CFR 164.312(a)(2)(ii)): ``action`` (one of BREAK_GLASS_ACTIONS)
    is open to this session for ``auth.break_glass_minutes`` (default 15), given a reason.
    The audit entry (``hipaa.break_glass``) is flagged and waits for a manager's or a
    pharmacist's review (:func:`review_break_glass`)."""
    why = reason.strip()
    if len(why) < 10:
        raise BadInput("break-glass access needs a reason of at least 10 characters",
                       code="BREAK_GLASS_REASON")
    if action not in PERMISSIONS:
        raise BadInput(f"unknown action {action!r}", code="UNKNOWN_ACTION")
    what = ACTION_LABELS.get(action, action)
    if action not in BREAK_GLASS_ACTIONS:
        raise BadInput(f"emergency access opens patient information only; to {what} needs a "
                       f"{' or '.join(sorted(PERMISSIONS[action]))}",
                       code="BREAK_GLASS_NOT_ALLOWED")
    if can(session.role, action):
        raise BadInput(f"a {session.role} may already {what}", code="BREAK_GLASS_NOT_NEEDED")
    now = store.clock()
    until = now + timedelta(minutes=_int_setting(store, "auth.break_glass_minutes",
                                                 DEFAULT_BREAK_GLASS_MINUTES))
    grant = {"grant_id": new_id(), "user_id": session.user_id, "role": session.role,
             "action": action, "reason": why, "flagged": True, "review": "pending",
             "until": iso(until)}
    with store.transaction() as c:
        c.execute("INSERT INTO audit_log(created_at, user_id, action, subject, detail) "
                  "VALUES (?, ?, 'hipaa.break_glass', ?, ?)",
                  (iso(now), session.user_id, action, json.dumps(grant, sort_keys=True)))
        grant["seq"] = int(c.execute("SELECT last_insert_rowid()").fetchone()[0])
    session.grants[action] = until
    return grant


def pending_break_glass(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Emergency accesses no one has reviewed yet, oldest first."""
    rows = conn.execute(
        "SELECT seq, created_at, user_id, subject, detail FROM audit_log a WHERE action = "
        "'hipaa.break_glass' AND NOT EXISTS (SELECT 1 FROM audit_log r WHERE r.action = "
        "'hipaa.break_glass_review' AND r.subject = CAST(a.seq AS TEXT)) ORDER BY seq"
    ).fetchall()
    return [{"seq": r[0], "at": r[1], "user_id": r[2], "subject": r[3], **json.loads(r[4])}
            for r in rows]


def review_break_glass(store: Store, reviewer: Session | dict[str, Any], seq: int,
                       note: str) -> dict[str, Any]:
    """Close the review of emergency access ``seq`` (an audit entry), by someone else."""
    require(reviewer, "review_break_glass")
    rid = reviewer.user_id if isinstance(reviewer, Session) else str(reviewer.get("id"))
    pending = {p["seq"]: p for p in pending_break_glass(store.conn)}
    entry = pending.get(int(seq))
    if entry is None:
        raise BadInput(f"audit entry {seq} is not an emergency access waiting for review",
                       code="NO_PENDING_REVIEW")
    if entry["user_id"] == rid:
        raise BadInput("an emergency access is reviewed by someone else",
                       code="BREAK_GLASS_SELF_REVIEW")
    if not note.strip():
        raise BadInput("say what the review found", code="REASON_REQUIRED")
    with store.transaction() as c:
        _audit(c, iso(store.clock()), rid, "hipaa.break_glass_review", str(int(seq)),
               {"note": note.strip()})
    return {"reviewed": int(seq), "by": rid, "note": note.strip()}


# ---- idle lock ------------------------------------------------------------------------------
def idle_lock_seconds(store: Store) -> int:
    """Automatic logoff (45 CFR 164.312(a)(2)(iii)); setting ``auth.idle_lock_seconds``."""
    return max(5, _int_setting(store, "auth.idle_lock_seconds", DEFAULT_IDLE_LOCK_SECONDS))


class IdleLock:
    """Tracks activity; ``expired(now)`` says the session must lock and re-authenticate."""

    def __init__(self, timeout_seconds: float, now: datetime) -> None:
        self.timeout = timedelta(seconds=timeout_seconds)
        self.last_activity = now

    def touch(self, now: datetime) -> None:
        self.last_activity = max(self.last_activity, now)

    def expired(self, now: datetime) -> bool:
        return now - self.last_activity >= self.timeout

    def seconds_left(self, now: datetime) -> float:
        return max(0.0, (self.timeout - (now - self.last_activity)).total_seconds())
