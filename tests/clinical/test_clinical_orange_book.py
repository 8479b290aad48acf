"""Orange Book import: the real file's quirks, corrupt rows, monthly diffs, TE-code rules."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pharmacy import orange_book
from pharmacy.errors import BadInput
from pharmacy.store import Store
from terminal.cli import main
from tests.clinical.conftest import HEADER, OB_ROWS, ob_text
from tests.conftest import shared_data


def _store(tmp_path: Path, clock: Any, name: str = "s") -> Store:
    return Store.init(tmp_path / name, "store-ob", clock=clock)


def test_import_reads_crlf_no_final_newline_and_pre_1982(tmp_path: Path, clock: Any,
                                                          ob_file: Path) -> None:
    assert not ob_file.read_bytes().endswith(b"\n")
    with _store(tmp_path, clock) as s:
        assert orange_book.import_orange_book(s, ob_file) == len(OB_ROWS)
        assert orange_book.count(s.conn) == len(OB_ROWS)
        eryc = orange_book.get(s.conn, "N050536:001")
        assert eryc.approval_date is None
        assert eryc.approval_text == "Approved Prior to Jan 1, 1982"
        lipitor = orange_book.get(s.conn, "N020702:001")
        assert lipitor.approval_date == "1996-12-17"
        assert lipitor.rld and not lipitor.rs and lipitor.type == "RX"
        assert lipitor.applicant_full_name == "UPJOHN MANUFACTURING IRELAND UNLTD"
        thyro = orange_book.get(s.conn, "N021116:001")
        synth = orange_book.get(s.conn, "N021402:001")
        # notes after '**' are not part of the strength: same equivalence group
        assert thyro.group_key == synth.group_key
        assert thyro.strength.startswith("0.025MG **See current")
        assert orange_book.get(s.conn, "A076187:001").te_code == "AB1,AB2,AB3,AB4"


def test_import_tolerates_a_final_newline(tmp_path: Path, clock: Any) -> None:
    p = tmp_path / "products.txt"
    p.write_bytes(ob_text() + b"\r\n")
    with _store(tmp_path, clock) as s:
        assert orange_book.import_orange_book(s, p) == len(OB_ROWS)


CORRUPT = [
    ("missing field", lambda r: r.rsplit("~", 1)[0], "expected 14 '~'-separated fields, found 13"),
    ("extra field", lambda r: r + "~X", "found 15"),
    ("appl no", lambda r: r.replace("~077883~", "~77883~"), "Appl_No '77883' is not 6 digits"),
    ("appl type", lambda r: r.replace("~A~077883~", "~B~077883~"), "Appl_Type 'B'"),
    ("date", lambda r: r.replace("Dec 28, 2007", "2007-12-28"), "approval date '2007-12-28'"),
    ("te code", lambda r: r.replace("~AB~Dec", "~ZZ~Dec"), "TE_Code 'ZZ'"),
    ("type", lambda r: r.replace("~RX~APOTEX", "~Rx~APOTEX"), "Type 'Rx'"),
]


@pytest.mark.parametrize(("label", "damage", "problem"), CORRUPT, ids=[c[0] for c in CORRUPT])
def test_corrupt_row_rejects_the_whole_import_with_its_line(
        tmp_path: Path, clock: Any, ob_file: Path, label: str, damage: Any, problem: str) -> None:
    rows = list(OB_ROWS)
    rows[1] = damage(rows[1])  # file line 3 (header is line 1)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(ob_text(rows))
    with _store(tmp_path, clock) as s:
        orange_book.import_orange_book(s, ob_file)
        before = s.conn.execute("SELECT * FROM ob_products ORDER BY appl_key").fetchall()
        with pytest.raises(BadInput) as e:
            orange_book.import_orange_book(s, bad)
        assert e.value.code == "OB_CORRUPT_ROW"
        assert e.value.details["line"] == 3
        assert "bad.txt line 3" in e.value.message and problem in e.value.message
        after = s.conn.execute("SELECT * FROM ob_products ORDER BY appl_key").fetchall()
        assert [tuple(r) for r in after] == [tuple(r) for r in before]  # nothing changed
        assert s.conn.execute("SELECT COUNT(*) FROM ob_imports").fetchone()[0] == 1


def test_every_corrupt_row_is_reported_not_just_the_first(tmp_path: Path, clock: Any) -> None:
    rows = list(OB_ROWS)
    rows[0] = rows[0] + "~extra"
    rows[5] = rows[5].replace("Dec 17, 1996", "Dec 32, 1996")
    rows.append(rows[2])  # a duplicate key
    bad = tmp_path / "bad.txt"
    bad.write_bytes(ob_text(rows))
    with _store(tmp_path, clock) as s, pytest.raises(BadInput) as e:
        orange_book.import_orange_book(s, bad)
    lines = [x["line"] for x in e.value.details["errors"]]
    assert lines == [2, 7, len(rows) + 1]
    assert e.value.details["error_count"] == 3
    assert "listed twice (also line 4)" in e.value.details["errors"][2]["problem"]
    assert "(and 2 more)" in e.value.message


def test_bad_header_and_blank_line(tmp_path: Path, clock: Any) -> None:
    p = tmp_path / "p.txt"
    p.write_bytes(b"Ingredient~Strength\r\nX~1MG")
    with _store(tmp_path, clock) as s:
        with pytest.raises(BadInput) as e:
            orange_book.import_orange_book(s, p)
        assert e.value.code == "OB_BAD_HEADER"
        p.write_bytes(ob_text([OB_ROWS[0], "", OB_ROWS[1]]))
        with pytest.raises(BadInput) as e:
            orange_book.import_orange_book(s, p)
        assert e.value.code == "OB_CORRUPT_ROW" and e.value.details["line"] == 3


def test_rx_and_otc_listing_of_one_product_both_kept(tmp_path: Path, clock: Any) -> None:
    rx = ("LEVONORGESTREL~TABLET;ORAL~LEVONORGESTREL~L PERRIGO CO~0.75MG~A~090740~001~AB~"
          "Dec 30, 2010~No~Yes~RX~L PERRIGO CO")
    otc = rx.replace("~AB~", "~~").replace("~RX~", "~OTC~")
    p = tmp_path / "p.txt"
    p.write_bytes(ob_text([rx, otc]))
    with _store(tmp_path, clock) as s:
        assert orange_book.import_orange_book(s, p) == 2
        assert orange_book.get(s.conn, "A090740:001").type == "RX"  # RX listing first


def test_monthly_update_is_applied_as_a_diff(tmp_path: Path, clock: Any, ob_file: Path) -> None:
    rows = list(OB_ROWS)
    rows[1] = rows[1].replace("~AB~Dec 28, 2007", "~BX~Dec 28, 2007")          # TE change
    rows[3] = rows[3].replace("~AB~Dec", "~~Dec").replace("~RX~HIKMA", "~DISCN~HIKMA")  # discn
    removed = rows.pop(4)                                                      # Zydus removed
    rows.append("BALSALAZIDE DISODIUM~CAPSULE;ORAL~BALSALAZIDE DISODIUM~NEWCO~750MG~A~299999~"
                "001~AB~Nov 1, 2024~No~No~RX~NEWCO PHARMA")                    # added
    update = tmp_path / "update.txt"
    update.write_bytes(ob_text(rows))
    with _store(tmp_path, clock) as s:
        first = orange_book.import_orange_book_diff(s, ob_file)
        assert (first.added, first.removed, first.changed) == (len(OB_ROWS), 0, 0)
        diff = orange_book.import_orange_book_diff(s, update)
        assert (diff.added, diff.removed, diff.changed) == (1, 1, 2)
        assert (diff.te_changed, diff.discontinued) == (2, 1)
        assert diff.unchanged == len(OB_ROWS) - 3
        assert diff.samples["removed"][0]["appl"] == "A217592:001"
        assert {"appl": "A077883:001", "trade_name": "BALSALAZIDE DISODIUM", "from": "AB",
                "to": "BX"} in diff.samples["te_changed"]
        assert "~A~217592~" in removed
        with pytest.raises(BadInput):
            orange_book.get(s.conn, "A217592:001")
        assert orange_book.get(s.conn, "A299999:001").applicant == "NEWCO"
        last = orange_book.last_import(s.conn)
        assert last is not None and last["te_changed"] == 2 and last["rows"] == len(rows)
        again = orange_book.import_orange_book_diff(s, update)
        assert (again.added, again.removed, again.changed) == (0, 0, 0)


def test_cli_catalog_import_orange_book(tmp_path: Path, ob_file: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path / "cli")
    assert main(["init", "--data-dir", d, "--store-id", "s1", "--json"]) == 0
    capsys.readouterr()
    assert main(["catalog", "import", "--data-dir", d, "--orange-book", str(ob_file),
                 "--json"]) == 0
    imported = json.loads(capsys.readouterr().out)["imported"]
    assert imported["orange_book"] == len(OB_ROWS)
    assert imported["orange_book_diff"]["added"] == len(OB_ROWS)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(ob_text([OB_ROWS[0], OB_ROWS[1].rsplit("~", 1)[0]]))
    assert main(["catalog", "import", "--data-dir", d, "--orange-book", str(bad), "--json"]) == 1
    err = json.loads(capsys.readouterr().out)["error"]
    assert err["code"] == "OB_CORRUPT_ROW" and err["details"]["line"] == 3


# ---- TE-code rules ------------------------------------------------------------------------
def test_te_rules() -> None:
    eq = orange_book.te_equivalent
    assert eq("AB", "AB") == {""}
    assert eq("AB", "AP") == {""}          # unnumbered A codes: one sub-group
    assert eq("AB1,AB2", "AB2") == {"2"}
    assert eq("AB1,AB2", "AB3,AB4") == frozenset()
    assert eq("AB", "AB1") == frozenset()  # numbered only within the same number
    assert eq("AB", "BX") == frozenset() and eq("BX", "BX") == frozenset()
    assert eq("", "") == frozenset() and eq("AB", "") == frozenset()
    assert orange_book.format_subgroups("AB1,AB2,AB3", frozenset({"1", "3"})) == "AB1,AB3"


te_codes = st.lists(st.sampled_from(["AA", "AB", "AP", "AT", "AN", "AO", "AB1", "AB2", "AB3",
                                     "AP1", "AT2", "BX", "BC", "BD", "BP", "BS", "B*"]),
                    min_size=0, max_size=4).map(",".join)


@given(te_codes, te_codes)
def test_te_equivalence_is_symmetric_and_never_b(a: str, b: str) -> None:
    shared = orange_book.te_equivalent(a, b)
    assert shared == orange_book.te_equivalent(b, a)
    only_b = all(c.startswith("B") for c in orange_book.split_te(a))
    if only_b:
        assert not shared


def test_header_constant_matches_the_real_file_layout() -> None:
    assert HEADER.count("~") == 13


# ---- the real files (../shared/data) --------------------------------------------------------
def _raw(path: Path) -> list[list[str]]:
    return [ln.split("~") for ln in path.read_bytes().decode("ascii").split("\r\n")[1:]]


@pytest.mark.shared_data
def test_real_2024_11_import_speed_and_facts(tmp_path: Path, clock: Any) -> None:
    path = shared_data("orange_book", "2024-11", "products.txt")
    with _store(tmp_path, clock) as s:
        t = time.perf_counter()
        n = orange_book.import_orange_book(s, path)
        took = time.perf_counter() - t
        assert n == 45_752
        assert took <= 3.0, f"import took {took:.2f} s (target 3 s)"
        c = s.conn
        types = dict(c.execute("SELECT type, COUNT(*) FROM ob_products GROUP BY type").fetchall())
        assert types == {"RX": 23_479, "DISCN": 21_499, "OTC": 774}
        assert c.execute("SELECT COUNT(*) FROM ob_products WHERE rld = 1").fetchone()[0] == 7381
        assert c.execute("SELECT COUNT(*) FROM ob_products WHERE rs = 1").fetchone()[0] == 4233
        assert c.execute("SELECT COUNT(*) FROM ob_products WHERE te_code = 'AB1,AB2,AB3,AB4'"
                         ).fetchone()[0] == 60
        assert c.execute("SELECT COUNT(*) FROM ob_products WHERE approval_date IS NULL"
                         ).fetchone()[0] == 5870


@pytest.mark.shared_data
def test_real_2020_07_to_2024_11_diff(tmp_path: Path, clock: Any) -> None:
    old_p = shared_data("orange_book", "2020-07", "products.txt")
    new_p = shared_data("orange_book", "2024-11", "products.txt")

    def keyed(p: Path) -> dict[tuple[str, int], list[str]]:
        return {(f"{r[5]}{r[6]}:{r[7]}", int(r[12] == "OTC")): r for r in _raw(p)}

    old, new = keyed(old_p), keyed(new_p)
    assert len(old) == 38_615  # the 2 duplicate keys are an RX and an OTC listing each
    expect_te = sum(1 for k in new.keys() & old.keys() if new[k][8] != old[k][8])
    expect_discn = sum(1 for k in new.keys() & old.keys()
                       if old[k][12] != "DISCN" and new[k][12] == "DISCN")
    with _store(tmp_path, clock) as s:
        orange_book.import_orange_book(s, old_p)
        d = orange_book.import_orange_book_diff(s, new_p)
        assert d.added == len(new.keys() - old.keys())
        assert d.removed == len(old.keys() - new.keys())
        assert d.te_changed == expect_te and d.discontinued == expect_discn
        assert d.added + d.changed + d.unchanged == 45_752
        assert orange_book.count(s.conn) == 45_752
