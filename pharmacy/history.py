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

    def pse_mg_since(self, purchaser_key: str, since: datetime) -> float:
        row = self.conn.execute(
            "SELECT COALESCE(SUM(l.qty * p.pse_mg_per_unit), 0) FROM sales s "
            "JOIN sale_lines l ON l.sale_id = s.sale_id JOIN products p ON p.ndc = l.ndc "
            "WHERE s.patient_id = ? AND s.created_at >= ? AND p.cmea = 1",
            (purchaser_key, iso(since)),
        ).fetchone()
        return float(row[0])

    def units_since(self, purchaser_key: str, ndc_filter: str, since: datetime) -> int:
        """Units sold to a purchaser since a time; ndc_filter is a SQL condition name:
        'cv_otc' (C-V without prescription) or an NDC."""
        params: tuple[str, ...]
        if ndc_filter == "cv_otc":
            cond, params = "p.dea_schedule = 'CV' AND s.kind = 'otc'", ()
        else:
            cond, params = "l.ndc = ?", (ndc_filter,)
        row = self.conn.execute(
            "SELECT COALESCE(SUM(l.qty), 0) FROM sales s JOIN sale_lines l "
            "ON l.sale_id = s.sale_id JOIN products p ON p.ndc = l.ndc "
            f"WHERE s.patient_id = ? AND s.created_at >= ? AND {cond}",
            (purchaser_key, iso(since), *params),
        ).fetchone()
        return int(row[0])

    def rx_fills(self, rx_number: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT s.sale_id, s.created_at, s.rx, "
            "(SELECT SUM(qty) FROM sale_lines l WHERE l.sale_id = s.sale_id) AS qty "
            "FROM sales s WHERE s.rx_number = ? "
            "ORDER BY s.created_at", (rx_number,)).fetchall()
        return [{"sale_id": r[0], "created_at": r[1], "rx": json.loads(r[2]), "qty": r[3]}
                for r in rows]
