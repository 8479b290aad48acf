"""The Rx state machine over a real store: intake -> verified -> filled (scan-verify) ->
labeled -> will-call -> picked up, with role checks from the core."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from rxtestlib import datamatrix, gtin_of, rx_data

from pharmacy import catalog, checkout, rx, users
from pharmacy.errors import BadInput, ComplianceDenied, LotExpired, NotFound
from pharmacy.inventory import on_hand, receive
from pharmacy.phi import FileKeyProvider
from pharmacy.sales import Dispenser
from pharmacy.store import Store

AMOX = "0093-0058-01"


def _intake(store: Store, keys: FileKeyProvider, who: dict[str, Any], **over: Any) -> str:
    return rx.intake(store, keys, who, rx_data(**over)).fill_ids[0]


def test_full_workflow(dispenser: Dispenser, keys: FileKeyProvider,
                       people: dict[str, dict[str, Any]]) -> None:
    store = dispenser.store
    ch = rx.intake(store, keys, people["technician"], rx_data())
    fid = ch.fill_ids[0]
    assert ch.state == "intake" and ch.details["rx_number"].startswith("100001-")
    with pytest.raises(users.PermissionDenied):
        rx.verify(store, people["technician"], fid)
    rx.verify(store, people["pharmacist"], fid)
    before = on_hand(store.conn, "00093005801:AM1")
    scan = datamatrix(gtin_of(store, AMOX), date(2027, 6, 30), "AM1", "SN1")
    res = rx.fill(dispenser, keys, people["technician"], fid, scan)
    assert res.changed.state == "filled"
    assert on_hand(store.conn, "00093005801:AM1") == before - 30
    sale = store.conn.execute("SELECT kind, rx_number, total_cents FROM sales").fetchone()
    assert sale["kind"] == "rx" and sale["rx_number"] == ch.details["rx_number"]
    _, label = rx.label(store, keys, people["technician"], fid)
    assert label["patient_name"] == "Ana Nguyen" and label["lot"] == "AM1"
    assert label["refills_left"] == 2 and label["warning"] is None and label["copy"] == 1
    _, again = rx.label(store, keys, people["technician"], fid)  # reprint keeps the state
    assert again["copy"] == 2
    rx.to_will_call(store, people["technician"], fid, "b-12")
    with pytest.raises(users.PermissionDenied) as e:
        rx.pickup(store, people["cashier"], fid, counseling="accepted")
    assert e.value.code == "COUNSEL_NEEDS_PHARMACIST"
    total = rx.sale_total_cents(store.conn, fid)
    assert total == 30 * 12
    done = rx.pickup(store, people["cashier"], fid, counseling="declined",
                     tender=checkout.Tender("cash", 500))
    assert done.state == "picked_up" and done.details["tender"]["change"] == "1.40"
    actions = [e["action"] for e in rx.events(store.conn, fid)]
    assert actions == ["intake", "verify", "fill", "label", "label", "will_call", "pickup"]
    # the next fill of the same prescription
    nxt = rx.refill(store, people["technician"], ch.rx_ids[0])
    assert nxt.state == "intake"
    with pytest.raises(rx.RxRefused) as e2:
        rx.refill(store, people["technician"], ch.rx_ids[0])
    assert e2.value.code == "RX_FILL_OPEN"


def test_a_cancelled_fill_is_started_again_under_its_number(
        dispenser: Dispenser, keys: FileKeyProvider, people: dict[str, dict[str, Any]]) -> None:
    """Cancelling a fill before it is filled does not use up the refill: starting the next
    fill reopens it (the prescription's fill numbers are unique), verified afresh."""
    store = dispenser.store
    tech, ph = people["technician"], people["pharmacist"]
    ch = rx.intake(store, keys, tech, rx_data(refills_authorized=1))
    first, rx_id = ch.fill_ids[0], ch.rx_ids[0]
    rx.verify(store, ph, first)
    rx.cancel(store, tech, first, "patient will call back")
    again = rx.refill(store, tech, rx_id)  # the original fill, number 0, once more
    assert again.fill_ids == (first,) and again.state == "intake"
    row = store.conn.execute("SELECT refill_number, state, verified_by, dispense_ndc FROM fills "
                             "WHERE fill_id = ?", (first,)).fetchone()
    assert tuple(row) == (0, "intake", None, None)  # to be verified again
    rx.verify(store, ph, first)
    scan = datamatrix(gtin_of(store, AMOX), date(2027, 6, 30), "AM1", "SN1")
    rx.fill(dispenser, keys, tech, first, scan)
    rx.label(store, keys, tech, first)
    rx.to_will_call(store, tech, first, "A1")
    rx.pickup(store, ph, first, counseling="declined")
    second = rx.refill(store, tech, rx_id).fill_ids[0]
    rx.cancel(store, tech, second, "duplicate")
    assert rx.refill(store, tech, rx_id).fill_ids == (second,)  # refill 1, not 2
    rx.cancel(store, tech, second, "patient moved")
    assert [e["action"] for e in rx.events(store.conn, second)] == [
        "refill", "cancel", "refill", "cancel"]
    assert [e["action"] for e in rx.events(store.conn, first)][:4] == [
        "intake", "verify", "cancel", "refill"]
    assert store.conn.execute("SELECT COUNT(*) FROM fills WHERE rx_id = ?", (rx_id,)
                              ).fetchone()[0] == 2
    assert rx.refill(store, tech, rx_id).fill_ids == (second,)  # refill 1 is still owed
    with pytest.raises(rx.RxRefused) as e:
        rx.refill(store, tech, rx_id)
    assert e.value.code == "RX_FILL_OPEN"


def _to_will_call(dispenser: Dispenser, keys: FileKeyProvider,
                  people: dict[str, dict[str, Any]], serial: str) -> tuple[str, str]:
    store = dispenser.store
    ch = rx.intake(store, keys, people["technician"], rx_data(refills_authorized=1))
    fid = ch.fill_ids[0]
    rx.verify(store, people["pharmacist"], fid)
    rx.fill(dispenser, keys, people["technician"], fid,
            datamatrix(gtin_of(store, AMOX), date(2027, 6, 30), "AM1", serial))
    rx.label(store, keys, people["technician"], fid)
    rx.to_will_call(store, people["technician"], fid, "B-2")
    return fid, ch.rx_ids[0]


def test_return_to_stock(dispenser: Dispenser, keys: FileKeyProvider,
                         people: dict[str, dict[str, Any]]) -> None:
    """A fill never picked up goes back on the shelf: units back to the lot in the same
    transaction as the fill's new state, its sale's return recorded and synced, the refill
    not used up, and the prescription's fill history as if it had not been dispensed."""
    store = dispenser.store
    ph, tech = people["pharmacist"], people["technician"]
    before = on_hand(store.conn, "00093005801:AM1")
    fid, rx_id = _to_will_call(dispenser, keys, people, "SN7")
    sale_id = store.conn.execute("SELECT sale_id FROM fills WHERE fill_id = ?",
                                 (fid,)).fetchone()[0]
    rx_number = rx.fill_rows(store, keys, ph, [fid])[fid]["rx_number"]
    assert on_hand(store.conn, "00093005801:AM1") == before - 30
    assert len(dispenser.history.rx_fill_history(rx_number)) == 1
    with pytest.raises(users.PermissionDenied):
        rx.return_to_stock(store, tech, fid, "not picked up")
    with pytest.raises(BadInput) as e:
        rx.return_to_stock(store, ph, fid, "  ")
    assert e.value.code == "REASON_REQUIRED"
    ch = rx.return_to_stock(store, ph, fid, "not picked up in 14 days")
    assert ch.state == "returned" and ch.details == {"sale_id": sale_id, "bin": "B-2"}
    assert ch.stock is not None and ch.stock.batch_ids == ("00093005801:AM1",)
    assert on_hand(store.conn, "00093005801:AM1") == before
    c = store.conn
    assert tuple(c.execute("SELECT user_id, reason, fill_id, allocations FROM sale_returns "
                           "WHERE sale_id = ?", (sale_id,)).fetchone()) == (
        ph["id"], "not picked up in 14 days", fid, '[["00093005801:AM1","AM1","2027-06-30",30]]')
    body = json.loads(c.execute("SELECT body FROM events WHERE kind = 'sale_return'"
                                ).fetchone()[0])
    assert body["sale_id"] == sale_id and body["total_cents"] == 30 * 12
    assert c.execute("SELECT COUNT(*) FROM register WHERE kind = 'return'").fetchone()[0] == 0
    assert dispenser.history.rx_fill_history(rx_number) == []  # as if never dispensed
    assert [e["action"] for e in rx.events(c, fid)][-1] == "return_to_stock"
    with pytest.raises(rx.RxRefused) as e2:  # once
        rx.return_to_stock(store, ph, fid, "again")
    assert e2.value.code == "RX_WRONG_STATE"
    # the same fill (refill 0) starts again and can be filled from the returned units
    assert rx.refill(store, tech, rx_id).fill_ids == (fid,)
    row = c.execute("SELECT state, sale_id, lot, bin, label_count FROM fills WHERE fill_id = ?",
                    (fid,)).fetchone()
    assert tuple(row) == ("intake", None, None, None, 0)
    rx.verify(store, ph, fid)
    rx.fill(dispenser, keys, tech, fid,
            datamatrix(gtin_of(store, AMOX), date(2027, 6, 30), "AM1", "SN8"))
    assert len(dispenser.history.rx_fill_history(rx_number)) == 1


def test_return_to_stock_only_before_handover(dispenser: Dispenser, keys: FileKeyProvider,
                                              people: dict[str, dict[str, Any]]) -> None:
    """Picked up, paid or not yet filled: nothing to put back, and nothing changes."""
    from pharmacy import sales

    store = dispenser.store
    ph = people["pharmacist"]
    fid, _ = _to_will_call(dispenser, keys, people, "SN1")
    rx.pickup(store, ph, fid, counseling="declined", tender=checkout.Tender("cash", 500))
    with pytest.raises(rx.RxRefused) as e:
        rx.return_to_stock(store, ph, fid, "changed mind")
    assert e.value.code == "RX_WRONG_STATE"
    sale_id = store.conn.execute("SELECT sale_id FROM fills WHERE fill_id = ?",
                                 (fid,)).fetchone()[0]
    stock = on_hand(store.conn, "00093005801:AM1")
    with pytest.raises(sales.SaleNotReturnable) as e2, store.transaction() as c:
        sales.return_sale(c, store.replica_id, sale_id, ph["id"], "refund", "2026-11-27T00:00:00Z")
    assert e2.value.code == "SALE_PAID"
    with pytest.raises(NotFound), store.transaction() as c:
        sales.return_sale(c, store.replica_id, "no-such-sale", ph["id"], "x", "t")
    assert on_hand(store.conn, "00093005801:AM1") == stock
    assert store.conn.execute("SELECT COUNT(*) FROM sale_returns").fetchone()[0] == 0
    intake = _intake(store, keys, people["technician"])
    with pytest.raises(rx.RxRefused):
        rx.return_to_stock(store, ph, intake, "not filled yet")


def test_scan_verify_blocks_wrong_product_wrong_lot_and_expired(
        dispenser: Dispenser, keys: FileKeyProvider, people: dict[str, dict[str, Any]]) -> None:
    store = dispenser.store
    fid = _intake(store, keys, people["pharmacist"])
    rx.verify(store, people["pharmacist"], fid)
    tech = people["technician"]
    wrong = datamatrix(gtin_of(store, "0904-6728-60"), date(2027, 1, 31), "IB2701")
    with pytest.raises(BadInput) as e:
        rx.fill(dispenser, keys, tech, fid, wrong)
    assert e.value.code == "DSCSA_PRODUCT_MISMATCH"
    with pytest.raises(BadInput) as e:
        rx.fill(dispenser, keys, tech, fid, "]d201" + gtin_of(store, AMOX))
    assert e.value.code == "FILL_SCAN_NO_LOT"
    with pytest.raises(NotFound) as e3:
        rx.fill(dispenser, keys, tech, fid,
                datamatrix(gtin_of(store, AMOX), date(2027, 6, 30), "NOPE"))
    assert e3.value.code == "UNKNOWN_LOT"
    receive(store, [{"ndc": AMOX, "lot": "OLD1", "expiry": "2026-10-31", "qty": 100}])
    with pytest.raises(LotExpired) as e4:
        rx.fill(dispenser, keys, tech, fid,
                datamatrix(gtin_of(store, AMOX), date(2026, 10, 31), "OLD1"))
    assert e4.value.code == "EXPIRED_LOT"
    assert store.conn.execute("SELECT state FROM fills").fetchone()[0] == "verified"
    assert store.conn.execute("SELECT COUNT(*) FROM sales").fetchone()[0] == 0


def test_compliance_refusal_keeps_decision_and_fill_verified(
        dispenser: Dispenser, keys: FileKeyProvider, people: dict[str, dict[str, Any]]) -> None:
    store = dispenser.store  # the interim gate refuses every controlled item
    fid = _intake(store, keys, people["pharmacist"], ndc="0406-0552-01", refills_authorized=3,
                  quantity=20)
    assert rx.events(store.conn, fid)[0]["detail"]["warnings"][0]["code"] == \
        "DEA_CII_REFILLS_IGNORED"
    rx.verify(store, people["pharmacist"], fid)
    scan = datamatrix(gtin_of(store, "0406-0552-01"), date(2027, 3, 31), "OX1")
    with pytest.raises(ComplianceDenied) as e:
        rx.fill(dispenser, keys, people["pharmacist"], fid, scan)
    assert e.value.code == "POLICY_ENGINE_MISSING"
    assert store.conn.execute("SELECT decision FROM decisions").fetchone()[0] == "deny"
    assert store.conn.execute("SELECT state FROM fills").fetchone()[0] == "verified"
    assert rx.events(store.conn, fid)[-1]["action"] == "fill.refused"


def test_intake_validation(store: Store, keys: FileKeyProvider,
                           people: dict[str, dict[str, Any]]) -> None:
    ph = people["pharmacist"]
    with pytest.raises(users.PermissionDenied):
        rx.intake(store, keys, people["cashier"], rx_data())
    with pytest.raises(BadInput) as e:
        rx.intake(store, keys, ph, rx_data(prescriber={"name": "Dr. Maria Alvarez",
                                                       "dea": "BA1234564"}))
    assert e.value.code == "DEA_PRESCRIBER_INVALID"
    with pytest.raises(BadInput) as e:
        rx.intake(store, keys, ph, rx_data(ndc="0406-0552-01",
                                           prescriber={"name": "Dr. Maria Alvarez",
                                                       "address": "1200 Main St"}))
    assert e.value.code == "DEA_RX_MISSING_FIELD:prescriber.dea"
    with pytest.raises(BadInput) as e:
        rx.intake(store, keys, ph, rx_data(written_on="2027-01-01"))
    assert e.value.code == "BAD_DATE"
    with pytest.raises(BadInput) as e:
        rx.intake(store, keys, ph, rx_data(daw=12))
    assert e.value.code == "BAD_RX_FIELD"
    with pytest.raises(BadInput):
        rx.intake(store, keys, ph, rx_data(quantity=0))


def test_returning_patient_found_by_keyed_index(store: Store, keys: FileKeyProvider,
                                               people: dict[str, dict[str, Any]]) -> None:
    ph = people["pharmacist"]
    a = rx.intake(store, keys, ph, rx_data())
    b = rx.intake(store, keys, ph, rx_data(patient={"name": "ana  NGUYEN",
                                                    "birth_date": "1980-04-12"}))
    assert a.details["patient_id"] == b.details["patient_id"]
    assert rx.find_patient(store, keys, ph["id"], "Ana Nguyen", "1980-04-12") == \
        a.details["patient_id"]
    assert rx.find_patient(store, keys, ph["id"], "Ana Nguyen", "1980-04-13") is None
    raw = store.conn.execute("SELECT lookup FROM patient_index").fetchone()[0]
    assert "Nguyen" not in raw and len(raw) == 64


def test_substitution_daw_and_equivalence(store: Store, keys: FileKeyProvider,
                                          people: dict[str, dict[str, Any]]) -> None:
    catalog.upsert_products(store, [catalog.product_from_json(
        {"ndc": "0781-2613-01", "name": "Amoxicillin 500 mg capsules (Sandoz)",
         "ingredients": ["amoxicillin"], "strength": "500 mg", "price": "0.10",
         "rx_only": True, "manufacturer": "Sandoz", "unit": "capsule"})])
    ph = people["pharmacist"]
    fid = _intake(store, keys, ph, daw=1)
    with pytest.raises(rx.RxRefused) as e:
        rx.verify(store, ph, fid, dispense_ndc="0781-2613-01")
    assert e.value.code == "DAW1_NO_SUBSTITUTION"
    fid2 = _intake(store, keys, ph)
    with pytest.raises(rx.RxRefused) as e2:
        rx.verify(store, ph, fid2, dispense_ndc="0904-6728-60")
    assert e2.value.code == "TE_NOT_EQUIVALENT"
    rx.verify(store, ph, fid2, dispense_ndc="0781-2613-01")
    rows = rx.fill_rows(store, keys, ph, [fid2])
    assert rows[fid2]["dispense_ndc"] == "0781-2613-01"
    assert rows[fid2]["substitution"] == {"from": AMOX, "to": "0781-2613-01"}


def test_interaction_alerts_need_acknowledgement(store: Store, keys: FileKeyProvider,
                                                people: dict[str, dict[str, Any]]) -> None:
    ph = people["pharmacist"]
    fid = _intake(store, keys, ph)
    alerts = [{"code": "DDI", "with": "warfarin", "severity": "major",
               "message": "bleeding risk"}]
    with pytest.raises(rx.RxRefused) as e:
        rx.verify(store, ph, fid, alerts=alerts)
    assert e.value.code == "INTERACTION_UNACKNOWLEDGED"
    with pytest.raises(rx.RxRefused) as e:
        rx.verify(store, ph, fid, alerts=alerts, acknowledged=["DDI:warfarin"])
    assert e.value.code == "INTERACTION_REASON_REQUIRED"
    rx.verify(store, ph, fid, alerts=alerts, acknowledged=["DDI:warfarin"],
              override_reason="prescriber consulted, INR monitored")
    assert rx.fill_rows(store, keys, ph, [fid])[fid]["alerts"][0]["acknowledged"] is True


def test_queue_and_minimum_necessary_rows(store: Store, keys: FileKeyProvider,
                                          people: dict[str, dict[str, Any]]) -> None:
    a = _intake(store, keys, people["pharmacist"])
    b = _intake(store, keys, people["pharmacist"])
    rx.cancel(store, people["technician"], b, "duplicate")
    assert rx.queue(store.conn) == [a]
    assert rx.queue(store.conn, ["cancelled"]) == [b]
    cashier_row = rx.fill_rows(store, keys, people["cashier"], [a])[a]
    assert set(cashier_row) <= {*rx.PICKUP_FIELDS, "state_label", "updated_at"}
    full = rx.fill_rows(store, keys, people["technician"], [a])[a]
    assert full["birth_date"] == "1980-04-12" and full["directions"]
    reads = store.conn.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'phi.read'"
                               ).fetchone()[0]
    assert reads == 2
    with pytest.raises(users.PermissionDenied) as e:
        rx.med_history(store, keys, people["cashier"], full["patient_id"])
    assert e.value.code == "HIPAA_MIN_NECESSARY"
    hist = rx.med_history(store, keys, people["pharmacist"], full["patient_id"])
    assert [f["state"] for f in hist["fills"]] == ["cancelled", "intake"] or \
        sorted(f["state"] for f in hist["fills"]) == ["cancelled", "intake"]
    assert rx.find_fill(store.conn, full["rx_number"]) == a


def test_wrong_state_transitions(store: Store, keys: FileKeyProvider,
                                 people: dict[str, dict[str, Any]]) -> None:
    fid = _intake(store, keys, people["pharmacist"])
    with pytest.raises(rx.RxRefused) as e:
        rx.to_will_call(store, people["technician"], fid, "A1")
    assert e.value.code == "RX_WRONG_STATE"
    with pytest.raises(rx.RxRefused):
        rx.pickup(store, people["pharmacist"], fid, counseling="declined")
    with pytest.raises(BadInput) as e2:
        rx.pickup(store, people["pharmacist"], fid, counseling="maybe")
    assert e2.value.code == "COUNSELING_REQUIRED"
