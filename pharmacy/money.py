"""Money is integer cents; Decimal strings at the edges."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from pharmacy.errors import BadInput

MAX_CENTS = 100_000_000_000  # one billion in money: anything above is a typing error


def to_cents(value: str | int | Decimal, *, field: str = "amount") -> int:
    if isinstance(value, (bool, float)):
        raise BadInput(f"{field} must be a decimal string such as \"1.23\"", code="BAD_MONEY")
    try:
        d = Decimal(str(value))
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
