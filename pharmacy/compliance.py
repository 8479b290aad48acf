"""The compliance port: what the dispense transaction asks, and what it gets back.

``pharmacy`` declares the port; ``policy_cache`` implements it with signed Cedar bundles.
``InterimGate`` is the conservative gate used when no policy engine is wired: it refuses
every controlled, pseudoephedrine and India H/H1/X item and allows the rest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

Outcome = Literal["allow", "deny", "hold"]
Severity = Literal["deny", "hold", "warn", "info"]


@dataclass(frozen=True)
class Reason:
    code: str
    message: str
    citation: str | None = None
    severity: Severity = "deny"
    overridable: bool = False
    rule_id: str | None = None
    line_no: int | None = None  # the cart line the reason is about, when it is about one
    overridden_by: str | None = None  # the pharmacist who overrode it (severity becomes info)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    decision: Outcome
    reasons: tuple[Reason, ...] = ()
    obligations: tuple[str, ...] = ()
    bundle_version: str | None = None
    engine: str = "none"

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "reasons": [r.to_json() for r in self.reasons],
            "obligations": list(self.obligations),
            "bundle_version": self.bundle_version,
            "engine": self.engine,
        }


# The frozen dataclasses built for every sale write their __init__ out: the generated one sets
# each field through object.__setattr__, which is the most of the cost of building them.
@dataclass(frozen=True, init=False)
class LineFacts:
    """One cart line as the rules see it: the product's regulatory facts and the quantity."""

    line_no: int
    ndc: str
    name: str
    qty: int
    unit: str
    rx_only: bool
    dea_schedule: str | None
    india_schedule: str | None
    cmea: bool
    pse_mg_per_unit: float | None
    ingredients: tuple[str, ...] = ()
    attrs: dict[str, Any] = field(default_factory=dict)
    allocations: tuple[dict[str, Any], ...] = ()  # [{"lot", "expiry", "qty"}]

    def __init__(self, line_no: int, ndc: str, name: str, qty: int, unit: str, rx_only: bool,
                 dea_schedule: str | None, india_schedule: str | None, cmea: bool,
                 pse_mg_per_unit: float | None, ingredients: tuple[str, ...] = (),
                 attrs: dict[str, Any] | None = None,
                 allocations: tuple[dict[str, Any], ...] = ()) -> None:
        self.__dict__.update(
            line_no=line_no, ndc=ndc, name=name, qty=qty, unit=unit, rx_only=rx_only,
            dea_schedule=dea_schedule, india_schedule=india_schedule, cmea=cmea,
            pse_mg_per_unit=pse_mg_per_unit, ingredients=ingredients,
            attrs={} if attrs is None else attrs, allocations=allocations)


class HistoryPort(Protocol):
    """Facts from the terminal's own records that rules need (rolling windows, prior fills,
    offline usage); ``pharmacy.history.SqlHistory`` implements it."""

    def purchases_since(self, purchaser_key: str, since: datetime) -> list[dict[str, Any]]: ...

    def rx_fill_history(self, rx_number: str) -> list[dict[str, Any]]: ...

    def offline_usage(self, day: str) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, init=False)
class ComplianceRequest:
    """Everything a decision may depend on. Field names follow `pharmos policy check`."""

    at: datetime
    jurisdiction: str
    lines: tuple[LineFacts, ...]
    offline: bool = False
    user: dict[str, Any] = field(default_factory=dict)  # {"id", "role"}
    patient: dict[str, Any] | None = None
    rx: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # request fields rule packs add
    history: HistoryPort | None = None

    def __init__(self, at: datetime, jurisdiction: str, lines: tuple[LineFacts, ...],
                 offline: bool = False, user: dict[str, Any] | None = None,
                 patient: dict[str, Any] | None = None, rx: dict[str, Any] | None = None,
                 extra: dict[str, Any] | None = None, history: HistoryPort | None = None
                 ) -> None:
        self.__dict__.update(
            at=at, jurisdiction=jurisdiction, lines=lines, offline=offline,
            user={} if user is None else user, patient=patient, rx=rx,
            extra={} if extra is None else extra, history=history)

    def to_json(self) -> dict[str, Any]:
        """The request as recorded with the decision (PHI reduced to the patient id)."""
        patient = None if self.patient is None else {"id": self.patient.get("id")}
        return {
            "at": self.at.isoformat(),
            "jurisdiction": self.jurisdiction,
            "offline": self.offline,
            "user": self.user,
            "patient": patient,
            "rx": _strip_rx(self.rx),
            "lines": [
                {"line_no": ln.line_no, "ndc": ln.ndc, "name": ln.name, "qty": ln.qty,
                 "unit": ln.unit, "rx_only": ln.rx_only, "dea_schedule": ln.dea_schedule,
                 "india_schedule": ln.india_schedule, "cmea": ln.cmea,
                 "pse_mg_per_unit": ln.pse_mg_per_unit, "allocations": list(ln.allocations)}
                for ln in self.lines
            ],
            "extra": self.extra,
        }


def _strip_rx(rx: dict[str, Any] | None) -> dict[str, Any] | None:
    if rx is None:
        return None
    out = dict(rx)
    out.pop("patient", None)
    return out


class ComplianceGate(Protocol):
    def decide(self, request: ComplianceRequest) -> Decision: ...


def is_restricted(line: LineFacts) -> bool:
    """Controlled, pseudoephedrine or India H/H1/X: the items offline and interim rules guard."""
    return bool(line.dea_schedule or line.cmea or line.india_schedule in ("H", "H1", "X"))


class InterimGate:
    """Used when no policy engine is wired: restricted items are refused, the rest allowed."""

    engine = "interim"

    def decide(self, request: ComplianceRequest) -> Decision:
        reasons = tuple(
            Reason(
                code="POLICY_ENGINE_MISSING",
                message=(
                    f"{line.name} is a restricted item (controlled, pseudoephedrine or India "
                    "H/H1/X); it cannot be sold until a signed policy bundle is installed"
                ),
                citation=None,
                severity="deny",
            )
            for line in request.lines
            if is_restricted(line)
        )
        if reasons:
            return Decision("deny", reasons, (), None, self.engine)
        return Decision("allow", (), (), None, self.engine)
