from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pharmacy.errors import BadInput
from pharmacy.money import MAX_CENTS, fmt, tax_cents, to_cents


@given(st.integers(-10**12, 10**12), st.integers(0, 10_000))
def test_tax_is_decimal_half_up(amount: int, rate_bp: int) -> None:
    exact = Decimal(amount) * rate_bp / 10000
    assert tax_cents(amount, rate_bp) == int(exact.quantize(Decimal(1), ROUND_HALF_UP))


def test_tax_halves_round_away_from_zero() -> None:
    assert tax_cents(50, 1000) == 5  # 5.0
    assert tax_cents(5, 1000) == 1  # 0.5
    assert tax_cents(-5, 1000) == -1
    assert tax_cents(4, 1000) == 0  # 0.4
    assert tax_cents(749, 825) == 62  # 61.79


@given(st.integers(0, MAX_CENTS))
def test_fmt_round_trips(cents: int) -> None:
    assert to_cents(fmt(cents)) == cents


def test_an_integer_too_long_to_print_is_bad_money() -> None:
    with pytest.raises(BadInput) as e:
        to_cents(10**5000)  # str() of it raises ValueError (int digit limit)
    assert e.value.code == "BAD_MONEY"


def test_plain_amounts() -> None:
    assert [to_cents(v) for v in ("1.23", " 20 ", "5.", ".5", "0.50", "1.2300", 7)] == [
        123, 2000, 500, 50, 50, 123, 700]


@pytest.mark.parametrize("bad", ["1.234", "-1", "abc", 1.5, True, "NaN", "Infinity", "1e30",
                                 fmt(MAX_CENTS + 1), "1E+999999", "1e-999999999", "1_000",
                                 "\uff12\uff10", "+5", "1e2", "1.2.3", "", " ", ".", "0x10",
                                 -1, 10**15])
def test_bad_amounts(bad: object) -> None:
    with pytest.raises(BadInput) as e:
        to_cents(bad)  # type: ignore[arg-type]
    assert e.value.code == "BAD_MONEY"
