"""`pharmos sale` with a tender and `pharmos refund`: the CLI contract, exit codes, and that a
refused payment or refund writes nothing."""

from __future__ import annotations

import json

from tests.core.test_core_cli import data_dir, pharmos

__all__ = ["data_dir"]  # the fixture, used by name

IBU = "0904-6728-60"
MANAGER = {"id": "u-max", "role": "manager"}


def stock_of(d: str, lot: str) -> int:
    rows = pharmos("stock", "--data-dir", d, "--json", "--ndc", IBU)["batches"]
    return int(next(r["on_hand"] for r in rows if r["lot"] == lot))


def test_paid_sale_then_refund_by_line(data_dir: str) -> None:
    d = data_dir
    pharmos("receive", "--data-dir", d, "--json", stdin=json.dumps({"batches": [
        {"ndc": IBU, "lot": "R1", "expiry": "2030-01-31", "qty": 10, "unit_cost": "2.00"}]}))
    sale = pharmos("sale", "--data-dir", d, "--json", stdin=json.dumps({
        "lines": [{"ndc": IBU, "qty": 2}],
        "tender": {"method": "cash", "tendered": "20.00"}}))
    assert sale["total"] == "16.22" and sale["tender"]["change"] == "3.78"
    assert stock_of(d, "R1") == 8
    shown = pharmos("refund", "--data-dir", d, "--json", "--show", sale["sale_id"])
    assert shown["paid"] is True and shown["lines"][0]["refundable"] == 2
    assert shown["lines"][0]["restockable"] is True
    out = pharmos("refund", "--data-dir", d, "--json", stdin=json.dumps({
        "sale_id": sale["sale_id"], "method": "cash", "reason": "unopened", "user": MANAGER,
        "lines": [{"line_no": 1, "qty": 1, "restock": True}]}))
    assert out["total"] == "8.11" and out["lines"][0]["restocked"] == [
        {"lot": "R1", "expiry": "2030-01-31", "qty": 1}]
    assert stock_of(d, "R1") == 9
    text = pharmos("refund", "--data-dir", d, "--show", sale["sale_id"])
    assert "1 of 2 refundable" in text and "refunded 8.11" in text
    # paid in cash, so paid back in cash: not to a card
    wrong = pharmos("refund", "--data-dir", d, "--json", code=2, stdin=json.dumps({
        "sale_id": sale["sale_id"], "method": "card", "reference": "RF1", "reason": "opened",
        "user": MANAGER}))
    assert wrong["error"]["code"] == "REFUND_METHOD_MISMATCH"
    out = pharmos("refund", "--data-dir", d, "--json", stdin=json.dumps({
        "sale_id": sale["sale_id"], "method": "cash", "reason": "opened", "user": MANAGER}))
    assert out["total"] == "8.11" and out["reference"] is None
    again = pharmos("refund", "--data-dir", d, "--json", code=2, stdin=json.dumps({
        "sale_id": sale["sale_id"], "method": "cash", "reason": "x", "user": MANAGER}))
    assert again["error"]["code"] == "ALREADY_REFUNDED"
    # a card sale pays exactly the total
    card = pharmos("sale", "--data-dir", d, "--json", stdin=json.dumps({
        "lines": [{"ndc": IBU, "qty": 1}], "tender": {"method": "card", "reference": "A1"}}))
    assert card["tender"] == {**card["tender"], "method": "card", "amount": "8.11",
                              "change": "0.00", "reference": "A1"}
    out = pharmos("refund", "--data-dir", d, "--json", stdin=json.dumps({
        "sale_id": card["sale_id"], "method": "card", "reference": "RF1", "reason": "opened",
        "user": MANAGER}))
    assert out["total"] == "8.11" and out["reference"] == "RF1"


def test_refused_payments_and_refunds_write_nothing(data_dir: str) -> None:
    d = data_dir
    pharmos("receive", "--data-dir", d, "--json", stdin=json.dumps({"batches": [
        {"ndc": IBU, "lot": "R2", "expiry": "2030-01-31", "qty": 5}]}))

    def no_sale(tender: object, code: str) -> None:
        out = pharmos("sale", "--data-dir", d, "--json", code=1, stdin=json.dumps({
            "lines": [{"ndc": IBU, "qty": 1}], "tender": tender}))
        assert out["error"]["code"] == code
        assert stock_of(d, "R2") == 5

    no_sale({"method": "cheque"}, "BAD_TENDER")
    no_sale("cash", "BAD_TENDER")
    no_sale({"method": "cash", "tendered": "1.00"}, "INSUFFICIENT_TENDER")
    no_sale({"method": "cash", "tendered": "lots"}, "BAD_MONEY")
    no_sale({"method": "card", "reference": "x" * 101}, "BAD_TENDER")
    no_sale({"method": "card", "reference": "A1\u0000"}, "BAD_TENDER")
    no_sale({"method": "cash", "tendered": "20\u0000"}, "BAD_TENDER")
    # a lone surrogate (undecodable bytes) is not text a store can keep: was exit 70
    no_sale({"method": "card", "reference": "A\ud800"}, "BAD_TENDER")
    no_sale({"method": "cash", "tendered": "\udcff20"}, "BAD_TENDER")
    unpaid = pharmos("sale", "--data-dir", d, "--json", stdin=json.dumps({
        "lines": [{"ndc": IBU, "qty": 1}]}))

    def no_refund(body: object, code: str, exit_code: int) -> None:
        out = pharmos("refund", "--data-dir", d, "--json", code=exit_code,
                      stdin=body if isinstance(body, str) else json.dumps(body))
        assert out["error"]["code"] == code, out
        assert stock_of(d, "R2") == 4

    base = {"sale_id": unpaid["sale_id"], "method": "cash", "reason": "r", "user": MANAGER}
    no_refund(base, "SALE_NOT_PAID", 2)
    no_refund({**base, "user": {"id": "u-cara", "role": "cashier"}}, "ROLE_NOT_PERMITTED", 2)
    no_refund({**base, "user": "max"}, "BAD_USER", 1)
    no_refund({**base, "sale_id": 42}, "BAD_REQUEST", 1)
    no_refund({**base, "reason": None}, "REASON_REQUIRED", 1)
    no_refund({**base, "sale_id": "nope"}, "UNKNOWN_SALE", 1)
    no_refund("[1, 2]", "BAD_REQUEST", 1)
    no_refund("{not json", "BAD_JSON", 1)
    out = pharmos("refund", "--data-dir", d, "--json", "--show", "nope", code=1)
    assert out["error"]["code"] == "UNKNOWN_SALE"
    out = pharmos("refund", "--data-dir", d, "--json", "--show", "", code=1)
    assert out["error"]["code"] == "BAD_REQUEST"  # not read as a refund on stdin
    # lone surrogates in any text field were a UnicodeEncodeError at SQLite (exit 70)
    no_refund({**base, "reason": "torn\ud800"}, "BAD_REASON", 1)
    no_refund({**base, "method": "card", "reference": "\ud800"}, "BAD_REFERENCE", 1)
    no_refund({**base, "user": {"id": "u\ud800", "role": "manager"}}, "BAD_USER", 1)
    no_refund({**base, "sale_id": unpaid["sale_id"][-8:] + "\ud800"}, "BAD_REQUEST", 1)
    # and on the command line: bytes that are not UTF-8 arrive as surrogate escapes
    tail = unpaid["sale_id"][-8:] + "\udcff"
    out = pharmos("refund", "--data-dir", d, "--json", "--show", tail, code=1)
    assert out["error"]["code"] == "BAD_REQUEST"
    out = pharmos("receipt", "refund", "--data-dir", d, "--json", tail, code=1)
    assert out["error"]["code"] == "BAD_REQUEST"
    # LIKE wildcards in a receipt suffix match themselves, not any sale
    for wild in ("%" * 8, "_" * 8, "\\" * 8):
        out = pharmos("refund", "--data-dir", d, "--json", "--show", wild, code=1)
        assert out["error"]["code"] == "UNKNOWN_SALE"
