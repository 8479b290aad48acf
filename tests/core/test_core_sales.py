from __future__ import annotations

import json
from typing import Any

import pytest

from pharmacy import inventory, register
from pharmacy.compliance import ComplianceRequest, Decision, InterimGate, Reason
from pharmacy.errors import (
    BadInput,
    ComplianceDenied,
    IntegrityFailure,
    LotExpired,
    OutOfStock,
    UnknownProduct,
)
from pharmacy.ids import gtin_from_ndc, parse_hyphenated_ndc
from pharmacy.sales import Dispenser, sale_record
from pharmacy.store import Store

USER = {"id": "u-1", "role": "pharmacist"}


class AllowAll:
    engine = "test"

    def __init__(self) -> None:
        self.seen: list[ComplianceRequest] = []

    def decide(self, request: ComplianceRequest) -> Decision:
        self.seen.append(request)
        return Decision("allow", (Reason("NOTE", "fyi", None, "info"),), ("register_entry",), "t1")


def _counts(store: Store) -> tuple[int, ...]:
    c = store.conn
    return tuple(c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                 for t in ("sales", "sale_lines", "allocations", "register", "events"))


def test_otc_sale_allocates_fefo_and_totals(stocked: Store) -> None:
    result = Dispenser(stocked, InterimGate()).sell(
        {"lines": [{"ndc": "0904-6728-60", "qty": 7}], "user": USER})
    out = result.to_json()
    assert out["lines"][0]["allocations"] == [
        {"lot": "IB2606", "expiry": "2026-12-31", "qty": 5},
        {"lot": "IB2701", "expiry": "2027-01-31", "qty": 2}]
    assert (out["subtotal"], out["tax"], out["total"]) == ("52.43", "4.33", "56.76")
    rec = sale_record(stocked.conn, result.sale_id)
    assert rec["total"] == "56.76" and rec["lines"][0]["qty"] == 7
    stock = {r["lot"]: r["on_hand"] for r in inventory.stock(
        stocked.conn, stocked.clock().date(), "0904-6728-60")}
    assert stock["IB2606"] == 0 and stock["IB2701"] == 8


def test_interim_gate_refuses_restricted_and_records_the_attempt(stocked: Store) -> None:
    before = _counts(stocked)
    for ndc in ("0406-0552-01", "50580-451-01"):
        with pytest.raises(ComplianceDenied) as e:
            Dispenser(stocked, InterimGate()).sell({"lines": [{"ndc": ndc, "qty": 1}],
                                                    "user": USER})
        assert e.value.code == "POLICY_ENGINE_MISSING"
        assert e.value.exit_code == 2
    row = stocked.conn.execute(
        "SELECT decision, sale_id, reasons FROM decisions ORDER BY created_at DESC").fetchone()
    assert row[0] == "deny" and row[1] is None
    assert json.loads(row[2])[0]["code"] == "POLICY_ENGINE_MISSING"
    after = _counts(stocked)
    assert after[:4] == before[:4]  # nothing sold, nothing registered
    assert after[4] == before[4] + 2  # the decisions are queued for head office


def test_controlled_dispense_writes_register_chain(stocked: Store) -> None:
    gate = AllowAll()
    r = Dispenser(stocked, gate).sell({
        "lines": [{"ndc": "0406-0552-01", "qty": 20}, {"ndc": "0904-6728-60", "qty": 1}],
        "rx": {"rx_number": "RX1", "prescriber": {"dea": "BA1234563"}},
        "patient": {"id": "pt-1", "name": "Ana Nguyen", "address": "1 Oak St"},
        "user": USER, "jurisdiction": "US-TX"})
    assert r.register_entries == 1
    req = gate.seen[0]
    assert req.jurisdiction == "US-TX" and req.lines[0].dea_schedule == "CII"
    assert req.lines[0].allocations == ({"lot": "OX1", "expiry": "2027-03-31", "qty": 20},)
    v = register.verify(stocked.conn)
    assert v.ok and v.entries == 2  # receive + dispense
    body = json.loads(stocked.conn.execute(
        "SELECT body FROM register WHERE kind = 'dispense'").fetchone()[0])
    assert body["sale_id"] == r.sale_id and body["lot"] == "OX1" and body["qty"] == 20
    # PHI is sealed, not stored in clear
    raw = stocked.conn.execute("SELECT sealed FROM patients").fetchone()[0]
    assert b"Nguyen" not in raw
    assert "Nguyen" not in stocked.conn.execute("SELECT request FROM decisions").fetchone()[0]


@pytest.mark.parametrize("line,code,exc", [
    ({"ndc": "1111-2222-33", "qty": 1}, "UNKNOWN_PRODUCT", UnknownProduct),
    ({"gtin": "00312345678906", "qty": 1}, "UNKNOWN_PRODUCT", UnknownProduct),
    ({"gtin": "00309046728605", "qty": 1}, "GTIN_CHECK_DIGIT", BadInput),
    ({"scan": "]d2010030904672860" + "9" + "17270131" + "10IB2701", "qty": 1},
     "GTIN_CHECK_DIGIT", BadInput),
    ({"ndc": "0904-6728-60", "qty": 0}, "BAD_QUANTITY", BadInput),
    ({"ndc": "0904-6728-60", "qty": -2}, "BAD_QUANTITY", BadInput),
    ({"ndc": "0904-6728-60", "qty": 1.5}, "BAD_QUANTITY", BadInput),
    ({"ndc": "0904-6728-60", "qty": "2"}, "BAD_QUANTITY", BadInput),
    ({"ndc": "0904-6728-60", "qty": 1, "lot": "IB2510"}, "EXPIRED_LOT", LotExpired),
    ({"ndc": "0904-6728-60", "qty": 16}, "OUT_OF_STOCK", OutOfStock),
    ({"ndc": "12-34", "qty": 1}, "BAD_NDC", BadInput),
])
def test_bad_lines_are_refused_with_codes(stocked: Store, line: dict[str, Any], code: str,
                                          exc: type[Exception]) -> None:
    before = _counts(stocked)
    with pytest.raises(exc) as e:
        Dispenser(stocked, AllowAll()).sell({"lines": [line], "user": USER})
    assert getattr(e.value, "code", None) == code
    assert _counts(stocked) == before


def test_out_of_stock_names_batches_and_available(stocked: Store) -> None:
    with pytest.raises(OutOfStock) as e:
        Dispenser(stocked, AllowAll()).sell({"lines": [{"ndc": "0904-6728-60", "qty": 16}],
                                             "user": USER})
    d = e.value.details
    assert d["available"] == 15 and d["requested"] == 16
    assert {b["lot"] for b in d["batches"]} == {"IB2606", "IB2701"}
    with pytest.raises(OutOfStock) as e2:
        Dispenser(stocked, AllowAll()).sell(
            {"lines": [{"ndc": "0904-6728-60", "qty": 6, "lot": "IB2606"}], "user": USER})
    assert e2.value.details["batch_id"] == "00904672860:IB2606"
    assert e2.value.details["available"] == 5


def test_scan_with_lot_and_expiry(stocked: Store) -> None:
    gtin = gtin_from_ndc(parse_hyphenated_ndc("0904-6728-60"))
    scan = f"]d201{gtin}17270131" + "10IB2701\x1d21SER123"
    r = Dispenser(stocked, AllowAll()).sell({"lines": [{"scan": scan, "qty": 1}], "user": USER})
    assert r.lines[0].allocations[0].lot == "IB2701"
    expired = f"]d201{gtin}17251031" + "10IB2510"
    with pytest.raises(LotExpired):
        Dispenser(stocked, AllowAll()).sell({"lines": [{"scan": expired, "qty": 1}],
                                             "user": USER})
    other = gtin_from_ndc(parse_hyphenated_ndc("0093-0058-01"))
    with pytest.raises(BadInput) as e:
        Dispenser(stocked, AllowAll()).sell(
            {"lines": [{"scan": f"01{other}10AM1", "ndc": "0904-6728-60", "qty": 1}],
             "user": USER})
    assert e.value.code == "DSCSA_PRODUCT_MISMATCH"


def test_request_shape_errors(stocked: Store) -> None:
    d = Dispenser(stocked, AllowAll())
    for req, code in [([], "BAD_REQUEST"), ({"lines": []}, "BAD_REQUEST"),
                      ({"lines": [{"qty": 1}]}, "BAD_REQUEST"),
                      ({"lines": [{"ndc": "0904-6728-60", "qty": 1}], "jurisdiction": "XX"},
                       "BAD_JURISDICTION"),
                      ({"lines": [{"ndc": "0904-6728-60", "qty": 1}], "at": "yesterday"},
                       "BAD_TIME")]:
        with pytest.raises(BadInput) as e:
            d.sell(req)
        assert e.value.code == code


def test_check_decides_without_writing(stocked: Store) -> None:
    before = _counts(stocked)
    decision = Dispenser(stocked, InterimGate()).check(
        {"lines": [{"ndc": "0406-0552-01", "qty": 1}]})
    assert decision.decision == "deny"
    assert _counts(stocked) == before


class Overridden:
    """Allows, or refuses, with one rule a pharmacist overrode."""

    engine = "test"

    def __init__(self, outcome: str) -> None:
        self.outcome = outcome

    def decide(self, request: ComplianceRequest) -> Decision:
        return Decision(self.outcome, (  # type: ignore[arg-type]
            Reason("RULE_X", "overridden", "cite", "info", True, "r-x", 1, "ph-ana"),),
            ("register_entry", "task:notify_prescriber"), "t2")


def test_allowed_sale_keeps_its_decision_readable_as_before(stocked: Store) -> None:
    d = Dispenser(stocked, Overridden("allow"))
    sold = d.sell({"lines": [{"ndc": "0904-6728-60", "qty": 1}], "user": USER,
                   "rx": {"rx_number": "RX7"}, "offline": True, "note": "n1"})
    c = stocked.conn
    row = dict(c.execute("SELECT * FROM decisions WHERE sale_id = ?",
                         (sold.sale_id,)).fetchone())
    assert row["decision_id"] == sold.decision_id and row["decision"] == "allow"
    assert row["created_at"] == "2026-11-02T15:00:00.000000Z"
    assert json.loads(row["reasons"]) == [r.to_json() for r in sold.decision.reasons]
    assert json.loads(row["obligations"]) == ["register_entry", "task:notify_prescriber"]
    assert row["bundle_version"] == "t2" and row["user_id"] == USER["id"]
    # the request keeps what the sale row does not hold
    assert json.loads(row["request"]) == {"at": "2026-11-02T15:00:00+00:00", "offline": True,
                                          "user": USER, "extra": {"note": "n1"}}
    assert c.execute("SELECT COUNT(*) FROM refusals").fetchone()[0] == 0
    # the override is audited, the offline units are counted, the task is open
    audit = c.execute("SELECT user_id, subject, detail FROM audit_log "
                      "WHERE action = 'policy.override'").fetchall()
    assert [tuple(a)[:2] for a in audit] == [("ph-ana", sold.decision_id)]
    assert json.loads(audit[0][2]) == {
        "code": "RULE_X", "rule_id": "r-x", "message": "overridden", "sale_id": sold.sale_id,
        "requested_by": USER["id"], "bundle_version": "t2"}
    assert tuple(c.execute("SELECT day, ndc, units FROM offline_usage").fetchone()) == (
        "2026-11-02", "0904-6728-60", 1)
    from policy_cache.tasks import tasks

    assert [(t["task"], t["sale_id"], t["rx_number"]) for t in tasks(stocked)] == [
        ("task:notify_prescriber", sold.sale_id, "RX7")]


def test_refused_attempt_is_recorded_with_its_request(stocked: Store) -> None:
    with pytest.raises(ComplianceDenied):
        Dispenser(stocked, Overridden("deny")).sell(
            {"lines": [{"ndc": "0904-6728-60", "qty": 1}], "user": USER})
    c = stocked.conn
    row = dict(c.execute("SELECT * FROM decisions").fetchone())
    assert row["decision"] == "deny" and row["sale_id"] is None
    assert json.loads(row["request"])["lines"][0]["ndc"] == "0904-6728-60"
    assert [r[0] for r in c.execute("SELECT decision_id FROM refusals")] == [row["decision_id"]]
    detail = c.execute("SELECT detail FROM audit_log WHERE action = 'policy.override'"
                       ).fetchone()[0]
    assert json.loads(detail)["sale_id"] is None
    assert c.execute("SELECT COUNT(*) FROM offline_usage").fetchone()[0] == 0


def test_sale_and_register_events_are_rebuilt_from_their_rows(stocked: Store) -> None:
    """A sale's outbox event and its register entry's refer to their rows (``@key``); the body
    rebuilt for sync holds what the sale event always held, and the register entry's row."""
    from pharmacy import outbox

    rx = {"rx_number": "RX7", "written_on": "2026-11-01", "prescriber": {"dea": "BA1234563"},
          "patient": {"name": "not in the event"}}
    r = Dispenser(stocked, AllowAll()).sell({
        "lines": [{"ndc": "0406-0552-01", "qty": 20}, {"ndc": "0904-6728-60", "qty": 7}],
        "rx": rx, "patient": {"id": "pt-1", "name": "Ana Nguyen"}, "user": USER,
        "jurisdiction": "US-TX", "offline": True})
    c = stocked.conn
    rows = [dict(e) for e in c.execute(
        "SELECT event_id, replica_id, kind, body FROM events WHERE kind IN ('sale', 'register') "
        "ORDER BY seq DESC LIMIT 2")]
    assert [(e["kind"], e["body"]) for e in rows] == [
        ("sale", "@" + r.sale_id), ("register", "@2")]  # after the receipt's entry (seq 1)
    sale_ev, reg_ev = outbox.with_bodies(c, rows)
    assert json.loads(sale_ev["body"]) == {
        "sale_id": r.sale_id, "created_at": c.execute(
            "SELECT created_at FROM sales WHERE sale_id = ?", (r.sale_id,)).fetchone()[0],
        "user_id": "u-1", "kind": "rx", "jurisdiction": "US-TX", "patient_id": "pt-1",
        "decision_id": r.decision_id,
        "decision": {"decision": "allow", "reasons": [Reason("NOTE", "fyi", None, "info")
                                                      .to_json()],
                     "obligations": ["register_entry"], "bundle_version": "t1",
                     "engine": "none", "offline": True},
        "subtotal_cents": r.subtotal_cents, "tax_cents": r.tax_cents,
        "total_cents": r.total_cents,
        "rx": {k: v for k, v in rx.items() if k != "patient"},
        "lines": [{"line_no": 1, "ndc": "0406-0552-01", "qty": 20, "unit_price_cents": 45},
                  {"line_no": 2, "ndc": "0904-6728-60", "qty": 7, "unit_price_cents": 749}],
        "allocations": [  # FEFO order, as allocated
            {"line_no": 1, "batch_id": "00406055201:OX1", "lot": "OX1", "expiry": "2027-03-31",
             "qty": 20},
            {"line_no": 2, "batch_id": "00904672860:IB2606", "lot": "IB2606",
             "expiry": "2026-12-31", "qty": 5},
            {"line_no": 2, "batch_id": "00904672860:IB2701", "lot": "IB2701",
             "expiry": "2027-01-31", "qty": 2}],
    }
    # compact JSON, as every recorded body (what sync protocol 2's columns rely on)
    assert sale_ev["body"] == json.dumps(json.loads(sale_ev["body"]), separators=(",", ":"))
    row = c.execute("SELECT replica_id, seq, entry_id, created_at, kind, ndc, qty, body, "
                    "prev_hash, hash FROM register WHERE seq = 2").fetchone()
    assert reg_ev["body"] == json.dumps(dict(row), separators=(",", ":"))
    # a reference to a row that is not on file is an integrity failure, never an empty body
    with pytest.raises(IntegrityFailure, match="not on file") as e:
        outbox.with_bodies(c, [{"event_id": "e", "replica_id": "r", "kind": "sale",
                                "body": "@no-such-sale"}])
    assert e.value.code == "OUTBOX_REFERENCE_MISSING" and e.value.exit_code == 3


@pytest.mark.parametrize("lot", [None, "IB2701"])
def test_the_same_product_on_two_lines_never_sells_the_same_units_twice(
        stocked: Store, lot: str | None) -> None:
    """15 sellable ibuprofen (10 of them lot IB2701): two lines of 10 are more than there is."""
    line = {"ndc": "0904-6728-60", "qty": 10, **({"lot": lot} if lot else {})}
    before = _counts(stocked)
    with pytest.raises(OutOfStock) as e:
        Dispenser(stocked, AllowAll()).sell({"lines": [line, dict(line)], "user": USER})
    assert e.value.details["available"] == (0 if lot else 5)
    assert _counts(stocked) == before
    # within stock, the second line takes what the first left, FEFO
    r = Dispenser(stocked, AllowAll()).sell({"lines": [
        {"ndc": "0904-6728-60", "qty": 4}, {"gtin": gtin_from_ndc(parse_hyphenated_ndc(
            "0904-6728-60")), "qty": 3}], "user": USER})
    assert [[(a.lot, a.qty) for a in ln.allocations] for ln in r.lines] == [
        [("IB2606", 4)], [("IB2606", 1), ("IB2701", 2)]]
    stock = {s["lot"]: s["on_hand"] for s in inventory.stock(
        stocked.conn, stocked.clock().date(), "0904-6728-60")}
    assert stock == {"IB2606": 0, "IB2701": 8, "IB2510": 7}
