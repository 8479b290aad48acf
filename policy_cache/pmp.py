"""PMP (ASAP 4.x) file checks and deadlines (REGULATIONS.md §2; §7 rules 37-39)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from pharmacy.errors import BadInput
from policy_cache.records import Alert


class AsapInvalid(BadInput):
    code = "ASAP_INVALID"


@dataclass(frozen=True)
class AsapFile:
    element: str
    terminator: str
    segments: tuple[tuple[str, ...], ...]

    def ids(self) -> list[str]:
        return [s[0] for s in self.segments]


def parse_asap(text: str) -> AsapFile:
    """Split an ASAP file: the element delimiter follows "TH"; TH09 declares the segment
    terminator. CR/LF after a terminator is tolerated."""
    if not text.startswith("TH") or len(text) < 4:
        raise AsapInvalid("an ASAP file starts with a TH segment")
    el = text[2]
    head = text.split(el, 9)
    if len(head) < 10 or not head[9]:
        raise AsapInvalid("the TH segment has no TH09 segment terminator")
    term = head[9][0]
    body = [s.strip("\r\n") for s in text.split(term)]
    segs = tuple(tuple(s.split(el)) for s in body if s)
    return AsapFile(el, term, segs)


def validate_asap(text: str) -> AsapFile:
    """Rule 37: TT01 must equal TH02 and TT02 the number of segments including TH and TT."""
    f = parse_asap(text)
    if not f.segments or f.segments[0][0] != "TH" or f.segments[-1][0] != "TT":
        raise AsapInvalid("an ASAP file runs from TH to TT", code="ASAP_STRUCTURE")
    th, tt = f.segments[0], f.segments[-1]
    th02 = th[2] if len(th) > 2 else ""
    tt01 = tt[1] if len(tt) > 1 else ""
    tt02 = tt[2] if len(tt) > 2 else ""
    if tt01 != th02:
        raise AsapInvalid(f"TT01 {tt01!r} does not match TH02 {th02!r} [ASAP 4.x]",
                          code="ASAP_TRAILER_MISMATCH")
    if tt02 != str(len(f.segments)):
        raise AsapInvalid(f"TT02 says {tt02!r} segments but the file has {len(f.segments)} "
                          "[ASAP 4.x]", code="ASAP_TRAILER_MISMATCH")
    return f


def zero_report(*, control_number: str, created: datetime, period_start: date, period_end: date,
                pharmacy: dict[str, str], version: str = "4.2A", element: str = "*",
                terminator: str = "~") -> str:
    """Rule 38: the report for a period with no controlled substances dispensed
    (PAT07 = "Report", PAT08 = "Zero", DSP05 = report date; IS03 = period)."""
    e = element
    ident = pharmacy.get("npi", ""), pharmacy.get("ncpdp", ""), pharmacy.get("dea", "")
    if not any(ident):
        raise AsapInvalid("PHA needs an NPI, NCPDP or DEA number", code="ASAP_PHA_ID")
    period = f"#{period_start:%Y%m%d}#-#{period_end:%Y%m%d}#"
    segs = [
        e.join(["TH", version, control_number, "01", "", f"{created:%Y%m%d}",
                f"{created:%H%M%S}", "P", "", terminator]).removesuffix(terminator),
        e.join(["IS", pharmacy.get("is_id", ident[0] or ident[1] or ident[2]),
                pharmacy.get("name", ""), period]),
        e.join(["PHA", *ident]),
        e.join(["PAT", "", "", "", "", "", "", "Report", "Zero"]),
        e.join(["DSP", "", "", "", "", f"{created:%Y%m%d}"]),
    ]
    segs.append(e.join(["TP", str(len(segs) - 2 + 1)]))  # PHA .. TP inclusive [B]
    segs.append(e.join(["TT", control_number, str(len(segs) + 1)]))
    # TH09 holds the terminator itself, so TH is written as "...TH08*<term>"
    return "".join(s + terminator for s in segs)


def working_day_end(d: date, tz: tzinfo, holidays: Collection[date] = (),
                    close: time = time(23, 59, 59)) -> datetime:
    while d.weekday() >= 5 or d in holidays:
        d += timedelta(days=1)
    return datetime.combine(d, close, tz)


def pmp_deadline_alerts(queue: Sequence[dict[str, Any]], now: datetime, tz: tzinfo, *,
                        margin: timedelta = timedelta(hours=4),
                        holidays: Collection[date] = ()) -> list[Alert]:
    """Rule 39 (CA, 1 working day): every unsent CA dispense whose deadline (end of the next
    working day) is within ``margin`` or past. Queue items: {"dispensed_at", "sent_at",
    "jurisdiction", "ref"}."""
    alerts = []
    for item in queue:
        if item.get("sent_at") or item.get("jurisdiction") != "US-CA":
            continue
        dispensed: datetime = item["dispensed_at"]
        due = working_day_end(dispensed.astimezone(tz).date() + timedelta(days=1), tz, holidays)
        if now >= due - margin:
            alerts.append(Alert(
                "PMP_DEADLINE_AT_RISK",
                f"CURES report for {item.get('ref', 'a dispense')} is unsent and due by "
                f"{due.isoformat()}; connect and send the PMP queue now",
                "CA H&S 11165(d)", due))
    return alerts
