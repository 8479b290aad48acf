"""Stored times: ``iso`` writes UTC with microseconds and a Z, whatever zone it is given,
and ``parse_iso`` reads it back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from pharmacy.clock import iso, parse_iso

zones = st.sampled_from([UTC, timezone(timedelta(hours=-5)),
                         timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=14))])
times = st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30),
                     timezones=zones)


@given(st.lists(times, min_size=1, max_size=20))
def test_iso_is_utc_isoformat_with_microseconds_and_z(values: list[datetime]) -> None:
    for dt in values:  # in any order: iso remembers the last minute it wrote
        u = dt.astimezone(UTC)
        assert iso(dt) == u.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
        assert parse_iso(iso(dt)) == u


def test_iso_across_a_minute_and_a_year() -> None:
    t = datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert iso(t) == "2026-12-31T23:59:59.999999Z"
    assert iso(t + timedelta(microseconds=1)) == "2027-01-01T00:00:00.000000Z"
    assert iso(t) == "2026-12-31T23:59:59.999999Z"
    assert iso(datetime(2026, 12, 31, 23, 59, 0, 5, tzinfo=UTC)) == "2026-12-31T23:59:00.000005Z"
