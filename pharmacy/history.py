"""Facts from this terminal's own records that rolling-window rules need (HistoryPort)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from pharmacy.clock import iso


class SqlHistory:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def purchases_since(self, purchaser_key: str, since: datetime) -> list[dict[str, Any]]:
        """Every line sold to a purchaser since a time, with the product facts that rolling
        limits need (CMEA grams, C-V 48-hour units); a sale returned to stock was never handed
        over and does not count. Uses index sales_patient (0003)."""
        rows = self.conn.execute(
            "SELECT s.created_at, s.kind, l.ndc, l.qty, p.unit, p.dea_schedule, p.cmea, "
            "p.pse_mg_per_unit, p.attrs FROM sales s "
            "JOIN sale_lines l ON l.sale_id = s.sale_id JOIN products p ON p.ndc = l.ndc "
            "WHERE s.patient_id = ? AND s.created_at >= ? AND NOT EXISTS (SELECT 1 FROM "
            "sale_returns r WHERE r.sale_id = s.sale_id)",
            (purchaser_key, iso(since))).fetchall()
        return [{"created_at": r[0], "kind": r[1], "ndc": r[2], "qty": int(r[3]), "unit": r[4],
                 "dea_schedule": r[5], "cmea": bool(r[6]), "pse_mg_per_unit": r[7],
                 "attrs": json.loads(r[8]) if r[8] else {}} for r in rows]

    def rx_fill_history(self, rx_number: str) -> list[dict[str, Any]]:
        """Earlier dispenses of one prescription (not those returned to stock): time, refill
        number, partial-fill mode and the quantity of prescription items dispensed. Uses
        index sales_rx_number (0003)."""
        rows = self.conn.execute(
            "SELECT s.sale_id, s.created_at, json_extract(s.rx, '$.refill_number'), "
            "json_extract(s.rx, '$.partial_fill'), SUM(l.qty) FROM sales s "
            "JOIN sale_lines l ON l.sale_id = s.sale_id JOIN products p ON p.ndc = l.ndc "
            "WHERE s.rx_number = ? AND s.kind = 'rx' AND "
            "(p.rx_only = 1 OR p.dea_schedule IS NOT NULL OR p.india_schedule IN "
            "('H', 'H1', 'X')) AND NOT EXISTS (SELECT 1 FROM sale_returns r WHERE "
            "r.sale_id = s.sale_id) GROUP BY s.sale_id ORDER BY s.created_at",
            (str(rx_number),)).fetchall()
        return [{"sale_id": r[0], "created_at": r[1], "refill_number": r[2],
                 "partial_fill": r[3], "qty": int(r[4] or 0)} for r in rows]

    def offline_usage(self, day: str) -> list[dict[str, Any]]:
        """Units sold while offline on a (UTC) day, by product, with the product facts that
        decide its allowance class (table offline_usage, migration 0003)."""
        rows = self.conn.execute(
            "SELECT u.ndc, u.units, p.dea_schedule, p.india_schedule, p.cmea, p.ingredients, "
            "p.attrs FROM offline_usage u JOIN products p ON p.ndc = u.ndc WHERE u.day = ?",
            (day,)).fetchall()
        return [{"ndc": r[0], "units": int(r[1]), "dea_schedule": r[2], "india_schedule": r[3],
                 "cmea": bool(r[4]), "ingredients": tuple(json.loads(r[5] or "[]")),
                 "attrs": json.loads(r[6] or "{}")} for r in rows]

    def last_decision_at(self) -> str | None:
        """When this database last recorded a decision of its own.

        Every decision writes an outbox event in the same transaction (the sale, or the
        refused attempt), so the newest own event is the newest decision: read from the end
        of the append-only outbox, no index on the sale path needed.
        """
        row = self.conn.execute(
            "SELECT created_at FROM events WHERE replica_id IN (SELECT replica_id FROM "
            "replicas) ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else str(row[0])
