"""HIPAA technical-safeguard decisions for the terminal (REGULATIONS.md §5; §7 rules 45-47).
Pure functions; the GUI calls them and records what they return in the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pharmacy.clock import iso
from pharmacy.errors import DomainRefusal
from pharmacy.store import Store

DEFAULT_IDLE_TIMEOUT = timedelta(minutes=5)

# What each role may read about a patient (minimum necessary, 45 CFR 164.502(b), 164.514(d)).
READ_SCOPES: dict[str, frozenset[str]] = {
    "cashier": frozenset({"pickup_essentials"}),
    "technician": frozenset({"pickup_essentials", "profile", "medication_history"}),
    "pharmacist": frozenset({"pickup_essentials", "profile", "medication_history",
                             "diagnosis"}),
    "manager": frozenset({"pickup_essentials"}),
}


class HipaaRefusal(DomainRefusal):
    code = "HIPAA_REFUSED"


@dataclass(frozen=True)
class SessionState:
    locked: bool
    idle: timedelta
    timeout: timedelta
    reason: str | None = None


def session_state(last_activity: datetime, now: datetime,
                  timeout: timedelta = DEFAULT_IDLE_TIMEOUT) -> SessionState:
    """Rule 45: a session idle beyond the timeout is locked and needs re-authentication."""
    idle = now - last_activity
    if idle > timeout or idle < timedelta(0):
        why = ("idle beyond the automatic-logoff timeout" if idle > timeout else
               "the clock moved backwards")
        return SessionState(True, idle, timeout, f"{why}; sign in again [45 CFR "
                                                  "164.312(a)(2)(iii)]")
    return SessionState(False, idle, timeout)


def require_unlocked(last_activity: datetime, now: datetime,
                     timeout: timedelta = DEFAULT_IDLE_TIMEOUT) -> None:
    st = session_state(last_activity, now, timeout)
    if st.locked:
        raise HipaaRefusal(f"the session is locked: {st.reason}", code="HIPAA_SESSION_LOCKED")


def check_phi_access(user: dict[str, Any] | None, action: str) -> dict[str, Any]:
    """Rule 46: PHI access needs a unique user id; returns the audit entry to record."""
    uid = str((user or {}).get("id") or "").strip()
    if not uid or uid.lower() in ("counter", "shared", "pos", "terminal"):
        raise HipaaRefusal("patient data needs a signed-in person's own account, not a shared "
                           "or anonymous login [45 CFR 164.312(a)(2)(i)]",
                           code="HIPAA_UNIQUE_USER")
    return {"user_id": uid, "action": f"phi.{action}"}


def check_read_scope(role: str | None, scope: str) -> None:
    """Rule 47: a role may read only what its task needs; a cashier never sees the full
    medication or diagnosis history."""
    allowed = READ_SCOPES.get(str(role or ""), frozenset())
    if scope not in allowed:
        raise HipaaRefusal(
            f"a {role or 'user without a role'} may not open the patient's "
            f"{scope.replace('_', ' ')} (minimum necessary) [45 CFR 164.502(b), 164.514(d)]",
            code="HIPAA_MIN_NECESSARY")


def break_glass(store: Store, user: dict[str, Any] | None, reason: str, subject: str) -> dict[
        str, Any]:
    """Rule 45: emergency access only with a reason; writes a flagged audit event and opens a
    review task (the audit entry is the task: action ``hipaa.break_glass``, reviewed=false)."""
    entry = check_phi_access(user, "break_glass")
    why = (reason or "").strip()
    if len(why) < 5:
        raise HipaaRefusal("emergency access needs a written reason [45 CFR "
                           "164.312(a)(2)(ii)]", code="HIPAA_BREAK_GLASS_REASON")
    import json

    now = iso(store.clock())
    detail = {"reason": why, "flagged": True, "review": "pending"}
    with store.transaction() as c:
        c.execute("INSERT INTO audit_log(created_at, user_id, action, subject, detail) "
                  "VALUES (?, ?, 'hipaa.break_glass', ?, ?)",
                  (now, entry["user_id"], subject, json.dumps(detail)))
    return {"user_id": entry["user_id"], "subject": subject, "at": now, **detail}


def pending_break_glass_reviews(store: Store) -> list[dict[str, Any]]:
    """Emergency accesses (this module's and ``pharmacy.users.break_glass``'s) no one has
    reviewed yet."""
    from pharmacy.users import pending_break_glass

    return pending_break_glass(store.conn)
