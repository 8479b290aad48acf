"""Scan events shared by the keyboard-wedge capture and the serial scanner reader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pharmacy.errors import PharmosError
from pharmacy.gs1 import ScanData, parse_scan


@dataclass(frozen=True)
class ScanEvent:
    """One scan: either parsed ``data`` or an ``error`` with a stable code, never both."""

    source: str
    text: str
    at: float
    data: ScanData | None = None
    error: PharmosError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "text": self.text}
        if self.data is not None:
            out.update(self.data.to_json())
        if self.error is not None:
            out["error"] = {"code": self.error.code, "message": self.error.message}
        return out


@dataclass(frozen=True)
class ScannerStatus:
    """A serial scanner came or went (unplugged, replugged, port busy)."""

    source: str
    connected: bool
    message: str
    at: float

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "connected": self.connected, "message": self.message}


def scan_event(source: str, text: str, at: float, *, gs_substitute: str | None = None,
               strict_gs: bool = True) -> ScanEvent:
    try:
        data = parse_scan(text, gs_substitute=gs_substitute, strict_gs=strict_gs)
    except PharmosError as e:
        return ScanEvent(source, text, at, error=e)
    return ScanEvent(source, text, at, data=data)
