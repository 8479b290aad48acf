"""DEA registration numbers (REGULATIONS.md §1.2; §7 rule 12)."""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache

from pharmacy.ids import dea_check_digit

_DEA = re.compile(r"^[A-Z][A-Z9]\d{7}$")
# First letter: registrant type (A/B/F/G practitioners and institutions, M mid-level, P/R
# distributors, X legacy DATA-waiver). Pharmacies dispense on practitioner registrations.
_PRESCRIBER_TYPES = frozenset("ABCDEFGHJKLMPRSTUX")
# A registration lists schedules as "2", "2N", "3", "3N", "4", "5".
SCHEDULE_CODES = {"CI": ("1",), "CII": ("2", "2N"), "CIII": ("3", "3N"), "CIV": ("4",),
                  "CV": ("5",)}


@lru_cache(maxsize=1024)
def dea_number_ok(dea: str) -> bool:
    """Format (2 letters + 7 digits) and check digit: (d1+d3+d5) + 2*(d2+d4+d6) ends in d7."""
    d = dea.strip().upper()
    if not _DEA.match(d) or d[0] not in _PRESCRIBER_TYPES:
        return False
    return dea_check_digit(d[2:8]) == int(d[8])


def with_check_digit(prefix8: str) -> str:
    """Complete a DEA number from its two letters and first six digits (tests, demo data)."""
    return prefix8 + str(dea_check_digit(prefix8[2:8]))


def registration_covers(schedules: object, dea_schedule: str) -> bool | None:
    """None when the registration's schedules are unknown."""
    if not isinstance(schedules, list | tuple):
        return None
    have = {str(s).strip().upper() for s in schedules}
    return any(code in have for code in SCHEDULE_CODES.get(dea_schedule, ()))


def registration_expired(expires: date | None, today: date) -> bool:
    return expires is not None and today > expires
