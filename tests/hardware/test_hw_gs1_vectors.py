"""Replay biip's own test inputs (../shared/data/gs1_vectors/biip_test_inputs.tsv): every row
parses or fails with a stable PharmosError code; element strings with AI (01) give the GTIN."""

from __future__ import annotations

import csv
import re
from collections import Counter

import pytest

from pharmacy.errors import PharmosError
from pharmacy.gs1 import parse_scan
from pharmacy.ids import gs1_check_digit
from tests.conftest import shared_data

pytestmark = pytest.mark.shared_data

CODES = {"SCAN_EMPTY", "SCAN_GARBLED", "SCAN_TOO_LONG", "SCAN_TRUNCATED", "SCAN_UNREADABLE",
         "SCAN_NO_GTIN", "GTIN_CHECK_DIGIT", "SCAN_BAD_EXPIRY", "SCAN_MISSING_GS"}


def rows() -> list[tuple[str, str]]:
    path = shared_data("gs1_vectors", "biip_test_inputs.tsv")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t")
        return [(r["input_repr"].encode("ascii").decode("unicode_escape"),
                 f"{r['source_file']}:{r['line']}") for r in reader]


def test_every_vector_parses_or_fails_with_a_stable_code() -> None:
    data = rows()
    assert len(data) == 382
    outcomes: Counter[str] = Counter()
    for text, where in data:
        try:
            scan = parse_scan(text)
        except PharmosError as e:
            assert e.code in CODES, (where, text, e.code)
            assert e.message, where
            outcomes[e.code] += 1
            continue
        outcomes["ok"] += 1
        assert scan.gtin is not None and len(scan.gtin) == 14, where
        assert gs1_check_digit(scan.gtin[:13]) == int(scan.gtin[13]), where
    assert outcomes["ok"] > 150  # most of biip's inputs are valid GTINs or GS1 strings


def test_element_strings_with_ai_01_give_their_gtin() -> None:
    checked = 0
    for text, where in rows():
        body = text[3:] if text.startswith("]") else text
        m = re.match(r"^01(\d{14})", body)
        if not m:
            continue
        gtin = m.group(1)
        if gs1_check_digit(gtin[:13]) != int(gtin[13]):
            with pytest.raises(PharmosError) as info:
                parse_scan(text)
            assert info.value.code in CODES, where
            continue
        try:
            scan = parse_scan(text)
        except PharmosError as e:  # valid GTIN, but the rest of the string is broken
            assert e.code in CODES - {"GTIN_CHECK_DIGIT"}, (where, text, e.code)
            continue
        checked += 1
        if len(body) > 14:  # an element string, not a bare 14-digit GTIN that starts with 01
            assert scan.gtin == gtin, (where, text)
    assert checked >= 15


def test_hri_and_uri_vectors_with_ai_01() -> None:
    seen = 0
    for text, where in rows():
        m = re.search(r"\(01\)(\d{14})|/01/(\d{14})", text)
        if not m:
            continue
        try:
            scan = parse_scan(text)
        except PharmosError as e:
            assert e.code in CODES, where
            continue
        seen += 1
        assert scan.gtin == (m.group(1) or m.group(2)), where
    assert seen >= 10
