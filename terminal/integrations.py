"""Optional parts of the counter, looked up lazily: Orange Book substitution, interaction
alerts, the sync client, the policy bundle status, reorder suggestions. Each adapter returns
``None`` (shown as "not available" on screen) only when the module is not installed; errors
from a module that is installed are real errors and propagate.

Everything here runs on the database worker (it reads the store) except ``sync_now``, which
the screens run on the network pool.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pharmacy import catalog
from pharmacy.clock import parse_iso
from pharmacy.errors import PharmosError
from pharmacy.store import Store


def _module(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# ---- substitution (pharmacy.substitution) --------------------------------------------------
def substitution_choices(store: Store, ndc: str, jurisdiction: str) -> dict[str, Any]:
    """Equivalents that may be dispensed instead, ranked, with the state's law; or a note."""
    mod = _module("pharmacy.substitution")
    if mod is None:
        return {"available": False, "note": "substitution data not available on this terminal",
                "equivalents": []}
    try:
        sub = mod.find_equivalents(store.conn, ndc, store.clock().date(),
                                   jurisdiction=jurisdiction)
    except PharmosError as e:  # e.g. the product has no Orange Book link
        return {"available": True, "note": f"{e.message} [{e.code}]", "equivalents": []}
    body: dict[str, Any] = sub.to_json()
    body["available"] = True
    return body


def substitution_reasons(store: Store, prescribed_ndc: str, dispensed_ndc: str, daw: int,
                         jurisdiction: str) -> list[dict[str, Any]] | None:
    """DAW / TE / state-law reasons for dispensing ``dispensed_ndc`` on this prescription."""
    mod = _module("pharmacy.substitution")
    if mod is None:
        return None
    law_table = None
    policy = _module("policy_cache.gate")
    if policy is not None:  # the state law comes from the signed bundle when one is active
        law = policy.substitution_law(store)
        law_table = None if law is None else mod.state_law_from_json(law)
    try:
        reasons = mod.check_dispense(store.conn, prescribed_ndc, dispensed_ndc, daw,
                                     jurisdiction, store.clock().date(), law_table=law_table)
    except PharmosError:
        return None  # no Orange Book facts for this product: the core's basic rule applies
    return [r.to_json() for r in reasons]


# ---- interactions (pharmacy.interactions) --------------------------------------------------
def interaction_alerts(store: Store, candidate_ndc: str,
                       current_ndcs: Sequence[str]) -> list[dict[str, Any]] | None:
    """Interactions of the drug to dispense with the patient's active medications."""
    mod = _module("pharmacy.interactions")
    if mod is None:
        return None
    index = mod.index_for(store.conn)
    new = mod.resolve_drug(store.conn, candidate_ndc, index)
    active = [mod.resolve_drug(store.conn, n, index) for n in current_ndcs]
    out = []
    for f in index.check_new(new, active):
        d = f.to_json()
        a, b = d["ingredients"]
        out.append({
            "code": "DDI_" + str(d["severity"]).upper(), "key": f"DDI:{a}+{b}",
            "severity": d["severity"], "with": d["drugs"][1],
            "message": f"{a} + {b}: {d.get('management') or 'interaction'}",
            "citation": d.get("citation"), "source": d.get("source"),
        })
    return out


# ---- policy bundle ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PolicyStatus:
    engine: str
    bundle_version: str | None
    offline_until: datetime | None
    jurisdiction: str | None

    def hours_left(self, now: datetime) -> float | None:
        if self.offline_until is None:
            return None
        return (self.offline_until - now).total_seconds() / 3600


def policy_status(store: Store, gate: Any) -> PolicyStatus:
    """The active policy bundle as the gate sees it (version, offline_until)."""
    bg = getattr(gate, "bundle_gate", None)  # policy_cache.gate.StoreGate
    meta = getattr(bg, "meta", None)
    version = getattr(meta, "bundle_version", None) or getattr(gate, "bundle_version", None)
    until = getattr(meta, "offline_until", None) or getattr(gate, "offline_until", None)
    if isinstance(until, str):
        until = parse_iso(until)
    engine = str(getattr(gate, "engine", type(gate).__name__))
    if bg is None and hasattr(gate, "bundle_gate"):
        engine = f"{engine}: no valid bundle"
    return PolicyStatus(engine, None if version is None else str(version), until,
                        store.get_setting("jurisdiction"))


# ---- PMP reporting (policy_cache.pmp) -------------------------------------------------------
@dataclass(frozen=True)
class PmpStatus:
    unreported: int
    alert: str | None  # the first deadline alert's message and citation


PMP_WINDOW_DAYS = 35  # deadlines are a working day to a week; older gaps show in the CLI


def pmp_status(store: Store) -> PmpStatus | None:
    """Controlled dispensings of the last weeks no production PMP report has covered."""
    mod = _module("policy_cache.pmp")
    if mod is None:
        return None
    from datetime import timedelta


    tz = store.time_zone()
    now = store.clock()
    st = mod.report_status(store.conn, now, tz,
                           since=now.astimezone(tz).date() - timedelta(days=PMP_WINDOW_DAYS))
    alerts = st["alerts"]
    return PmpStatus(int(st["unreported"]["dispensings"]),
                     f"{alerts[0]['message']} [{alerts[0]['citation']}]" if alerts else None)


# ---- sync -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyncStatus:
    available: bool
    online: bool | None
    last_success: str | None
    last_attempt: str | None
    last_error: str | None
    pending_outbox: int
    server: str | None


def _sync_state(store: Store) -> dict[str, str]:
    try:
        return {str(k): str(v) for k, v in store.conn.execute(
            "SELECT key, value FROM sync_state").fetchall()}
    except Exception:  # no sync tables in this schema
        return {}


def sync_status(store: Store) -> SyncStatus:
    mod = _module("terminal.sync_client")
    if mod is not None:
        d = mod.status(store)
        pending = d.get("pending") or {}
        events = int(pending.get("events", 0)) if isinstance(pending, dict) else int(pending)
        online: bool | None = None
        if d.get("enrolled") and d.get("last_attempt"):
            online = not d.get("offline_since") and not d.get("last_error")
        return SyncStatus(bool(d.get("enrolled")), online, d.get("last_success"),
                          d.get("last_attempt"), d.get("last_error"), events, d.get("server"))
    state = _sync_state(store)
    acked = int(state.get("acked_seq", "0") or 0)
    pending_n = int(store.conn.execute("SELECT COUNT(*) FROM events WHERE seq > ?",
                                       (acked,)).fetchone()[0])
    return SyncStatus(False, None, state.get("last_success"), state.get("last_attempt"),
                      state.get("last_error"), pending_n, None)


def sync_now(data_dir: str) -> dict[str, Any]:
    """Push and pull once (network pool; the sync client opens its own connection)."""
    mod = _module("terminal.sync_client")
    if mod is None:
        raise PharmosError("sync is not available on this terminal (no sync client installed)",
                           code="SYNC_NOT_AVAILABLE")
    from pathlib import Path

    result = mod.sync_data_dir(Path(data_dir))
    out: dict[str, Any] = result.to_json()
    return out


def sync_scheduler(data_dir: str) -> Any:
    """The nightly + opportunistic sync schedule (apscheduler), or None without a client.
    After the nightly sync, the due PMP reports are written when the store is set up for it
    (:func:`pmp_nightly`)."""
    mod = _module("terminal.sync_client")
    if mod is None:
        return None
    from pathlib import Path

    return mod.SyncScheduler(Path(data_dir), after_nightly=lambda: pmp_nightly(data_dir))


def pmp_nightly(data_dir: str, today: Any = None) -> list[dict[str, Any]]:
    """Write the due PMP reports into the folder of setting ``pmp.outbox_dir``, read as the
    user of setting ``pmp.user_id`` (both set: nothing is written otherwise)."""
    mod = _module("policy_cache.pmp")
    if mod is None:
        return []
    from pharmacy.phi import FileKeyProvider, PhiVault

    with Store.open(data_dir) as store:
        outbox, user = store.get_setting("pmp.outbox_dir"), store.get_setting("pmp.user_id")
        if not outbox or not user:
            return []
        vault = PhiVault(store.conn, FileKeyProvider(store.data_dir), store.clock)
        out: list[dict[str, Any]] = mod.write_due_reports(
            store, vault, user_id=user, outbox=outbox,
            tz=store.time_zone(), today=today)
        return out


# ---- reorder suggestions (models) ---------------------------------------------------------------
def reorder_suggestions(store: Store, limit: int = 200) -> dict[str, Any]:
    mod = _module("models.suggest") or _module("models.reorder") or _module("models.runtime")
    fn = None
    if mod is not None:
        fn = getattr(mod, "reorder_suggestions", None) or getattr(mod, "suggestions", None)
    if fn is None:
        return {"available": False, "rows": [],
                "note": "reorder suggestions are not available yet (no model installed)"}
    raw = fn(store)
    rows = raw.get("suggestions", raw.get("rows", [])) if isinstance(raw, dict) else raw
    out = []
    for r in list(rows or [])[:limit]:
        d = r if isinstance(r, dict) else r.to_json()
        out.append(d)
    return {"available": True, "rows": out,
            "model_version": raw.get("model_version") if isinstance(raw, dict) else None}


def product_label(store: Store, ndc: str) -> str:
    p = catalog.lookup(store.conn, ndc)
    return p.name
