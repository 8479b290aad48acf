"""PMP (ASAP 4.x) file checks and deadlines (REGULATIONS.md §2; §7 rules 37-39)."""

from __future__ import annotations

import json
import re
import sqlite3
import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from pharmacy.clock import iso, parse_iso
from pharmacy.errors import BadInput
from policy_cache.facts import rx_origin
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


def _header(element: str, version: str, control_number: str, created: datetime,
            file_type: str) -> str:
    """TH. TH09 holds the terminator itself: TH ends "...*<TH08>*" and the terminator that
    follows it is TH09."""
    return element.join(["TH", version, control_number, "01", "", f"{created:%Y%m%d}",
                         f"{created:%H%M%S}", file_type, "", ""])


def _closed(segs: list[str], pha: int, control_number: str, element: str,
            terminator: str) -> str:
    """The file: ``segs`` (PHA at index ``pha``), TP (counting PHA .. TP [B]) and TT."""
    segs = [*segs, element.join(["TP", str(len(segs) - pha + 1)])]
    segs.append(element.join(["TT", control_number, str(len(segs) + 1)]))
    return "".join(s + terminator for s in segs)


def npi_ok(npi: str) -> bool:
    """An NPI is 10 digits whose last is the Luhn check digit of 80840 and the first nine
    (CMS, NPI check digit)."""
    if not re.fullmatch(r"[0-9]{10}", npi):
        return False
    total = 0
    for i, ch in enumerate(reversed("80840" + npi[:9])):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return (10 - total % 10) % 10 == int(npi[9])


def check_pharmacy_ids(pharmacy: dict[str, str]) -> tuple[str, str, str]:
    """The pharmacy's NPI, NCPDP and DEA numbers for the PHA segment: at least one, each
    well formed (a state's PMP rejects a file whose pharmacy it cannot identify)."""
    from pharmacy.rx import dea_checksum_ok

    npi, ncpdp, dea = (str(pharmacy.get(k) or "").strip() for k in ("npi", "ncpdp", "dea"))
    if not (npi or ncpdp or dea):
        raise AsapInvalid("PHA needs the pharmacy's NPI, NCPDP or DEA number; set "
                          "pharmacy.npi, pharmacy.ncpdp or pharmacy.dea", code="ASAP_PHA_ID")
    if npi and not npi_ok(npi):
        raise AsapInvalid(f"pharmacy NPI {npi[:20]!r} is not 10 digits with a valid check "
                          "digit", code="ASAP_PHA_ID", field="npi")
    if ncpdp and not re.fullmatch(r"[0-9]{7}", ncpdp):
        raise AsapInvalid(f"pharmacy NCPDP number {ncpdp[:20]!r} is not 7 digits",
                          code="ASAP_PHA_ID", field="ncpdp")
    if dea and not dea_checksum_ok(dea):
        raise AsapInvalid(f"pharmacy DEA number {dea[:20]!r} is not 2 letters and 7 digits "
                          "with a valid check digit", code="ASAP_PHA_ID", field="dea")
    return npi, ncpdp, dea.upper()


def zero_report(*, control_number: str, created: datetime, period_start: date, period_end: date,
                pharmacy: dict[str, str], version: str = "4.2A", element: str = "*",
                terminator: str = "~") -> str:
    """Rule 38: the report for a period with no controlled substances dispensed
    (PAT07 = "Report", PAT08 = "Zero", DSP05 = report date; IS03 = period)."""
    e = element
    ident = check_pharmacy_ids(pharmacy)
    period = f"#{period_start:%Y%m%d}#-#{period_end:%Y%m%d}#"
    segs = [
        _header(e, version, control_number, created, "P"),
        e.join(["IS", pharmacy.get("is_id", ident[0] or ident[1] or ident[2]),
                pharmacy.get("name", ""), period]),
        e.join(["PHA", *ident]),
        e.join(["PAT", "", "", "", "", "", "", "Report", "Zero"]),
        e.join(["DSP", "", "", "", "", f"{created:%Y%m%d}"]),
    ]
    return _closed(segs, 2, control_number, e, terminator)


def working_day_end(d: date, tz: tzinfo, holidays: Collection[date] = (),
                    close: time = time(23, 59, 59)) -> datetime:
    while d.weekday() >= 5 or d in holidays:
        d += timedelta(days=1)
    return datetime.combine(d, close, tz)


# states whose PMP wants a dispensing by the end of the next working day: program, citation
NEXT_WORKING_DAY = {"US-CA": ("CURES", "CA H&S 11165(d)"),
                    "US-TX": ("Texas PMP", "22 TAC 315.6"),
                    "US-FL": ("E-FORCSE", "Fla. Admin. Code 64K-1.004(3)")}


def pmp_deadline_alerts(queue: Sequence[dict[str, Any]], now: datetime, tz: tzinfo, *,
                        margin: timedelta = timedelta(hours=4),
                        holidays: Collection[date] = (),
                        jurisdictions: Collection[str] = ("US-CA",)) -> list[Alert]:
    """Rule 39 (CA, 1 working day; with ``jurisdictions``, any state of NEXT_WORKING_DAY):
    every unsent dispense whose deadline (end of the next working day) is within ``margin``
    or past. Queue items: {"dispensed_at", "sent_at", "jurisdiction", "ref"}."""
    alerts = []
    for item in queue:
        j = item.get("jurisdiction")
        if item.get("sent_at") or j not in jurisdictions or j not in NEXT_WORKING_DAY:
            continue
        program, citation = NEXT_WORKING_DAY[j]
        dispensed: datetime = item["dispensed_at"]
        due = working_day_end(dispensed.astimezone(tz).date() + timedelta(days=1), tz, holidays)
        if now >= due - margin:
            alerts.append(Alert(
                "PMP_DEADLINE_AT_RISK",
                f"{program} report for {item.get('ref', 'a dispense')} is unsent and due by "
                f"{due.isoformat()}; connect and send the PMP queue now",
                citation, due))
    return alerts


# ---- dispensing reports ---------------------------------------------------------------------
# Field codes marked [B] in REGULATIONS.md §2.3 follow ASAP 4.2; a state's Data Submission
# Guide is the final word on them (docs/pmp.md).
_ADDRESS = re.compile(r"^\s*(?P<street>.+?),\s*(?P<city>[^,]+?),?\s+(?P<state>[A-Za-z]{2})\s+"
                      r"(?P<zip>\d{5}(?:-?\d{4})?)\s*$")
_TITLES = {"dr", "dr.", "mr", "mr.", "mrs", "mrs.", "ms", "ms.", "miss", "prof", "prof."}
_UNIT_CODES = {"ml": "02", "milliliter": "02", "g": "03", "gram": "03"}  # else 01 each [B]
# DSP12, how the prescription reached the pharmacy (facts.ORIGINS) [B]
_ORIGIN_CODES = {"paper": "01", "oral": "02", "fax": "04", "electronic": "05"}
# PAT02, the kind of the patient's ID in PAT03 [B]; a number alone is "other"
_ID_QUALIFIERS = {"military": "01", "military id": "01", "state id": "02", "state_id": "02",
                  "permanent resident card": "04", "permanent_resident": "04",
                  "green card": "04", "passport": "05", "driver licence": "06",
                  "driver license": "06", "driver's license": "06", "drivers_license": "06",
                  "dl": "06", "tribal id": "08", "tribal": "08"}
_US_STATES = frozenset((
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN",
    "IA", "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH",
    "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT",
    "VT", "VA", "WA", "WV", "WI", "WY", "AS", "GU", "MP", "PR", "VI"))
# "TXDL12345678", "NY ID 123 456 789": a US state's driver licence or ID card number
_STATE_ID = re.compile(r"^(?P<state>[A-Z]{2})\s*(?P<kind>DL|ID)\s*[-#:]?\s*(?P<number>[A-Z0-9]"
                       r"[A-Z0-9 -]*)$")


def split_address(text: str | None) -> tuple[str, str, str, str]:
    """(street, city, state, ZIP digits) of "street, city ST 12345"; anything else is kept
    whole as the street."""
    m = _ADDRESS.match(text or "")
    if m is None:
        return (text or "").strip(), "", "", ""
    return (m["street"].strip(), m["city"].strip(), m["state"].upper(),
            m["zip"].replace("-", ""))


def patient_id_elements(doc: Any) -> tuple[str, str, str]:
    """(PAT01 jurisdiction, PAT02 qualifier, PAT03 ID) of a patient's ``id_document``:
    ``{"type", "number", "jurisdiction" or "state"}``, or a US state's licence or ID card
    number written with its state and kind first ("TXDL12345678"). Anything else, or no ID,
    leaves all three empty: a number whose kind is unknown is not reported."""
    if isinstance(doc, dict):
        number = str(doc.get("number") or "").strip()
        if not number:
            return "", "", ""
        kind = str(doc.get("type") or "").strip().lower()
        where = str(doc.get("jurisdiction") or doc.get("state") or "").strip().upper()
        if not (len(where) == 2 and where.isascii() and where.isalpha()):
            where = ""  # PAT01 is a two-letter state or country code, never a name
        return where, _ID_QUALIFIERS.get(kind, "99"), number
    m = _STATE_ID.match(str(doc or "").strip().upper())
    if m is None or m["state"] not in _US_STATES:
        return "", "", ""
    return (m["state"], "06" if m["kind"] == "DL" else "02",
            m["number"].replace(" ", "").replace("-", ""))


def split_name(text: str | None) -> tuple[str, str, str]:
    """(last, first, middle) of "Last, First Middle" or "First Middle Last" (titles such as
    "Dr." dropped)."""
    raw = (text or "").strip()
    if "," in raw:
        last, _, rest = raw.partition(",")
        given = [w for w in rest.split() if w.lower() not in _TITLES]
        return last.strip(), given[0] if given else "", " ".join(given[1:])
    words = [w for w in raw.split() if w.lower() not in _TITLES]
    if not words:
        return "", "", ""
    if len(words) == 1:
        return words[0], "", ""
    return words[-1], words[0], " ".join(words[1:-1])


@dataclass(frozen=True)
class Dispensing:
    """One controlled-substance prescription line as a PMP reports it (its lots summed)."""

    sale_id: str
    line_ndc: str
    ndc11: str  # 11 digits
    unit: str
    qty: int
    filled: date  # the store's local date of the sale
    rx: dict[str, Any]
    patient_id: str
    patient: dict[str, Any]
    status: str = "00"  # DSP01: "00" a new record, "02" the void of one sent before [B]


_DISPENSED = (
    "SELECT s.sale_id, s.created_at, s.rx, s.patient_id, json_extract(r.body, '$.ndc'), "
    "SUM(r.qty) FROM register r JOIN sales s ON s.sale_id = json_extract(r.body, '$.sale_id') "
    "WHERE r.kind = 'dispense' AND {where} "
    "GROUP BY s.sale_id, json_extract(r.body, '$.ndc') ORDER BY s.created_at, s.sale_id")
_NOT_RETURNED = "NOT EXISTS (SELECT 1 FROM sale_returns x WHERE x.sale_id = s.sale_id)"


def collect_dispensings(conn: sqlite3.Connection, vault: Any, user_id: str, start: date,
                        end: date, tz: tzinfo) -> list[Dispensing]:
    """Controlled-substance dispensings (the register's ``dispense`` entries) whose sale falls
    on a local date from ``start`` to ``end``, in sale order, leaving out sales returned to
    stock; then the voids (DSP01 ``02``) still owed: dispensings returned to stock after a
    production report had sent them, which no production report has voided yet. Each
    patient record is read through ``vault`` (a ``pharmacy.phi.PhiVault``), so every read is
    in the audit log."""
    from pharmacy import catalog

    lo = iso(datetime.combine(start, time(0), tz).astimezone(UTC))
    hi = iso(datetime.combine(end + timedelta(days=1), time(0), tz).astimezone(UTC))
    new_rows = conn.execute(_DISPENSED.format(
        where=f"s.created_at >= ? AND s.created_at < ? AND {_NOT_RETURNED}"), (lo, hi))
    out: list[Dispensing] = []
    patients: dict[str, dict[str, Any]] = {}
    # a void before the new records: a report holding both for one prescription and fill
    # number (returned, then filled again) cancels the old record, not the new one
    for status, rows in (("02", owed_voids(conn, tz)), ("00", new_rows.fetchall())):
        for sale_id, created, rx_json, patient_id, ndc, qty in rows:
            if not patient_id:  # a controlled dispense always has a patient; skip a broken row
                continue
            if patient_id not in patients:
                patients[patient_id] = vault.get(patient_id, user_id)
            product = catalog.lookup(conn, ndc)
            out.append(Dispensing(
                sale_id, ndc, product.ndc11.replace("-", ""), product.unit, int(qty),
                parse_iso(created).astimezone(tz).date(),
                json.loads(rx_json) if rx_json else {}, patient_id, patients[patient_id],
                status))
    return out


def owed_voids(conn: sqlite3.Connection, tz: tzinfo) -> list[Any]:
    """The dispensing rows (as ``_DISPENSED`` reads them) of sales returned to stock that a
    production report sent (made after the sale was recorded and before it was returned,
    covering its day), not yet voided by one."""
    rows = conn.execute(_DISPENSED.format(
        where="s.sale_id IN (SELECT sale_id FROM sale_returns WHERE pmp_void_report IS NULL)")
    ).fetchall()
    if not rows:
        return []
    reports = [(date.fromisoformat(a), date.fromisoformat(b), str(c)) for a, b, c in
               conn.execute("SELECT period_start, period_end, created_at FROM pmp_reports "
                            "WHERE production = 1")]
    times = {r[0]: (str(r[1]), str(r[2])) for r in conn.execute(
        "SELECT x.sale_id, s.decided_at, x.created_at FROM sale_returns x JOIN sales s ON "
        "s.sale_id = x.sale_id WHERE x.pmp_void_report IS NULL")}
    out = []
    for row in rows:
        day = parse_iso(row[1]).astimezone(tz).date()
        recorded, returned = times[row[0]]
        if any(a <= day <= b and recorded < made < returned for a, b, made in reports):
            out.append(row)
    return out


def _clean(value: Any, element: str, terminator: str) -> str:
    """An element's text, in ASCII (accents dropped: "José" is "Jose"), with no delimiter,
    terminator or line break inside it."""
    text = "" if value is None else str(value)
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    for ch in (element, terminator, "\r", "\n"):
        text = text.replace(ch, " ")
    return text.strip()


def _yyyymmdd(value: Any) -> str:
    if isinstance(value, date):
        return f"{value:%Y%m%d}"
    text = str(value or "")
    return text[:10].replace("-", "") if len(text) >= 10 else ""


def dispense_report(items: Sequence[Dispensing], *, control_number: str, created: datetime,
                    pharmacy: dict[str, str], period_start: date, period_end: date,
                    version: str = "4.2A", element: str = "*", terminator: str = "~",
                    production: bool = True) -> str:
    """An ASAP 4.x file reporting ``items`` (one PAT per patient, a DSP and its PRE per
    dispensing); with no items, the zero report for the period."""
    ident = check_pharmacy_ids(pharmacy)
    if not items:
        return zero_report(control_number=control_number, created=created,
                           period_start=period_start, period_end=period_end,
                           pharmacy=pharmacy, version=version, element=element,
                           terminator=terminator)

    def seg(*fields: Any) -> str:
        return element.join(_clean(f, element, terminator) for f in fields)

    street, city, state, zip_ = split_address(pharmacy.get("address"))
    segs = [
        _header(element, version, control_number, created, "P" if production else "T"),
        seg("IS", pharmacy.get("is_id") or next(i for i in ident if i),
            pharmacy.get("name", ""), f"#{period_start:%Y%m%d}#-#{period_end:%Y%m%d}#"),
        seg("PHA", *ident, pharmacy.get("name", ""), street, "", city, state, zip_,
            "".join(ch for ch in pharmacy.get("phone", "") if ch.isdigit())),
    ]
    first_pha = len(segs) - 1
    by_patient: dict[str, list[Dispensing]] = {}
    for d in items:
        by_patient.setdefault(d.patient_id, []).append(d)
    for group in by_patient.values():
        p = group[0].patient
        last, first, middle = split_name(p.get("name"))
        p_street, p_city, p_state, p_zip = split_address(p.get("address"))
        gender = str(p.get("gender") or p.get("sex") or "U").strip().upper()[:1]
        segs.append(seg("PAT", *patient_id_elements(p.get("id_document")), "", "", "", last,
                        first, middle, "", "", p_street,
                        "", p_city, p_state, p_zip,
                        "".join(ch for ch in str(p.get("phone") or "") if ch.isdigit()),
                        _yyyymmdd(p.get("birth_date")), gender if gender in "FMU" else "U",
                        "01"))
        for d in group:
            rx = d.rx
            pres: dict[str, Any] = rx["prescriber"] if isinstance(rx.get("prescriber"),
                                                                   dict) else {}
            partial = rx.get("partial_fill")
            segs.append(seg(
                "DSP", d.status, rx.get("rx_number", ""), _yyyymmdd(rx.get("written_on")),
                rx.get("refills_authorized", ""), _yyyymmdd(d.filled),
                rx.get("refill_number", 0) or 0, "01", d.ndc11, d.qty,
                rx.get("days_supply", ""), _UNIT_CODES.get(d.unit.strip().lower(), "01"),
                _ORIGIN_CODES[rx_origin(rx)[0]],
                "01" if partial else "00", "", "", "01", _yyyymmdd(d.filled), "", "", "", "",
                rx.get("quantity_prescribed", ""), rx.get("directions", "")))
            p_last, p_first, p_middle = split_name(pres.get("name"))
            segs.append(seg("PRE", pres.get("npi", ""), pres.get("dea", ""), "",
                            pres.get("license", ""), p_last, p_first, p_middle,
                            "".join(ch for ch in str(pres.get("phone") or "") if ch.isdigit())))
    return _closed(segs, first_pha, control_number, element, terminator)


PHARMACY_SETTINGS = ("npi", "ncpdp", "dea", "name", "address", "phone")


def write_report(store: Any, vault: Any, *, user_id: str, start: date, end: date, tz: tzinfo,
                 out: str, pharmacy: dict[str, str] | None = None,
                 production: bool = True) -> dict[str, Any]:
    """Collect, build, check (rule 37) and write the ASAP file for ``start``..``end`` to
    ``out`` (mode 0600, replaced atomically); record it in ``pmp_reports`` and the audit
    log. ``pharmacy`` overrides the store's ``pharmacy.*`` settings."""
    import hashlib
    import os
    from pathlib import Path

    from pharmacy.ids import new_id

    if end < start:
        raise BadInput(f"the period ends ({end}) before it starts ({start})",
                       code="BAD_PERIOD")
    if not user_id:
        raise BadInput("a PMP report reads patient records: give the user who runs it",
                       code="HIPAA_UNIQUE_USER")
    ident = {k: store.get_setting(f"pharmacy.{k}") or "" for k in PHARMACY_SETTINGS}
    ident.update({k: v for k, v in (pharmacy or {}).items() if v})
    now = store.clock()
    control = f"{now:%Y%m%d%H%M%S}"
    with store.transaction() as c:  # the patient reads and their audit rows together
        items = collect_dispensings(c, vault, user_id, start, end, tz)
    text = dispense_report(items, control_number=control, created=now.astimezone(tz),
                           pharmacy=ident, period_start=start, period_end=end,
                           production=production)
    f = validate_asap(text)
    data = text.encode("ascii", "replace")
    path = Path(out)
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise BadInput(f"cannot write {out}: {e.strerror}", code="BAD_OUTPUT_FILE") from None
    digest = hashlib.sha256(data).hexdigest()
    voids = sum(d.status == "02" for d in items)
    report_id = new_id()
    created = iso(now)
    with store.transaction() as c:
        c.execute("INSERT INTO pmp_reports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  (report_id, created, user_id, start.isoformat(), end.isoformat(), control,
                   len(items) - voids, int(production), digest, str(path)))
        if production and voids:  # once: a report made meanwhile may have sent it too
            c.executemany("UPDATE sale_returns SET pmp_void_report = ? WHERE sale_id = ? AND "
                          "pmp_void_report IS NULL",
                          [(report_id, d.sale_id) for d in items if d.status == "02"])
        c.execute("INSERT INTO audit_log(created_at, user_id, action, subject, detail) "
                  "VALUES (?, ?, 'pmp.report', ?, ?)",
                  (created, user_id, report_id,
                   json.dumps({"period": [start.isoformat(), end.isoformat()],
                               "dispensings": len(items) - voids, "voids": voids,
                               "sha256": digest})))
    return {"report_id": report_id, "file": str(path), "control_number": control,
            "period": {"from": start.isoformat(), "to": end.isoformat()},
            "dispensings": len(items) - voids, "voids": voids,
            "patients": len({d.patient_id for d in items}),
            "zero_report": not items, "segments": len(f.segments),
            "production": production, "sha256": digest}


def report_status(conn: sqlite3.Connection, now: datetime, tz: tzinfo, *,
                  holidays: Collection[date] = (), since: date | None = None
                  ) -> dict[str, Any]:
    """What the PMP still has to be told: the controlled dispensings (from ``since``, a
    local date, when given) on days no production report has covered, and the deadline
    alerts they raise (states of NEXT_WORKING_DAY)."""
    reports = conn.execute(
        "SELECT report_id, created_at, period_start, period_end, dispensings, control_number "
        "FROM pmp_reports WHERE production = 1 ORDER BY created_at").fetchall()
    covered: list[tuple[date, date]] = [(date.fromisoformat(r[2]), date.fromisoformat(r[3]))
                                        for r in reports]
    lo = "" if since is None else iso(datetime.combine(since, time(0), tz).astimezone(UTC))
    rows = conn.execute(
        "SELECT DISTINCT s.sale_id, s.created_at, s.jurisdiction FROM register r JOIN sales s "
        "ON s.sale_id = json_extract(r.body, '$.sale_id') WHERE r.kind = 'dispense' AND "
        f"r.created_at >= ? AND {_NOT_RETURNED} ORDER BY s.created_at", (lo,)).fetchall()
    queue = []
    days: set[date] = set()
    for sale_id, created, jurisdiction in rows:
        at = parse_iso(created)
        day = at.astimezone(tz).date()
        if any(a <= day <= b for a, b in covered):
            continue
        days.add(day)
        queue.append({"dispensed_at": at, "sent_at": None, "jurisdiction": jurisdiction,
                      "ref": sale_id})
    alerts = pmp_deadline_alerts(queue, now, tz, holidays=holidays,
                                 jurisdictions=tuple(NEXT_WORKING_DAY))
    last = reports[-1] if reports else None
    return {
        "last_report": None if last is None else {
            "report_id": last[0], "created_at": last[1],
            "period": {"from": last[2], "to": last[3]}, "dispensings": last[4],
            "control_number": last[5]},
        "unreported": {"dispensings": len(queue),
                       "days": [d.isoformat() for d in sorted(days)],
                       "oldest": queue[0]["dispensed_at"].isoformat() if queue else None,
                       # returned to stock after a report sent them: the next one voids them
                       "voids": len({r[0] for r in owed_voids(conn, tz)})},
        "alerts": [{"code": a.code, "message": a.message, "citation": a.citation,
                    "due": a.due.isoformat() if a.due else None} for a in alerts],
    }


def due_days(conn: sqlite3.Connection, today: date, tz: tzinfo, *,
             window_days: int = 35) -> list[date]:
    """The local days before ``today`` that still need a production report: from the day
    after the last one reported (or, with none yet, the first controlled dispensing of the
    window, else yesterday), skipping days a report already covers. Days without dispensing
    get zero reports (TX wants one a week, FL one a day)."""
    periods = [(date.fromisoformat(a), date.fromisoformat(b)) for a, b in conn.execute(
        "SELECT period_start, period_end FROM pmp_reports WHERE production = 1")]
    yesterday = today - timedelta(days=1)
    floor = today - timedelta(days=window_days)
    if periods:
        start = max(max(b for _, b in periods) + timedelta(days=1), floor)
    else:
        lo = iso(datetime.combine(floor, time(0), tz).astimezone(UTC))
        first = conn.execute(
            "SELECT MIN(s.created_at) FROM register r JOIN sales s ON s.sale_id = "
            "json_extract(r.body, '$.sale_id') WHERE r.kind = 'dispense' AND "
            "r.created_at >= ?", (lo,)).fetchone()[0]
        start = parse_iso(first).astimezone(tz).date() if first else yesterday
    days = []
    d = start
    while d <= yesterday:
        if not any(a <= d <= b for a, b in periods):
            days.append(d)
        d += timedelta(days=1)
    return days


def write_due_reports(store: Any, vault: Any, *, user_id: str, outbox: str, tz: tzinfo,
                      today: date | None = None) -> list[dict[str, Any]]:
    """One production report per due day (:func:`due_days`), written into ``outbox`` as
    ``pmp-<store>-<YYYYMMDD>.asap``, ready to upload."""
    from pathlib import Path

    folder = Path(outbox)
    if not folder.is_dir():
        raise BadInput(f"the PMP outbox {outbox} is not a folder", code="BAD_OUTPUT_FILE")
    day0 = today or store.clock().astimezone(tz).date()
    return [write_report(store, vault, user_id=user_id, start=d, end=d, tz=tz,
                         out=str(folder / f"pmp-{store.store_id}-{d:%Y%m%d}.asap"))
            for d in due_days(store.conn, day0, tz)]
