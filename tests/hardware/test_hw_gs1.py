"""GS1 parsing of package barcodes: DSCSA fields, AIM identifiers, lost GS, bad input."""

from __future__ import annotations

import string
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pharmacy import catalog
from pharmacy.errors import BadInput, LotExpired, PharmosError, UnknownProduct
from pharmacy.gs1 import (
    CSET82,
    GS,
    check_package,
    element_string,
    missing_gs_suspect,
    parse_scan,
    product_for_scan,
    validate_gs_substitute,
)
from pharmacy.ids import gs1_check_digit
from pharmacy.store import Store

IBU_GTIN = "00309046728603"  # NDC 0904-6728-60 (4-4-2)
SUDAFED_GTIN = "00350580451014"  # NDC 50580-451-01 (5-3-2)
DSCSA = f"01{IBU_GTIN}17271200" + f"10IB2701{GS}21SN000123"


def code_of(text: str, **kw: object) -> str:
    with pytest.raises(PharmosError) as info:
        parse_scan(text, **kw)  # type: ignore[arg-type]
    return info.value.code


def test_dscsa_datamatrix_with_aim_prefix() -> None:
    s = parse_scan("]d2" + DSCSA + "\r\n")
    assert s.gtin == IBU_GTIN and s.ndc_digits == "0904672860"
    assert s.lot == "IB2701" and s.serial == "SN000123"
    assert s.expiry == date(2027, 12, 31)  # DD=00: end of month
    assert s.symbology == "gs1-datamatrix"
    assert s.to_json() == {"gtin": IBU_GTIN, "ndc": "0904672860", "lot": "IB2701",
                           "expiry": "2027-12-31", "serial": "SN000123",
                           "symbology": "gs1-datamatrix"}


@pytest.mark.parametrize("prefix,name", [("]d2", "gs1-datamatrix"), ("]C1", "gs1-128"),
                                         ("]Q3", "gs1-qr")])
def test_aim_identifiers(prefix: str, name: str) -> None:
    s = parse_scan(prefix + f"01{IBU_GTIN}17270131")
    assert (s.gtin, s.expiry, s.symbology) == (IBU_GTIN, date(2027, 1, 31), name)


def test_ean13_and_bare_gtins() -> None:
    assert parse_scan("]E05901234123457").symbology == "ean-13"
    assert parse_scan("]E05901234123457").gtin == "05901234123457"
    assert parse_scan(IBU_GTIN).ndc_digits == "0904672860"
    assert parse_scan("309046728603").gtin == IBU_GTIN  # UPC-A on an OTC box


def test_hri_and_digital_link() -> None:
    s = parse_scan(f"(01){IBU_GTIN}(17)270131(10)IB2701(21)SN9")
    assert (s.lot, s.serial, s.expiry) == ("IB2701", "SN9", date(2027, 1, 31))
    s = parse_scan(f"https://id.gs1.org/01/{IBU_GTIN}/10/IB2701/21/SN9?17=270131")
    assert (s.gtin, s.lot, s.serial, s.expiry) == (IBU_GTIN, "IB2701", "SN9", date(2027, 1, 31))


def test_gs_substitute_from_a_keyboard_wedge() -> None:
    s = parse_scan(DSCSA.replace(GS, "~"), gs_substitute="~")
    assert (s.lot, s.serial) == ("IB2701", "SN000123")
    with pytest.raises(BadInput) as info:
        validate_gs_substitute("A")
    assert info.value.code == "BAD_GS_SUBSTITUTE"
    assert code_of(DSCSA, gs_substitute="1") == "BAD_GS_SUBSTITUTE"
    for ok in "~|^#@":
        assert validate_gs_substitute(ok) == ok and ok not in CSET82


# ---- bad input: each gives a clear, stable code ----------------------------------------------
def test_missing_gs_merges_lot_and_serial_is_refused() -> None:
    lost = DSCSA.replace(GS, "")
    with pytest.raises(BadInput) as info:
        parse_scan(lost)
    assert info.value.code == "SCAN_MISSING_GS"
    assert "IB2701" in info.value.message and "SN000123" in info.value.message
    # the same string is accepted when the operator says the lot really is that long
    assert parse_scan(lost, strict_gs=False).lot == "IB270121SN000123"
    # serial first, lot second, GS lost
    assert code_of(f"01{IBU_GTIN}21SER110LOT7") == "SCAN_MISSING_GS"
    # a lost GS that makes the lot longer than 20 characters fails in biip: still diagnosed
    assert code_of(f"01{IBU_GTIN}1727123110ABCDEFGHIJKL21SERIAL12345") == "SCAN_MISSING_GS"
    # a GTIN without an embedded NDC is not second-guessed
    assert parse_scan("010590123412345710AB21CD").lot == "AB21CD"


def test_missing_gs_expiry_swallowed() -> None:
    s = parse_scan(f"01{IBU_GTIN}10LOT5{GS}17270131", strict_gs=True)
    assert s.expiry == date(2027, 1, 31)
    assert missing_gs_suspect(parse_scan(f"01{IBU_GTIN}10LOT517270131",
                                         strict_gs=False)) is not None
    assert code_of(f"01{IBU_GTIN}10LOT517270131") == "SCAN_MISSING_GS"


@pytest.mark.parametrize("text", [
    f"01{IBU_GTIN[:9]}",  # cut inside the GTIN
    f"01{IBU_GTIN}1727",  # cut inside the expiry
    f"01{IBU_GTIN}172712",
    f"]d201{IBU_GTIN}1727123110",  # AI 10 with no data
    "]d",
])
def test_truncated_scans(text: str) -> None:
    assert code_of(text) == "SCAN_TRUNCATED"


def test_bad_check_digit() -> None:
    bad = IBU_GTIN[:-1] + str((int(IBU_GTIN[-1]) + 1) % 10)
    assert code_of(bad) == "GTIN_CHECK_DIGIT"
    assert code_of(f"]d201{bad}17270131") == "GTIN_CHECK_DIGIT"
    assert code_of(f"(01){bad}(10)A") == "GTIN_CHECK_DIGIT"


@pytest.mark.parametrize("text,code", [
    ("", "SCAN_EMPTY"), ("\r\n", "SCAN_EMPTY"), ("]d2", "SCAN_EMPTY"),
    ("01\x00\x1b\x90junk", "SCAN_GARBLED"), ("ÿþ" + IBU_GTIN, "SCAN_GARBLED"),
    ("1" * 2000, "SCAN_TOO_LONG"), ("hello world", "SCAN_UNREADABLE"),
    (f"01{IBU_GTIN}17261332", "SCAN_BAD_EXPIRY"), (f"01{IBU_GTIN}17260231", "SCAN_BAD_EXPIRY"),
    ("00106141412345678908", "SCAN_NO_GTIN"), ("(17)221231", "SCAN_NO_GTIN"),
])
def test_bad_scans_have_stable_codes(text: str, code: str) -> None:
    assert code_of(text) == code


# ---- catalog and DSCSA rules ----------------------------------------------------------------
def test_gtin_to_ndc_through_the_catalog(store: Store) -> None:
    p = product_for_scan(store.conn, parse_scan(f"01{SUDAFED_GTIN}17270531"))
    assert p.ndc == "50580-451-01"  # the 5-3-2 pattern comes from the catalog
    p = product_for_scan(store.conn, parse_scan("]d2" + DSCSA))
    assert p.ndc == "0904-6728-60"
    case_gtin = "10309046728600"  # indicator 1: a case of the same NDC
    assert product_for_scan(store.conn, parse_scan(case_gtin)).ndc == "0904-6728-60"


def test_unknown_gtin(store: Store) -> None:
    body = "0031111222233"
    unknown = body + str(gs1_check_digit(body))
    with pytest.raises(UnknownProduct) as info:
        product_for_scan(store.conn, parse_scan(unknown))
    assert info.value.code == "UNKNOWN_PRODUCT" and unknown in info.value.message


def test_dscsa_mismatch_and_expired_lot() -> None:
    scan = parse_scan("]d2" + DSCSA)
    check_package(scan, today=date(2026, 11, 2), selected_ndc="0904-6728-60")
    with pytest.raises(BadInput) as info:
        check_package(scan, today=date(2026, 11, 2), selected_ndc="0093-0058-01")
    assert info.value.code == "DSCSA_PRODUCT_MISMATCH"
    with pytest.raises(LotExpired) as exp:
        check_package(scan, today=date(2028, 1, 1))
    assert exp.value.code == "EXPIRED_LOT" and exp.value.exit_code == 2
    check_package(scan, today=date(2027, 12, 31))  # the last day of the month is still good
    foreign = parse_scan("05901234123457")
    with pytest.raises(BadInput):
        check_package(foreign, today=date(2026, 1, 1), selected_ndc="0904-6728-60")


def test_sale_path_uses_the_same_parser(stocked: Store) -> None:
    from pharmacy.compliance import InterimGate
    from pharmacy.sales import Dispenser

    scan = element_string(IBU_GTIN, expiry=date(2027, 1, 31), lot="IB2701", serial="S1")
    r = Dispenser(stocked, InterimGate()).sell({"lines": [{"scan": scan, "qty": 1,
                                                           "ndc": "0904-6728-60"}]})
    assert r.lines[0].allocations[0].lot == "IB2701"
    assert catalog.lookup(stocked.conn, IBU_GTIN).ndc == "0904-6728-60"


# ---- properties -----------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=300), max_size=80))
def test_junk_only_ever_raises_pharmos_errors(text: str) -> None:
    try:
        parse_scan(text)
    except PharmosError as e:
        assert e.code and e.message


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789" + GS + "]dCQ1023AB~", max_size=60),
       st.sampled_from([None, "~"]))
def test_gs1_shaped_junk_only_raises_pharmos_errors(text: str, sub: str | None) -> None:
    try:
        parse_scan(text, gs_substitute=sub)
    except PharmosError as e:
        assert e.code


cset = st.text(alphabet=sorted(CSET82 - set("()")), min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(body=st.text(alphabet=string.digits, min_size=13, max_size=13),
       expiry=st.dates(min_value=date(2000, 1, 1), max_value=date(2060, 12, 31)),
       end_of_month=st.booleans(), lot=cset, serial=cset,
       prefix=st.sampled_from(["", "]d2", "]C1", "]Q3"]), sub=st.sampled_from([None, "~", "|"]))
def test_round_trip(body: str, expiry: date, end_of_month: bool, lot: str, serial: str,
                    prefix: str, sub: str | None) -> None:
    gtin = body + str(gs1_check_digit(body))
    raw_exp = expiry.strftime("%y%m") + "00" if end_of_month else expiry
    text = prefix + element_string(gtin, expiry=raw_exp, lot=lot, serial=serial,
                                   separator=sub or GS)
    s = parse_scan(text, gs_substitute=sub)
    assert (s.gtin, s.lot, s.serial) == (gtin, lot, serial)
    assert s.expiry is not None
    if end_of_month:
        assert (s.expiry.year, s.expiry.month) == (expiry.year, expiry.month)
        assert (s.expiry + timedelta(days=1)).day == 1
    else:
        assert s.expiry == expiry


def test_short_lot_containing_21_on_an_otc_box_is_not_suspect() -> None:
    for lot in ("A2130", "K21A4567B", "21ABC"):
        s = parse_scan(f"01{IBU_GTIN}17270131" + f"10{lot}")
        assert s.lot == lot and s.serial is None
