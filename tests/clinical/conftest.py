"""Clinical fixtures: a small Orange Book made of real FDA rows (public domain), written with
the real file's quirks (CRLF, no final newline), FDA NDC Directory files with FDA's column
names, and a store that carries a few of the products with stock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pharmacy import catalog, inventory, orange_book
from pharmacy.store import Store

HEADER = "~".join(orange_book.HEADER)
# Real rows of the 2024-11 products.txt (public domain), chosen for: balsalazide 750 mg (the RLD
# N020610, three AB generics, one discontinued); atorvastatin 10/20 mg (AB generics, a BX
# product, a discontinued one); levothyroxine 0.025 mg (numbered sub-groups, multi-valued
# cells, a Federal Register note in Strength); sumatriptan injection (AB and AP in one group);
# a pre-1982 approval date; OTC rows without TE codes; hydrocodone/acetaminophen (one ANDA,
# several strengths); budesonide rectal foam (ANDA215328).
_FIXTURE = Path(__file__).with_name("data") / "ob_products_fixture.txt"
OB_ROWS = _FIXTURE.read_text(encoding="ascii").splitlines()[1:]


def ob_text(rows: list[str] | None = None) -> bytes:
    """products.txt as FDA ships it: CRLF between lines, no final newline."""
    return "\r\n".join([HEADER, *(OB_ROWS if rows is None else rows)]).encode("ascii")


@pytest.fixture
def ob_file(tmp_path: Path) -> Path:
    p = tmp_path / "products.txt"
    p.write_bytes(ob_text())
    return p


# Catalog: store-carried products linked by appl, with prices, tiers and stock.
CLINICAL_CATALOG = [
    {"ndc": "65649-101-02", "name": "Colazal 750 mg capsules", "ingredients": ["balsalazide"],
     "strength": "750 mg", "unit": "capsule", "pack_size": 280, "price": "2.10", "rx_only": True,
     "appl": "N020610:001"},
    {"ndc": "60505-2560-2", "name": "Balsalazide 750 mg capsules (Apotex)",
     "ingredients": ["balsalazide"], "strength": "750 mg", "unit": "capsule", "pack_size": 280,
     "price": "0.60", "rx_only": True, "appl": "A077883:001", "attrs": {"formulary_tier": 2}},
    {"ndc": "0054-0065-29", "name": "Balsalazide 750 mg capsules (Hikma)",
     "ingredients": ["balsalazide"], "strength": "750 mg", "unit": "capsule", "pack_size": 280,
     "price": "0.75", "rx_only": True, "appl": "A077806:001", "attrs": {"formulary_tier": 1}},
    {"ndc": "70710-1544-2", "name": "Balsalazide 750 mg capsules (Zydus)",
     "ingredients": ["balsalazide"], "strength": "750 mg", "unit": "capsule", "pack_size": 280,
     "price": "0.40", "rx_only": True, "appl": "A217592:001", "attrs": {"formulary_tier": 1}},
    {"ndc": "0074-4341-90", "name": "Synthroid 25 mcg tablets", "ingredients": ["levothyroxine"],
     "strength": "25 mcg", "unit": "tablet", "pack_size": 90, "price": "1.20", "rx_only": True,
     "appl": "N021402:001"},
    {"ndc": "43602-731-90", "name": "Levothyroxine 25 mcg tablets (Ascent)",
     "ingredients": ["levothyroxine"], "strength": "25 mcg", "unit": "tablet", "pack_size": 90,
     "price": "0.10", "rx_only": True, "appl": "A215259:001"},
    {"ndc": "0378-1800-77", "name": "Levothyroxine 25 mcg tablets (Mylan)",
     "ingredients": ["levothyroxine"], "strength": "25 mcg", "unit": "tablet", "pack_size": 90,
     "price": "0.15", "rx_only": True, "appl": "A076187:001"},
    {"ndc": "0071-0155-23", "name": "Lipitor 10 mg tablets", "ingredients": ["atorvastatin"],
     "strength": "10 mg", "unit": "tablet", "pack_size": 90, "price": "9.80", "rx_only": True,
     "appl": "N020702:001"},
    {"ndc": "0093-5056-98", "name": "Atorvastatin 10 mg tablets (Umedica, BX)",
     "ingredients": ["atorvastatin"], "strength": "10 mg", "unit": "tablet", "pack_size": 90,
     "price": "0.05", "rx_only": True, "appl": "A213853:001"},
    {"ndc": "0904-5800-61", "name": "House brand tablets without an Orange Book link",
     "unit": "tablet", "price": "0.10"},
]


@pytest.fixture
def clinical_store(tmp_path: Path, clock: Any, ob_file: Path) -> Iterator[Store]:
    s = Store.init(tmp_path / "clin", "store-clin", clock=clock)
    orange_book.import_orange_book(s, ob_file)
    catalog.upsert_products(s, [catalog.product_from_json(p) for p in CLINICAL_CATALOG])
    inventory.receive(s, [
        # Apotex in stock (two lots: FEFO shows the earlier), Hikma out of stock, Zydus in stock
        {"ndc": "60505-2560-2", "lot": "AP2", "expiry": "2027-09-30", "qty": 100,
         "unit_cost": "0.20"},
        {"ndc": "60505-2560-2", "lot": "AP1", "expiry": "2027-03-31", "qty": 50,
         "unit_cost": "0.22"},
        {"ndc": "70710-1544-2", "lot": "ZY1", "expiry": "2027-06-30", "qty": 200,
         "unit_cost": "0.15"},
        {"ndc": "65649-101-02", "lot": "CO1", "expiry": "2027-12-31", "qty": 100,
         "unit_cost": "1.50"},
        {"ndc": "0378-1800-77", "lot": "MY1", "expiry": "2027-01-31", "qty": 300,
         "unit_cost": "0.03"},
        {"ndc": "43602-731-90", "lot": "AS1", "expiry": "2027-01-31", "qty": 300,
         "unit_cost": "0.02"},
        {"ndc": "0071-0155-23", "lot": "LP1", "expiry": "2027-01-31", "qty": 90},
        {"ndc": "0093-5056-98", "lot": "UM1", "expiry": "2027-01-31", "qty": 90},
    ])
    yield s
    s.close()


# FDA NDC Directory extracts (tab-separated, FDA's column names and value styles).
NDC_PRODUCT_HEADER = (
    "PRODUCTID\tPRODUCTNDC\tPRODUCTTYPENAME\tPROPRIETARYNAME\tPROPRIETARYNAMESUFFIX\t"
    "NONPROPRIETARYNAME\tDOSAGEFORMNAME\tROUTENAME\tSTARTMARKETINGDATE\tENDMARKETINGDATE\t"
    "MARKETINGCATEGORYNAME\tAPPLICATIONNUMBER\tLABELERNAME\tSUBSTANCENAME\t"
    "ACTIVE_NUMERATOR_STRENGTH\tACTIVE_INGRED_UNIT\tPHARM_CLASSES\tDEASCHEDULE\t"
    "NDC_EXCLUDE_FLAG\tLISTING_RECORD_CERTIFIED_THROUGH")
NDC_PRODUCTS = [
    # NDA with one Orange Book product
    "65649-101_0b1f0c6e-8d0a-4a4e-9b0e-2c1d3b6f0a11\t65649-101\tHUMAN PRESCRIPTION DRUG\tColazal"
    "\t\tbalsalazide disodium\tCAPSULE\tORAL\t20000718\t\tNDA\tNDA020610\t"
    "Salix Pharmaceuticals, Inc\tBALSALAZIDE DISODIUM\t750\tmg/1\tAminosalicylate [EPC]\t\tN\t"
    "20251231",
    # ANDA with three strengths: resolved by strength
    "0406-0367_5c0d2f6a-0c9e-4d57-b2a9-b1e1f1f3e6a2\t0406-0367\tHUMAN PRESCRIPTION DRUG\t"
    "Hydrocodone Bitartrate and Acetaminophen\t\tHydrocodone Bitartrate and Acetaminophen\tTABLET"
    "\tORAL\t20000726\t\tANDA\tANDA040400\tSpecGx LLC\tACETAMINOPHEN; HYDROCODONE BITARTRATE\t"
    "325; 10\tmg/1; mg/1\tOpioid Agonist [EPC]\tCII\tN\t20251231",
    "0406-0365_5c0d2f6a-0c9e-4d57-b2a9-b1e1f1f3e6a3\t0406-0365\tHUMAN PRESCRIPTION DRUG\t"
    "Hydrocodone Bitartrate and Acetaminophen\t\tHydrocodone Bitartrate and Acetaminophen\tTABLET"
    "\tORAL\t20000726\t\tANDA\tANDA040400\tSpecGx LLC\tACETAMINOPHEN; HYDROCODONE BITARTRATE\t"
    "325; 5\tmg/1; mg/1\tOpioid Agonist [EPC]\tCII\tN\t20251231",
    # the README's example ANDA
    "45802-340_7e1f8a2b-1111-4c2d-9e3f-0a1b2c3d4e5f\t45802-340\tHUMAN PRESCRIPTION DRUG\tBudesonide"
    "\t\tBudesonide\tAEROSOL, FOAM\tRECTAL\t20230601\t\tANDA\tANDA215328\tPadagis US LLC\t"
    "BUDESONIDE\t2\tmg/1\tCorticosteroid [EPC]\t\tN\t20251231",
    # a biologic: Purple Book, never Orange Book
    "0002-8215_d4c1e2f3-2222-4a5b-8c7d-1e2f3a4b5c6d\t0002-8215\tHUMAN PRESCRIPTION DRUG\tHumulin R"
    "\t\tinsulin human\tINJECTION, SOLUTION\tSUBCUTANEOUS\t19821028\t\tBLA\tBLA018780\tEli Lilly "
    "and Company\tINSULIN HUMAN\t100\t[iU]/mL\tInsulin [EPC]\t\tN\t20251231",
    # an OTC monograph product
    "0904-6728_e5f6a7b8-3333-4c5d-9e8f-2a3b4c5d6e7f\t0904-6728\tHUMAN OTC DRUG\tIbuprofen\t\t"
    "Ibuprofen\tTABLET, FILM COATED\tORAL\t20100101\t\tOTC MONOGRAPH DRUG\tM013\tMajor "
    "Pharmaceuticals\tIBUPROFEN\t200\tmg/1\tNonsteroidal Anti-inflammatory Drug [EPC]\t\tN\t"
    "20251231",
]
NDC_PACKAGE_HEADER = ("PRODUCTID\tPRODUCTNDC\tNDCPACKAGECODE\tPACKAGEDESCRIPTION\t"
                      "STARTMARKETINGDATE\tENDMARKETINGDATE\tNDC_EXCLUDE_FLAG\tSAMPLE_PACKAGE")
NDC_PACKAGES = [
    "65649-101_0b1f0c6e-8d0a-4a4e-9b0e-2c1d3b6f0a11\t65649-101\t65649-101-02\t280 CAPSULE in 1 "
    "BOTTLE (65649-101-02)\t20000718\t\tN\tN",
    "65649-101_0b1f0c6e-8d0a-4a4e-9b0e-2c1d3b6f0a11\t65649-101\t65649-101-05\t1 CAPSULE in 1 "
    "BLISTER PACK (65649-101-05)\t20000718\t\tN\tY",
    "0406-0367_5c0d2f6a-0c9e-4d57-b2a9-b1e1f1f3e6a2\t0406-0367\t0406-0367-01\t100 TABLET in 1 "
    "BOTTLE (0406-0367-01)\t20000726\t\tN\tN",
    "0406-0365_5c0d2f6a-0c9e-4d57-b2a9-b1e1f1f3e6a3\t0406-0365\t0406-0365-01\t100 TABLET in 1 "
    "BOTTLE (0406-0365-01)\t20000726\t\tN\tN",
    "45802-340_7e1f8a2b-1111-4c2d-9e3f-0a1b2c3d4e5f\t45802-340\t45802-340-56\t1 CAN in 1 CARTON "
    "(45802-340-56) > 33.4 g in 1 CAN\t20230601\t\tN\tN",
    "0002-8215_d4c1e2f3-2222-4a5b-8c7d-1e2f3a4b5c6d\t0002-8215\t0002-8215-01\t1 VIAL in 1 CARTON "
    "(0002-8215-01) > 10 mL in 1 VIAL\t19821028\t\tN\tN",
    "0904-6728_e5f6a7b8-3333-4c5d-9e8f-2a3b4c5d6e7f\t0904-6728\t0904-6728-60\t100 TABLET, FILM "
    "COATED in 1 BOTTLE (0904-6728-60)\t20100101\t\tN\tN",
]


def write_ndc(tmp: Path, products: list[str] | None = None, packages: list[str] | None = None
              ) -> tuple[Path, Path]:
    prod = tmp / "product.txt"
    pack = tmp / "package.txt"
    prod.write_bytes("\r\n".join([NDC_PRODUCT_HEADER,
                                  *(NDC_PRODUCTS if products is None else products)])
                     .encode("cp1252") + b"\r\n")
    pack.write_bytes("\r\n".join([NDC_PACKAGE_HEADER,
                                  *(NDC_PACKAGES if packages is None else packages)])
                     .encode("cp1252") + b"\r\n")
    return prod, pack
