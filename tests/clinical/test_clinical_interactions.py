"""Interactions: the documented knowledge-file format, the shipped core file, both orders,
pharmacy-supplied sources, the ONC high-priority recall test and the CLI."""

from __future__ import annotations

import csv
import hashlib
import json
from importlib import resources
from pathlib import Path

import pytest

from pharmacy import interactions, orange_book
from pharmacy.errors import BadInput
from pharmacy.store import Store
from terminal.cli import main
from tests.conftest import shared_data

ddi = interactions


def _core() -> ddi.InteractionIndex:
    idx = ddi.InteractionIndex()
    idx.add(ddi.core_source())
    return idx


def _fires(idx: ddi.InteractionIndex, a: str, b: str) -> str | None:
    found = idx.check([idx.drug(a, [a]), idx.drug(b, [b])])
    return found[0].severity if found else None


REQUIRED = [  # the examples, with the severity the core file gives them
    ("warfarin sodium", "ibuprofen", "major"),
    ("warfarin", "naproxen sodium", "major"),
    ("sertraline hydrochloride", "phenelzine sulfate", "contraindicated"),
    ("fluoxetine", "selegiline", "contraindicated"),
    ("isosorbide mononitrate", "sildenafil citrate", "contraindicated"),
    ("nitroglycerin", "tadalafil", "contraindicated"),
    ("clopidogrel bisulfate", "omeprazole", "major"),
    ("simvastatin", "clarithromycin", "contraindicated"),
    ("oxycodone hydrochloride", "alprazolam", "major"),
    ("hydrocodone bitartrate", "lorazepam", "major"),
    ("methotrexate sodium", "trimethoprim", "major"),
]


@pytest.mark.parametrize(("a", "b", "severity"), REQUIRED)
def test_core_pairs_fire_in_both_orders(a: str, b: str, severity: str) -> None:
    idx = _core()
    assert _fires(idx, a, b) == severity
    assert _fires(idx, b, a) == severity


def test_core_negatives_and_normalization() -> None:
    idx = _core()
    assert _fires(idx, "warfarin", "acetaminophen") is None
    assert _fires(idx, "pravastatin", "clarithromycin") is None
    assert ddi.normalize_ingredient("Warfarin_Sodium ") == "warfarin"
    assert ddi.normalize_ingredient("SODIUM CHLORIDE") == "sodium"  # the first word stays
    assert idx.canonical("Paracetamol") == "acetaminophen"
    assert idx.canonical("ferrous sulfate") == "iron"
    assert ddi.split_ingredients("ACETAMINOPHEN; HYDROCODONE BITARTRATE") == (
        "acetaminophen", "hydrocodone")
    combo = idx.drug("Norco", ddi.split_ingredients("ACETAMINOPHEN; HYDROCODONE BITARTRATE"))
    found = idx.check([combo, idx.drug("Xanax", ["alprazolam"])])
    assert [(f.ingredients, f.severity) for f in found] == [
        (("hydrocodone", "alprazolam"), "major")]


def test_check_new_against_active_and_ordering() -> None:
    idx = _core()
    new = idx.drug("clarithromycin", ["clarithromycin"])
    active = [idx.drug(x, [x]) for x in ("simvastatin", "warfarin", "colchicine", "metformin")]
    found = idx.check_new(new, active)
    assert [f.drugs[1] for f in found] == ["simvastatin", "colchicine"]
    assert [f.severity for f in found] == ["contraindicated", "major"]
    assert found[0].to_json()["rule"] == "@cyp3a4_statin + @strong_cyp3a4_inhibitor"
    assert "citation" in found[0].to_json() and found[0].to_json()["management"]


FILE = """# a pharmacy's file
@format pharmos-interactions 1
@alias coumadin = warfarin
@class azole = fluconazole, miconazole nitrate
drug_a\tdrug_b\tseverity\tmanagement\tcitation
warfarin\t@azole\tmajor\tMonitor INR.\tlocal formulary 2025
quinine\tmefloquine\tmoderate
"""


def test_file_format_classes_aliases_and_optional_columns(tmp_path: Path) -> None:
    src = ddi.parse_source(FILE, "local")
    assert {(p.a, p.b) for p in src.pairs} == {
        ("fluconazole", "warfarin"), ("miconazole", "warfarin"), ("mefloquine", "quinine")}
    idx = _core()
    idx.add(src)
    found = idx.check([idx.drug("Coumadin", ["coumadin"]), idx.drug("m", ["Miconazole"])])
    assert found[0].severity == "major" and found[0].entries[0].source == "local"
    both = idx.check([idx.drug("w", ["warfarin"]), idx.drug("f", ["fluconazole"])])
    assert {e.source for e in both[0].entries} == {"local", "pharmos-core"}


BAD_FILES = [
    ("drug_a\tdrug_b\n", 1, "must name drug_a, drug_b and severity"),
    ("drug_a\tdrug_b\tseverity\nx\ty\tsevere\n", 2, "severity 'severe'"),
    ("drug_a\tdrug_b\tseverity\nx\t@nope\tmajor\n", 2, "class @nope is not defined"),
    ("@format pharmos-interactions 2\n", 1, "format"),
    ("@include other.tsv\n", 1, "unknown directive @include"),
    ("drug_a\tdrug_b\tseverity\nx\ty\tmajor\ta\tb\tc\n", 2, "expected 3 tab-separated fields"),
    ("# nothing\n", 1, "no table header"),
]


@pytest.mark.parametrize(("text", "line", "problem"), BAD_FILES)
def test_bad_knowledge_files_name_the_line(text: str, line: int, problem: str) -> None:
    with pytest.raises(BadInput) as e:
        ddi.parse_source(text, "bad.tsv")
    assert e.value.code == "DDI_CORRUPT_ROW"
    assert e.value.details["line"] == line and problem in e.value.message
    assert e.value.message.startswith(f"bad.tsv line {line}:")


def test_install_source_persists_and_refreshes_the_cache(store: Store, tmp_path: Path) -> None:
    p = tmp_path / "local.tsv"
    p.write_text(FILE, encoding="utf-8")
    before = ddi.index_for(store.conn)
    assert ddi.index_for(store.conn) is before  # cached per process
    info = ddi.install_source(store, p)
    assert info == {"source": "local.tsv", "pairs": 3, "aliases": 1,
                     "sha256": hashlib.sha256(FILE.encode()).hexdigest()}
    idx = ddi.index_for(store.conn)
    assert idx is not before and "local.tsv" in idx.sources
    assert idx.check([idx.drug("q", ["quinine"]), idx.drug("m", ["mefloquine"])])
    assert ddi.installed_sources(store.conn)[0]["pairs"] == 3
    assert ddi.uninstall_source(store, "local.tsv") == 3
    idx2 = ddi.index_for(store.conn)
    assert not idx2.check([idx2.drug("q", ["quinine"]), idx2.drug("m", ["mefloquine"])])
    with pytest.raises(BadInput):
        ddi.uninstall_source(store, "local.tsv")


def test_resolve_drug_by_ndc_and_catalog(store: Store) -> None:
    idx = ddi.index_for(store.conn)
    d = ddi.resolve_drug(store.conn, "0406-0552-01", idx)  # oxycodone in the small catalog
    assert d.ingredients == ("oxycodone",)
    with pytest.raises(BadInput) as e:
        ddi.resolve_drug(store.conn, "1234-5678-90", idx)
    assert e.value.code == "UNKNOWN_NDC"
    with pytest.raises(BadInput):
        ddi.resolve_drug(store.conn, "12-34", idx)


def test_cli_interactions(store: Store, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    d = str(store.data_dir)
    assert main(["interactions", "--data-dir", d, "--json", "--drugs",
                 "Warfarin,Ibuprofen,0406-0552-01,alprazolam,wafarin"]) == 0
    out = json.loads(capsys.readouterr().out)
    pairs = {tuple(f["ingredients"]): f["severity"] for f in out["interactions"]}
    assert pairs == {("warfarin", "ibuprofen"): "major", ("oxycodone", "alprazolam"): "major"}
    assert out["checked_pairs"] == 10 and out["unrecognized"] == ["wafarin"]
    assert main(["interactions", "--data-dir", d, "--json", "--new", "sildenafil",
                 "--active", "isosorbide mononitrate,metformin"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [f["severity"] for f in out["interactions"]] == ["contraindicated"]
    assert out["checked_pairs"] == 2
    local = tmp_path / "local.tsv"
    local.write_text(FILE, encoding="utf-8")
    assert main(["interactions", "--data-dir", d, "--json", "--drugs", "quinine,mefloquine",
                 "--source", str(local)]) == 0
    assert json.loads(capsys.readouterr().out)["interactions"][0]["source"] == "local.tsv"
    assert main(["interactions", "--data-dir", d, "--json", "--drugs",
                 "quinine,mefloquine"]) == 0
    assert json.loads(capsys.readouterr().out)["interactions"] == []
    assert main(["interactions", "--data-dir", d, "--json", "--install-source", str(local),
                 "--source-name", "pharmacy-local"]) == 0
    assert json.loads(capsys.readouterr().out)["installed"]["source"] == "pharmacy-local"
    assert main(["interactions", "--data-dir", d, "--drugs", "mefloquine,quinine"]) == 0
    assert "MODERATE" in capsys.readouterr().out
    bad = tmp_path / "bad.tsv"
    bad.write_text("drug_a\tdrug_b\tseverity\nx\ty\tsevere\n", encoding="utf-8")
    assert main(["interactions", "--data-dir", d, "--json", "--drugs", "a,b",
                 "--source", str(bad)]) == 1
    err = json.loads(capsys.readouterr().out)["error"]
    assert err["code"] == "DDI_CORRUPT_ROW" and err["details"]["line"] == 2
    assert main(["interactions", "--data-dir", d, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "BAD_ARGS"


@pytest.mark.shared_data
def test_shipped_data_is_team_written_not_the_shared_files() -> None:
    """The product ships no file from ../shared/data (their licences forbid it)."""
    manifest = shared_data("MANIFEST.sha256")
    shared = {line.split()[0] for line in manifest.read_text().splitlines() if line.strip()}
    data = resources.files("pharmacy.data")
    for entry in data.iterdir():
        if entry.is_file():
            assert hashlib.sha256(entry.read_bytes()).hexdigest() not in shared, entry.name
    core = ddi.core_source()
    assert len(core.pairs) < 5000 and all(p.citation for p in core.pairs)


# ---- ONC high-priority pairs (test data only, never shipped) -------------------------------
def _onc_as_pharmos_file(src: Path, dst: Path) -> int:
    """Adapter: the derived ONC CSV → the documented pharmos knowledge-file format."""
    with src.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    lines = ["@format pharmos-interactions 1", "drug_a\tdrug_b\tseverity\tmanagement\tcitation"]
    lines += [f"{r['drug1_name']}\t{r['drug2_name']}\tmajor\tONC high-priority pair\t"
              "Phansalkar et al., JAMIA 2012" for r in rows]
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(rows)


@pytest.mark.shared_data
def test_every_onc_high_priority_pair_fires_in_both_orders(store: Store, tmp_path: Path) -> None:
    onc = shared_data("ddi_pddi_merged", "derived", "onc_high_priority_pairs.csv")
    converted = tmp_path / "onc.tsv"
    n = _onc_as_pharmos_file(onc, converted)
    assert n == 1930
    ddi.install_source(store, converted, "onc-test")
    # with the real Orange Book imported, names also go through its trade-name lookup
    orange_book.import_orange_book(store, shared_data("orange_book", "2024-11", "products.txt"))
    idx = ddi.index_for(store.conn)
    with onc.open(encoding="utf-8", newline="") as f:
        pairs = [(r["drug1_name"], r["drug2_name"]) for r in csv.DictReader(f)]
    missed = []
    for a, b in pairs:
        da = ddi.resolve_drug(store.conn, a, idx)
        db = ddi.resolve_drug(store.conn, b, idx)
        if not idx.check([da, db]) or not idx.check([db, da]):
            missed.append((a, b))
        if not idx.check_new(da, [db]) or not idx.check_new(db, [da]):
            missed.append((a, b))
    assert missed == []
    assert len({frozenset(p) for p in pairs}) == 1150
