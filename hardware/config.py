"""Hardware configuration per terminal, declared once, stored as JSON in the store's
settings (key ``hardware``) and validated on every read and write.

Example (``pharmos hw config show``)::

    {"version": 1,
     "printer": {"url": "tcp://192.168.1.50:9100", "width": 80, "profile": "TM-T88V",
                 "code_page": null, "columns": null, "timeout": 5.0, "status_check": true,
                 "drawer_pin": 2, "two_color": false},
     "label_printer": null,
     "receipt": {"header": ["Main Street Pharmacy"], "footer": ["Thank you"], "qr": true},
     "scanners": [{"kind": "serial", "port": "/dev/ttyACM0", "baud": 9600, ...}]}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from hardware.errors import BadHardwareConfig
from pharmacy.errors import PharmosError
from pharmacy.gs1 import validate_gs_substitute
from pharmacy.store import Store

SETTING_KEY = "hardware"
CONFIG_VERSION = 1
WIDTHS = (58, 80)
DEFAULT_COLUMNS = {58: 32, 80: 42}
SCANNER_KINDS = ("wedge", "serial")
SCANNER_BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


@dataclass(frozen=True)
class PrinterConfig:
    url: str | None = None
    width: int = 80
    profile: str | None = None
    code_page: str | None = None
    columns: int | None = None
    timeout: float = 5.0
    status_check: bool = True
    drawer_pin: int | None = None
    two_color: bool = False

    @property
    def effective_columns(self) -> int:
        if self.columns:
            return self.columns
        default = DEFAULT_COLUMNS[self.width]
        if self.profile:
            from escpos.capabilities import get_profile

            try:
                cols = int(get_profile(self.profile).get_columns("a"))
            except Exception:
                return default
            return min(cols, default) if self.width == 58 else cols
        return default


@dataclass(frozen=True)
class ReceiptConfig:
    header: tuple[str, ...] = ("pharmos",)
    footer: tuple[str, ...] = ("Thank you. Keep this receipt for returns and recalls.",)
    qr: bool = True


@dataclass(frozen=True)
class ScannerConfig:
    kind: str = "wedge"
    port: str | None = None
    baud: int = 9600
    prefix: str = ""
    suffix: str = "\r"
    gs_substitute: str | None = None
    max_interkey_ms: float = 35.0
    min_length: int = 6
    strict_gs: bool = True


@dataclass(frozen=True)
class HardwareConfig:
    printer: PrinterConfig = field(default_factory=PrinterConfig)
    label_printer: PrinterConfig | None = None
    receipt: ReceiptConfig = field(default_factory=ReceiptConfig)
    scanners: tuple[ScannerConfig, ...] = (ScannerConfig(),)

    @property
    def labels(self) -> PrinterConfig:
        """Labels go to the label printer, or to the receipt printer when there is none."""
        return self.label_printer or self.printer

    def to_json(self) -> dict[str, Any]:
        return {
            "version": CONFIG_VERSION,
            "printer": asdict(self.printer),
            "label_printer": None if self.label_printer is None else asdict(self.label_printer),
            "receipt": {"header": list(self.receipt.header), "footer": list(self.receipt.footer),
                        "qr": self.receipt.qr},
            "scanners": [asdict(s) for s in self.scanners],
        }


def _bad(where: str, why: str) -> BadHardwareConfig:
    return BadHardwareConfig(f"hardware setting {where}: {why}", code="BAD_HARDWARE_CONFIG",
                             setting=where)


def _take(d: Any, where: str, cls: type[Any]) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise _bad(where, "must be an object")
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(d) - known)
    if unknown:
        raise _bad(where, f"unknown field(s) {', '.join(unknown)}; known: "
                   + ", ".join(sorted(known)))
    return dict(d)


def _typed(where: str, value: Any, kinds: tuple[type, ...], what: str) -> Any:
    if isinstance(value, bool) and bool not in kinds:
        raise _bad(where, f"must be {what}")
    if not isinstance(value, kinds):
        raise _bad(where, f"must be {what}")
    return value


def printer_from_json(d: Any, where: str = "printer") -> PrinterConfig:
    d = _take(d, where, PrinterConfig)
    cfg = PrinterConfig(**d)
    if cfg.url is not None:
        from hardware.urls import parse_printer_url

        _typed(f"{where}.url", cfg.url, (str,), "a printer URL")
        try:
            parse_printer_url(cfg.url)
        except PharmosError as e:
            raise _bad(f"{where}.url", e.message) from None
    if cfg.width not in WIDTHS or isinstance(cfg.width, bool):
        raise _bad(f"{where}.width", f"paper width {cfg.width!r} mm is not 58 or 80")
    pages: dict[str, int] = {}
    if cfg.profile is not None:
        from escpos.capabilities import CAPABILITIES, get_profile

        _typed(f"{where}.profile", cfg.profile, (str,), "a printer profile name")
        if cfg.profile not in CAPABILITIES["profiles"]:
            raise _bad(f"{where}.profile", f"unknown printer profile {cfg.profile!r}; known: "
                       + ", ".join(sorted(CAPABILITIES["profiles"])))
        pages = get_profile(cfg.profile).get_code_pages()
    if cfg.code_page is not None:
        _typed(f"{where}.code_page", cfg.code_page, (str,), "a code page name")
        if not pages:
            from escpos.capabilities import get_profile

            pages = get_profile(None).get_code_pages()
        if cfg.code_page.upper() != "AUTO" and cfg.code_page not in pages:
            raise _bad(f"{where}.code_page", f"code page {cfg.code_page!r} is not known to this "
                       "printer profile; known: " + ", ".join(sorted(pages)))
    if cfg.columns is not None:
        _typed(f"{where}.columns", cfg.columns, (int,), "a whole number")
        if not 16 <= cfg.columns <= 80:
            raise _bad(f"{where}.columns", "must be between 16 and 80")
    timeout = _typed(f"{where}.timeout", cfg.timeout, (int, float), "a number of seconds")
    if not 0.1 <= timeout <= 120:
        raise _bad(f"{where}.timeout", "must be between 0.1 and 120 seconds")
    _typed(f"{where}.status_check", cfg.status_check, (bool,), "true or false")
    _typed(f"{where}.two_color", cfg.two_color, (bool,), "true or false")
    if cfg.drawer_pin not in (None, 2, 5) or isinstance(cfg.drawer_pin, bool):
        raise _bad(f"{where}.drawer_pin", "the cash drawer is kicked on pin 2 or 5 (or null)")
    return replace(cfg, timeout=float(timeout))


def scanner_from_json(d: Any, where: str = "scanners[0]") -> ScannerConfig:
    cfg = ScannerConfig(**_take(d, where, ScannerConfig))
    if cfg.kind not in SCANNER_KINDS:
        raise _bad(f"{where}.kind", f"{cfg.kind!r} is not one of {', '.join(SCANNER_KINDS)}")
    if cfg.kind == "serial" and not cfg.port:
        raise _bad(f"{where}.port", "a serial scanner needs its port, e.g. /dev/ttyACM0 or COM4")
    if cfg.port is not None:
        _typed(f"{where}.port", cfg.port, (str,), "a port name")
        if not cfg.port.strip() or len(cfg.port) > 200 or any(
                ord(ch) < 32 or ord(ch) == 127 for ch in cfg.port):
            raise _bad(f"{where}.port", "a port name is 1-200 characters without control "
                       "characters, e.g. /dev/ttyACM0 or COM4")
    if cfg.baud not in SCANNER_BAUDS or isinstance(cfg.baud, bool):
        raise _bad(f"{where}.baud", f"baud rate {cfg.baud!r} is not one of {SCANNER_BAUDS}")
    for name in ("prefix", "suffix"):
        value = _typed(f"{where}.{name}", getattr(cfg, name), (str,), "text")
        if len(value) > 8:
            raise _bad(f"{where}.{name}", "at most 8 characters")
    if cfg.gs_substitute is not None:
        _typed(f"{where}.gs_substitute", cfg.gs_substitute, (str,), "one character")
        try:
            validate_gs_substitute(cfg.gs_substitute)
        except PharmosError as e:
            raise _bad(f"{where}.gs_substitute", e.message) from None
    ms = _typed(f"{where}.max_interkey_ms", cfg.max_interkey_ms, (int, float), "milliseconds")
    if not 1 <= ms <= 200:
        raise _bad(f"{where}.max_interkey_ms", "must be between 1 and 200 ms")
    _typed(f"{where}.min_length", cfg.min_length, (int,), "a whole number")
    if not 1 <= cfg.min_length <= 100:
        raise _bad(f"{where}.min_length", "must be between 1 and 100")
    _typed(f"{where}.strict_gs", cfg.strict_gs, (bool,), "true or false")
    return replace(cfg, max_interkey_ms=float(ms))


def config_from_json(d: Any) -> HardwareConfig:
    if d is None:
        return HardwareConfig()
    if not isinstance(d, dict):
        raise _bad("(root)", "must be an object")
    version = d.get("version", CONFIG_VERSION)
    if version != CONFIG_VERSION:
        raise _bad("version", f"this pharmos reads hardware settings version {CONFIG_VERSION}, "
                   f"not {version!r}")
    unknown = sorted(set(d) - {"version", "printer", "label_printer", "receipt", "scanners"})
    if unknown:
        raise _bad("(root)", f"unknown section(s) {', '.join(unknown)}")
    printer = printer_from_json(d.get("printer", {}), "printer")
    label = d.get("label_printer")
    label_cfg = None if label is None else printer_from_json(label, "label_printer")
    r = _take(d.get("receipt", {}), "receipt", ReceiptConfig)
    receipt = ReceiptConfig()
    for name in ("header", "footer"):
        if name in r:
            lines = r[name]
            if isinstance(lines, str):
                lines = [lines]
            if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
                raise _bad(f"receipt.{name}", "must be a list of text lines")
            if len(lines) > 10 or any(len(x) > 80 for x in lines):
                raise _bad(f"receipt.{name}", "at most 10 lines of 80 characters")
            if name == "header":
                receipt = replace(receipt, header=tuple(lines))
            else:
                receipt = replace(receipt, footer=tuple(lines))
    if "qr" in r:
        receipt = replace(receipt, qr=_typed("receipt.qr", r["qr"], (bool,), "true or false"))
    scanners_raw = d.get("scanners", [asdict(ScannerConfig())])
    if not isinstance(scanners_raw, list) or len(scanners_raw) > 8:
        raise _bad("scanners", "must be a list of at most 8 scanners")
    scanners = tuple(scanner_from_json(s, f"scanners[{i}]") for i, s in enumerate(scanners_raw))
    return HardwareConfig(printer, label_cfg, receipt, scanners)


def load(store: Store) -> HardwareConfig:
    """The terminal's hardware settings (defaults when none were saved)."""
    return config_from_json(store.get_json_setting(SETTING_KEY))


def save(store: Store, cfg: HardwareConfig) -> HardwareConfig:
    data = cfg.to_json()
    checked = config_from_json(json.loads(json.dumps(data)))
    store.set_json_setting(SETTING_KEY, data)
    return checked


def parse_value(text: str) -> Any:
    """A value typed after KEY=: JSON when it parses (58, true, null, ["a","b"]), else text."""
    try:
        return json.loads(text)
    except ValueError:
        return text
    except RecursionError:  # brackets nested thousands deep: no setting holds that
        raise _bad("(value)", "the value is nested too deeply") from None


def set_values(store: Store, assignments: list[tuple[str, Any]]) -> HardwareConfig:
    """Apply dotted-path assignments (``printer.url``, ``scanners.0.port``,
    ``receipt.header``) to the saved settings, validate the whole, and save."""
    data = load(store).to_json()
    for path, value in assignments:
        _assign(data, path, value)
    cfg = config_from_json(data)
    return save(store, cfg)


def _assign(data: dict[str, Any], path: str, value: Any) -> None:
    keys = [k for k in path.split(".") if k]
    if not keys:
        raise _bad(path or "(empty)", "give a setting name such as printer.url")
    node: Any = data
    for i, key in enumerate(keys[:-1]):
        where = ".".join(keys[:i + 1])
        if isinstance(node, list):
            node = node[_index(node, key, where, grow=True)]
        elif isinstance(node, dict):
            if node.get(key) is None:
                if key not in ("label_printer", "printer", "receipt"):
                    raise _bad(where, "no such setting")
                node[key] = {}
            node = node[key]
        else:
            raise _bad(where, "is not a section")
    last = keys[-1]
    if isinstance(node, list):
        node[_index(node, last, path, grow=True)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise _bad(path, "is not a section")


def _index(node: list[Any], key: str, where: str, *, grow: bool) -> int:
    if not (key.isascii() and key.isdigit()):
        raise _bad(where, "expected a list position such as 0")
    i = int(key)
    if grow and i == len(node):
        node.append(asdict(ScannerConfig()))
    if i >= len(node):
        raise _bad(where, f"there are only {len(node)} entries")
    return i
