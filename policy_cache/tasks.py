"""Follow-up tasks that decisions create (obligations named ``task:...``), derived from the
decision records so nothing extra is written on the sale path, and closed by follow-ups."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from pharmacy.clock import iso, parse_iso
from pharmacy.ids import new_id
from pharmacy.store import Store

TASKS: dict[str, dict[str, Any]] = {
    "task:cii_emergency_followup_7d": {
        "kind": "cii_emergency_followup", "due": timedelta(days=7),
        "alert": "DEA_CII_EMERGENCY_NO_FOLLOWUP", "citation": "21 CFR 1306.11(d)(4)",
        "todo": "attach the prescriber's written or electronic follow-up prescription; if it "
                "has not arrived, notify DEA"},
    "task:notify_prescriber": {
        "kind": "prescriber_notified", "due": timedelta(0), "alert": "DEA_CII_PARTIAL_72H",
        "citation": "21 CFR 1306.13(a)",
        "todo": "notify the prescriber that the balance of the partial fill was not supplied "
                "within 72 hours"},
    "task:cii_partial_balance_72h": {
        "kind": "partial_balance", "due": timedelta(hours=72), "alert": "DEA_CII_PARTIAL_72H",
        "citation": "21 CFR 1306.13(a)",
        "todo": "supply the balance within 72 hours or notify the prescriber"},
}


def record_followup(store: Store, rx_number: str, kind: str, *, user_id: str | None = None,
                    detail: dict[str, Any] | None = None) -> str:
    fid = new_id()
    with store.transaction() as c:
        c.execute("INSERT INTO policy_followups VALUES (?, ?, ?, ?, ?, ?)",
                  (fid, rx_number, kind, iso(store.clock()), user_id,
                   json.dumps(detail or {}, sort_keys=True)))
    return fid


def tasks(store: Store, now: datetime | None = None) -> list[dict[str, Any]]:
    """Open follow-up tasks with due times; ``overdue`` ones carry the alert code."""
    now = now or store.clock()
    done = {(r[0], r[1]) for r in store.conn.execute(
        "SELECT rx_number, kind FROM policy_followups")}
    out: list[dict[str, Any]] = []
    rows = store.conn.execute(
        "SELECT decision_id, sale_id, decided_at, obligations, decision_request, rx FROM sales s "
        "WHERE obligations LIKE '%task:%' AND NOT EXISTS (SELECT 1 FROM sale_returns x WHERE "
        "x.sale_id = s.sale_id) UNION ALL "
        "SELECT decision_id, NULL, created_at, obligations, request, NULL FROM refusals "
        "WHERE obligations LIKE '%task:%' ORDER BY 3").fetchall()
    for decision_id, sale_id, created_at, obligations, request, sale_rx in rows:
        # a sale's decision keeps a compact request: its Rx is on the sale row
        rx = json.loads(sale_rx) if sale_rx else (json.loads(request).get("rx") or {})
        rx_number = str(rx.get("rx_number") or "")
        for ob in json.loads(obligations):
            spec = TASKS.get(ob)
            if spec is None or (rx_number, spec["kind"]) in done:
                continue
            if ob == "task:cii_partial_balance_72h" and (sale_id is None or _balance_filled(
                    store, rx_number, created_at)):
                continue
            if ob == "task:cii_emergency_followup_7d" and sale_id is None:
                continue
            due = parse_iso(created_at) + spec["due"]
            out.append({"task": ob, "kind": spec["kind"], "rx_number": rx_number,
                        "decision_id": decision_id, "sale_id": sale_id, "due": iso(due),
                        "overdue": now > due, "todo": spec["todo"],
                        "alert": spec["alert"] if now > due else None,
                        "citation": spec["citation"]})
    return out


def _balance_filled(store: Store, rx_number: str, after: str) -> bool:
    row = store.conn.execute("SELECT 1 FROM sales s WHERE rx_number = ? AND created_at > ? "
                             "AND NOT EXISTS (SELECT 1 FROM sale_returns x WHERE "
                             "x.sale_id = s.sale_id)", (rx_number, after)).fetchone()
    return row is not None


def emergency_followup_alerts(store: Store, now: datetime | None = None) -> list[dict[str, Any]]:
    """Rule 6: emergency oral C-II dispenses whose 7-day follow-up prescription is missing."""
    return [t for t in tasks(store, now)
            if t["task"] == "task:cii_emergency_followup_7d" and t["overdue"]]
