from __future__ import annotations

import uuid

import biip
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pharmacy.errors import BadInput
from pharmacy.ids import (
    classify_identifier,
    gtin_from_ndc,
    new_id,
    parse_hyphenated_ndc,
    validate_gtin14,
)

ndc_parts = st.sampled_from([(4, 4, 2), (5, 3, 2), (5, 4, 1)]).flatmap(
    lambda p: st.tuples(*(st.text("0123456789", min_size=n, max_size=n) for n in p)))


@given(ndc_parts)
def test_ndc_to_ndc11_and_gtin(parts: tuple[str, str, str]) -> None:
    text = "-".join(parts)
    p = parse_hyphenated_ndc(text)
    assert p.ndc10 == text and len(p.ndc11) == 11
    assert p.ndc11 == parts[0].zfill(5) + parts[1].zfill(4) + parts[2].zfill(2)
    gtin = gtin_from_ndc(p)
    assert validate_gtin14(gtin) == gtin
    parsed = biip.parse(gtin)  # an independent check-digit oracle
    assert parsed.gtin is not None and parsed.gtin.as_gtin_14() == gtin
    assert gtin[3:13] == p.digits10
    assert classify_identifier(text) == ("ndc10", text)
    assert classify_identifier(gtin) == ("gtin", gtin)


def test_known_billing_forms() -> None:
    assert parse_hyphenated_ndc("1234-5678-90").ndc11 == "01234567890"
    assert parse_hyphenated_ndc("12345-678-90").ndc11 == "12345067890"
    assert parse_hyphenated_ndc("12345-6789-0").ndc11 == "12345678900"
    assert classify_identifier("12345-6789-00") == ("ndc11", "12345678900")


@pytest.mark.parametrize("bad", ["", "123", "1234-567-89", "abcd-efgh-ij", "123456-78-9",
                                 "00309046728604", "1234567890123"])
def test_bad_identifiers(bad: str) -> None:
    with pytest.raises(BadInput):
        classify_identifier(bad)


def test_new_ids_are_time_ordered_and_unique() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == 2000
    assert [i[:13] for i in ids] == sorted(i[:13] for i in ids)
    assert all(i[14] == "7" for i in ids)
    parsed = [uuid.UUID(i) for i in ids]  # canonical RFC 9562 version 7 UUIDs, in order
    assert [str(u) for u in parsed] == ids
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert [u.int >> 64 for u in parsed] == sorted(u.int >> 64 for u in parsed)
