"""Clinical benchmarks: Orange Book import, substitution lookup, interaction check.

Targets (issue 6): products.txt import ≤ 3 s; substitution p99 ≤ 1 ms over the full Orange
Book; a 20-drug interaction check p99 ≤ 1 ms over ~200k interaction pairs. Each figure is
also given as a ratio against a floor measured in the same run on the same machine:

* import: read + split + bare ``executemany`` of the same rows into an unindexed table;
* substitution: one indexed SQLite point lookup of the same Orange Book row;
* interactions: the bare ``dict.get`` lookups a pairwise check must do (190 for 20 drugs).

The interaction pairs come from ../shared/data/ddi_pddi_merged/CombinedDatasetConservative
(test data, never shipped), converted to the pharmos knowledge-file format and loaded through
the same parser a pharmacy file goes through. Without ../shared/data the Orange Book parts
are skipped and the interaction pairs are synthetic.
"""

from __future__ import annotations

import bz2
import os
import random
import shutil
import sqlite3
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.stats import ratio, summary
from pharmacy import catalog, interactions, inventory, orange_book, substitution
from pharmacy.store import Store

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PHARMOS_SHARED_DATA", ROOT.parent / "shared" / "data"))
OB_FILE = SHARED / "orange_book" / "2024-11" / "products.txt"
DDI_FILE = SHARED / "ddi_pddi_merged" / "CombinedDatasetConservative.csv.bz2"
TARGET_MS = 1.0
TARGET_IMPORT_S = 3.0


def _bare_import(path: Path, db: Path) -> float:
    t = time.perf_counter()
    rows = [ln.split("~") for ln in path.read_bytes().decode("ascii").split("\r\n")[1:]]
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"CREATE TABLE floor ({', '.join(f'c{i}' for i in range(14))})")
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(f"INSERT INTO floor VALUES ({', '.join('?' * 14)})", rows)
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - t


def _import_bench(tmp: Path) -> tuple[Store, dict[str, Any]]:
    floor = _bare_import(OB_FILE, tmp / "floor.db")
    store = Store.init(tmp / "term", "bench-clinical")
    t = time.perf_counter()
    rows = orange_book.import_orange_book(store, OB_FILE)
    seconds = time.perf_counter() - t
    return store, {"rows": rows, "seconds": round(seconds, 3), "floor_seconds": round(floor, 3),
                   "ratio": ratio(seconds, floor), "target_s": TARGET_IMPORT_S,
                   "meets_target": seconds <= TARGET_IMPORT_S}


def _seed_catalog(store: Store, rng: random.Random, n: int) -> list[str]:
    """n catalog products linked to A-rated Orange Book products (biggest groups included)."""
    conn = store.conn
    rated = [r[0] for r in conn.execute(
        "SELECT appl_key FROM ob_products WHERE type = 'RX' AND te_code LIKE 'A%' "
        "ORDER BY appl_key")]
    big = [r[0] for r in conn.execute(
        "SELECT MIN(appl_key) FROM ob_products WHERE type = 'RX' AND te_code LIKE 'A%' "
        "GROUP BY group_key ORDER BY COUNT(*) DESC LIMIT 20")]
    chosen = list(dict.fromkeys(big + rng.sample(rated, n)))[:n]
    products = []
    for i, key in enumerate(chosen):
        ob = orange_book.get(conn, key)
        products.append(catalog.product_from_json({
            "ndc": f"9{i // 1000:04d}-{i % 1000:03d}-01", "name": f"{ob.trade_name} {ob.strength}",
            "strength": ob.strength, "unit": "tablet", "pack_size": 100,
            "price": f"{rng.randint(5, 300) / 100:.2f}", "rx_only": True, "appl": key,
            "attrs": {"formulary_tier": rng.randint(1, 3)},
        }))
    catalog.upsert_products(store, products)
    expiry = (store.clock().date() + timedelta(days=400)).isoformat()
    inventory.receive(store, [
        {"ndc": p.ndc, "lot": f"L{i}", "expiry": expiry, "qty": 500, "unit_cost": "0.05"}
        for i, p in enumerate(products) if i % 2 == 0])
    return [p.ndc for p in products]


def _substitution_bench(store: Store, quick: bool) -> dict[str, Any]:
    rng = random.Random(6)
    ndcs = _seed_catalog(store, rng, 100 if quick else 300)
    conn = store.conn
    today = store.clock().date()
    keys = [r[0] for r in conn.execute(
        "SELECT appl_key FROM ob_products WHERE type = 'RX' AND te_code <> ''")]
    queries = [f"appl:{k}" for k in rng.sample(keys, 40)] + ndcs
    n = 400 if quick else 3000
    plan = [rng.choice(queries) for _ in range(n)]
    for q in plan[:50]:
        substitution.find_equivalents(conn, q, today)
    sub: list[float] = []
    floor: list[float] = []
    point = "SELECT * FROM ob_products WHERE appl_key = ? AND otc = 0"
    sizes: list[int] = []
    for q in plan:
        key = q[5:] if q.startswith("appl:") else keys[len(sub) % len(keys)]
        t = time.perf_counter()
        conn.execute(point, (key,)).fetchone()
        floor.append(time.perf_counter() - t)
        t = time.perf_counter()
        res = substitution.find_equivalents(conn, q, today)
        sub.append(time.perf_counter() - t)
        sizes.append(len(res.equivalents))
    s, f = summary(sub), summary(floor)
    return {"lookup": s, "floor": f, "ratio_p50": ratio(s["p50_ms"], f["p50_ms"]),
            "ratio_p99": ratio(s["p99_ms"], f["p99_ms"]), "target_p99_ms": TARGET_MS,
            "meets_target": s["p99_ms"] <= TARGET_MS,
            "max_equivalents": max(sizes), "catalog_products": len(ndcs)}


def _ddi_text(limit: int | None) -> tuple[str, str, int]:
    """The combined data set as a pharmos knowledge file (test data, never shipped)."""
    if DDI_FILE.exists():
        lines = ["drug_a\tdrug_b\tseverity\tmanagement\tcitation"]
        rows = 0
        with bz2.open(DDI_FILE, "rt", encoding="utf-8", newline="\n") as fh:
            next(fh)
            for raw in fh:
                f = raw.rstrip("\r\n").split("\t")
                if len(f) < 4 or not f[1] or not f[3]:
                    continue
                lines.append(f"{f[1]}\t{f[3]}\tmoderate\t\t{f[20] if len(f) > 20 else ''}")
                rows += 1
                if limit and rows >= limit:
                    break
        return "\n".join(lines), "CombinedDatasetConservative", rows
    rng = random.Random(7)
    names = [f"drug{i:04d}" for i in range(3300)]
    body = ["drug_a\tdrug_b\tseverity"]
    for _ in range(limit or 200_000):
        a, b = rng.sample(names, 2)
        body.append(f"{a}\t{b}\tmoderate")
    return "\n".join(body), "synthetic", len(body) - 1


def _interaction_bench(quick: bool) -> dict[str, Any]:
    text, origin, rows = _ddi_text(50_000 if quick else None)
    t = time.perf_counter()
    src = interactions.parse_source(text, origin)
    parse_s = time.perf_counter() - t
    idx = interactions.InteractionIndex()
    idx.add(interactions.core_source())
    idx.add(src)
    t = time.perf_counter()
    pairs = idx.pairs  # builds the adjacency
    build_s = time.perf_counter() - t
    names = sorted({p.a for p in src.pairs} | {p.b for p in src.pairs})
    plain = {(p.a, p.b): p for p in src.pairs}
    rng = random.Random(20)
    n = 400 if quick else 3000
    profiles = [[idx.drug(x, [x]) for x in rng.sample(names, 20)] for _ in range(n)]
    for prof in profiles[:50]:
        idx.check(prof)
    every: list[float] = []
    new_vs: list[float] = []
    floor: list[float] = []
    found = 0
    for prof in profiles:
        keys = [(prof[i].ingredients[0], prof[j].ingredients[0])
                for i in range(20) for j in range(i + 1, 20)]
        get = plain.get
        t = time.perf_counter()
        for k in keys:
            get(k)
        floor.append(time.perf_counter() - t)
        t = time.perf_counter()
        found += len(idx.check(prof))
        every.append(time.perf_counter() - t)
        t = time.perf_counter()
        idx.check_new(prof[0], prof[1:])
        new_vs.append(time.perf_counter() - t)
    e, nv, f = summary(every), summary(new_vs), summary(floor)
    return {"source": origin, "rows": rows, "pairs": pairs, "parse_s": round(parse_s, 3),
            "build_s": round(build_s, 3), "profile_all_pairs": e, "new_vs_19": nv,
            "floor_190_dict_gets": f, "ratio_p50": ratio(e["p50_ms"], f["p50_ms"]),
            "ratio_p99": ratio(e["p99_ms"], f["p99_ms"]), "target_p99_ms": TARGET_MS,
            "meets_target": e["p99_ms"] <= TARGET_MS,
            "interactions_found_per_profile": round(found / n, 2)}


def run(quick: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="pharmos-clinical-"))
    try:
        if OB_FILE.exists():
            store, out["import"] = _import_bench(tmp)
            try:
                out["substitution"] = _substitution_bench(store, quick)
            finally:
                store.close()
        else:
            out["import"] = out["substitution"] = {"skipped": f"{OB_FILE} not present"}
        out["interactions"] = _interaction_bench(quick)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
