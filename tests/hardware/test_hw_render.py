"""Receipt, Rx label and test page layouts, checked through the ESC/POS parser."""

from __future__ import annotations

from typing import Any

import pytest

from hardware.config import HardwareConfig, PrinterConfig, ReceiptConfig
from hardware.escpos_parse import parse
from hardware.render import (
    H1_WARNING,
    Layout,
    render_document,
    render_receipt,
    render_rx_label,
    render_test_page,
    rx_mark,
)
from pharmacy import print_queue
from pharmacy.sales import sale_record
from pharmacy.store import Store

SALE_ID = "0190f3c2-aaaa-7bbb-8ccc-1234567890ab"
SALE: dict[str, Any] = {
    "sale_id": SALE_ID, "created_at": "2026-11-02T15:00:00Z", "user_id": "u-cashier",
    "subtotal": "52.43", "tax": "4.33", "total": "56.76",
    "lines": [{"ndc": "0904-6728-60", "name": "Ibuprofen 200 mg tablets 100s",
               "strength": "200 mg", "qty": 7, "unit_price": "7.49", "amount": "52.43",
               "allocations": [{"lot": "IB2606", "expiry": "2026-12-31", "qty": 5},
                               {"lot": "IB2701", "expiry": "2027-01-31", "qty": 2}]}],
}
LABEL: dict[str, Any] = {
    "rx_number": "RX700001", "date": "2026-11-02", "patient": "Ana Nguyen",
    "drug": "Amoxicillin 500 mg capsules", "strength": "500 mg", "ndc": "0093-0058-01",
    "directions": "Take 1 capsule by mouth three times a day for 7 days", "quantity": 21,
    "unit": "capsule", "refills_left": 0, "prescriber": "Dr. Maria Alvarez",
    "dea_schedule": None, "india_schedule": None, "ndps": False,
    "aux_warnings": ["Finish all of this medicine"], "manufacturer": "Teva",
    "lots": [{"lot": "AM1", "expiry": "2027-06-30", "qty": 21}],
}


def layout(width: int, **kw: Any) -> Layout:
    cfg = PrinterConfig(width=width, **kw)
    return Layout.from_config(cfg, ReceiptConfig(header=("Main Street Pharmacy",
                                                         "12 Main St, Austin TX"),
                                                 footer=("Thank you",)))


@pytest.mark.parametrize("width,cols", [(80, 42), (58, 32)])
def test_receipt_layout(width: int, cols: int) -> None:
    lay = layout(width, drawer_pin=2)
    assert lay.columns == cols
    doc = parse(render_receipt(SALE, lay, kick=True, store_id="store-1"))
    assert all(len(t) <= cols for t in doc.texts), [t for t in doc.texts if len(t) > cols]
    head = doc.line_with("Main Street Pharmacy")
    assert head.align == "center" and head.bold and head.height == 2
    assert doc.line_with("12 Main St").align == "center"
    for needle in ("Lot IB2606  Exp 2026-12-31 x5", "Lot IB2701  Exp 2027-01-31 x2",
                   "7 x Ibuprofen", "NDC 0904-6728-60", "Store", "2026-11-02 15:00 UTC"):
        doc.line_with(needle)
    total = doc.line_with("TOTAL")
    assert total.bold and total.text.endswith("56.76") and len(total.text) == cols
    assert doc.line_with("Tax").text.endswith("4.33")
    assert doc.line_with("Subtotal").text.endswith("52.43")
    assert doc.qr_codes == [SALE_ID] and doc.cuts == ["full"] and doc.kicks == [2]
    assert doc.index_of("kick") < doc.index_of("qr") < doc.index_of("cut")
    assert doc.events[-1] == ("cut", "full")
    assert doc.line_with("Thank you").align == "center"
    assert doc.unknown == [] and doc.trailing == b""


def test_reprint_is_marked_and_never_kicks() -> None:
    doc = parse(render_receipt(SALE, layout(80, drawer_pin=5), reprint=True, kick=False))
    assert doc.line_with("REPRINT").bold and doc.kicks == []
    pin5 = parse(render_receipt(SALE, layout(80, drawer_pin=5), kick=True))
    assert pin5.kicks == [5]
    no_drawer = parse(render_receipt(SALE, layout(80), kick=True))
    assert no_drawer.kicks == []


def test_profile_without_qr_or_cutter_prints_the_id_and_feeds() -> None:
    lay = layout(58, profile="POS-5890")
    data = render_receipt(SALE, lay)
    doc = parse(data, profile="POS-5890")
    assert b"\x1d(k" not in data and doc.qr_codes == [] and doc.cuts == []
    assert "".join(doc.texts).count(SALE_ID) == 2  # in place of the QR, and under it
    assert lay.columns == 32


def test_code_page_from_config() -> None:
    sale = {**SALE, "lines": [{**SALE["lines"][0], "name": "Crème 5 € tube"}]}
    data = render_receipt(sale, layout(80, profile="TM-T88V", code_page="CP858"))
    assert data.startswith(b"\x1b@\x1bt\x13")
    assert parse(data, profile="TM-T88V").line_with("Crème 5 € tube")


def test_rx_label_us_and_controlled() -> None:
    doc = parse(render_rx_label(LABEL, layout(80)))
    for needle in ("Rx# RX700001", "2026-11-02", "Ana Nguyen", "Amoxicillin 500 mg capsules",
                   "Take 1 capsule", "Qty: 21 capsule", "Refills left: 0",
                   "Prescriber: Dr. Maria Alvarez", "Lot AM1  Exp 2027-06-30",
                   "! Finish all of this medicine", "NDC 0093-0058-01"):
        doc.line_with(needle)
    assert doc.line_with("Ana Nguyen").bold and doc.cuts == ["full"]
    assert rx_mark(LABEL) is None and "Rx" not in doc.texts[0]
    cs = parse(render_rx_label({**LABEL, "dea_schedule": "CII", "patient": None}, layout(58)))
    assert "Federal law prohibits" in cs.text and cs.line_with("Patient: ____")
    assert all(len(t) <= 32 for t in cs.texts)


def test_india_marks_and_h1_box() -> None:
    two = layout(80, two_color=True)
    h1 = parse(render_rx_label({**LABEL, "india_schedule": "H1"}, two))
    first = h1.lines[0]
    assert first.text == "Rx" and first.bold and (first.width, first.height) == (2, 2)
    assert first.color == 1  # red on a two-colour printer
    box = [t for t in h1.texts if t.startswith(("+", "|"))]
    assert box[0] == "+" + "-" * 40 + "+" and box[-1] == box[0]
    assert all(len(t) == 42 and t.endswith(("|", "+")) for t in box)
    boxed = " ".join(t.strip("| ") for t in box[1:-1])
    assert boxed.startswith(H1_WARNING[0]) and "Registered Medical" in boxed
    assert all(h1.line_with(t).color == 1 for t in box)
    x = parse(render_rx_label({**LABEL, "india_schedule": "X"}, two))
    assert x.lines[0].text == "XRx" and "Schedule X drug" in x.text
    h = parse(render_rx_label({**LABEL, "india_schedule": "H"}, layout(58)))
    assert h.lines[0].text == "Rx" and h.lines[0].color == 0 and "Schedule H drug" in h.text
    nrx = parse(render_rx_label({**LABEL, "india_schedule": "H", "ndps": True}, layout(80)))
    assert nrx.lines[0].text == "NRx"


def test_test_page() -> None:
    lay = layout(58, profile="TM-T88V")
    doc = parse(render_test_page(lay, "tcp://10.0.0.5:9100", drawer_pin=2))
    assert doc.line_with("PRINTER TEST").bold
    assert doc.line_with("12345678901234567890123456789012").text == (
        "12345678901234567890123456789012")
    assert doc.qr_codes == ["pharmos test page"] and doc.kicks == [2] and doc.cuts == ["full"]
    assert all(len(t) <= 32 or t == "Large" for t in doc.texts)
    doc.line_with("Accents: é è ü ñ ç")


def test_document_from_the_queue(stocked: Store, sale_id: str) -> None:
    job = print_queue.enqueue(stocked, sale_id)
    job = print_queue.start(stocked, job.job_id, "dummy://x")
    doc = print_queue.document(stocked, job)
    cfg = HardwareConfig(printer=PrinterConfig(drawer_pin=2))
    parsed = parse(render_document(doc, cfg))
    assert parsed.qr_codes == [sale_id] and parsed.kicks == [2]
    rec = sale_record(stocked.conn, sale_id)
    assert parsed.line_with("TOTAL").text.endswith(rec["total"])
    second = print_queue.start(stocked, job.job_id, "dummy://x")  # a retry does not kick again
    assert parse(render_document(print_queue.document(stocked, second), cfg)).kicks == []


def test_tenders_pharmacy_header_and_cash_only_kick(stocked: Store, sale_id: str) -> None:
    job = print_queue.start(stocked, print_queue.enqueue(stocked, sale_id).job_id, "dummy://x")
    doc = print_queue.document(stocked, job)
    cfg = HardwareConfig(printer=PrinterConfig(drawer_pin=2))
    cash = {**doc, "pharmacy": {"name": "Oak Pharmacy", "address": "1 Oak St"},
            "tenders": [{"method": "cash", "amount": "56.76", "tendered": "60.00",
                         "change": "3.24", "reference": None}]}
    printed = parse(render_document(cash, cfg))
    assert printed.lines[0].text == "Oak Pharmacy" and printed.lines[1].text == "1 Oak St"
    assert printed.line_with("Cash").text.endswith("60.00")
    assert printed.line_with("Change").text.endswith("3.24") and printed.kicks == [2]
    card = {**cash, "tenders": [{"method": "card", "amount": "56.76", "tendered": "56.76",
                                 "change": "0.00", "reference": "auth 1234"}]}
    printed = parse(render_document(card, cfg))
    assert printed.kicks == [] and "Change" not in printed.text
    own_header = HardwareConfig(printer=PrinterConfig(), receipt=ReceiptConfig(header=("Mine",)))
    assert parse(render_document(cash, own_header)).lines[0].text == "Mine"
