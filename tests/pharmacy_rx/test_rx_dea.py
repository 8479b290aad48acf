"""DEA number validation (REGULATIONS.md §1.2 and §7 #12)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pharmacy import rx
from pharmacy.errors import BadInput


def _with_check(prefix: str, six: str) -> str:
    d = [int(c) for c in six]
    return f"{prefix}{six}{(d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10}"


def test_known_numbers() -> None:
    assert rx.dea_checksum_ok("BA1234563")  # 1+3+5 + 2*(2+4+6) = 33 -> 3
    assert rx.dea_checksum_ok("AO7654329")
    assert not rx.dea_checksum_ok("AO7654323")  # 7+5+3 + 2*(6+4+2) = 39
    assert not rx.dea_checksum_ok("BA1234564")
    assert not rx.dea_checksum_ok("B1234563")
    assert rx.validate_dea(" ba1234563 ", prescriber_name="Dr. Maria Alvarez, MD") == "BA1234563"


@pytest.mark.parametrize("bad", ["", "BA123456", "BA12345633", "1A1234563", "IA1234563",
                                 "BA1234564"])
def test_invalid_numbers_hold_with_code(bad: str) -> None:
    with pytest.raises(BadInput) as e:
        rx.validate_dea(bad)
    assert e.value.code == "DEA_PRESCRIBER_INVALID"
    assert "1306.03" in e.value.message


def test_last_name_initial() -> None:
    with pytest.raises(BadInput, match="last name"):
        rx.validate_dea("BA1234563", prescriber_name="Dr. James Okafor")
    assert rx.validate_dea("B91234563", prescriber_name="Dr. James Okafor")  # 9: business
    assert rx.prescriber_last_name("Dr. Ana Ébano Jr.") == "Ébano"
    assert rx.validate_dea("BE1234563", prescriber_name="Dr. Ana Ébano")


@given(st.sampled_from("ABFGMPRX"), st.sampled_from("ABCXYZ9"),
       st.text("0123456789", min_size=6, max_size=6), st.integers(1, 9))
def test_check_digit_law(first: str, second: str, six: str, bump: int) -> None:
    good = _with_check(first + second, six)
    assert rx.dea_checksum_ok(good)
    wrong = good[:-1] + str((int(good[-1]) + bump) % 10)
    assert not rx.dea_checksum_ok(wrong)
