"""Refunds: money given back for a paid sale, whole or by line and quantity.

A refund is its own durable fact (``refunds``, synced as a ``sale_refund`` event); the sale
it refunds stays as committed. Sealed OTC goods the customer brings back may go back on the
shelf, into the lots they were sold from. A medicine that needs a prescription, a controlled
substance, a CMEA product or an India scheduled drug never does once it has left the
pharmacy: its money is refunded and the package is handled as a return for destruction. So
a refund never touches the controlled register nor the CMEA logbook: the dispensing or sale
they record did happen. A prescription filled and never handed over (so never paid) is not
refunded but returned to stock (``pharmacy.rx.return_to_stock``).

Tax: each sale line keeps the tax it paid (``sale_lines.tax_cents``, migration 0017), and
a refund pays back that line's own tax, whatever the product's rate is now. For a line sold
before lines kept it, the share is what the product's tax rate gives on the line when those
shares add up to the sale's tax (the rate has not changed since), or else the sale's tax
spread over the lines by their amounts. Refunding part of a line pays back that share of the
line's tax; the refund that completes a line pays back exactly what is left of it (never
less than nothing), so a sale refunded in parts refunds exactly what was paid.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, cast

from crdt.pncounter import SQL_LOCAL_ADD, local_add_params
from pharmacy import catalog, inventory, outbox, users
from pharmacy.canonical import compact_json
from pharmacy.checkout import is_short_text
from pharmacy.clock import iso
from pharmacy.errors import BadInput, DomainRefusal, NotFound
from pharmacy.ids import new_id
from pharmacy.inventory import StockChanged
from pharmacy.money import fmt, tax_cents
from pharmacy.store import Store

RefundMethod = Literal["cash", "card"]
MAX_REASON = 500
MAX_USER_ID = 100


class RefundRefused(DomainRefusal):
    code = "REFUND_REFUSED"


@dataclass(frozen=True)
class RefundLine:
    line_no: int
    ndc: str
    name: str
    qty: int
    amount_cents: int
    tax_cents: int
    restocked: tuple[tuple[str, str, str, int], ...]  # (batch_id, lot, expiry, qty)

    def to_json(self) -> dict[str, Any]:
        return {"line_no": self.line_no, "ndc": self.ndc, "name": self.name, "qty": self.qty,
                "amount": fmt(self.amount_cents), "tax": fmt(self.tax_cents),
                "restocked": [{"lot": lot, "expiry": exp, "qty": q}
                              for _, lot, exp, q in self.restocked]}


@dataclass(frozen=True)
class RefundResult:
    refund_id: str
    sale_id: str
    method: RefundMethod
    reference: str | None
    subtotal_cents: int
    tax_cents: int
    lines: tuple[RefundLine, ...]
    changed: StockChanged

    @property
    def total_cents(self) -> int:
        return self.subtotal_cents + self.tax_cents

    def to_json(self) -> dict[str, Any]:
        return {"refund_id": self.refund_id, "sale_id": self.sale_id, "method": self.method,
                "reference": self.reference, "subtotal": fmt(self.subtotal_cents),
                "tax": fmt(self.tax_cents), "total": fmt(self.total_cents),
                "lines": [ln.to_json() for ln in self.lines]}


def restockable(p: catalog.Product) -> bool:
    """Whether units of ``p`` that left the pharmacy may go back on the shelf: sealed OTC
    goods only (no prescription, controlled, CMEA or India scheduled drug)."""
    return not (p.rx_only or p.dea_schedule or p.cmea or p.india_schedule in ("H", "H1", "X"))


@dataclass(frozen=True)
class _SoldLine:
    line_no: int
    ndc: str
    qty: int
    unit_price_cents: int
    amount_cents: int
    tax_cents: int
    allocations: tuple[tuple[str, str, str, int], ...]
    refunded_qty: int
    refunded_tax_cents: int
    restocked: Mapping[str, int]  # batch_id -> units earlier refunds put back


def refundable(conn: sqlite3.Connection, sale_id: str, today: date) -> dict[str, Any]:
    """What of a sale may still be refunded, line by line (for a screen or the CLI).
    ``restockable``: sealed units of the line may go back on the shelf (the product may, and
    no lot they would go back to is recalled, quarantined or expired on ``today``)."""
    sale_id = find_sale(conn, sale_id)
    sale, lines = _sold(conn, sale_id)
    out = []
    for ln in lines:
        p = catalog.lookup(conn, ln.ndc)
        left = ln.qty - ln.refunded_qty
        out.append({"line_no": ln.line_no, "ndc": ln.ndc, "name": p.name, "qty": ln.qty,
                    "refunded": ln.refunded_qty, "refundable": left,
                    "unit_price": fmt(ln.unit_price_cents),
                    "restockable": _may_restock(conn, p, ln, left, today)})
    paid_by = _paid_by(conn, sale_id)
    return {"sale_id": sale_id, "total": fmt(int(sale["total_cents"])),
            "paid": bool(paid_by), "paid_by": paid_by,
            "refunded": fmt(_refunded_total(conn, sale_id)), "lines": out}


def refund(store: Store, user: Mapping[str, Any], sale_id: str, *, method: str, reason: str,
           lines: Sequence[Mapping[str, Any]] | None = None, reference: str | None = None,
           restock_sealed: bool = False) -> RefundResult:
    """Refund a paid sale: every unit not refunded yet (``lines`` None; ``restock_sealed``
    puts those of every line that may go back on the shelf back), or the lines and
    quantities given (``[{"line_no", "qty", "restock"}]``; ``restock`` puts sealed OTC units
    back into the lots they were sold from). One transaction; cash or card."""
    if not isinstance(user, Mapping):
        raise BadInput("the user is an object with an 'id' and a 'role'", code="BAD_USER")
    users.require(dict(user), "refund_sale")
    uid = user["id"]
    if not is_short_text(uid, MAX_USER_ID):
        raise BadInput(f"a user's id is text of at most {MAX_USER_ID} characters",
                       code="BAD_USER")
    if not isinstance(reason, str) or not reason.strip():
        raise BadInput("a refund needs a reason", code="REASON_REQUIRED")
    if not is_short_text(reason, MAX_REASON):
        raise BadInput(f"a refund's reason is text of at most {MAX_REASON} characters",
                       code="BAD_REASON")
    if method not in ("cash", "card"):
        raise BadInput(f"refund method {method!r} is not cash or card", code="BAD_TENDER")
    if reference is not None and not is_short_text(reference, 100):
        raise BadInput("a card refund's reference is text of at most 100 characters",
                       code="BAD_REFERENCE")
    reference = ((reference or "").strip() or None) if method == "card" else None
    now = store.clock()
    now_s, today = iso(now), now.date()
    with store.transaction() as c:
        sale_id = find_sale(c, sale_id)
        _, sold = _sold(c, sale_id)
        paid_by = _paid_by(c, sale_id)
        if not paid_by:
            raise RefundRefused(
                f"sale {sale_id} was never paid, so there is nothing to refund (a filled "
                "prescription never handed over goes back with return to stock)",
                code="SALE_NOT_PAID")
        if method not in paid_by:
            raise RefundRefused(
                f"sale {sale_id} was paid by {' and '.join(paid_by)}: a refund goes back the "
                f"way the sale was paid, not by {method}", code="REFUND_METHOD_MISMATCH",
                paid_by=paid_by)
        by_no = {ln.line_no: ln for ln in sold}
        wanted = _wanted(lines, by_no)
        if lines is None and restock_sealed:
            wanted = [(n, q, _may_restock(c, catalog.lookup(c, by_no[n].ndc), by_no[n], q,
                                          today)) for n, q, _ in wanted]
        out: list[RefundLine] = []
        adds: list[tuple[str, int]] = []  # (batch_id, units back)
        for line_no, qty, restock in wanted:
            ln = by_no[line_no]
            product = catalog.lookup(c, ln.ndc)
            left = ln.qty - ln.refunded_qty
            if qty > left:
                raise RefundRefused(
                    f"line {line_no} ({product.name}) sold {ln.qty} and {ln.refunded_qty} were "
                    f"refunded already: at most {left} can be refunded", code="REFUND_EXCEEDS_SALE",
                    line_no=line_no, refundable=left)
            if restock and not restockable(product):
                raise RefundRefused(
                    f"line {line_no}: {product.name} left the pharmacy and cannot go back on "
                    "the shelf (a prescription, controlled, CMEA or scheduled drug): refund "
                    "it without restocking and set the package aside for destruction",
                    code="NOT_RESTOCKABLE", line_no=line_no)
            amount = ln.unit_price_cents * qty
            tax = max(0, ln.tax_cents - ln.refunded_tax_cents if qty == left
                      else min(_share(ln.tax_cents, qty, ln.qty),
                               ln.tax_cents - ln.refunded_tax_cents))
            back = _restock_from(ln, qty) if restock else ()
            for batch_id, lot, expiry, _ in back:
                problem = _lot_problem(c, batch_id, expiry, today)
                if problem:
                    raise RefundRefused(
                        f"line {line_no}: lot {lot} of {product.name} is {problem}, so its "
                        "packs do not go back on the shelf: refund them without restocking "
                        "and set them aside with their lot", code="LOT_NOT_RESTOCKABLE",
                        line_no=line_no, lot=lot)
            adds += [(b, q) for b, _, _, q in back]
            out.append(RefundLine(line_no, ln.ndc, product.name, qty, amount, tax, back))
        subtotal = sum(r.amount_cents for r in out)
        tax = sum(r.tax_cents for r in out)
        if subtotal + tax <= 0:
            raise RefundRefused("nothing to refund: every line's price was zero",
                                code="NOTHING_TO_REFUND")
        refund_id = new_id()
        body_lines = [{"line_no": r.line_no, "ndc": r.ndc, "qty": r.qty,
                       "amount_cents": r.amount_cents, "tax_cents": r.tax_cents,
                       "restocked": [list(a) for a in r.restocked]} for r in out]
        c.executemany(SQL_LOCAL_ADD, [local_add_params(inventory.counter_id(b), store.replica_id,
                                                       q) for b, q in adds])
        c.execute("INSERT INTO refunds(refund_id, sale_id, created_at, replica_id, user_id, "
                  "reason, method, reference, subtotal_cents, tax_cents, total_cents, lines) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  (refund_id, sale_id, now_s, store.replica_id, uid, reason.strip(),
                   method, reference, subtotal, tax, subtotal + tax, compact_json(body_lines)))
        outbox.append_event(c, store.replica_id, "sale_refund", now_s, {
            "refund_id": refund_id, "sale_id": sale_id, "created_at": now_s,
            "user_id": uid, "reason": reason.strip(), "method": method,
            "subtotal_cents": subtotal, "tax_cents": tax, "total_cents": subtotal + tax,
            "lines": body_lines})
    changed = StockChanged(tuple(dict.fromkeys(b for b, _ in adds)),
                           tuple(dict.fromkeys(r.ndc for r in out if r.restocked)))
    return RefundResult(refund_id, sale_id, cast(RefundMethod, method), reference, subtotal,
                        tax, tuple(out), changed)


def refund_record(conn: sqlite3.Connection, refund_id: str) -> dict[str, Any]:
    """A committed refund as its slip prints it."""
    if not is_short_text(refund_id, 64) or not refund_id:
        raise BadInput("a refund id is text (as printed on its slip)", code="BAD_REQUEST")
    r = conn.execute("SELECT refund_id, sale_id, created_at, user_id, reason, method, "
                     "reference, subtotal_cents, tax_cents, total_cents, lines FROM refunds "
                     "WHERE refund_id = ?", (refund_id,)).fetchone()
    if r is None:
        raise NotFound(f"no refund {refund_id}", code="UNKNOWN_REFUND")
    names = dict(conn.execute("SELECT l.line_no, p.name FROM sale_lines l JOIN products p "
                              "ON p.ndc = l.ndc WHERE l.sale_id = ?", (r[1],)).fetchall())
    return {
        "refund_id": r[0], "sale_id": r[1], "created_at": r[2], "user_id": r[3],
        "reason": r[4], "method": r[5], "reference": r[6], "subtotal": fmt(int(r[7])),
        "tax": fmt(int(r[8])), "total": fmt(int(r[9])),
        "lines": [{"line_no": ln["line_no"], "ndc": ln["ndc"],
                   "name": names.get(ln["line_no"], ln["ndc"]), "qty": ln["qty"],
                   "amount": fmt(int(ln["amount_cents"])), "tax": fmt(int(ln["tax_cents"])),
                   "restocked": sum(int(a[3]) for a in ln["restocked"])}
                  for ln in json.loads(r[10])]}


def refunds_for(conn: sqlite3.Connection, sale_id: str) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT refund_id, created_at, user_id, reason, method, reference, "
                        "total_cents, lines FROM refunds WHERE sale_id = ? ORDER BY created_at",
                        (sale_id,)).fetchall()
    return [{"refund_id": r[0], "created_at": r[1], "user_id": r[2], "reason": r[3],
             "method": r[4], "reference": r[5], "total": fmt(int(r[6])),
             "lines": [{"line_no": ln["line_no"], "qty": ln["qty"]} for ln in json.loads(r[7])]}
            for r in rows]


# ---- internals ------------------------------------------------------------------------------
def find_sale(conn: sqlite3.Connection, text: Any) -> str:
    """A sale's id from its full id or from the end of it a receipt prints (at least 8
    characters, naming one sale)."""
    if not is_short_text(text, 64) or not text.strip():
        raise BadInput("a sale id is text (as printed on the receipt)", code="BAD_REQUEST")
    wanted: str = text.strip()
    if conn.execute("SELECT 1 FROM sales WHERE sale_id = ?", (wanted,)).fetchone():
        return wanted
    text = wanted
    if len(text) >= 8:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = conn.execute("SELECT sale_id FROM sales WHERE sale_id LIKE ? ESCAPE '\\' "
                            "LIMIT 2", (pattern,)).fetchall()
        if len(rows) == 1:
            return str(rows[0][0])
        if rows:
            raise BadInput(f"more than one sale ends in {text}: give more of its id",
                           code="AMBIGUOUS_SALE")
    raise NotFound(f"no sale {text}", code="UNKNOWN_SALE")


def _sold(conn: sqlite3.Connection, sale_id: str) -> tuple[sqlite3.Row, list[_SoldLine]]:
    sale = conn.execute("SELECT sale_id, tax_cents, total_cents FROM sales WHERE sale_id = ?",
                        (sale_id,)).fetchone()
    rows = conn.execute("SELECT line_no, ndc, qty, unit_price_cents, line_total_cents, "
                        "allocations, tax_cents FROM sale_lines WHERE sale_id = ? "
                        "ORDER BY line_no", (sale_id,)).fetchall()
    done_qty: dict[int, int] = {}
    done_tax: dict[int, int] = {}
    done_back: dict[int, dict[str, int]] = {}
    for (text,) in conn.execute("SELECT lines FROM refunds WHERE sale_id = ?", (sale_id,)):
        for ln in json.loads(text):
            n = int(ln["line_no"])
            done_qty[n] = done_qty.get(n, 0) + int(ln["qty"])
            done_tax[n] = done_tax.get(n, 0) + int(ln["tax_cents"])
            back = done_back.setdefault(n, {})
            for a in ln["restocked"]:
                back[str(a[0])] = back.get(str(a[0]), 0) + int(a[3])
    taxes = ([int(r[6]) for r in rows] if all(r[6] is not None for r in rows)
             else _line_taxes(conn, [(str(r[1]), int(r[4])) for r in rows], int(sale[1])))
    lines = [
        _SoldLine(int(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4]), tax,
                  tuple((str(a[0]), str(a[1]), str(a[2]), int(a[3]))
                        for a in json.loads(r[5] or "[]")),
                  done_qty.get(int(r[0]), 0), done_tax.get(int(r[0]), 0),
                  done_back.get(int(r[0]), {}))
        for r, tax in zip(rows, taxes, strict=True)]
    return sale, lines


def _line_taxes(conn: sqlite3.Connection, lines: list[tuple[str, int]], sale_tax: int
                ) -> list[int]:
    """Each line's share of the sale's tax, for a sale whose lines did not keep their own
    (sold before migration 0017; see the module's docstring)."""
    by_rate = []
    for ndc, amount in lines:
        try:
            by_rate.append(tax_cents(amount, catalog.lookup(conn, ndc).tax_rate_bp))
        except BadInput:
            by_rate.append(-1)
    if sum(by_rate) == sale_tax and min(by_rate, default=0) >= 0:
        return by_rate
    total = sum(amount for _, amount in lines)
    if total <= 0:
        return [0] * len(lines)
    shares = [sale_tax * amount // total for _, amount in lines]
    rest = sale_tax - sum(shares)
    order = sorted(range(len(lines)), key=lambda i: -(sale_tax * lines[i][1] % total))
    for i in order[:rest]:
        shares[i] += 1
    return shares


def _share(tax: int, qty: int, of: int) -> int:
    """``tax`` × qty / of, to the cent, halves up."""
    return (2 * tax * qty + of) // (2 * of)


def _restock_from(ln: _SoldLine, qty: int) -> tuple[tuple[str, str, str, int], ...]:
    """Units going back, into the lots the line took them from: the last-allocated lot first
    (what the customer most likely holds), as many as each lot gave and earlier refunds did
    not put back."""
    out = []
    for batch_id, lot, expiry, took in reversed(ln.allocations):
        if qty <= 0:
            break
        q = min(qty, took - ln.restocked.get(batch_id, 0))
        if q <= 0:
            continue
        out.append((batch_id, lot, expiry, q))
        qty -= q
    return tuple(out)


def _may_restock(conn: sqlite3.Connection, product: catalog.Product, ln: _SoldLine, qty: int,
                 today: date) -> bool:
    """Whether ``qty`` sealed units of the line may go back on the shelf: the product may,
    and no lot they would go back to is recalled, quarantined or expired on ``today``."""
    return restockable(product) and not any(
        _lot_problem(conn, b, exp, today) for b, _, exp, _ in _restock_from(ln, qty))


def _lot_problem(conn: sqlite3.Connection, batch_id: str, expiry: str, today: date
                 ) -> str | None:
    """Why units may not go back into a batch now (None: they may)."""
    row = conn.execute("SELECT status, expiry FROM batches WHERE batch_id = ?",
                       (batch_id,)).fetchone()
    status, expiry = (str(row[0]), str(row[1])) if row is not None else ("unknown", expiry)
    if status != "active":
        return status
    if expiry < today.isoformat():
        return f"expired ({expiry})"
    return None


def _wanted(lines: Sequence[Mapping[str, Any]] | None, by_no: Mapping[int, _SoldLine]
            ) -> list[tuple[int, int, bool]]:
    """(line_no, qty, restock) for each requested line, checked; None: everything left."""
    if lines is None:
        out = [(n, ln.qty - ln.refunded_qty, False) for n, ln in by_no.items()
               if ln.qty > ln.refunded_qty]
        if not out:
            raise RefundRefused("every unit of this sale has been refunded already",
                                code="ALREADY_REFUNDED")
        return out
    if not isinstance(lines, list) or not lines:
        raise BadInput("'lines' must be a non-empty list of {line_no, qty, restock}",
                       code="BAD_REQUEST")
    out = []
    seen: set[int] = set()
    for i, item in enumerate(lines, 1):
        if not isinstance(item, Mapping):
            raise BadInput(f"refund line {i} is not an object", code="BAD_REQUEST")
        n = item.get("line_no")
        if isinstance(n, bool) or not isinstance(n, int) or n not in by_no:
            raise BadInput(f"refund line {i}: the sale has no line {n!r} (lines "
                           f"{', '.join(map(str, by_no))})", code="UNKNOWN_LINE")
        if n in seen:
            raise BadInput(f"refund line {i}: line {n} is named twice", code="BAD_REQUEST")
        seen.add(n)
        ln = by_no[n]
        qty = (ln.qty - ln.refunded_qty if item.get("qty") is None
               else inventory.parse_qty(item["qty"], field=f"refund line {i} qty"))
        restock = item.get("restock", False)
        if not isinstance(restock, bool):
            raise BadInput(f"refund line {i}: 'restock' is true or false", code="BAD_REQUEST")
        if qty == 0:
            raise RefundRefused(f"line {n} has been refunded in full already",
                                code="ALREADY_REFUNDED", line_no=n)
        out.append((n, qty, restock))
    return out


def _paid_by(conn: sqlite3.Connection, sale_id: str) -> list[str]:
    """How a sale was paid: its tenders' methods (none: never paid)."""
    return [str(r[0]) for r in conn.execute(
        "SELECT DISTINCT method FROM tenders WHERE sale_id = ? ORDER BY method", (sale_id,))]


def _refunded_total(conn: sqlite3.Connection, sale_id: str) -> int:
    row = conn.execute("SELECT COALESCE(SUM(total_cents), 0) FROM refunds WHERE sale_id = ?",
                       (sale_id,)).fetchone()
    return int(row[0])
