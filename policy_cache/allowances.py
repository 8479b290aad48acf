"""Offline allowances: units per day per schedule that head office grants a terminal at each
sync (until the sync issue lands: `pharmos policy grant`). Consumption is counted locally by
the offline_usage table, which an offline sale fills in its own transaction
(pharmacy/sales.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pharmacy.clock import iso, parse_iso
from pharmacy.store import Store
from policy_cache.errors import PolicyInputError

SETTING = "policy.allowances"
CLASSES = ("CII", "CIII", "CIV", "CV", "PSE", "H", "H1", "X")
ALIASES = {"IN_H": "H", "IN_H1": "H1", "IN_X": "X"}
META_KEYS = ("valid_until", "grant_id", "granted_at")
DEMO_ALLOWANCES = {"CII": 2, "CIII": 30, "CIV": 60, "CV": 30, "PSE": 10, "H": 200, "H1": 60,
                   "X": 5}


def check_grant(grant: Any) -> dict[str, Any]:
    """A grant's allowances as a terminal installs them, checked without a store (head office
    checks a grant before it publishes one): ``{"per_day": {class: units}, "valid_until":
    datetime or None, "grant_id": str}``. Raises BAD_GRANT naming what is wrong.

    ``grant`` = {"per_day": {"CII": 0, "CIII": 20, ...}, "valid_until": ISO time (optional),
    "grant_id": optional}. A flat {"CII": 0, "CIII": 20, ...} (as a sync publication may carry
    it) is accepted too.
    """
    if not isinstance(grant, dict):
        raise PolicyInputError("the grant must be a JSON object with 'per_day'",
                               code="BAD_GRANT")
    if "per_day" not in grant:
        grant = {"per_day": {k: v for k, v in grant.items() if k not in META_KEYS},
                 **{k: grant[k] for k in META_KEYS if k in grant}}
    per_day = grant.get("per_day")
    if not isinstance(per_day, dict) or not per_day:
        raise PolicyInputError("the grant needs 'per_day': {schedule: units per day}",
                               code="BAD_GRANT")
    clean: dict[str, int] = {}
    for k, v in per_day.items():
        k = ALIASES.get(k, k)
        if k not in CLASSES:
            raise PolicyInputError(f"unknown allowance class {k!r}; use {', '.join(CLASSES)}",
                                   code="BAD_GRANT")
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > 1_000_000:
            raise PolicyInputError(f"allowance {k} must be a whole number of units >= 0",
                                   code="BAD_GRANT")
        clean[k] = v
    until = None
    if grant.get("valid_until") is not None:
        try:
            until = parse_iso(str(grant["valid_until"]))
        except ValueError:
            raise PolicyInputError(f"valid_until {grant['valid_until']!r} is not an ISO time",
                                   code="BAD_GRANT") from None
    grant_id = grant.get("grant_id")
    if grant_id is not None and not isinstance(grant_id, str | int):
        raise PolicyInputError("grant_id must be text", code="BAD_GRANT")
    grant_id = str(grant_id or "")
    try:
        grant_id.encode("utf-8")
    except UnicodeEncodeError:
        raise PolicyInputError("grant_id is not text (a lone surrogate escape)",
                               code="BAD_GRANT") from None
    if "\x00" in grant_id:
        raise PolicyInputError("grant_id holds a NUL character", code="BAD_GRANT")
    return {"per_day": clean, "valid_until": until, "grant_id": grant_id}


def grant_allowances(store: Store, grant: dict[str, Any]) -> None:
    """Replace the terminal's offline allowances with a grant (see :func:`check_grant`);
    ``valid_until`` defaults to, and is capped at, the active bundle's offline_until."""
    checked = check_grant(grant)
    clean: dict[str, int] = checked["per_day"]
    from policy_cache.gate import gate_for_store, invalidate

    bg = gate_for_store(store).bundle_gate
    now = store.clock()
    cap = bg.meta.offline_until if bg is not None else None
    until: datetime | None = checked["valid_until"] or cap
    if until is not None and cap is not None and until > cap:
        until = cap
    if until is None:
        raise PolicyInputError("no policy bundle is installed, so the grant needs valid_until",
                               code="BAD_GRANT")
    store.set_json_setting(SETTING, {
        "per_day": clean, "valid_until": iso(until), "granted_at": iso(now),
        "grant_id": checked["grant_id"],
    })
    from policy_cache.install import note_seen

    note_seen(store, now)
    invalidate(store)


def current_allowances(store: Store) -> dict[str, Any] | None:
    raw = store.get_json_setting(SETTING)
    return raw if isinstance(raw, dict) else None


def usage_today(store: Store) -> dict[str, int]:
    """Units sold offline today (UTC day), by NDC."""
    day = store.clock().astimezone(UTC).date().isoformat()
    return {r[0]: int(r[1]) for r in store.conn.execute(
        "SELECT ndc, units FROM offline_usage WHERE day = ?", (day,))}
