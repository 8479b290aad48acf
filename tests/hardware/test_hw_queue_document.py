"""A receipt built by the print queue is the same wherever it is printed from: the counter,
a reprint or `pharmos receipt print` all get the tenders and the pharmacy header."""

from __future__ import annotations

from pharmacy import checkout, print_queue
from pharmacy.compliance import InterimGate
from pharmacy.sales import Dispenser
from pharmacy.store import Store


def test_receipt_document_carries_tenders_and_header(stocked: Store) -> None:
    disp = Dispenser(stocked, InterimGate())
    req = {"lines": [{"ndc": "0904-6728-60", "qty": 1}], "user": {"id": "u", "role": "cashier"}}
    done = checkout.checkout(disp, req, checkout.Tender("cash", 2000))
    sale_id = done.sale.sale_id
    bare = print_queue.document(stocked, print_queue.job_for_print(stocked, sale_id))
    assert bare["tenders"][0]["method"] == "cash" and bare["tenders"][0]["tendered"] == "20.00"
    assert "pharmacy" not in bare  # no name configured: the layout's own header
    stocked.set_setting("pharmacy.name", "Main Street Pharmacy")
    stocked.set_setting("pharmacy.address", "12 Main St, Austin TX")
    doc = print_queue.document(stocked, print_queue.job_for_print(stocked, sale_id))
    assert doc["pharmacy"] == {"name": "Main Street Pharmacy",
                               "address": "12 Main St, Austin TX"}
    no_tender = Dispenser(stocked, InterimGate()).sell(req)
    plain = print_queue.document(stocked, print_queue.job_for_print(stocked, no_tender.sale_id))
    assert "tenders" not in plain  # a sale without a recorded tender prints as before
