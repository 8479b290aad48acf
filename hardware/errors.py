"""Device errors. Each has a stable code and a message the person at the counter can act on.

Exit code 4 in the CLI: the request was fine, a device was not.
"""

from __future__ import annotations

from pharmacy.errors import BadInput, PharmosError


class HardwareError(PharmosError):
    code = "HARDWARE_ERROR"
    exit_code = 4


class DeviceNotFound(HardwareError):
    """The device is not there: unplugged, wrong port, missing driver."""

    code = "DEVICE_NOT_FOUND"


class PrinterOffline(HardwareError):
    """The printer refuses work: switched off, cover open, in an error state."""

    code = "PRINTER_OFFLINE"


class PaperOut(PrinterOffline):
    code = "PAPER_OUT"


class PrinterTimeout(HardwareError):
    """The printer accepted a connection but does not answer or take data in time."""

    code = "PRINTER_TIMEOUT"


class PrinterDisconnected(HardwareError):
    """The connection dropped while a document was being sent."""

    code = "PRINTER_DISCONNECTED"


class BadDeviceUrl(BadInput):
    code = "BAD_PRINTER_URL"


class BadHardwareConfig(BadInput):
    code = "BAD_HARDWARE_CONFIG"
