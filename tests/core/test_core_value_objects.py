"""The frozen value objects built for every sale write their ``__init__`` out (faster than the
generated one): each must still set exactly the dataclass's fields, keep its defaults, and
stay frozen, comparable and printable."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from pharmacy.compliance import ComplianceRequest, LineFacts
from pharmacy.inventory import Allocation
from pharmacy.sales import ResolvedLine, SaleResult

LINE = LineFacts(1, "0904-6728-60", "Ibuprofen", 2, "pack", False, None, None, False, None)
ALLOC = Allocation("00904672860:L1", "L1", "2030-01-31", 2)


def _built() -> list[Any]:
    from pharmacy.compliance import Decision
    from pharmacy.inventory import StockChanged

    resolved = ResolvedLine(1, None, 2, (ALLOC,), None)  # type: ignore[arg-type]
    return [
        LINE,
        ALLOC,
        resolved,
        ComplianceRequest(datetime(2026, 11, 27, tzinfo=UTC), "US-TX", (LINE,)),
        SaleResult("s1", (resolved,), 100, 8, 108, Decision("allow"), "d1", 0,
                   StockChanged((), (), 0)),
    ]


@pytest.mark.parametrize("obj", _built(), ids=lambda o: type(o).__name__)
def test_sets_exactly_its_fields_and_stays_frozen(obj: Any) -> None:
    names = [f.name for f in dataclasses.fields(obj)]
    assert list(vars(obj)) == names
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, names[0], None)
    assert dataclasses.replace(obj) == obj and repr(obj).startswith(type(obj).__name__ + "(")


def test_defaults_are_the_declared_ones() -> None:
    assert (LINE.ingredients, LINE.attrs, LINE.allocations) == ((), {}, ())
    req = ComplianceRequest(datetime(2026, 11, 27, tzinfo=UTC), "US-TX", (LINE,))
    assert (req.offline, req.user, req.patient, req.rx, req.extra, req.history) == (
        False, {}, None, None, {}, None)
    other = LineFacts(1, "0904-6728-60", "Ibuprofen", 2, "pack", False, None, None, False, None)
    assert other.attrs is not LINE.attrs  # a new dict each time, as default_factory gives
