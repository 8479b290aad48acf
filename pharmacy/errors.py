"""One root error, specific subclasses, each with a stable code.

Exit codes used by the CLI: 1 bad input, 2 refused by a domain rule, 3 integrity failure.
"""

from __future__ import annotations

from typing import Any


class PharmosError(Exception):
    """Root of every domain error. ``code`` is stable; ``message`` is for a pharmacist."""

    code: str = "PHARMOS_ERROR"
    exit_code: int = 1

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = details

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}


class BadInput(PharmosError):
    """The request itself is wrong: malformed, unknown identifier, impossible quantity."""

    code = "BAD_INPUT"
    exit_code = 1


class NotFound(BadInput):
    code = "NOT_FOUND"


class UnknownProduct(BadInput):
    code = "UNKNOWN_PRODUCT"


class DomainRefusal(PharmosError):
    """A valid request that a rule refuses (stock, expiry, law)."""

    code = "REFUSED"
    exit_code = 2


class OutOfStock(DomainRefusal):
    code = "OUT_OF_STOCK"


class LotUnavailable(DomainRefusal):
    code = "LOT_UNAVAILABLE"


class LotExpired(DomainRefusal):
    code = "EXPIRED_LOT"


class ComplianceDenied(DomainRefusal):
    """A compliance decision other than allow. ``decision`` holds the full record."""

    code = "COMPLIANCE_DENIED"

    def __init__(self, message: str, *, decision: Any, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.decision = decision

    def to_json(self) -> dict[str, Any]:
        body = super().to_json()
        body["error"]["decision"] = self.decision.to_json()
        return body


class IntegrityFailure(PharmosError):
    code = "INTEGRITY_FAILURE"
    exit_code = 3


class StoreError(PharmosError):
    code = "STORE_ERROR"
    exit_code = 1
