"""Per-terminal hardware settings: defaults, validation, storage in the store's settings."""

from __future__ import annotations

from typing import Any

import pytest

from hardware import config as hw
from hardware.errors import BadHardwareConfig
from pharmacy.store import Store


def test_defaults_when_nothing_saved(store: Store) -> None:
    cfg = hw.load(store)
    assert cfg == hw.HardwareConfig()
    assert cfg.printer.url is None and cfg.printer.width == 80
    assert cfg.printer.effective_columns == 42 and cfg.labels is cfg.printer
    assert cfg.scanners[0].kind == "wedge" and cfg.scanners[0].suffix == "\r"


def test_set_and_load_round_trip(store: Store) -> None:
    cfg = hw.set_values(store, [
        ("printer.url", "tcp://192.168.1.50:9100"), ("printer.width", 58),
        ("printer.profile", "TM-T20II"), ("printer.drawer_pin", 5),
        ("printer.code_page", "CP858"),
        ("label_printer.url", "serial:///dev/ttyUSB1?baud=19200"),
        ("label_printer.two_color", True),
        ("receipt.header", ["Main Street Pharmacy", "12 Main St"]),
        ("scanners.0.kind", "serial"), ("scanners.0.port", "/dev/ttyACM0"),
        ("scanners.0.gs_substitute", "~"), ("scanners.1.max_interkey_ms", 20),
    ])
    assert cfg == hw.load(store)
    assert cfg.printer.width == 58 and cfg.printer.effective_columns == 32  # 48 capped at 58 mm
    assert cfg.labels.url == "serial:///dev/ttyUSB1?baud=19200" and cfg.labels.two_color
    assert cfg.receipt.header == ("Main Street Pharmacy", "12 Main St")
    assert [s.kind for s in cfg.scanners] == ["serial", "wedge"]
    assert cfg.scanners[1].max_interkey_ms == 20.0
    assert store.get_json_setting("hardware")["version"] == hw.CONFIG_VERSION
    assert hw.set_values(store, [("label_printer", None)]).label_printer is None


@pytest.mark.parametrize("path,value,where", [
    ("printer.url", "10.0.0.5", "printer.url"),
    ("printer.width", 76, "printer.width"),
    ("printer.width", "80", "printer.width"),
    ("printer.profile", "TM-NOPE", "printer.profile"),
    ("printer.code_page", "CP999", "printer.code_page"),
    ("printer.drawer_pin", 3, "printer.drawer_pin"),
    ("printer.timeout", 0, "printer.timeout"),
    ("printer.status_check", "yes", "printer.status_check"),
    ("printer.colour", True, "printer"),
    ("scanners.0.kind", "bluetooth", "scanners[0].kind"),
    ("scanners.0.gs_substitute", "A", "scanners[0].gs_substitute"),
    ("scanners.0.baud", 1234, "scanners[0].baud"),
    ("scanners.0.min_length", 0, "scanners[0].min_length"),
    ("receipt.header", [1, 2], "receipt.header"),
    ("nonsense.key", 1, "nonsense"),
    ("scanners.5.port", "x", "scanners.5"),
])
def test_bad_settings_are_refused_and_nothing_is_saved(store: Store, path: str, value: Any,
                                                       where: str) -> None:
    before = store.get_setting("hardware")
    with pytest.raises(BadHardwareConfig) as info:
        hw.set_values(store, [(path, value)])
    assert info.value.code == "BAD_HARDWARE_CONFIG" and where in info.value.message
    assert store.get_setting("hardware") == before


def test_serial_scanner_needs_a_port_and_version_is_checked() -> None:
    with pytest.raises(BadHardwareConfig):
        hw.config_from_json({"scanners": [{"kind": "serial"}]})
    with pytest.raises(BadHardwareConfig) as info:
        hw.config_from_json({"version": 99})
    assert "version" in info.value.message


def test_parse_value() -> None:
    assert hw.parse_value("58") == 58 and hw.parse_value("true") is True
    assert hw.parse_value("null") is None and hw.parse_value('["a"]') == ["a"]
    assert hw.parse_value("tcp://10.0.0.5:9100") == "tcp://10.0.0.5:9100"
    assert hw.parse_value("~") == "~"
