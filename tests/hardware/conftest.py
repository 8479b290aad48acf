"""Hardware fixtures: a fake 9100 printer on 127.0.0.1, pty pairs for serial devices, and a
store with committed sales to print."""

from __future__ import annotations

import os
import tty
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hardware.fake_printer import FakeNetworkPrinter
from pharmacy.compliance import InterimGate
from pharmacy.sales import Dispenser
from pharmacy.store import Store


@pytest.fixture
def fake_printer() -> Iterator[FakeNetworkPrinter]:
    fp = FakeNetworkPrinter().start()
    try:
        yield fp
    finally:
        fp.stop()


@dataclass
class Pty:
    master: int
    slave: int
    path: str

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def read(self, n: int = 65536) -> bytes:
        return os.read(self.master, n)


def open_pty() -> Pty:
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    return Pty(master, slave, os.ttyname(slave))


def close_pty(p: Pty) -> None:
    for fd in (p.master, p.slave):
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture
def pty_pair() -> Iterator[Pty]:
    p = open_pty()
    try:
        yield p
    finally:
        close_pty(p)


@pytest.fixture
def sale_id(stocked: Store) -> str:
    """A committed OTC sale of 2 ibuprofen packs from two lots (FEFO) on the stocked store."""
    result = Dispenser(stocked, InterimGate()).sell(
        {"lines": [{"ndc": "0904-6728-60", "qty": 7}], "user": {"id": "u-cashier",
                                                                   "role": "cashier"}})
    return result.sale_id


@pytest.fixture
def data_dir(stocked: Store, sale_id: str) -> Path:
    """The stocked store's directory (with one committed sale) for CLI runs."""
    return Path(stocked.data_dir)
