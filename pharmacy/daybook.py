"""The terminal's day report (the end-of-day "Z" report): what was sold, how it was paid, what
was paid back, and how much cash the drawer should have taken in, for one local day.

Each fact is placed by its own time on the store's clock in the store's time zone: a sale by
when it was made, a payment by when it was taken (a prescription filled one day may be paid
for at pickup the next), a refund or a return by when it was made; a sale is "not paid yet"
when it was neither paid nor returned by the end of its day, so a day's report reads the
same whenever it is asked for. Read-only; it scans the day's rows (no index on sale time:
an index would cost every sale a page written).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from pharmacy.clock import iso
from pharmacy.errors import BadInput
from pharmacy.money import fmt
from pharmacy.store import Store


def day_bounds(day: date, tz: tzinfo) -> tuple[str, str]:
    """The stored-time text range [lo, hi) of ``day`` in ``tz``; ``BAD_DATE`` for a day
    whose bounds fall outside the years 1-9999 in UTC (9999-12-31 anywhere, 0001-01-01 east
    of UTC): no time on that day could ever be stored."""
    try:
        lo = datetime.combine(day, time(0), tz).astimezone(UTC)
        hi = datetime.combine(day + timedelta(days=1), time(0), tz).astimezone(UTC)
    except OverflowError:
        raise BadInput(f"{day.isoformat()} in {tz} is outside the years 1-9999 a report "
                       "covers", code="BAD_DATE") from None
    return iso(lo), iso(hi)


def day_report(conn: sqlite3.Connection, day: date, tz: tzinfo) -> dict[str, Any]:
    lo, hi = day_bounds(day, tz)
    span = (lo, hi)
    sales = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(subtotal_cents), 0), COALESCE(SUM(tax_cents), 0), "
        "COALESCE(SUM(total_cents), 0) FROM sales WHERE created_at >= ? AND created_at < ?",
        span).fetchone()
    by_user = conn.execute(
        "SELECT user_id, COUNT(*), SUM(total_cents) FROM sales WHERE created_at >= ? AND "
        "created_at < ? GROUP BY user_id ORDER BY user_id", span).fetchall()
    # not paid (nor returned) by the end of the day: the same answer whenever it is asked
    unpaid = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(total_cents), 0) FROM sales s WHERE created_at >= ? "
        "AND created_at < ? AND NOT EXISTS (SELECT 1 FROM tenders t WHERE t.sale_id = "
        "s.sale_id AND t.created_at < ?) AND NOT EXISTS (SELECT 1 FROM sale_returns r WHERE "
        "r.sale_id = s.sale_id AND r.created_at < ?)", (lo, hi, hi, hi)).fetchone()
    pay = {m: {"count": 0, "amount": 0, "tendered": 0, "change": 0} for m in ("cash", "card")}
    for method, n, amount, tendered, change in conn.execute(
            "SELECT method, COUNT(*), SUM(amount_cents), SUM(tendered_cents), "
            "SUM(change_cents) FROM tenders WHERE created_at >= ? AND created_at < ? "
            "GROUP BY method", span):
        pay[str(method)] = {"count": int(n), "amount": int(amount), "tendered": int(tendered),
                            "change": int(change)}
    back = {"count": 0, "total": 0, "tax": 0, "cash": 0, "card": 0}
    for method, n, total, tax in conn.execute(
            "SELECT method, COUNT(*), SUM(total_cents), SUM(tax_cents) FROM refunds "
            "WHERE created_at >= ? AND created_at < ? GROUP BY method", span):
        back["count"] += int(n)
        back["total"] += int(total)
        back["tax"] += int(tax)
        back[str(method)] = int(total)
    returned = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(s.total_cents), 0) FROM sale_returns r JOIN sales s "
        "ON s.sale_id = r.sale_id WHERE r.created_at >= ? AND r.created_at < ?",
        span).fetchone()
    refused = conn.execute("SELECT COUNT(*) FROM refusals WHERE created_at >= ? AND "
                           "created_at < ?", span).fetchone()[0]
    taken = pay["cash"]["amount"] + pay["card"]["amount"]
    return {
        "date": day.isoformat(), "tz": str(tz), "from": lo, "to": hi,
        "sales": {"count": int(sales[0]), "subtotal": fmt(int(sales[1])),
                  "tax": fmt(int(sales[2])), "total": fmt(int(sales[3]))},
        "unpaid": {"count": int(unpaid[0]), "total": fmt(int(unpaid[1]))},
        "payments": {m: {"count": v["count"], "amount": fmt(v["amount"]),
                         **({"tendered": fmt(v["tendered"]), "change": fmt(v["change"])}
                            if m == "cash" else {})}
                     for m, v in pay.items()},
        "refunds": {"count": back["count"], "total": fmt(back["total"]),
                    "tax": fmt(back["tax"]), "cash": fmt(back["cash"]),
                    "card": fmt(back["card"])},
        "returned_to_stock": {"count": int(returned[0]), "total": fmt(int(returned[1]))},
        "refused": int(refused),
        # what the drawer took in over the day: cash payments (tendered less change) less
        # cash paid back; add the opening float to get what it should hold
        "cash_expected": fmt(pay["cash"]["amount"] - back["cash"]),
        "net_taken": fmt(taken - back["total"]),
        "by_user": [{"user_id": r[0], "sales": int(r[1]), "total": fmt(int(r[2]))}
                    for r in by_user],
    }


def store_day_report(store: Store, day: date | None = None, tz: tzinfo | None = None
                     ) -> dict[str, Any]:
    """The day report of ``store``: ``day`` (default today) in ``tz`` (default the store's
    zone), with the store's id."""
    tz = tz if tz is not None else store.time_zone()
    out = day_report(store.conn, day or store.clock().astimezone(tz).date(), tz)
    out["store_id"] = store.store_id
    return out


def report_text(out: dict[str, Any]) -> str:
    p, r = out["payments"], out["refunds"]
    lines = [
        f"Day report {out['date']} ({out['tz']})",
        f"  sales        {out['sales']['count']:>5}  {out['sales']['total']:>12}  "
        f"(tax {out['sales']['tax']})",
        f"  cash         {p['cash']['count']:>5}  {p['cash']['amount']:>12}",
        f"  card         {p['card']['count']:>5}  {p['card']['amount']:>12}",
        f"  refunds      {r['count']:>5}  {r['total']:>12}  (cash {r['cash']}, card "
        f"{r['card']})",
        f"  net taken           {out['net_taken']:>12}",
        f"  cash expected in the drawer (plus the float)  {out['cash_expected']}",
    ]
    if out["unpaid"]["count"]:
        lines.append(f"  not paid yet {out['unpaid']['count']:>5}  "
                     f"{out['unpaid']['total']:>12}  (filled, awaiting pickup)")
    if out["returned_to_stock"]["count"]:
        lines.append(f"  returned     {out['returned_to_stock']['count']:>5}  "
                     f"{out['returned_to_stock']['total']:>12}")
    if out["refused"]:
        lines.append(f"  refused attempts {out['refused']}")
    return "\n".join(lines)
