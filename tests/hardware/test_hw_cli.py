"""`pharmos hw ...` and `pharmos receipt ...` as installers and support staff run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from hardware.escpos_parse import parse
from hardware.fake_printer import FakeNetworkPrinter
from pharmacy.gs1 import GS
from terminal.cli import main
from tests.hardware.conftest import Pty

ROOT = Path(__file__).resolve().parents[2]
IBU_GTIN = "00309046728603"
DSCSA = f"]d201{IBU_GTIN}17271200" + f"10IB2701{GS}21SN000123"


def run(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> Any:
    rc = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert rc == code, (rc, out, err)
    return json.loads(out) if "--json" in args and out.strip() else out


# ---- hw parse-scan --------------------------------------------------------------------------
def test_parse_scan(capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, "hw", "parse-scan", "--json", DSCSA)
    assert out == {"gtin": IBU_GTIN, "ndc": "0904672860", "lot": "IB2701",
                   "expiry": "2027-12-31", "serial": "SN000123", "symbology": "gs1-datamatrix"}
    out = run(capsys, "hw", "parse-scan", "--gs-substitute", "~", "--json",
              DSCSA.replace(GS, "~"))
    assert out["serial"] == "SN000123"
    out = run(capsys, "hw", "parse-scan", "--escaped", "--json",
              DSCSA.replace(GS, "\\u001d"))
    assert out["lot"] == "IB2701"


@pytest.mark.parametrize("args,code", [
    ([DSCSA.replace(GS, "")], "SCAN_MISSING_GS"),
    ([f"01{IBU_GTIN}1727"], "SCAN_TRUNCATED"),
    ([f"01{IBU_GTIN[:-1]}9"], "GTIN_CHECK_DIGIT"),
    (["\x01\x02junk"], "SCAN_GARBLED"),
    (["--gs-substitute", "A", DSCSA], "BAD_GS_SUBSTITUTE"),
    (["--ndc", "0093-0058-01", DSCSA], "DSCSA_PRODUCT_MISMATCH"),
])
def test_parse_scan_errors(capsys: pytest.CaptureFixture[str], args: list[str],
                           code: str) -> None:
    out = run(capsys, "hw", "parse-scan", "--json", *args, code=1)
    assert out["error"]["code"] == code and out["error"]["message"]


def test_parse_scan_against_the_catalog(capsys: pytest.CaptureFixture[str],
                                        data_dir: Path) -> None:
    d = str(data_dir)
    out = run(capsys, "hw", "parse-scan", "--data-dir", d, "--json", DSCSA)
    assert out["ndc"] == "0904-6728-60" and out["product"]["name"].startswith("Ibuprofen")
    expired = f"]d201{IBU_GTIN}17250131" + f"10IB2501{GS}21S1"
    out = run(capsys, "hw", "parse-scan", "--data-dir", d, "--json", expired, code=2)
    assert out["error"]["code"] == "EXPIRED_LOT"
    out = run(capsys, "hw", "parse-scan", "--data-dir", d, "--json", "00031111222233", code=1)
    assert out["error"]["code"] in ("UNKNOWN_PRODUCT", "GTIN_CHECK_DIGIT")
    unknown = "0031111222233"
    from pharmacy.ids import gs1_check_digit

    out = run(capsys, "hw", "parse-scan", "--data-dir", d, "--json",
              unknown + str(gs1_check_digit(unknown)), code=1)
    assert out["error"]["code"] == "UNKNOWN_PRODUCT"


# ---- hw test-print --------------------------------------------------------------------------
def test_test_print(capsys: pytest.CaptureFixture[str], fake_printer: FakeNetworkPrinter,
                    tmp_path: Path) -> None:
    out = run(capsys, "hw", "test-print", "--printer", fake_printer.url, "--width", "58",
              "--profile", "TM-T88V", "--drawer", "5", "--json")
    assert out["printer"] == fake_printer.url and out["columns"] == 32
    assert out["status"] == {"online": True, "paper": "ok", "cover_open": False, "error": False}
    doc = fake_printer.document()
    assert doc.line_with("PRINTER TEST") and doc.kicks == [5] and doc.cuts == ["full"]
    f = tmp_path / "capture.bin"
    out = run(capsys, "hw", "test-print", "--printer", f"file://{f}", "--json")
    assert out["bytes_sent"] == f.stat().st_size and parse(f.read_bytes()).qr_codes


def test_test_print_faults(capsys: pytest.CaptureFixture[str],
                           fake_printer: FakeNetworkPrinter) -> None:
    fake_printer.paper = "out"
    out = run(capsys, "hw", "test-print", "--printer", fake_printer.url, "--timeout", "0.5",
              "--json", code=4)
    assert out["error"]["code"] == "PAPER_OUT"
    fake_printer.paper, fake_printer.silent = "ok", True
    out = run(capsys, "hw", "test-print", "--printer", fake_printer.url, "--timeout", "0.3",
              "--json", code=4)
    assert out["error"]["code"] == "PRINTER_TIMEOUT"
    out = run(capsys, "hw", "test-print", "--printer", "lpt1", "--json", code=1)
    assert out["error"]["code"] == "BAD_HARDWARE_CONFIG" and "tcp://" in out["error"]["message"]
    out = run(capsys, "hw", "test-print", "--json", code=1)
    assert out["error"]["code"] == "NO_PRINTER"


# ---- hw listen-scanner ----------------------------------------------------------------------
def test_listen_scanner(capsys: pytest.CaptureFixture[str], pty_pair: Pty) -> None:
    done = threading.Event()

    def scanner() -> None:  # the reader flushes input on open: keep sending until it is done
        while not done.wait(0.15):
            pty_pair.write((DSCSA + "\r\n" + "]C1\x00\xff\r").encode("latin-1"))

    t = threading.Thread(target=scanner, daemon=True)
    t.start()
    try:
        rc = main(["hw", "listen-scanner", "--port", pty_pair.path, "--count", "2",
                   "--timeout", "5", "--json"])
    finally:
        done.set()
        t.join(2)
    out, err = capsys.readouterr()
    assert rc == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert len(lines) == 2 and "connected" in err
    ok = next(x for x in lines if "error" not in x)
    assert (ok["gtin"], ok["lot"], ok["serial"], ok["symbology"]) == (
        IBU_GTIN, "IB2701", "SN000123", "gs1-datamatrix")
    bad = next(x for x in lines if "error" in x)
    assert bad["error"]["code"] == "SCAN_GARBLED"


def test_listen_scanner_without_a_port(capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    out = run(capsys, "hw", "listen-scanner", "--port", str(tmp_path / "ttyACM9"),
              "--timeout", "2", "--json", code=4)
    assert out["error"]["code"] == "DEVICE_NOT_FOUND"


def test_listen_scanner_times_out_quietly(capsys: pytest.CaptureFixture[str],
                                          pty_pair: Pty) -> None:
    rc = main(["hw", "listen-scanner", "--port", pty_pair.path, "--timeout", "0.3"])
    out, err = capsys.readouterr()
    assert rc == 0 and out == "" and "0 scan(s)" in err


# ---- hw config ------------------------------------------------------------------------------
def test_config_show_and_set(capsys: pytest.CaptureFixture[str], data_dir: Path) -> None:
    d = str(data_dir)
    out = run(capsys, "hw", "config", "show", "--data-dir", d, "--json")
    assert out["printer"]["url"] is None and out["version"] == 1
    out = run(capsys, "hw", "config", "set", "--data-dir", d, "--json",
              "printer.url=tcp://127.0.0.1:9100", "printer.width=58", "printer.drawer_pin=2",
              'receipt.header=["Main Street Pharmacy"]', "scanners.0.gs_substitute=~")
    assert out["printer"]["width"] == 58 and out["scanners"][0]["gs_substitute"] == "~"
    assert run(capsys, "hw", "config", "show", "--data-dir", d, "--json") == out
    bad = run(capsys, "hw", "config", "set", "--data-dir", d, "--json", "printer.width=57",
              code=1)
    assert bad["error"]["code"] == "BAD_HARDWARE_CONFIG"
    bad = run(capsys, "hw", "config", "set", "--data-dir", d, "--json", "printer.width", code=1)
    assert bad["error"]["code"] == "BAD_ARGS"


# ---- receipt --------------------------------------------------------------------------------
def test_receipt_print_reprint_pending_retry(capsys: pytest.CaptureFixture[str], data_dir: Path,
                                             sale_id: str,
                                             fake_printer: FakeNetworkPrinter) -> None:
    d = str(data_dir)
    run(capsys, "hw", "config", "set", "--data-dir", d, f"printer.url={fake_printer.url}",
        "printer.timeout=0.5", "printer.drawer_pin=2")
    job = run(capsys, "receipt", "print", "--data-dir", d, sale_id, "--json")
    assert job["status"] == "done" and not job["reprint"]
    first = fake_printer.document()
    assert first.qr_codes == [sale_id] and first.kicks == [2]
    # the printer runs out of paper: the reprint fails clearly and waits in the queue
    fake_printer.paper = "out"
    out = run(capsys, "receipt", "reprint", "--data-dir", d, sale_id, "--json", code=4)
    assert out["error"]["code"] == "PAPER_OUT" and "reprint queue" in out["error"]["message"]
    pending = run(capsys, "receipt", "pending", "--data-dir", d, "--json")["pending"]
    assert [(j["sale_id"], j["status"], j["error_code"], j["reprint"]) for j in pending] == [
        (sale_id, "failed", "PAPER_OUT", True)]
    fake_printer.paper = "ok"
    out = run(capsys, "receipt", "retry", "--data-dir", d, "--json")
    assert out["pending"] == 0 and [j["status"] for j in out["tried"]] == ["done"]
    copy = fake_printer.document()
    assert copy.line_with("REPRINT") and copy.kicks == []
    assert "nothing waiting" in run(capsys, "receipt", "pending", "--data-dir", d)


def test_receipt_with_printer_down_keeps_the_sale(capsys: pytest.CaptureFixture[str],
                                                  data_dir: Path, sale_id: str,
                                                  fake_printer: FakeNetworkPrinter) -> None:
    d = str(data_dir)
    url = fake_printer.url
    fake_printer.stop()
    out = run(capsys, "receipt", "print", "--data-dir", d, sale_id, "--printer", url,
              "--json", code=4)
    assert out["error"]["code"] == "PRINTER_OFFLINE"
    pending = run(capsys, "receipt", "pending", "--data-dir", d, "--json")["pending"]
    assert len(pending) == 1 and pending[0]["printer"] == url
    out = run(capsys, "receipt", "print", "--data-dir", d, "no-such-sale", "--printer", url,
              "--json", code=1)
    assert out["error"]["code"] == "UNKNOWN_SALE"
    out = run(capsys, "receipt", "print", "--data-dir", d, sale_id, "--json", code=1)
    assert out["error"]["code"] == "NO_PRINTER"


def test_receipt_label(capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path) -> None:
    from pharmacy.compliance import InterimGate
    from pharmacy.sales import Dispenser
    from pharmacy.store import Store

    with Store.open(data_dir) as store:
        sale = Dispenser(store, InterimGate()).sell({
            "lines": [{"ndc": "0093-0058-01", "qty": 21}],
            "rx": {"rx_number": "RX9", "directions": "Take 1 capsule three times a day",
                   "refills_authorized": 0, "prescriber": {"name": "Dr. Okafor"}},
            "patient": {"id": "pt-9", "name": "Dev Patel"},
            "user": {"id": "u-ph", "role": "pharmacist"}})
    capture = tmp_path / "label.bin"
    job = run(capsys, "receipt", "label", "--data-dir", str(data_dir), sale.sale_id,
              "--printer", f"file://{capture}", "--json")
    assert job["kind"] == "rx_label" and job["status"] == "done"
    doc = parse(capture.read_bytes())
    doc.line_with("Dev Patel")
    doc.line_with("Rx# RX9")
    doc.line_with("Prescriber: Dr. Okafor")


def test_console_script_path(tmp_path: Path) -> None:
    """The same commands through a real process (python -m terminal.cli)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "terminal.cli", "hw", "parse-scan", "--json",
                           DSCSA], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["serial"] == "SN000123"
    proc = subprocess.run([sys.executable, "-m", "terminal.cli", "hw", "parse-scan", "--json",
                           "]d2"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout)["error"]["code"] == "SCAN_EMPTY"


def test_refund_slip_prints_after_the_refund(capsys: pytest.CaptureFixture[str],
                                             stocked: Any,
                                             fake_printer: FakeNetworkPrinter) -> None:
    from pharmacy import checkout, refunds
    from pharmacy.compliance import InterimGate
    from pharmacy.sales import Dispenser

    paid = checkout.checkout(Dispenser(stocked, InterimGate()), {
        "user": {"id": "u-cara", "role": "cashier"},
        "lines": [{"ndc": "0904-6728-60", "qty": 2}, {"ndc": "0093-0058-01", "qty": 10}]},
        lambda total: checkout.tender_for("cash", total))
    back = refunds.refund(stocked, {"id": "u-max", "role": "manager"}, paid.sale.sale_id,
                          method="cash", reason="wrong strength",
                          lines=[{"line_no": 1, "qty": 1, "restock": True}, {"line_no": 2}])
    d = str(stocked.data_dir)
    run(capsys, "hw", "config", "set", "--data-dir", d, f"printer.url={fake_printer.url}",
        "printer.timeout=0.5", "printer.drawer_pin=2")
    job = run(capsys, "receipt", "refund", "--data-dir", d, back.refund_id, "--json")
    assert job["kind"] == "refund" and job["refund_id"] == back.refund_id
    assert job["sale_id"] == paid.sale.sale_id and not job["reprint"]
    slip = fake_printer.document()
    assert slip.kicks == [2]  # cash goes back out of the drawer
    assert slip.line_with("REFUND").bold and slip.qr_codes == [paid.sale.sale_id]
    total = back.to_json()["total"]
    assert total in slip.line_with("TOTAL REFUNDED").text
    assert "Cash refund" in slip.text and "Reason: wrong strength" in slip.text
    assert "1 x Ibuprofen" in slip.text and "1 back to stock" in slip.text
    assert "10 x Amoxicillin" in slip.text and "Customer signature" in slip.text
    assert back.refund_id[-12:] in slip.line_with("Refund").text
    again = run(capsys, "receipt", "refund", "--data-dir", d, back.refund_id, "--json")
    assert again["reprint"] and fake_printer.document().line_with("REPRINT")
    out = run(capsys, "receipt", "refund", "--data-dir", d, "no-such-refund", "--json",
              code=1)
    assert out["error"]["code"] == "UNKNOWN_REFUND"


def test_day_report_prints(capsys: pytest.CaptureFixture[str], stocked: Any,
                           fake_printer: FakeNetworkPrinter) -> None:
    from pharmacy import checkout
    from pharmacy.compliance import InterimGate
    from pharmacy.sales import Dispenser

    checkout.checkout(Dispenser(stocked, InterimGate()), {
        "user": {"id": "u-cara", "role": "cashier"}, "lines": [{"ndc": "0904-6728-60",
                                                                "qty": 1}]},
        lambda total: checkout.tender_for("cash", total))
    d = str(stocked.data_dir)
    day = stocked.clock().date().isoformat()
    out = run(capsys, "report", "day", "--data-dir", d, "--date", day, "--print",
              "--printer", fake_printer.url, "--json")
    assert out["printed"]["printer"] == fake_printer.url and out["cash_expected"] == "8.11"
    doc = fake_printer.document()
    assert doc.line_with("DAY REPORT").bold and "8.11" in doc.line_with("CASH EXPECTED").text
    assert "Cash counted" in doc.text and doc.kicks == []
    out = run(capsys, "report", "day", "--data-dir", d, "--date", day, "--print", "--json",
              code=1)
    assert out["error"]["code"] == "NO_PRINTER"
    out = run(capsys, "report", "day", "--data-dir", d, "--print", "--printer",
              "tcp://127.0.0.1:9", "--json", code=4)
    assert out["error"]["code"] in ("PRINTER_OFFLINE", "PRINTER_TIMEOUT")
