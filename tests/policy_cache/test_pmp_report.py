"""PMP dispensing reports (ASAP 4.x, REGULATIONS.md §2): built from real controlled sales
through the Cedar gate, written as files, recorded, and checked by rule 37's validator."""

from __future__ import annotations

import json
import stat
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pharmacy import catalog, inventory
from pharmacy.errors import BadInput
from pharmacy.phi import FileKeyProvider, PhiVault
from pharmacy.store import Store
from policy_cache import pmp
from terminal import wiring
from terminal.cli import main as cli_main

OTC = {"ndc": "0904-6728-60", "name": "Ibuprofen 200 mg tablets 100s", "unit": "pack",
       "price": "7.49", "ingredients": ["ibuprofen"], "strength": "200 mg"}
CII = {"ndc": "0406-0552-01", "name": "Oxycodone HCl 5 mg tablets", "unit": "tablet",
       "price": "0.45", "rx_only": True, "dea_schedule": "CII", "ingredients": ["oxycodone"],
       "strength": "5 mg", "appl": "A090895:001", "attrs": {"opioid": True}}
PRESCRIBER = {"name": "Dr. Maria Alvarez", "address": "1200 Main St, Austin TX 78701",
              "dea": "BA1234563", "npi": "1003000126"}
PATIENTS = [
    {"id": "pt-1", "name": "Ana Lucia Reyes", "address": "1 Test Way, Austin TX 78701",
     "birth_date": "1970-01-02", "id_document": "TXDL12345678", "gender": "F"},
    {"id": "pt-2", "name": "Smith, John", "address": "9 Oak Rd, Round Rock, TX 78664-1234",
     "birth_date": "1985-06-30", "id_document": "TXDL87654321"},
]
PHARMACY = {"pharmacy.npi": "1234567893", "pharmacy.dea": "FP1234563",
            "pharmacy.name": "Main Street Pharmacy",
            "pharmacy.address": "500 Congress Ave, Austin TX 78701",
            "pharmacy.phone": "(512) 555-0100"}


def _store(tmp_path: Path, pharmacy: bool = True, clock: Any = None) -> Store:
    store = (Store.init(tmp_path / "term", "pmp-store") if clock is None
             else Store.init(tmp_path / "term", "pmp-store", clock=clock))
    store.set_setting("jurisdiction", "US-TX")
    if pharmacy:
        for k, v in PHARMACY.items():
            store.set_setting(k, v)
    catalog.upsert_products(store, [catalog.product_from_json(p) for p in (OTC, CII)])
    if wiring.install_demo_policy(store) is not None:
        from policy_cache.allowances import grant_allowances

        grant_allowances(store, {"per_day": {"CII": 1000}})
    soon = (store.clock().date() + timedelta(days=200)).isoformat()
    later = (store.clock().date() + timedelta(days=400)).isoformat()
    inventory.receive(store, [
        {"ndc": OTC["ndc"], "lot": "O1", "expiry": later, "qty": 50},
        {"ndc": CII["ndc"], "lot": "C1", "expiry": soon, "qty": 4, "order_form": "CSOS-1"},
        {"ndc": CII["ndc"], "lot": "C2", "expiry": later, "qty": 100, "order_form": "CSOS-2"},
    ])
    return store


def _rx(number: str, today: str, **kw: Any) -> dict[str, Any]:
    return {"rx_number": number, "electronic": True, "written_on": today, "refill_number": 0,
            "refills_authorized": 0, "days_supply": 5, "quantity_prescribed": 10, "daw": 0,
            "prescriber": PRESCRIBER, "directions": "1 tab q6h prn pain", "pmp_checked": True,
            **kw}


def _sell(store: Store, patient: dict[str, Any] | None, lines: list[dict[str, Any]],
          rx: dict[str, Any] | None, **extra: Any) -> Any:
    req: dict[str, Any] = {"jurisdiction": "US-TX", "lines": lines,
                           "user": {"id": "u-ph", "role": "pharmacist"}, **extra}
    if patient is not None:
        req["patient"] = patient
    if rx is not None:
        req["rx"] = rx
    return wiring.dispenser(store).sell(req)


def _vault(store: Store) -> PhiVault:
    return PhiVault(store.conn, FileKeyProvider(store.data_dir), store.clock)


def test_a_days_controlled_dispensings_are_reported(tmp_path: Path) -> None:
    store = _store(tmp_path)
    today = store.clock().date().isoformat()
    first = _sell(store, PATIENTS[0], [{"ndc": CII["ndc"], "qty": 10},
                                       {"ndc": OTC["ndc"], "qty": 1}], _rx("RX100", today))
    assert [a.lot for a in first.lines[0].allocations] == ["C1", "C2"]  # two lots, one DSP
    _sell(store, PATIENTS[1], [{"ndc": CII["ndc"], "qty": 5}],
          _rx("RX200", today, partial_fill=True, quantity_prescribed=20))
    _sell(store, None, [{"ndc": OTC["ndc"], "qty": 2}], None)  # not a controlled substance
    day = datetime.fromisoformat(store.conn.execute(
        "SELECT MAX(created_at) FROM sales").fetchone()[0]).astimezone(UTC).date()
    from terminal import integrations

    assert integrations.pmp_status(store) == integrations.PmpStatus(2, None)
    status = pmp.report_status(store.conn, store.clock(), UTC)
    assert status["last_report"] is None and status["alerts"] == []  # due tomorrow night
    assert status["unreported"]["dispensings"] == 2
    assert status["unreported"]["days"] == [day.isoformat()]
    late = datetime.combine(day + timedelta(days=5), datetime.min.time(), UTC)
    alerts = pmp.report_status(store.conn, late, UTC)["alerts"]
    assert [(a["code"], a["citation"]) for a in alerts] == [
        ("PMP_DEADLINE_AT_RISK", "22 TAC 315.6")] * 2  # Texas: the next business day
    pmp.write_report(store, _vault(store), user_id="u-ph", start=day, end=day, tz=UTC,
                     out=str(tmp_path / "test.asap"), production=False)
    assert pmp.report_status(store.conn, late, UTC)["unreported"]["dispensings"] == 2
    out_file = tmp_path / "pmp.asap"
    reads_before = store.conn.execute(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'phi.read'").fetchone()[0]
    res = pmp.write_report(store, _vault(store), user_id="u-ph", start=day, end=day, tz=UTC,
                           out=str(out_file))
    assert res["dispensings"] == 2 and res["patients"] == 2 and not res["zero_report"]
    text = out_file.read_text()
    f = pmp.validate_asap(text)  # rule 37: TT01 = TH02, TT02 = segment count
    assert f.ids() == ["TH", "IS", "PHA", "PAT", "DSP", "PRE", "PAT", "DSP", "PRE", "TP", "TT"]
    assert res["segments"] == 11 and f.segments[-2] == ("TP", "8")  # PHA .. TP
    th, pha = f.segments[0], f.segments[2]
    assert th[1] == "4.2A" and th[2] == res["control_number"] and th[7] == "P"
    assert pha[1:4] == ("1234567893", "", "FP1234563")
    assert pha[4:11] == ("Main Street Pharmacy", "500 Congress Ave", "", "Austin", "TX",
                         "78701", "5125550100")
    pats = [s for s in f.segments if s[0] == "PAT"]
    assert pats[0][1:4] == ("TX", "06", "12345678")  # Texas driver licence TXDL12345678
    assert (pats[0][7], pats[0][8], pats[0][9]) == ("Reyes", "Ana", "Lucia")
    assert pats[0][12:17] == ("1 Test Way", "", "Austin", "TX", "78701")
    assert (pats[0][18], pats[0][19], pats[0][20]) == ("19700102", "F", "01")
    assert (pats[1][7], pats[1][8], pats[1][16], pats[1][18], pats[1][19]) == (
        "Smith", "John", "786641234", "19850630", "U")
    dsps = [s for s in f.segments if s[0] == "DSP"]
    ymd = f"{day:%Y%m%d}"
    assert dsps[0][1:11] == ("00", "RX100", today.replace("-", ""), "0", ymd, "0", "01",
                             "00406055201", "10", "5")  # both lots in one dispensing
    assert (dsps[0][11], dsps[0][13], dsps[0][16], dsps[0][17]) == ("01", "00", "01", ymd)
    assert dsps[0][12] == "05"  # an electronic prescription
    assert dsps[0][22:24] == ("10", "1 tab q6h prn pain")
    assert (dsps[1][2], dsps[1][9], dsps[1][13], dsps[1][22]) == ("RX200", "5", "01", "20")
    pre = next(s for s in f.segments if s[0] == "PRE")
    assert pre[1:7] == ("1003000126", "BA1234563", "", "", "Alvarez", "Maria")
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600  # it holds PHI
    c = store.conn
    assert c.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'phi.read'"
                     ).fetchone()[0] == reads_before + 2  # each patient read once, audited
    row = c.execute("SELECT dispensings, sha256, period_start, user_id FROM pmp_reports "
                    "WHERE production = 1").fetchone()
    import hashlib

    assert tuple(row) == (2, hashlib.sha256(out_file.read_bytes()).hexdigest(),
                          day.isoformat(), "u-ph")
    assert c.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'pmp.report'"
                     ).fetchone()[0] == 2
    assert integrations.pmp_status(store) == integrations.PmpStatus(0, None)
    after = pmp.report_status(c, late, UTC)
    assert after["unreported"] == {"dispensings": 0, "days": [], "oldest": None, "voids": 0}
    assert after["alerts"] == [] and after["last_report"]["period"] == {
        "from": day.isoformat(), "to": day.isoformat()}
    # the next day holds none of these: a zero report
    nxt = pmp.write_report(store, _vault(store), user_id="u-ph", start=day + timedelta(1),
                           end=day + timedelta(1), tz=UTC, out=str(tmp_path / "z.asap"))
    assert nxt["zero_report"] and nxt["dispensings"] == 0
    store.close()


def test_returned_dispensings_are_left_out_or_voided(tmp_path: Path) -> None:
    """A controlled fill returned to stock before its day is reported is not reported; one
    returned after a production report sent it is voided (DSP01 02) by the next production
    report, once. The return puts the units back with a register entry of its own."""
    from pharmacy import register, sales
    from pharmacy.clock import iso

    now = [datetime(2026, 11, 2, 15, 0, tzinfo=UTC)]
    store = _store(tmp_path, clock=lambda: now[0])
    today = now[0].date().isoformat()
    day = now[0].date()
    _sell(store, PATIENTS[0], [{"ndc": CII["ndc"], "qty": 10}], _rx("RX1", today))
    early = _sell(store, PATIENTS[1], [{"ndc": CII["ndc"], "qty": 5}], _rx("RX2", today))
    late = _sell(store, PATIENTS[1], [{"ndc": CII["ndc"], "qty": 3}], _rx("RX3", today))
    stock = "SELECT SUM(p - n) FROM counters WHERE counter_id LIKE 'stock:00406055201:%'"
    on_shelf = store.conn.execute(stock).fetchone()[0]

    def give_back(sale: Any) -> None:
        with store.transaction() as c:
            sales.return_sale(c, store.replica_id, sale.sale_id, "u-ph", "not picked up",
                              iso(now[0]))

    now[0] += timedelta(hours=1)
    give_back(early)  # before any report
    assert store.conn.execute(stock).fetchone()[0] == on_shelf + 5
    entries = store.conn.execute("SELECT kind, qty FROM register WHERE kind = 'return'"
                                 ).fetchall()
    assert [tuple(e) for e in entries] == [("return", 5)]
    body = json.loads(store.conn.execute("SELECT body FROM register WHERE kind = 'return'"
                                         ).fetchone()[0])
    assert (body["rx_number"], body["patient_id"], body["sale_id"]) == (
        "RX2", "pt-2", early.sale_id)  # the register says whose fill came back
    assert register.verify(store.conn).ok
    now[0] = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)  # next morning: the day's report
    first = pmp.write_report(store, _vault(store), user_id="u-ph", start=day, end=day, tz=UTC,
                             out=str(tmp_path / "d1.asap"))
    assert (first["dispensings"], first["voids"]) == (2, 0)  # RX1 and RX3, not RX2
    f1 = pmp.validate_asap((tmp_path / "d1.asap").read_text())
    assert sorted(s[2] for s in f1.segments if s[0] == "DSP") == ["RX1", "RX3"]
    now[0] += timedelta(hours=2)
    give_back(late)  # already reported: owed a void
    status = pmp.report_status(store.conn, now[0], UTC)
    assert status["unreported"]["voids"] == 1 and status["unreported"]["dispensings"] == 0
    test_run = pmp.write_report(store, _vault(store), user_id="u-ph", start=day + timedelta(1),
                                end=day + timedelta(1), tz=UTC, out=str(tmp_path / "t.asap"),
                                production=False)
    assert test_run["voids"] == 1  # a test file shows it, and still owes it
    now[0] = datetime(2026, 11, 4, 8, 0, tzinfo=UTC)
    second = pmp.write_report(store, _vault(store), user_id="u-ph", start=day + timedelta(1),
                              end=day + timedelta(1), tz=UTC, out=str(tmp_path / "d2.asap"))
    assert (second["dispensings"], second["voids"], second["zero_report"]) == (0, 1, False)
    f2 = pmp.validate_asap((tmp_path / "d2.asap").read_text())
    assert f2.ids() == ["TH", "IS", "PHA", "PAT", "DSP", "PRE", "TP", "TT"]
    dsp = next(s for s in f2.segments if s[0] == "DSP")
    assert (dsp[1], dsp[2], dsp[5], dsp[9]) == ("02", "RX3", f"{day:%Y%m%d}", "3")
    assert pmp.report_status(store.conn, now[0], UTC)["unreported"]["voids"] == 0
    third = pmp.write_report(store, _vault(store), user_id="u-ph", start=day + timedelta(2),
                             end=day + timedelta(2), tz=UTC, out=str(tmp_path / "d3.asap"))
    assert third["voids"] == 0 and third["zero_report"]  # voided once
    # a catch-up sale entered after its day's report, then returned: no report ever sent it
    now[0] = datetime(2026, 11, 5, 9, 0, tzinfo=UTC)
    back = _sell(store, PATIENTS[0], [{"ndc": CII["ndc"], "qty": 2}], _rx("RX4", today),
                 at="2026-11-02T16:00:00Z")
    now[0] += timedelta(hours=1)
    give_back(back)
    assert pmp.report_status(store.conn, now[0], UTC)["unreported"]["voids"] == 0
    store.close()


def test_a_day_without_controlled_dispensing_gives_a_zero_report(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _sell(store, None, [{"ndc": OTC["ndc"], "qty": 1}], None)
    day = store.clock().date()
    res = pmp.write_report(store, _vault(store), user_id="u-ph", start=day - timedelta(1),
                           end=day + timedelta(1), tz=UTC, out=str(tmp_path / "zero.asap"),
                           production=False)
    f = pmp.validate_asap((tmp_path / "zero.asap").read_text())
    assert res["zero_report"] and f.ids() == ["TH", "IS", "PHA", "PAT", "DSP", "TP", "TT"]
    assert f.segments[0][7] == "P"  # zero_report's own header; the flag only marks real files
    store.close()


def test_a_report_needs_a_pharmacy_id_and_writes_nothing_without_one(tmp_path: Path) -> None:
    store = _store(tmp_path, pharmacy=False)
    day = store.clock().date()
    with pytest.raises(BadInput) as ei:
        pmp.write_report(store, _vault(store), user_id="u-ph", start=day, end=day, tz=UTC,
                         out=str(tmp_path / "x.asap"))
    assert ei.value.code == "ASAP_PHA_ID"
    assert not (tmp_path / "x.asap").exists()
    assert store.conn.execute("SELECT COUNT(*) FROM pmp_reports").fetchone()[0] == 0
    with pytest.raises(BadInput) as ei:
        pmp.write_report(store, _vault(store), user_id="u-ph", start=day, end=day - timedelta(1),
                         tz=UTC, out=str(tmp_path / "x.asap"), pharmacy={"dea": "FP1234563"})
    assert ei.value.code == "BAD_PERIOD"
    store.close()


def test_pmp_report_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = _store(tmp_path, pharmacy=False)
    today = store.clock().date().isoformat()
    _sell(store, PATIENTS[0], [{"ndc": CII["ndc"], "qty": 3}], _rx("RX300", today))
    store.close()
    out = tmp_path / "cli.asap"
    d = str(tmp_path / "term")
    assert cli_main(["pmp", "report", "--data-dir", d, "--from", today, "--to", today,
                     "--user", "u-ph", "--out", str(out), "--dea", "FP1234563",
                     "--tz", "UTC", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {"report_id", "file", "control_number", "period", "dispensings",
            "zero_report"} <= set(res)
    assert res["period"] == {"from": today, "to": today} and res["dispensings"] == 1
    assert pmp.validate_asap(out.read_text()).segments[2][3] == "FP1234563"
    assert cli_main(["pmp", "report", "--data-dir", d, "--from", "2026-13-01", "--user", "u",
                     "--out", str(out), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "BAD_DATE"
    assert cli_main(["pmp", "report", "--data-dir", d, "--from", today, "--user", "u",
                     "--out", str(out), "--json"]) == 1  # no NPI, NCPDP or DEA anywhere
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "ASAP_PHA_ID"
    assert cli_main(["pmp", "status", "--data-dir", d, "--tz", "UTC", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["unreported"]["dispensings"] == 0 and st["last_report"]["dispensings"] == 1
    assert cli_main(["pmp", "status", "--data-dir", d, "--tz", "Mars/Olympus", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "BAD_TIMEZONE"


def test_names_and_addresses_split_as_asap_wants_them() -> None:
    assert pmp.split_name("Dr. Maria Alvarez") == ("Alvarez", "Maria", "")
    assert pmp.split_name("Smith, John Q") == ("Smith", "John", "Q")
    assert pmp.split_name("Cher") == ("Cher", "", "")
    text = pmp.dispense_report(
        [pmp.Dispensing("s", CII["ndc"], "00406055201", "mL", 5, date(2026, 11, 2), {}, "p",
                        {"name": "José Ñúñez"})], control_number="1",
        created=datetime(2026, 11, 3), pharmacy={"dea": "FP1234563"},
        period_start=date(2026, 11, 2), period_end=date(2026, 11, 2))
    assert "*Nunez*Jose*" in text and text.isascii() and "*00406055201*5**02*" in text
    assert pmp.split_name("") == ("", "", "")
    assert pmp.split_address("1 Test Way, Austin TX 78701") == (
        "1 Test Way", "Austin", "TX", "78701")
    assert pmp.split_address("PO Box 7") == ("PO Box 7", "", "", "")


def test_patient_id_and_prescription_origin_codes() -> None:
    """PAT01-03 from the patient's ID document, DSP12 from how the prescription came in;
    an ID whose kind or state is unknown is left out rather than guessed."""
    ids = pmp.patient_id_elements
    assert ids("TXDL12345678") == ("TX", "06", "12345678")
    assert ids(" ny id 123 456-789 ") == ("NY", "02", "123456789")
    assert ids({"type": "Passport", "number": " X1234567 ", "jurisdiction": "us"}) == (
        "US", "05", "X1234567")
    assert ids({"type": "Driver licence", "number": "D123", "state": "ca"}) == (
        "CA", "06", "D123")
    assert ids({"type": "Aadhaar", "number": "1234 5678 9012"}) == ("", "99", "1234 5678 9012")
    assert ids({"type": "State ID", "number": "7", "state": "Texas"}) == ("", "02", "7")
    for unknown in ("12345678", "XXDL123", "", None, {"type": "passport"}, {"number": " "}):
        assert ids(unknown) == ("", "", ""), unknown

    def dsp12(rx: dict[str, Any]) -> str:
        text = pmp.dispense_report(
            [pmp.Dispensing("s", CII["ndc"], "00406055201", "tablet", 5, date(2026, 11, 2),
                            rx, "p", {"name": "A B", "id_document": {"number": "7"}})],
            control_number="1", created=datetime(2026, 11, 3), pharmacy={"dea": "FP1234563"},
            period_start=date(2026, 11, 2), period_end=date(2026, 11, 2))
        f = pmp.validate_asap(text)
        assert next(s for s in f.segments if s[0] == "PAT")[1:4] == ("", "99", "7")
        return next(s for s in f.segments if s[0] == "DSP")[12]

    assert dsp12({"electronic": True}) == "05"
    assert dsp12({}) == dsp12({"origin": "PAPER"}) == "01"
    assert dsp12({"emergency_oral": True}) == dsp12({"origin": "oral"}) == "02"
    assert dsp12({"origin": "fax", "electronic": True}) == "04"
    assert dsp12({"origin": "carrier pigeon", "electronic": "yes"}) == "05"


_TEXT = st.text(st.characters(min_codepoint=9, max_codepoint=126), max_size=40)


@settings(max_examples=150, deadline=None)
@given(name=_TEXT, address=_TEXT, sig=_TEXT, rx_number=_TEXT, pres=_TEXT,
       qty=st.integers(1, 10_000), n=st.integers(1, 4))
def test_any_free_text_gives_a_valid_file(name: str, address: str, sig: str, rx_number: str,
                                          pres: str, qty: int, n: int) -> None:
    """Delimiters, terminators and line breaks in names, addresses or directions never
    break the file's structure: it validates and has one segment per field group."""
    items = [pmp.Dispensing(f"s{i}", CII["ndc"], "00406055201", "tablet", qty,
                            date(2026, 11, 2), {"rx_number": rx_number, "directions": sig,
                                                "prescriber": {"name": pres, "dea": "BA1"}},
                            f"p{i % 2}", {"name": name, "address": address,
                                          "birth_date": "1970-01-01",
                                          "id_document": {"type": sig, "number": pres}})
             for i in range(n)]
    text = pmp.dispense_report(items, control_number="42", created=datetime(2026, 11, 3, 1, 2),
                               pharmacy={"dea": "FP1234563", "name": name, "address": address},
                               period_start=date(2026, 11, 2), period_end=date(2026, 11, 2))
    f = pmp.validate_asap(text)
    patients = min(n, 2)
    assert f.ids().count("PAT") == patients and f.ids().count("DSP") == n
    assert len(f.segments) == 5 + patients + 2 * n
    assert all(len(s) == 24 for s in f.segments if s[0] == "DSP")  # DSP01 .. DSP23


def test_due_reports_one_per_day_up_to_yesterday(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Every day from the first controlled dispensing (or the day after the last report)
    up to yesterday gets its own production report, zero reports included; a day already
    reported is not written again; the nightly hook does the same from the settings."""
    from terminal import integrations

    store = _store(tmp_path)
    today = store.clock().date().isoformat()
    _sell(store, PATIENTS[0], [{"ndc": CII["ndc"], "qty": 2}], _rx("RX900", today))
    day = datetime.fromisoformat(store.conn.execute(
        "SELECT MAX(created_at) FROM sales").fetchone()[0]).astimezone(UTC).date()
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    assert pmp.due_days(store.conn, day, UTC) == []  # the day itself is not over
    first = pmp.write_due_reports(store, _vault(store), user_id="u-ph", outbox=str(outbox),
                                  tz=UTC, today=day + timedelta(days=1))
    assert [(r["period"]["from"], r["dispensings"]) for r in first] == [
        (day.isoformat(), 1)]
    assert pmp.due_days(store.conn, day + timedelta(days=1), UTC) == []
    later = pmp.write_due_reports(store, _vault(store), user_id="u-ph", outbox=str(outbox),
                                  tz=UTC, today=day + timedelta(days=3))
    assert [(r["period"]["from"], r["zero_report"]) for r in later] == [
        ((day + timedelta(days=1)).isoformat(), True),
        ((day + timedelta(days=2)).isoformat(), True)]
    names = sorted(p.name for p in outbox.iterdir())
    assert names == [f"pmp-pmp-store-{day + timedelta(days=i):%Y%m%d}.asap" for i in range(3)]
    for p in outbox.iterdir():
        pmp.validate_asap(p.read_text())
    d = str(tmp_path / "term")
    store.close()
    # the nightly hook: nothing without its settings, the due days with them
    assert integrations.pmp_nightly(d) == []
    assert cli_main(["pmp", "schedule", "--data-dir", d, "--outbox", str(tmp_path / "no"),
                     "--user", "svc-pmp", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "BAD_OUTPUT_FILE"
    assert cli_main(["pmp", "schedule", "--data-dir", d, "--outbox", str(outbox),
                     "--user", "svc-pmp", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"outbox": str(outbox.resolve()),
                                                   "user": "svc-pmp"}
    assert integrations.pmp_nightly(d) == []  # reported through the day after tomorrow
    with Store.open(tmp_path / "term") as s:  # as if the last two reports had not been made
        s.conn.execute("DELETE FROM pmp_reports WHERE period_start > ?", (day.isoformat(),))
        s.set_setting("timezone", "UTC")
    written = integrations.pmp_nightly(d, today=day + timedelta(days=3))
    assert [(r["period"]["from"], r["zero_report"]) for r in written] == [
        ((day + timedelta(days=1)).isoformat(), True),
        ((day + timedelta(days=2)).isoformat(), True)]
    with Store.open(tmp_path / "term") as s:  # read as the service account, audited
        assert s.conn.execute("SELECT user_id FROM pmp_reports ORDER BY created_at DESC "
                              "LIMIT 1").fetchone()[0] == "svc-pmp"
    assert cli_main(["pmp", "report", "--data-dir", d, "--due", "--user", "u-ph", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "BAD_ARGS"
    assert cli_main(["pmp", "report", "--data-dir", d, "--due", "--outbox", str(outbox),
                     "--user", "u-ph", "--tz", "UTC", "--json"]) == 0
    assert "reports" in json.loads(capsys.readouterr().out)
    assert cli_main(["pmp", "report", "--data-dir", d, "--user", "u-ph", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "BAD_ARGS"


def test_the_nightly_sync_then_writes_the_due_reports() -> None:
    from terminal.sync_client import SyncScheduler

    after: list[str] = []
    sched = SyncScheduler(Path("/nonexistent"), run=lambda: None,
                          after_nightly=lambda: after.append("pmp"))
    assert sched.run_once("opportunistic") and after == []
    assert sched.run_once("nightly") and sched.run_once("catch-up")
    assert after == ["pmp", "pmp"]


def test_pmp_schedule_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from terminal import integrations

    store = _store(tmp_path)
    store.close()
    d = str(tmp_path / "term")
    (tmp_path / "o").mkdir()
    assert cli_main(["pmp", "schedule", "--data-dir", d, "--outbox", str(tmp_path / "o"),
                     "--user", "svc", "--json"]) == 0
    capsys.readouterr()
    assert cli_main(["pmp", "schedule", "--data-dir", d, "--off", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"outbox": None, "user": None}
    assert integrations.pmp_nightly(d) == []


def test_pharmacy_identifiers_are_checked_before_a_file_is_written() -> None:
    from datetime import date as _date

    from policy_cache.pmp import AsapInvalid, npi_ok, zero_report

    assert npi_ok("1234567893") and not npi_ok("1234567890") and not npi_ok("123456789")
    kw: dict[str, Any] = {"control_number": "1", "created": datetime(2026, 11, 2, tzinfo=UTC),
                          "period_start": _date(2026, 11, 1), "period_end": _date(2026, 11, 1)}
    assert "FP1234563" in zero_report(pharmacy={"dea": "fp1234563"}, **kw)
    for bad in ({"npi": "1234567890"}, {"npi": "x" * 1000}, {"ncpdp": "12345"},
                {"dea": "bad*"}, {"dea": "FP1234564"}, {}):
        with pytest.raises(AsapInvalid) as e:
            zero_report(pharmacy=bad, **kw)
        assert e.value.code == "ASAP_PHA_ID"
        assert len(e.value.message) < 200
