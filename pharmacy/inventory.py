"""Batches with lot and expiry, FEFO allocation, receive / adjust / stocktake, quarantine and
recall. The stock of a batch is its PN-counter value (``crdt``), counter id ``stock:<batch>``.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NamedTuple

from crdt.pncounter import SQL_LOCAL_ADD, local_add_params
from pharmacy import catalog, outbox, register
from pharmacy.clock import iso
from pharmacy.errors import BadInput, LotExpired, LotUnavailable, NotFound, OutOfStock
from pharmacy.ids import BatchId, new_id
from pharmacy.money import fmt, to_cents
from pharmacy.store import Store

ADJUST_REASONS = {
    "DAMAGED": "damaged or broken",
    "EXPIRED_DESTROYED": "expired stock destroyed or sent to a reverse distributor",
    "RETURN_TO_SUPPLIER": "returned to the supplier",
    "CUSTOMER_RETURN": "returned by a customer, fit for resale",
    "THEFT": "theft",
    "LOSS": "loss (not theft)",
    "FOUND": "stock found",
    "CORRECTION": "data-entry correction",
    "SAMPLE": "sample or internal use",
}

_LOT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-./]{0,19}$")


BATCH_STATUSES = ("active", "quarantined", "recalled")


def status_rank(status: str, status_at: str) -> tuple[bool, str, str]:
    """How concurrent batch-status writes merge: a recall is final, then the later write,
    then the name (a deterministic tie-break), so every replica and head office agree."""
    return (status == "recalled", status_at, status)


def counter_id(batch_id: str) -> str:
    return f"stock:{batch_id}"


def batch_id_for(ndc11: str, lot: str) -> BatchId:
    return BatchId(f"{ndc11}:{lot}")


def parse_qty(value: Any, *, field: str = "qty", allow_negative: bool = False,
              allow_zero: bool = False) -> int:
    """Quantities are whole units: no floats, no strings, no booleans."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise BadInput(f"{field} must be a whole number of units, got {value!r}",
                           code="BAD_QUANTITY")
    qty = int(value)
    if qty == 0 and not allow_zero:
        raise BadInput(f"{field} must not be zero", code="BAD_QUANTITY")
    if qty < 0 and not allow_negative:
        raise BadInput(f"{field} must be positive, got {qty}", code="BAD_QUANTITY")
    if abs(qty) > 10_000_000:
        raise BadInput(f"{field} {qty} is implausibly large", code="BAD_QUANTITY")
    return qty


def parse_expiry(value: Any) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise BadInput(f"expiry {value!r} is not a date YYYY-MM-DD", code="BAD_EXPIRY") from None


def parse_lot(value: Any) -> str:
    lot = str(value or "").strip()
    if not _LOT.match(lot):
        raise BadInput(f"lot {value!r} must be 1-20 letters, digits or - . /", code="BAD_LOT")
    return lot


def on_hand(conn: sqlite3.Connection, batch_id: str) -> int:
    row = conn.execute(
        "SELECT COALESCE(SUM(p - n), 0) FROM counters WHERE counter_id = ?",
        (counter_id(batch_id),),
    ).fetchone()
    return int(row[0])


def _bump(conn: sqlite3.Connection, replica: str, batch_id: str, delta: int) -> None:
    conn.execute(SQL_LOCAL_ADD, local_add_params(counter_id(batch_id), replica, delta))


@dataclass(frozen=True)
class StockChanged:
    """What a write changed, so screens refresh only that."""

    batch_ids: tuple[str, ...] = ()
    ndcs: tuple[str, ...] = ()
    register_entries: int = 0
    details: dict[str, Any] = field(default_factory=dict)


# ---- receive --------------------------------------------------------------------------------
# a batch's unit cost, as head office stores it (a PostgreSQL INTEGER column): the counter,
# the pull and the server all hold costs to it
MAX_UNIT_COST_CENTS = 2**31 - 1


def _require_text(where: str = "", **fields: Any) -> None:
    """Free-text fields that are stored and synced as given: text (without NUL characters,
    which head office's database cannot hold) or nothing."""
    for name, value in fields.items():
        if value is not None and (not isinstance(value, str) or "\x00" in value):
            raise BadInput(f"{where}'{name}' must be text, got {value!r:.60}",
                           code="BAD_REQUEST")


def receive(store: Store, batches: list[dict[str, Any]], *, user_id: str | None = None,
            supplier: str | None = None, reference: str | None = None) -> StockChanged:
    """Receive stock. Each item: ndc (or gtin), lot, expiry, qty, optional unit_cost, supplier."""
    if not isinstance(batches, list) or not batches:
        raise BadInput("'batches' must be a non-empty list", code="BAD_REQUEST")
    _require_text(supplier=supplier, reference=reference, user_id=user_id)
    now = store.clock()
    now_s = iso(now)
    changed: list[str] = []
    ndcs: list[str] = []
    reg = 0
    with store.transaction() as c:
        for i, item in enumerate(batches):
            if not isinstance(item, dict):
                raise BadInput(f"batch {i + 1} is not an object", code="BAD_REQUEST")
            _require_text(f"batch {i + 1}: ", supplier=item.get("supplier"))
            ident = item.get("ndc") or item.get("gtin")
            if not ident:
                raise BadInput(f"batch {i + 1} needs 'ndc' or 'gtin'", code="BAD_REQUEST")
            product = catalog.lookup(c, str(ident))
            lot = parse_lot(item.get("lot"))
            expiry = parse_expiry(item.get("expiry"))
            qty = parse_qty(item.get("qty"))
            cost = item.get("unit_cost")
            cost_cents = None if cost is None else to_cents(cost, field="unit_cost")
            if cost_cents is not None and cost_cents > MAX_UNIT_COST_CENTS:
                raise BadInput(f"batch {i + 1}: unit cost {cost} is implausibly large",
                               code="BAD_MONEY")
            bid = batch_id_for(product.ndc11, lot)
            existing = c.execute("SELECT expiry FROM batches WHERE batch_id = ?", (bid,)).fetchone()
            if existing is not None and existing[0] != expiry.isoformat():
                raise BadInput(
                    f"lot {lot} of {product.name} is already on file with expiry {existing[0]}, "
                    f"not {expiry.isoformat()}; check the carton",
                    code="LOT_EXPIRY_MISMATCH",
                )
            if existing is None:
                _announce(c, store, product, now_s)
                c.execute(
                    "INSERT INTO batches(batch_id, ndc, lot, expiry, status, status_at, supplier, "
                    "unit_cost_cents, received_at) VALUES (?, ?, ?, ?, 'active', ?, ?, ?, ?)",
                    (bid, product.ndc, lot, expiry.isoformat(), now_s,
                     item.get("supplier", supplier), cost_cents, now_s),
                )
                outbox.append_event(c, store.replica_id, "batch", now_s, {
                    "batch_id": bid, "ndc": product.ndc, "lot": lot,
                    "expiry": expiry.isoformat(), "supplier": item.get("supplier", supplier),
                    "unit_cost_cents": cost_cents, "received_at": now_s,
                })
            _record_movement(c, store, bid, "receive", qty, None, reference, user_id, now_s)
            if product.dea_schedule:
                register.append(c, store.replica_id, now_s, "receive", {
                    "ndc": product.ndc, "name": product.name, "schedule": product.dea_schedule,
                    "batch_id": bid, "lot": lot, "expiry": expiry.isoformat(), "qty": qty,
                    "supplier": item.get("supplier", supplier), "reference": reference,
                    "order_form": item.get("order_form"), "user_id": user_id,
                })
                reg += 1
            changed.append(bid)
            ndcs.append(product.ndc)
    return StockChanged(tuple(changed), tuple(dict.fromkeys(ndcs)), reg)


def _announce(c: sqlite3.Connection, store: Store, product: catalog.Product,
              now_s: str) -> None:
    """Tell the store about a product it may not know yet (imported at this terminal), in the
    receipt's transaction and before its batch event, so that other terminals and head office
    know what the new stock is. Head office's own definition of a product always wins
    (terminals and the server only add a product announced by a terminal when they lack it)."""
    cur = c.execute("UPDATE products SET announced_at = ? WHERE ndc = ? AND announced_at IS NULL",
                    (now_s, product.ndc))
    if cur.rowcount:
        outbox.append_event(c, store.replica_id, "product", now_s, product.to_json())


def _record_movement(c: sqlite3.Connection, store: Store, batch_id: str, kind: str, delta: int,
                     reason: str | None, reference: str | None, user_id: str | None,
                     now_s: str) -> None:
    mid = new_id()
    c.execute(
        "INSERT INTO movements(movement_id, created_at, replica_id, user_id, batch_id, kind, "
        "delta, reason, reference) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (mid, now_s, store.replica_id, user_id, batch_id, kind, delta, reason, reference),
    )
    _bump(c, store.replica_id, batch_id, delta)
    outbox.append_event(c, store.replica_id, "movement", now_s, {
        "movement_id": mid, "batch_id": batch_id, "kind": kind, "delta": delta,
        "reason": reason, "reference": reference, "user_id": user_id,
    })


# ---- batches --------------------------------------------------------------------------------
def get_batch(conn: sqlite3.Connection, ndc: str, lot: str) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM batches WHERE ndc = ? AND lot = ?", (ndc, lot)).fetchone()
    if row is None:
        raise NotFound(f"no lot {lot} of {ndc} on file", code="UNKNOWN_LOT", ndc=ndc, lot=lot)
    return row  # type: ignore[no-any-return]


def find_batches(conn: sqlite3.Connection, lot: str, ndc: str | None = None) -> list[sqlite3.Row]:
    if ndc:
        return [get_batch(conn, ndc, lot)]
    rows = conn.execute("SELECT * FROM batches WHERE lot = ?", (lot,)).fetchall()
    if not rows:
        raise NotFound(f"no lot {lot} on file", code="UNKNOWN_LOT", lot=lot)
    return rows


def set_status(store: Store, lot: str, status: str, *, ndc: str | None = None,
               reason: str | None = None, user_id: str | None = None) -> StockChanged:
    """Quarantine, recall or release every batch with this lot (of one product, if given)."""
    if status not in BATCH_STATUSES:
        raise BadInput(f"status {status!r} is not active/quarantined/recalled", code="BAD_STATUS")
    _require_text(reason=reason, user_id=user_id)
    now_s = iso(store.clock())
    with store.transaction() as c:
        product_ndc = catalog.lookup(c, ndc).ndc if ndc else None
        rows = find_batches(c, lot, product_ndc)
        for row in rows:
            if row["status"] == "recalled" and status != "recalled":
                raise LotUnavailable(
                    f"lot {lot} of {row['ndc']} is recalled; a recall cannot be released",
                    code="LOT_RECALLED",
                )
            c.execute(
                "UPDATE batches SET status = ?, status_at = ?, status_reason = ? "
                "WHERE batch_id = ?", (status, now_s, reason, row["batch_id"]))
            outbox.append_event(c, store.replica_id, "batch_status", now_s, {
                "batch_id": row["batch_id"], "status": status, "status_at": now_s,
                "reason": reason, "user_id": user_id,
            })
        c.execute("INSERT INTO audit_log(created_at, user_id, action, subject, detail) "
                  "VALUES (?, ?, ?, ?, ?)",
                  (now_s, user_id, f"lot.{status}", lot, json.dumps({"reason": reason})))
    return StockChanged(tuple(r["batch_id"] for r in rows), tuple({r["ndc"] for r in rows}))


def adjust(store: Store, ndc: str, lot: str, delta: int, reason: str, *,
           user_id: str | None = None, note: str | None = None) -> StockChanged:
    if reason not in ADJUST_REASONS:
        raise BadInput(f"reason {reason!r} is not one of {', '.join(ADJUST_REASONS)}",
                       code="BAD_REASON")
    _require_text(note=note, user_id=user_id)
    delta = parse_qty(delta, field="delta", allow_negative=True)
    now_s = iso(store.clock())
    with store.transaction() as c:
        product = catalog.lookup(c, ndc)
        row = get_batch(c, product.ndc, lot)
        have = on_hand(c, row["batch_id"])
        if have + delta < 0:
            raise OutOfStock(
                f"cannot remove {-delta} of lot {lot}: only {have} on hand",
                batch_id=row["batch_id"], available=have,
            )
        _record_movement(c, store, row["batch_id"], "adjust", delta, reason, note, user_id, now_s)
        reg = 0
        if product.dea_schedule:
            register.append(c, store.replica_id, now_s, "adjust", {
                "ndc": product.ndc, "name": product.name, "schedule": product.dea_schedule,
                "batch_id": row["batch_id"], "lot": lot, "qty": delta, "reason": reason,
                "note": note, "user_id": user_id,
            })
            reg = 1
    return StockChanged((row["batch_id"],), (product.ndc,), reg)


def stocktake(store: Store, counts: list[dict[str, Any]], *,
              user_id: str | None = None) -> StockChanged:
    """Counted quantities enter as deltas against what this terminal sees now."""
    now_s = iso(store.clock())
    changed: list[str] = []
    deltas: dict[str, int] = {}
    reg = 0
    with store.transaction() as c:
        for i, item in enumerate(counts):
            if not isinstance(item, dict):
                raise BadInput(f"count {i + 1} is not an object with 'ndc', 'lot' and "
                               "'counted'", code="BAD_REQUEST")
            product = catalog.lookup(c, str(item.get("ndc") or item.get("gtin") or ""))
            row = get_batch(c, product.ndc, parse_lot(item.get("lot")))
            counted = parse_qty(item.get("counted"), field="counted", allow_zero=True)
            delta = counted - on_hand(c, row["batch_id"])
            deltas[row["batch_id"]] = delta
            if delta == 0:
                continue
            _record_movement(c, store, row["batch_id"], "stocktake", delta, "COUNT",
                             None, user_id, now_s)
            if product.dea_schedule:
                register.append(c, store.replica_id, now_s, "stocktake", {
                    "ndc": product.ndc, "name": product.name, "schedule": product.dea_schedule,
                    "batch_id": row["batch_id"], "lot": row["lot"], "qty": delta,
                    "counted": counted, "user_id": user_id,
                })
                reg += 1
            changed.append(row["batch_id"])
    return StockChanged(tuple(changed), (), reg, {"deltas": deltas})


# ---- FEFO -----------------------------------------------------------------------------------
@dataclass(frozen=True, init=False)
class Allocation:
    batch_id: str
    lot: str
    expiry: str
    qty: int

    def __init__(self, batch_id: str, lot: str, expiry: str, qty: int) -> None:
        # written out: the generated __init__ of a frozen dataclass sets each field through
        # object.__setattr__, several times the cost (a sale builds one per batch it takes)
        self.__dict__.update(batch_id=batch_id, lot=lot, expiry=expiry, qty=qty)

    def to_json(self) -> dict[str, Any]:
        return {"lot": self.lot, "expiry": self.expiry, "qty": self.qty}


class SellableLot(NamedTuple):
    batch_id: str
    ndc: str
    lot: str
    expiry: str
    unit_cost_cents: int | None
    qty: int


def sellable_stock(conn: sqlite3.Connection, today: date,
                   ndcs: Sequence[str] | None = None) -> list[SellableLot]:
    """What can be sold: active, unexpired batches with stock (of these products, or all),
    in FEFO order per product (earliest expiry, then lot)."""
    params: tuple[str, ...]
    if ndcs is None:
        sql, params = _SELLABLE_ALL, (today.isoformat(),)
    elif len(ndcs) == 1:  # a sale's line: the common case, one statement text
        sql, params = _SELLABLE_ONE, (today.isoformat(), ndcs[0])
    elif not ndcs:
        return []
    else:
        sql = _SELLABLE_ALL.replace(
            ") ORDER BY", f" AND b.ndc IN ({', '.join('?' for _ in ndcs)})) ORDER BY", 1)
        params = (today.isoformat(), *ndcs)
    rows = conn.execute(sql, params).fetchall()
    # with stock only (filtered here: a "WHERE qty > 0" in SQL sums the counters twice)
    return [SellableLot(r[0], r[1], r[2], r[3], r[4], int(r[5])) for r in rows if r[5] > 0]


# a batch's stock: the sum of its counter rows, one per replica
_SELLABLE_ALL = (
    "SELECT b.batch_id, b.ndc, b.lot, b.expiry, b.unit_cost_cents, "
    "(SELECT COALESCE(SUM(c.p - c.n), 0) FROM counters c "
    "WHERE c.counter_id = 'stock:' || b.batch_id) FROM batches b "
    "WHERE (b.status = 'active' AND b.expiry >= ?) ORDER BY b.ndc, b.expiry, b.lot")
_SELLABLE_ONE = _SELLABLE_ALL.replace(") ORDER BY", " AND b.ndc = ?) ORDER BY", 1)


def sellable_batches(conn: sqlite3.Connection, ndc: str, today: date) -> list[tuple[str, str,
                                                                                      str, int]]:
    """(batch_id, lot, expiry, on_hand) of one product's sellable batches, FEFO order."""
    return [(b.batch_id, b.lot, b.expiry, b.qty) for b in sellable_stock(conn, today, [ndc])]


def allocate(conn: sqlite3.Connection, product: catalog.Product, qty: int, today: date,
             lot: str | None = None, *, taken: dict[str, int] | None = None
             ) -> list[Allocation]:
    """FEFO allocation; a named lot must exist, be sellable and hold enough.

    ``taken``: units of each batch already allocated to earlier lines of the same sale, which
    are not available again; what this call allocates is added to it."""
    taken = {} if taken is None else taken
    if lot is not None:
        row = get_batch(conn, product.ndc, lot)
        if row["expiry"] < today.isoformat():
            raise LotExpired(
                f"lot {lot} of {product.name} expired on {row['expiry']}; it cannot be sold",
                batch_id=row["batch_id"], expiry=row["expiry"],
            )
        if row["status"] != "active":
            raise LotUnavailable(
                f"lot {lot} of {product.name} is {row['status']}; it cannot be sold",
                code="LOT_" + row["status"].upper(), batch_id=row["batch_id"],
            )
        have = on_hand(conn, row["batch_id"]) - taken.get(row["batch_id"], 0)
        if have < qty:
            raise OutOfStock(
                f"lot {lot} of {product.name} has {have} on hand; {qty} requested",
                batch_id=row["batch_id"], lot=lot, available=have, requested=qty,
            )
        taken[row["batch_id"]] = taken.get(row["batch_id"], 0) + qty
        return [Allocation(row["batch_id"], lot, row["expiry"], qty)]
    # the product's sellable batches (as sellable_stock has them, read here without building
    # its SellableLot rows), less what earlier lines took: (batch_id, lot, expiry, available)
    batches: list[tuple[str, str, str, int]] = []
    for r in conn.execute(_SELLABLE_ONE, (today.isoformat(), product.ndc)).fetchall():
        if r[5] > 0:
            have = int(r[5]) - taken.get(r[0], 0)
            if have > 0:
                batches.append((r[0], r[2], r[3], have))
    out: list[Allocation] = []
    need = qty
    for bid, blot, exp, have in batches:
        take = have if have < need else need
        out.append(Allocation(bid, blot, exp, take))
        need -= take
        if need == 0:
            for a in out:
                taken[a.batch_id] = taken.get(a.batch_id, 0) + a.qty
            return out
    available = sum(b[3] for b in batches)
    where = ", ".join(f"lot {b[1]} (exp {b[2]}): {b[3]}" for b in batches) or "no sellable lot"
    raise OutOfStock(
        f"{product.name}: {qty} requested, {available} sellable ({where})",
        ndc=product.ndc, available=available, requested=qty,
        batches=[{"batch_id": b[0], "lot": b[1], "expiry": b[2], "on_hand": b[3]}
                 for b in batches],
    )


# ---- stock view -----------------------------------------------------------------------------
def stock(conn: sqlite3.Connection, today: date, ndc: str | None = None) -> list[dict[str, Any]]:
    sql = (
        "SELECT b.batch_id, b.ndc, p.name, b.lot, b.expiry, b.status, p.dea_schedule, "
        "p.india_schedule, p.cmea, b.unit_cost_cents, COALESCE(SUM(c.p - c.n), 0) AS on_hand "
        "FROM batches b JOIN products p ON p.ndc = b.ndc "
        "LEFT JOIN counters c ON c.counter_id = 'stock:' || b.batch_id "
    )
    params: tuple[Any, ...] = ()
    if ndc:
        product = catalog.lookup(conn, ndc)
        sql += "WHERE b.ndc = ? "
        params = (product.ndc,)
    sql += "GROUP BY b.batch_id ORDER BY p.name, b.expiry, b.lot"
    return [batch_row(r["batch_id"], r["ndc"], r["name"], r["lot"], r["expiry"], r["status"],
                      r["dea_schedule"], r["india_schedule"], r["cmea"], r["unit_cost_cents"],
                      r["on_hand"], today)
            for r in conn.execute(sql, params)]


def batch_row(batch_id: str, ndc: str, name: str, lot: str, expiry: str, status: str,
              dea_schedule: str | None, india_schedule: str | None, cmea: Any,
              unit_cost_cents: int | None, on_hand: int, today: date) -> dict[str, Any]:
    """One row of `pharmos stock` (and of head office's `pharmos server stock`): an active
    batch past its expiry shows as expired."""
    if status == "active" and expiry < today.isoformat():
        status = "expired"
    return {
        "batch_id": batch_id, "ndc": ndc, "name": name, "lot": lot, "expiry": expiry,
        "status": status, "on_hand": int(on_hand), "dea_schedule": dea_schedule,
        "india_schedule": india_schedule, "cmea": bool(cmea),
        "unit_cost": None if unit_cost_cents is None else fmt(int(unit_cost_cents)),
    }
