"""Printers for the counter, behind the core's printing port
(``pharmacy.print_queue.Printer``: ``url`` and ``submit(job, document) -> Future``).

The hardware package renders receipts and Rx labels as ESC/POS and owns each printer on its
own thread (``hardware.printing.EscposPrinter``); the receipt carries the cash-drawer kick
when a drawer pin is configured. Without a configured printer the terminal uses a recording
printer ("dummy://counter"): documents are rendered and kept, nothing is printed, and every
job stays visible in the print queue for reprint.
"""

from __future__ import annotations

from typing import Any

from pharmacy.store import Store


def hardware_config(store: Store) -> Any:
    """The terminal's hardware settings (hardware.config), read once and passed around."""
    from hardware.config import load

    return load(store)


def open_printers(store: Store, cfg: Any = None) -> tuple[Any, Any]:
    """(receipt printer, label printer) from the terminal's hardware settings."""
    from hardware.printing import EscposPrinter

    cfg = cfg if cfg is not None else hardware_config(store)
    receipt = EscposPrinter(cfg, url=cfg.printer.url or "dummy://counter")
    if cfg.label_printer is not None and cfg.label_printer.url:
        label = EscposPrinter(cfg, cfg.label_printer)
    else:
        label = receipt
    return receipt, label


def scan_settings(store: Store, cfg: Any = None) -> dict[str, Any]:
    """gs_substitute / strict_gs of the first scanner, for parsing scans in the core."""
    cfg = cfg if cfg is not None else hardware_config(store)
    for sc in cfg.scanners:
        return {"gs_substitute": sc.gs_substitute, "strict_gs": sc.strict_gs}
    return {}
