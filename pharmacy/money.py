"""Money is integer cents; Decimal strings at the edges."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from pharmacy.errors import BadInput

MAX_CENTS = 100_000_000_000  # one billion in money: anything above is a typing error


_PLAIN = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+", re.ASCII)


def to_cents(value: str | int | Decimal, *, field: str = "amount") -> int:
    if isinstance(value, (bool, float)):
        raise BadInput(f"{field} must be a decimal string such as \"1.23\"", code="BAD_MONEY")
    if isinstance(value, int) and not 0 <= value <= MAX_CENTS // 100:
        raise BadInput(f"{field} must be zero or more, and at most {MAX_CENTS // 100}",
                       code="BAD_MONEY")
    text = str(value).strip()
    # plain ASCII digits and one point: Decimal alone would also read "1_000", "1e2",
    # "+5" and other scripts' digits ("２０") as amounts
    if not isinstance(value, (int, Decimal)) and not _PLAIN.fullmatch(text):
        raise BadInput(f"{field} {text[:40]!r} is not an amount such as \"1.23\"",
                       code="BAD_MONEY")
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise BadInput(f"{field} '{value}' is not a decimal amount", code="BAD_MONEY") from None
    if not d.is_finite() or d < 0:
        raise BadInput(f"{field} '{value}' must be zero or more", code="BAD_MONEY")
    if d > MAX_CENTS // 100:  # before arithmetic: 1E+999999 would overflow Decimal's context
        raise BadInput(f"{field} '{value}' is implausibly large", code="BAD_MONEY")
    _sign, digits, exponent = d.as_tuple()  # exact, no context: '1e-999999999' stays itself
    zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    if any(digits) and isinstance(exponent, int) and exponent + zeros < -2:
        raise BadInput(f"{field} '{value}' has more than 2 decimals", code="BAD_MONEY")
    return int(d * 100)


def fmt(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    c = abs(cents)
    return f"{sign}{c // 100}.{c % 100:02d}"


def tax_cents(amount_cents: int, rate_bp: int) -> int:
    """Tax on an amount at a rate in basis points, to the cent, halves away from zero
    (Decimal's ROUND_HALF_UP), in exact integer arithmetic."""
    exact = amount_cents * rate_bp  # in 1/10,000 of a cent
    cents = (abs(exact) + 5_000) // 10_000
    return cents if exact >= 0 else -cents
