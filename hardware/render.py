"""Receipts, Rx labels and test pages rendered to ESC/POS bytes (pure, no IO).

Rendering goes through python-escpos' recording ``Dummy`` with the configured printer
profile and code page, so the bytes are exactly what the device backend will send — and
what a reprint will send again.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from hardware.config import HardwareConfig, PrinterConfig, ReceiptConfig

H_WARNING = ("Schedule H drug - Warning: To be sold by retail on the prescription of a "
             "Registered Medical Practitioner only.")
H1_WARNING = ("Schedule H1 Drug - Warning:", "- It is dangerous to take this preparation "
              "except in accordance with the medical advice.", "- Not to be sold by retail "
              "without the prescription of a Registered Medical Practitioner.")
X_WARNING = ("Schedule X drug - Warning: To be sold by retail on the prescription of a "
             "Registered Medical Practitioner only.")
G_WARNING = ("Caution: it is dangerous to take this preparation except under medical "
             "supervision.")
US_CS_WARNING = ("CAUTION: Federal law prohibits the transfer of this drug to any person "
                 "other than the patient for whom it was prescribed.")


@dataclass(frozen=True)
class Layout:
    width: int = 80
    columns: int = 42
    profile: str | None = None
    code_page: str | None = None
    drawer_pin: int | None = None
    two_color: bool = False
    header: tuple[str, ...] = ("pharmos",)
    footer: tuple[str, ...] = ()
    qr: bool = True

    @classmethod
    def from_config(cls, printer: PrinterConfig,
                    receipt: ReceiptConfig | None = None) -> Layout:
        r = receipt or ReceiptConfig()
        return cls(width=printer.width, columns=printer.effective_columns,
                   profile=printer.profile, code_page=printer.code_page,
                   drawer_pin=printer.drawer_pin, two_color=printer.two_color,
                   header=r.header, footer=r.footer, qr=r.qr)


def receipt_layout(cfg: HardwareConfig) -> Layout:
    return Layout.from_config(cfg.printer, cfg.receipt)


def label_layout(cfg: HardwareConfig) -> Layout:
    return Layout.from_config(cfg.labels, cfg.receipt)


class _Page:
    """A thin writer over python-escpos' Dummy that knows the column count."""

    def __init__(self, layout: Layout) -> None:
        from escpos.printer import Dummy

        self.layout = layout
        self.cols = layout.columns
        self.p = Dummy(profile=layout.profile)
        self.p.hw("INIT")
        if layout.code_page and layout.code_page.upper() != "AUTO":
            self.p.charcode(layout.code_page)

    def supports(self, feature: str) -> bool:
        return bool(self.p.profile.supports(feature))

    def style(self, **kw: Any) -> None:
        self.p.set(**kw)

    def normal(self) -> None:
        self.p.set(align="left", bold=False, normal_textsize=True, underline=0)

    def line(self, text: str = "") -> None:
        self.p.textln(text)

    def wrapped(self, text: str, indent: str = "") -> None:
        for ln in textwrap.wrap(text, self.cols, initial_indent=indent,
                                subsequent_indent=indent) or [""]:
            self.p.textln(ln)

    def two_col(self, left: str, right: str) -> None:
        if len(left) + 1 + len(right) <= self.cols:
            self.p.textln(left + " " * (self.cols - len(left) - len(right)) + right)
            return
        for ln in textwrap.wrap(left, self.cols):
            self.p.textln(ln)
        self.p.textln(right.rjust(self.cols))

    def rule(self, ch: str = "-") -> None:
        self.p.textln(ch * self.cols)

    def color(self, red: bool) -> None:
        if self.layout.two_color:
            self.p._raw(b"\x1br" + (b"\x01" if red else b"\x00"))

    def qr(self, content: str) -> None:
        if self.supports("qrCode"):
            self.p.qr(content, native=True, size=4 if self.layout.width == 80 else 3)
        else:
            self.wrapped(content)

    def cut(self) -> None:
        self.p.cut()
        if not (self.supports("paperFullCut") or self.supports("paperPartCut")):
            self.p.ln(3)  # no cutter: feed past the tear bar

    def kick(self, pin: int) -> None:
        self.p.cashdraw(pin)

    def bytes(self) -> bytes:
        data: bytes = self.p.output
        return data


def _header(page: _Page, layout: Layout) -> None:
    if not layout.header:
        return
    page.style(align="center", bold=True, double_height=True)
    page.wrapped(layout.header[0])
    page.style(bold=False, normal_textsize=True)
    for h in layout.header[1:]:
        page.wrapped(h)
    page.normal()


def render_receipt(sale: Mapping[str, Any], layout: Layout, *, reprint: bool = False,
                   kick: bool = False, store_id: str | None = None,
                   tenders: Iterable[Mapping[str, Any]] = ()) -> bytes:
    """A sale receipt: header, sale id and time, lines with lot and expiry, totals with tax,
    tenders and change, a native QR code carrying the sale id, footer, cut. ``kick`` opens
    the cash drawer."""
    page = _Page(layout)
    if kick and layout.drawer_pin in (2, 5):
        page.kick(layout.drawer_pin)
    _header(page, layout)
    if reprint:
        _reprint_banner(page)
    page.line()
    page.two_col("Sale", str(sale["sale_id"])[-12:])
    page.two_col("Date", _when(str(sale.get("created_at", ""))))
    if store_id:
        page.two_col("Store", store_id)
    if sale.get("user_id"):
        page.two_col("Clerk", str(sale["user_id"])[: page.cols - 6])
    page.rule()
    for ln in sale.get("lines", []):
        name = str(ln["name"])
        page.wrapped(f"{ln['qty']} x {name}")
        page.two_col(f"  @ {ln['unit_price']}  NDC {ln['ndc']}", str(ln["amount"]))
        allocs = ln.get("allocations") or []
        for a in allocs:
            qty = f" x{a['qty']}" if len(allocs) > 1 else ""
            page.wrapped(f"Lot {a['lot']}  Exp {a['expiry']}{qty}", indent="  ")
    page.rule()
    page.two_col("Subtotal", str(sale["subtotal"]))
    page.two_col("Tax", str(sale["tax"]))
    page.style(bold=True)
    page.two_col("TOTAL", str(sale["total"]))
    page.normal()
    for t in tenders:
        method = str(t.get("method") or "paid").replace("_", " ").title()
        page.two_col(method, str(t.get("tendered") or t.get("amount") or ""))
        if t.get("change") not in (None, "", "0.00"):
            page.two_col("Change", str(t["change"]))
    page.rule()
    return _finish(page, layout, str(sale["sale_id"]))


def render_refund(sale: Mapping[str, Any], refund: Mapping[str, Any], layout: Layout, *,
                  reprint: bool = False, kick: bool = False, store_id: str | None = None
                  ) -> bytes:
    """A refund slip: header, REFUND, the refund and the sale it refunds, the lines and
    units paid back (and which went back on the shelf), totals, how it was paid back, a
    line for the customer's signature, a QR code carrying the sale id, footer, cut."""
    page = _Page(layout)
    if kick and layout.drawer_pin in (2, 5):
        page.kick(layout.drawer_pin)
    _header(page, layout)
    page.style(align="center", bold=True, double_height=True)
    page.line("REFUND")
    page.normal()
    if reprint:
        _reprint_banner(page)
    page.line()
    page.two_col("Refund", str(refund["refund_id"])[-12:])
    page.two_col("Date", _when(str(refund.get("created_at", ""))))
    page.two_col("Sale", str(sale["sale_id"])[-12:])
    page.two_col("Sold", _when(str(sale.get("created_at", ""))))
    if store_id:
        page.two_col("Store", store_id)
    if refund.get("user_id"):
        page.two_col("By", str(refund["user_id"])[: page.cols - 6])
    page.rule()
    for ln in refund.get("lines", []):
        page.wrapped(f"{ln['qty']} x {ln['name']}")
        page.two_col(f"  NDC {ln['ndc']}", f"-{ln['amount']}")
        if ln.get("restocked"):
            page.wrapped(f"{ln['restocked']} back to stock", indent="  ")
    page.rule()
    page.two_col("Subtotal", f"-{refund['subtotal']}")
    page.two_col("Tax", f"-{refund['tax']}")
    page.style(bold=True)
    page.two_col("TOTAL REFUNDED", str(refund["total"]))
    page.normal()
    method = str(refund.get("method") or "").title()
    page.two_col(f"{method} refund", str(refund["total"]))
    if refund.get("reference"):
        page.two_col("Reference", str(refund["reference"])[: page.cols - 11])
    if refund.get("reason"):
        page.wrapped(f"Reason: {refund['reason']}")
    _signature_line(page, "Customer signature:")
    page.rule()
    return _finish(page, layout, str(sale["sale_id"]))


def render_day_report(report: Mapping[str, Any], layout: Layout, *,
                      store_id: str | None = None, printed_at: str | None = None) -> bytes:
    """The end-of-day report (see :func:`pharmacy.daybook.day_report`) on receipt paper:
    sales, payments, refunds, returns, the drawer's expected cash, a line to write the
    counted cash on and a signature line."""
    page = _Page(layout)
    _header(page, layout)
    page.style(align="center", bold=True, double_height=True)
    page.line("DAY REPORT")
    page.normal()
    page.line()
    page.two_col("Day", f"{report['date']} {report['tz']}"[: page.cols - 4])
    if store_id:
        page.two_col("Store", store_id)
    if printed_at:
        page.two_col("Printed", _when(printed_at))
    page.rule()
    sales = report["sales"]
    page.two_col(f"Sales ({sales['count']})", str(sales["total"]))
    page.two_col("  of which tax", str(sales["tax"]))
    for method in ("cash", "card"):
        pay = report["payments"][method]
        page.two_col(f"{method.title()} taken ({pay['count']})", str(pay["amount"]))
    refunds = report["refunds"]
    page.two_col(f"Refunds ({refunds['count']})", f"-{refunds['total']}")
    for method in ("cash", "card"):
        if refunds[method] != "0.00":
            page.two_col(f"  {method}", f"-{refunds[method]}")
    if report["returned_to_stock"]["count"]:
        ret = report["returned_to_stock"]
        page.two_col(f"Returned to stock ({ret['count']})", str(ret["total"]))
    if report["unpaid"]["count"]:
        unpaid = report["unpaid"]
        page.two_col(f"Not paid yet ({unpaid['count']})", str(unpaid["total"]))
    if report["refused"]:
        page.two_col("Refused attempts", str(report["refused"]))
    page.rule()
    page.style(bold=True)
    page.two_col("NET TAKEN", str(report["net_taken"]))
    page.two_col("CASH EXPECTED", str(report["cash_expected"]))
    page.normal()
    page.wrapped("Cash expected: cash taken less cash refunded; add the opening float.")
    page.line()
    page.line("Cash counted: ____________")
    _signature_line(page, "Signature:")
    page.cut()
    return page.bytes()


def _reprint_banner(page: _Page) -> None:
    page.style(align="center", bold=True)
    page.line("*** REPRINT - COPY ***")
    page.normal()


def _signature_line(page: _Page, label: str) -> None:
    page.line()
    page.line(label)
    page.line()
    page.line("_" * page.cols)


def _finish(page: _Page, layout: Layout, sale_id: str) -> bytes:
    """The foot of a sale's paper: a QR code carrying the sale id, the footer, the cut."""
    if layout.qr:
        page.style(align="center")
        page.qr(sale_id)
        page.wrapped(sale_id)
        page.normal()
    if layout.footer:
        page.style(align="center")
        for f in layout.footer:
            page.wrapped(f)
        page.normal()
    page.cut()
    return page.bytes()


def _when(created_at: str) -> str:
    return created_at.replace("T", " ")[:16] + (" UTC" if created_at.endswith(("Z", "+00:00"))
                                                  else "")


def _box(page: _Page, lines: Iterable[str]) -> None:
    inner = page.cols - 4
    page.line("+" + "-" * (page.cols - 2) + "+")
    for text in lines:
        for ln in textwrap.wrap(text, inner) or [""]:
            page.line("| " + ln.ljust(inner) + " |")
    page.line("+" + "-" * (page.cols - 2) + "+")


def rx_mark(label: Mapping[str, Any]) -> str | None:
    """India Rule 97 mark at the top left: XRx (Schedule X), NRx (NDPS), Rx (H, H1)."""
    sched = label.get("india_schedule")
    if sched == "X":
        return "XRx"
    if label.get("ndps"):
        return "NRx"
    if sched in ("H", "H1"):
        return "Rx"
    return None


def render_rx_label(label: Mapping[str, Any], layout: Layout, *, reprint: bool = False) -> bytes:
    """A prescription label: Rx number and date, patient, drug and strength, directions,
    quantity, refills left, prescriber, lots, auxiliary warnings; India marks (Rx / NRx / XRx
    in red where the printer has two colours) and the boxed Schedule H1 warning."""
    page = _Page(layout)
    mark = rx_mark(label)
    if mark:
        page.color(True)
        page.style(align="left", bold=True, double_width=True, double_height=True)
        page.line(mark)
        page.normal()
        page.color(False)
    if layout.header:
        page.style(align="center", bold=True)
        page.wrapped(layout.header[0])
        page.style(bold=False)
        for h in layout.header[1:]:
            page.wrapped(h)
        page.normal()
    if reprint:
        _reprint_banner(page)
    page.two_col(f"Rx# {label.get('rx_number') or '-'}", str(label.get("date") or ""))
    page.style(bold=True)
    page.wrapped(str(label.get("patient") or "Patient: ____________________"))
    page.wrapped(" ".join(str(x) for x in (label.get("drug"), label.get("strength")) if x))
    page.normal()
    if label.get("directions"):
        page.wrapped(str(label["directions"]))
    unit = f" {label['unit']}" if label.get("unit") else ""
    refills = label.get("refills_left")
    page.two_col(f"Qty: {label.get('quantity')}{unit}",
                 f"Refills left: {'-' if refills is None else refills}")
    if label.get("prescriber"):
        page.wrapped(f"Prescriber: {label['prescriber']}")
    if label.get("manufacturer"):
        page.wrapped(f"Mfr: {label['manufacturer']}")
    for a in label.get("lots") or []:
        page.wrapped(f"Lot {a['lot']}  Exp {a['expiry']}")
    if label.get("ndc"):
        page.line(f"NDC {label['ndc']}")
    warnings = [str(w) for w in label.get("aux_warnings") or []]
    if label.get("dea_schedule") in ("CII", "CIII", "CIV", "CV"):
        warnings.append(US_CS_WARNING)
    for w in warnings:
        page.wrapped(f"! {w}")
    sched = label.get("india_schedule")
    if sched == "H1":
        page.color(True)
        page.style(bold=True)
        _box(page, H1_WARNING)
        page.normal()
        page.color(False)
    elif sched == "H":
        page.wrapped(H_WARNING)
    elif sched == "X":
        page.color(True)
        page.wrapped(X_WARNING)
        page.color(False)
    elif sched == "G":
        _box(page, (G_WARNING,))
    page.cut()
    return page.bytes()


def render_test_page(layout: Layout, printer: str, *, drawer_pin: int | None = None) -> bytes:
    """For installers: header, column ruler, code page sample, styles, QR, cut."""
    page = _Page(layout)
    if drawer_pin in (2, 5):
        page.kick(drawer_pin)
    _header(page, layout)
    page.style(align="center", bold=True)
    page.line("PRINTER TEST")
    page.normal()
    page.wrapped(f"Printer: {printer}")
    page.wrapped(f"Paper {layout.width} mm, {layout.columns} columns")
    page.wrapped(f"Profile {layout.profile or 'default'}, code page "
                 f"{layout.code_page or 'auto'}")
    ruler = "".join(str(i % 10) for i in range(1, layout.columns + 1))
    page.line(ruler)
    page.wrapped("Accents: é è ü ñ ç")
    page.wrapped("Symbols: € £ ¥ µ ±")
    page.style(bold=True)
    page.line("Bold")
    page.normal()
    page.style(double_height=True, double_width=True)
    page.line("Large")
    page.normal()
    page.style(align="center")
    page.qr("pharmos test page")
    page.line("QR: pharmos test page")
    page.normal()
    page.cut()
    return page.bytes()


def render_document(doc: Mapping[str, Any], cfg: HardwareConfig) -> bytes:
    """Render a print-queue document (see :func:`pharmacy.print_queue.document`)."""
    job = doc.get("job") or {}
    reprint = bool(job.get("reprint"))
    pharmacy = doc.get("pharmacy") or {}
    header = [str(pharmacy[k]) for k in ("name", "address") if pharmacy.get(k)]
    if job.get("kind") == "rx_label":
        layout = label_layout(cfg)
        if header and cfg.receipt.header == ReceiptConfig().header:
            layout = replace(layout, header=tuple(header))
        return render_rx_label(doc["label"], layout, reprint=reprint)
    layout = receipt_layout(cfg)
    if header and cfg.receipt.header == ReceiptConfig().header:
        layout = replace(layout, header=tuple(header))  # the pharmacy's own name and address
    first_attempt = int(job.get("attempts") or 1) <= 1
    if job.get("kind") == "day_report":
        return render_day_report(doc["report"], layout, store_id=doc.get("store_id"),
                                 printed_at=job.get("created_at"))
    if job.get("kind") == "refund":
        refund = doc["refund"]
        return render_refund(doc["sale"], refund, layout, reprint=reprint,
                             kick=first_attempt and not reprint and refund.get("method") == "cash",
                             store_id=doc.get("store_id"))
    tenders = doc.get("tenders")
    cash = tenders is None or any(t.get("method") == "cash" for t in tenders)
    return render_receipt(doc["sale"], layout, reprint=reprint,
                          kick=first_attempt and not reprint and cash,
                          store_id=doc.get("store_id"), tenders=tenders or ())


def render_drawer_kick(pin: int) -> bytes:
    """Just the cash-drawer pulse (ESC p), e.g. for a "no sale" or a cash payment."""
    from escpos.printer import Dummy

    d = Dummy()
    d.cashdraw(pin)
    data: bytes = d.output
    return data
