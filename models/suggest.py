"""Store adapters: weekly demand history, reorder and expiry-risk runs, diversion review,
recorded suggestions and purchase-order drafts.

Every run records its suggestions in ``model_suggestions`` with the model version that made
each one (superseding the open suggestions of the previous run of the same kind).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from models.dataset import week_end
from models.diversion import Hours, featurize, store_activities, store_offset
from models.runtime import REGISTRY, ActiveModels, ModelRegistry
from pharmacy import catalog, inventory
from pharmacy.clock import iso, parse_iso
from pharmacy.errors import BadInput
from pharmacy.ids import new_id
from pharmacy.reorder import (
    BatchStock,
    DemandForecast,
    ForecastRequest,
    ReorderParams,
    ReorderSuggestion,
    expiry_action,
    expiry_risks,
    suggest_order,
)
from pharmacy.store import Store

HISTORY_WEEKS = 104


@dataclass(frozen=True)
class History:
    ndcs: tuple[str, ...]
    weekly: npt.NDArray[np.float64]   # n x HISTORY_WEEKS, NaN before a product was stocked
    target_week_end: date             # the week being forecast (the current week)
    last_complete_week_end: date


def _local_today(store: Store) -> tuple[date, timedelta]:
    now = store.clock()
    off = store_offset(store, now)
    return (now.astimezone(UTC) + off).date(), off


def weekly_history(store: Store, ndcs: list[str] | None = None,
                   weeks: int = HISTORY_WEEKS) -> History:
    """Units sold per product per complete week (Monday-Sunday, store local time)."""
    today, off = _local_today(store)
    target = week_end(today)
    first_monday = target - timedelta(days=6 + 7 * weeks)   # the current week is left out
    shift = f"{int(off.total_seconds() // 60):+d} minutes"
    c = store.conn
    if ndcs is None:
        ndcs = [r[0] for r in c.execute(
            "SELECT ndc FROM products WHERE ndc IN (SELECT ndc FROM batches) "
            "OR ndc IN (SELECT ndc FROM sale_lines) ORDER BY ndc")]
    index = {n: i for i, n in enumerate(ndcs)}
    weekly = np.zeros((len(ndcs), weeks), dtype=np.float64)
    lo = iso(datetime.combine(first_monday - timedelta(days=1), datetime.min.time(),
                              tzinfo=UTC))
    rows = c.execute(
        "SELECT l.ndc, CAST((julianday(date(s.created_at, ?)) - julianday(?)) / 7 AS INTEGER), "
        "SUM(l.qty) FROM sales s JOIN sale_lines l ON l.sale_id = s.sale_id "
        "WHERE s.created_at >= ? AND NOT EXISTS (SELECT 1 FROM sale_returns x "
        "WHERE x.sale_id = s.sale_id) GROUP BY 1, 2",  # units returned to stock were not sold
        (shift, first_monday.isoformat(), lo))
    for ndc, wk, qty in rows:
        i = index.get(ndc)
        if i is not None and wk is not None and 0 <= int(wk) < weeks:
            weekly[i, int(wk)] += float(qty)
    # units a refund put back on the shelf were not sold either (in the week of their sale)
    back = c.execute(
        "SELECT json_extract(l.value, '$.ndc'), CAST((julianday(date(s.created_at, ?)) - "
        "julianday(?)) / 7 AS INTEGER), SUM(json_extract(a.value, '$[3]')) FROM refunds r "
        "JOIN sales s ON s.sale_id = r.sale_id, json_each(r.lines) l, "
        "json_each(l.value, '$.restocked') a WHERE s.created_at >= ? GROUP BY 1, 2",
        (shift, first_monday.isoformat(), lo))
    for ndc, wk, qty in back:
        i = index.get(ndc)
        if i is not None and wk is not None and 0 <= int(wk) < weeks:
            weekly[i, int(wk)] = max(0.0, weekly[i, int(wk)] - float(qty or 0))
    # Weeks before a product was first received or sold are unknown, not zero.
    starts: dict[str, str] = {}
    for ndc, first in c.execute("SELECT ndc, MIN(received_at) FROM batches GROUP BY ndc"):
        starts[ndc] = first
    for ndc, first in c.execute(
            "SELECT l.ndc, MIN(s.created_at) FROM sales s JOIN sale_lines l "
            "ON l.sale_id = s.sale_id GROUP BY l.ndc"):
        if ndc not in starts or first < starts[ndc]:
            starts[ndc] = first
    for ndc, first in starts.items():
        i = index.get(ndc)
        if i is None or not first:
            continue
        d = (parse_iso(first) + off).date()
        k = (d - first_monday).days // 7
        if k > 0:
            weekly[i, :min(k, weeks)] = np.nan
    return History(tuple(ndcs), weekly, target, target - timedelta(days=7))


def forecast_store(store: Store, registry: ModelRegistry = REGISTRY,
                   ndcs: list[str] | None = None) -> tuple[History, list[DemandForecast],
                                                          ActiveModels]:
    models = registry.active(store)
    hist = weekly_history(store, ndcs)
    req = ForecastRequest(hist.ndcs, hist.weekly, hist.target_week_end)
    return hist, models.forecaster.forecast(req), models


def _products(store: Store) -> dict[str, catalog.Product]:
    return {str(p.ndc): p for p in (catalog.Product.from_row(r) for r in store.conn.execute(
        "SELECT * FROM products"))}


# ---- reorder -------------------------------------------------------------------------------------
def params_for(product: catalog.Product, defaults: dict[str, Any]) -> ReorderParams:
    a = {**defaults, **{k: v for k, v in product.attrs.items()
                        if k in ("lead_time_days", "review_days", "service_level",
                                 "min_order_packs", "order_pack_size")}}
    try:
        return ReorderParams(
            lead_time_days=int(a.get("lead_time_days", 2)),
            review_days=int(a.get("review_days", 7)),
            service_level=float(a.get("service_level", 0.95)),
            pack_size=int(a.get("order_pack_size") or product.pack_size or 1),
            min_order_packs=int(a.get("min_order_packs", 1)))
    except (TypeError, ValueError) as e:
        raise BadInput(f"reorder settings of {product.name} are invalid: {e}",
                       code="BAD_REORDER_SETTINGS", ndc=product.ndc) from None


def stock_by_product(conn: sqlite3.Connection, today: date) -> dict[str, list[BatchStock]]:
    out: dict[str, list[BatchStock]] = {}
    for b in inventory.sellable_stock(conn, today):
        out.setdefault(b.ndc, []).append(
            BatchStock(b.batch_id, b.lot, date.fromisoformat(b.expiry), b.qty))
    return out


def on_order_by_product(conn: sqlite3.Connection) -> dict[str, int]:
    return {r[0]: int(r[1]) for r in conn.execute(
        "SELECT l.ndc, SUM(l.qty - l.received_qty) FROM purchase_order_lines l "
        "JOIN purchase_orders o ON o.po_id = l.po_id WHERE o.status = 'ordered' "
        "GROUP BY l.ndc HAVING SUM(l.qty - l.received_qty) > 0")}


def reorder_defaults(store: Store) -> dict[str, Any]:
    value = store.get_json_setting("reorder_defaults")
    return value if isinstance(value, dict) else {}


def reorder_run(store: Store, registry: ModelRegistry = REGISTRY, *,
                record: bool = True) -> dict[str, Any]:
    """Suggestions for every stocked or sold product; recorded with their model versions."""
    t0 = time.perf_counter()
    hist, forecasts, models = forecast_store(store, registry)
    today, _ = _local_today(store)
    stock = stock_by_product(store.conn, today)
    on_order = on_order_by_product(store.conn)
    defaults = reorder_defaults(store)
    products = _products(store)
    out: list[ReorderSuggestion] = []
    for fc in forecasts:
        p = products.get(fc.ndc)
        if p is None:
            continue
        out.append(suggest_order(fc, stock.get(fc.ndc, []), on_order.get(fc.ndc, 0),
                                 params_for(p, defaults), today))
    ms = (time.perf_counter() - t0) * 1000.0
    run_id = new_id()
    items = []
    for s in out:
        d = s.to_json()
        d["name"] = products[s.ndc].name
        d["suggested"] = s.order_units      # the terminal's reorder table reads these two
        d["why"] = d["reason"]
        items.append(d)
    if record:
        ids = _record(store, run_id, "reorder", [
            (s.ndc, "order" if s.order_units > 0 else "none", s.order_units, s.model_version, d)
            for s, d in zip(out, items, strict=True)])
        for d, sid in zip(items, ids, strict=True):
            d["suggestion_id"] = sid
    return {"run_id": run_id, "model": models.to_json(),
            "model_version": models.forecaster.version, "forecast_week_end":
            hist.target_week_end.isoformat(), "products": len(items),
            "to_order": sum(1 for s in out if s.order_units > 0), "ms": round(ms, 2),
            "suggestions": sorted(items, key=lambda d: (d["order_units"] == 0, d["name"]))}


def reorder_suggestions(store: Store, registry: ModelRegistry = REGISTRY) -> dict[str, Any]:
    """What the terminal's reorder screen shows (a recorded reorder run)."""
    return reorder_run(store, registry, record=True)


def _record(store: Store, run_id: str, kind: str,
            rows: list[tuple[str, str, int | None, str, dict[str, Any]]]) -> list[str]:
    now = iso(store.clock())
    ids = [new_id() for _ in rows]
    with store.transaction() as c:
        c.execute("UPDATE model_suggestions SET status = 'superseded' WHERE kind = ? "
                  "AND status = 'open'", (kind,))
        c.executemany(
            "INSERT INTO model_suggestions(suggestion_id, run_id, created_at, kind, subject, "
            "action, qty, model_version, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(sid, run_id, now, kind, subj, action, qty, ver, json.dumps(body, default=str))
             for sid, (subj, action, qty, ver, body) in zip(ids, rows, strict=True)])
    return ids


def accept_reorder(store: Store, suggestion_ids: list[str] | None = None, *,
                   user_id: str | None = None, supplier: str | None = None) -> dict[str, Any]:
    """Put open reorder suggestions (all with a quantity, or the given ones) on a new draft
    purchase order. Each line keeps its suggestion and model version."""
    c = store.conn
    if suggestion_ids is None:
        rows = c.execute(
            "SELECT * FROM model_suggestions WHERE kind = 'reorder' AND status = 'open' "
            "AND qty > 0 ORDER BY subject").fetchall()
    else:
        rows = []
        for sid in suggestion_ids:
            r = c.execute("SELECT * FROM model_suggestions WHERE suggestion_id = ?",
                          (sid,)).fetchone()
            if r is None or r["kind"] != "reorder":
                raise BadInput(f"no reorder suggestion {sid}", code="UNKNOWN_SUGGESTION")
            if r["status"] != "open":
                raise BadInput(f"suggestion {sid} is {r['status']}, not open",
                               code="SUGGESTION_NOT_OPEN")
            if not r["qty"]:
                raise BadInput(f"suggestion {sid} orders nothing", code="SUGGESTION_EMPTY")
            rows.append(r)
    if not rows:
        raise BadInput("no open reorder suggestion with a quantity; run 'pharmos models "
                       "reorder' first", code="NOTHING_TO_ORDER")
    now = iso(store.clock())
    po_id = new_id()
    lines = []
    with store.transaction() as tx:
        tx.execute("INSERT INTO purchase_orders(po_id, created_at, updated_at, status, "
                   "supplier, created_by) VALUES (?, ?, ?, 'draft', ?, ?)",
                   (po_id, now, now, supplier, user_id))
        for n, r in enumerate(rows, 1):
            body = json.loads(r["body"])
            pack = int(body.get("pack_size") or 1)
            qty = int(r["qty"])
            packs = max(1, math.ceil(qty / pack))
            tx.execute(
                "INSERT INTO purchase_order_lines(po_id, line_no, ndc, packs, pack_size, qty, "
                "suggestion_id, model_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (po_id, n, r["subject"], packs, pack, packs * pack, r["suggestion_id"],
                 r["model_version"]))
            tx.execute("UPDATE model_suggestions SET status = 'accepted' "
                       "WHERE suggestion_id = ?", (r["suggestion_id"],))
            lines.append({"line_no": n, "ndc": r["subject"], "packs": packs, "pack_size": pack,
                          "qty": packs * pack, "suggestion_id": r["suggestion_id"],
                          "model_version": r["model_version"]})
    return {"po_id": po_id, "status": "draft", "lines": lines}


def purchase_order(conn: sqlite3.Connection, po_id: str) -> dict[str, Any]:
    po = conn.execute("SELECT * FROM purchase_orders WHERE po_id = ?", (po_id,)).fetchone()
    if po is None:
        raise BadInput(f"no purchase order {po_id}", code="UNKNOWN_PO")
    lines = [dict(r) for r in conn.execute(
        "SELECT line_no, ndc, packs, pack_size, qty, received_qty, suggestion_id, model_version "
        "FROM purchase_order_lines WHERE po_id = ? ORDER BY line_no", (po_id,))]
    return {**dict(po), "lines": lines}


# ---- expiry risk ---------------------------------------------------------------------------------
def expiry_run(store: Store, registry: ModelRegistry = REGISTRY, *, min_p: float = 0.5,
               record: bool = True) -> dict[str, Any]:
    """Probability that each sellable batch expires before it sells, with an action."""
    _, forecasts, models = forecast_store(store, registry)
    today, _ = _local_today(store)
    stock = stock_by_product(store.conn, today)
    products = _products(store)
    items: list[dict[str, Any]] = []
    for fc in forecasts:
        batches = stock.get(fc.ndc)
        p = products.get(fc.ndc)
        if not batches or p is None:
            continue
        if fc.basis == "no-history":
            for b in batches:
                items.append({"batch_id": b.batch_id, "lot": b.lot,
                              "expiry": b.expiry.isoformat(), "qty": b.qty,
                              "days_left": (b.expiry - today).days + 1, "p_expire": None,
                              "expected_leftover": None, "ndc": fc.ndc, "name": p.name,
                              "action": "none", "reason": "no sales history: risk unknown",
                              "weekly_mean": None, "model_version": fc.model_version,
                              "basis": fc.basis})
            continue
        for r in expiry_risks(batches, fc.weekly_mean, fc.weekly_sigma, today):
            act = expiry_action(r, controlled=bool(p.dea_schedule), rx_only=p.rx_only,
                                min_p=min_p)
            items.append({**r.to_json(), "ndc": fc.ndc, "name": p.name, "action": act.action,
                          "reason": act.reason, "weekly_mean": round(fc.weekly_mean, 3),
                          "model_version": fc.model_version, "basis": fc.basis})
    items.sort(key=lambda d: (d["action"] == "none", -(d["p_expire"] or 0.0), d["expiry"]))
    run_id = new_id()
    if record:
        flagged = [d for d in items if d["action"] != "none"]
        ids = _record(store, run_id, "expiry", [
            (d["batch_id"], d["action"], round(d["expected_leftover"]), d["model_version"], d)
            for d in flagged])
        for d, sid in zip(flagged, ids, strict=True):
            d["suggestion_id"] = sid
    return {"run_id": run_id, "model": models.to_json(), "today": today.isoformat(),
            "batches": len(items), "at_risk": sum(1 for d in items if d["action"] != "none"),
            "items": items}


# ---- diversion -----------------------------------------------------------------------------------
def diversion_run(store: Store, registry: ModelRegistry = REGISTRY, *, days: int = 7,
                  record: bool = True) -> dict[str, Any]:
    models = registry.active(store)
    until = store.clock()
    since = until - timedelta(days=days)
    acts = store_activities(store, since, until)
    hours = Hours.parse(store.get_setting("opening_hours"))
    users, x = featurize(acts, hours)
    run_id = new_id()
    if models.diversion is None:
        return {"run_id": run_id, "model": models.to_json(), "scored": False,
                "note": "no diversion model installed: indicators shown without a score",
                "window_days": days, "users": [
                    {"user_id": u, "features": {k: round(float(v), 4) for k, v in
                                                zip(features_names(), x[i], strict=True)}}
                    for i, u in enumerate(users)]}
    scores = models.diversion.score_users(users, x)
    items = [s.to_json() for s in scores]
    if record:
        flagged = [d for d in items if d["flagged"]]
        ids = _record(store, run_id, "diversion", [
            (d["user_id"], "review", None, models.diversion.version, d) for d in flagged])
        for d, sid in zip(flagged, ids, strict=True):
            d["suggestion_id"] = sid
    return {"run_id": run_id, "model": models.to_json(), "scored": True, "window_days": days,
            "model_version": models.diversion.version,
            "flagged": sum(1 for d in items if d["flagged"]), "users": items}


def features_names() -> tuple[str, ...]:
    from models.diversion import FEATURES

    return FEATURES


__all__ = ["accept_reorder", "diversion_run", "expiry_run", "reorder_run", "reorder_suggestions",
           "weekly_history"]
