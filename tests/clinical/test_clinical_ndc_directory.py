"""FDA NDC Directory import: FDA's columns, links to the Orange Book, corrupt rows, lookups."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from pharmacy import catalog, ndc_directory, orange_book, substitution
from pharmacy.errors import BadInput
from pharmacy.store import Store
from terminal.cli import main
from tests.clinical.conftest import (
    NDC_PACKAGE_HEADER,
    NDC_PACKAGES,
    NDC_PRODUCT_HEADER,
    NDC_PRODUCTS,
    write_ndc,
)

TODAY = date(2026, 11, 2)


def test_header_uses_fdas_exact_column_names() -> None:
    assert tuple(NDC_PRODUCT_HEADER.split("\t")) == ndc_directory.PRODUCT_COLUMNS
    assert tuple(NDC_PACKAGE_HEADER.split("\t")) == ndc_directory.PACKAGE_COLUMNS


def test_application_numbers() -> None:
    assert ndc_directory.parse_application("NDA020610") == ("N", "020610")
    assert ndc_directory.parse_application("ANDA215328") == ("A", "215328")
    assert ndc_directory.parse_application("ANDA40400") == ("A", "040400")
    assert ndc_directory.parse_application("BLA125057") is None
    assert ndc_directory.parse_application("M013") is None
    assert ndc_directory.parse_application("part341") is None


def test_strength_tokens_match_orange_book_forms() -> None:
    assert ndc_directory.ndc_strength_tokens("325; 10", "mg/1; mg/1") == ("10MG", "325MG")
    assert ndc_directory.ob_strength_tokens("325MG;10MG") == ("10MG", "325MG")
    assert ndc_directory.ob_strength_tokens("EQ 10MG BASE") == \
        ndc_directory.ndc_strength_tokens("10", "mg/1")
    assert ndc_directory.ob_strength_tokens("1.1GM") == \
        ndc_directory.ndc_strength_tokens("1.10", "g/1")
    assert ndc_directory.ob_strength_tokens("0.025MG **See note") == \
        ndc_directory.ndc_strength_tokens(".025", "mg/1")


def test_import_links_and_counts(clinical_store: Store, tmp_path: Path) -> None:
    prod, pack = write_ndc(tmp_path)
    counts = ndc_directory.import_ndc_directory(clinical_store, prod, pack)
    assert counts["ndc_products"] == len(NDC_PRODUCTS)
    assert counts["ndc_packages"] == len(NDC_PACKAGES)
    links = dict(clinical_store.conn.execute(
        "SELECT product_ndc, ob_appl_key FROM ndc_products").fetchall())
    assert links == {
        "65649-101": "N020610:001",   # NDA, one product
        "0406-0367": "A040400:001",   # ANDA, 325/10 resolved by strength
        "0406-0365": "A040400:002",   # ANDA, 325/5
        "45802-340": "A215328:001",   # README example
        "0002-8215": None,            # BLA: Purple Book
        "0904-6728": None,            # OTC monograph
    }
    assert counts["ndc_linked"] == 4
    entry = ndc_directory.lookup(clinical_store.conn, "0406-0367-01")
    assert entry.dea_schedule == "CII" and entry.ob_appl_key == "A040400:001"
    assert entry.ingredients == ("acetaminophen", "hydrocodone bitartrate")
    assert ndc_directory.find(clinical_store.conn, "00406036701") == entry  # NDC-11
    assert ndc_directory.find(clinical_store.conn, "0406036701") == entry   # 10 digits
    assert ndc_directory.find(clinical_store.conn, "9999-9999-99") is None


def test_directory_ndcs_substitute_without_a_catalog_entry(clinical_store: Store,
                                                            tmp_path: Path) -> None:
    ndc_directory.import_ndc_directory(clinical_store, *write_ndc(tmp_path))
    out = substitution.find_equivalents(clinical_store.conn, "45802-340-56", TODAY).to_json()
    assert out["prescribed"]["appl"] == "A215328:001"
    assert out["prescribed"]["ndc"] == "45802-340-56" and out["prescribed"]["in_stock"] is False
    assert [e["appl"] for e in out["equivalents"]] == ["N205613:001"]
    # equivalents the store does not carry show the directory's NDCs (samples left out)
    colazal = substitution.find_equivalents(clinical_store.conn, "appl:A077806:001", TODAY)
    listed = {e["appl"]: e["directory_ndcs"] for e in colazal.to_json()["equivalents"]}
    assert listed["N020610:001"] == []  # carried by the store: its own NDC is shown instead
    bud = substitution.find_equivalents(clinical_store.conn, "appl:N205613:001", TODAY)
    assert bud.to_json()["equivalents"][0]["directory_ndcs"] == ["45802-340-56"]
    with pytest.raises(BadInput) as e:
        substitution.find_equivalents(clinical_store.conn, "0002-8215-01", TODAY)
    assert e.value.code == "NOT_IN_ORANGE_BOOK" and "Purple Book" in e.value.message
    with pytest.raises(BadInput) as e:
        substitution.find_equivalents(clinical_store.conn, "0904-6728-60", TODAY)
    assert e.value.code == "NOT_IN_ORANGE_BOOK"


def test_catalog_products_without_appl_are_filled(clinical_store: Store, tmp_path: Path) -> None:
    catalog.upsert_products(clinical_store, [catalog.product_from_json(
        {"ndc": "0406-0365-01", "name": "Hydrocodone/APAP 5/325", "price": "0.30",
         "rx_only": True, "dea_schedule": "CII"})])
    counts = ndc_directory.import_ndc_directory(clinical_store, *write_ndc(tmp_path))
    assert counts["catalog_linked"] == 1
    assert catalog.lookup(clinical_store.conn, "0406-0365-01").appl == "A040400:002"
    # a catalog appl that is already set is never overwritten
    assert catalog.lookup(clinical_store.conn, "65649-101-02").appl == "N020610:001"


def test_links_resolve_when_the_orange_book_comes_later(tmp_path: Path, clock: Any,
                                                        ob_file: Path) -> None:
    with Store.init(tmp_path / "s", "s", clock=clock) as s:
        counts = ndc_directory.import_ndc_directory(s, *write_ndc(tmp_path))
        assert counts["ndc_linked"] == 0
        result = orange_book.import_orange_book_diff(s, ob_file)
        assert result.ndc_linked == 4
        assert ndc_directory.lookup(s.conn, "65649-101-02").ob_appl_key == "N020610:001"


CORRUPT = [
    ("product fields", "products", 1, lambda r: r.rsplit("\t", 1)[0],
     "product.txt line 3: expected 20 tab-separated fields, found 19"),
    ("dea schedule", "products", 1, lambda r: r.replace("\tCII\t", "\tC2\t"),
     "DEASCHEDULE 'C2' is not CI..CV"),
    ("product ndc", "products", 0, lambda r: r.replace("\t65649-101\t", "\t65649101\t"),
     "PRODUCTNDC '65649101'"),
    ("date", "products", 0, lambda r: r.replace("20000718", "07/18/2000"),
     "date '07/18/2000' is not YYYYMMDD"),
    ("package ndc", "packages", 2, lambda r: r.replace("0406-0367-01", "0406-0368-01"),
     "package.txt line 4: NDC 0406-0368-01 does not belong to product 0406-0367"),
    ("package form", "packages", 2, lambda r: r.replace("0406-0367-01", "0406-367-01"),
     "NDCPACKAGECODE '0406-367-01' is not an NDC-10"),
    ("unknown product", "packages", 0, lambda r: r.replace("65649-101_0b1f", "65649-101_ffff"),
     "is not in the product file"),
    ("sample flag", "packages", 0, lambda r: r[:-1] + "X", "SAMPLE_PACKAGE 'X'"),
]


@pytest.mark.parametrize(("label", "which", "index", "damage", "problem"), CORRUPT,
                         ids=[c[0] for c in CORRUPT])
def test_corrupt_rows_reject_the_import(clinical_store: Store, tmp_path: Path, label: str,
                                        which: str, index: int, damage: Any,
                                        problem: str) -> None:
    ndc_directory.import_ndc_directory(clinical_store, *write_ndc(tmp_path))
    products, packages = list(NDC_PRODUCTS), list(NDC_PACKAGES)
    rows = products if which == "products" else packages
    rows[index] = damage(rows[index])
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(BadInput) as e:
        ndc_directory.import_ndc_directory(clinical_store, *write_ndc(bad, products, packages))
    assert e.value.code == "NDC_CORRUPT_ROW"
    assert problem in e.value.message
    assert e.value.details["line"] == index + 2
    assert ndc_directory.count(clinical_store.conn) == {
        "ndc_products": len(NDC_PRODUCTS), "ndc_packages": len(NDC_PACKAGES)}


def test_wrong_files_are_refused(clinical_store: Store, tmp_path: Path) -> None:
    prod, pack = write_ndc(tmp_path)
    with pytest.raises(BadInput) as e:
        ndc_directory.import_ndc_directory(clinical_store, pack, prod)
    assert e.value.code == "NDC_BAD_HEADER"
    with pytest.raises(BadInput) as e:
        ndc_directory.import_ndc_directory(clinical_store, tmp_path / "missing.txt", pack)
    assert e.value.code == "BAD_INPUT_FILE"


def test_cli_catalog_import_ndc_directory(tmp_path: Path, ob_file: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path / "cli")
    prod, pack = write_ndc(tmp_path)
    assert main(["init", "--data-dir", d, "--store-id", "s1", "--json"]) == 0
    capsys.readouterr()
    assert main(["catalog", "import", "--data-dir", d, "--orange-book", str(ob_file),
                 "--ndc-product", str(prod), "--ndc-package", str(pack), "--json"]) == 0
    imported = json.loads(capsys.readouterr().out)["imported"]
    assert imported["orange_book"] > 0
    assert imported["ndc_products"] == len(NDC_PRODUCTS)
    assert imported["ndc_packages"] == len(NDC_PACKAGES)
    assert imported["ndc_linked"] == 4
    assert main(["substitute", "--data-dir", d, "--json", "0406-0365-01"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["prescribed"]["appl"] == "A040400:002"
    assert out["prescribed"]["name"] == "Hydrocodone Bitartrate and Acetaminophen"
