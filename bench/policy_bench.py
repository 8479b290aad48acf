"""Policy benchmark (issue 3): decision latency with the full rule set against a one-policy
Cedar decision, and bundle verify + load time, with floors measured in the same run.

Decision: ``StoreGate.decide`` for a Texas C-II prescription line (all Rx fields, PMP
checked, prescriber DEA number), the terminal's real gate over the demo bundle: facts from
the request and the store's history, the compiled partition, Cedar, reasons and obligations.
The request repeats, so after the first call Cedar's answer for the line comes from the
engine's remembered answers; ``decision_cedar_every_time`` clears them before each call and
so times the decision of a request the terminal has not seen before.

Floor: one policy (``permit(principal, action, resource);``) evaluated by cedarpy on the same
Cedar request the uncompiled rule set receives for that line: same principal, action,
resource and the full schema-valid context (jurisdiction, rule packs, flags, numbers, caps).
Two more floors are reported for transparency: the same one policy with the pruned context
the compiled partition actually sends, and with an empty context. Timings are interleaved in
blocks so every series sees the same machine.

Bundle load: ``verify_bundle`` (JSON, Ed25519, hashes, schema validation of every policy,
data) plus building the gate (policy parse, annotation map); floors: parsing the same bytes as
JSON, and one Ed25519 verification.
"""

from __future__ import annotations

import gc
import json
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import cedarpy

from bench.stats import ratio, summary
from pharmacy import catalog, inventory
from pharmacy.sales import Dispenser
from pharmacy.signing import TrustStore
from pharmacy.store import Store
from policy_cache.bundle import verify_bundle
from policy_cache.demo import build_demo_bundle, install_demo_bundle
from policy_cache.engine import cedar_request
from policy_cache.facts import Env, FactBuilder
from policy_cache.gate import BundleGate, gate_for_store

PRODUCTS: list[dict[str, Any]] = [
    {"ndc": "0904-6728-60", "name": "Ibuprofen 200 mg tablets 100s", "unit": "pack",
     "price": "7.49", "ingredients": ["ibuprofen"], "strength": "200 mg"},
    {"ndc": "0406-0552-01", "name": "Oxycodone HCl 5 mg tablets", "unit": "tablet",
     "price": "0.45", "rx_only": True, "dea_schedule": "CII", "ingredients": ["oxycodone"],
     "strength": "5 mg", "manufacturer": "Rhodes", "attrs": {"opioid": True}},
]
PATIENT = {"id": "pt-bench", "name": "Bench Patient", "address": "1 Test Way, Austin TX 78701",
           "birth_date": "1970-01-01", "id_document": "TXDL12345678"}
PRESCRIBER = {"name": "Dr. Maria Alvarez", "address": "1200 Main St, Austin TX 78701",
              "dea": "BA1234563"}
TARGETS = {"decision_p99_ms": 0.25, "p99_ratio_vs_one_policy": 3.0, "bundle_load_ms": 100.0}


def _request(store: Store) -> dict[str, Any]:
    written = (store.clock().date() - timedelta(days=1)).isoformat()
    return {
        "jurisdiction": "US-TX", "user": {"id": "u-bench", "role": "pharmacist"},
        "patient": PATIENT,
        "rx": {"rx_number": "RXB1", "electronic": True, "written_on": written,
               "refill_number": 0, "refills_authorized": 0, "days_supply": 5,
               "quantity_prescribed": 10, "daw": 0, "prescriber": PRESCRIBER,
               "directions": "1 tab q6h prn pain", "pmp_checked": True},
        "lines": [{"ndc": PRODUCTS[1]["ndc"], "qty": 10}],
    }


def _interleaved(fns: dict[str, Any], n: int, block: int = 200, warm: int = 5
                 ) -> dict[str, list[float]]:
    """Blocks of each series in turn; each block starts with a few untimed calls so that no
    series pays for the previous one's cache footprint."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    perf = time.perf_counter
    for _ in range(max(1, n // block)):
        for name, fn in fns.items():
            samples = out[name]
            for _ in range(warm):
                fn()
            for _ in range(block):
                t = perf()
                fn()
                samples.append(perf() - t)
    return out


def _decisions(quick: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="pharmos-policy-bench-"))
    store = Store.init(tmp / "term", "bench")
    try:
        catalog.upsert_products(store, [catalog.product_from_json(p) for p in PRODUCTS])
        expiry = (store.clock().date() + timedelta(days=365)).isoformat()
        inventory.receive(store, [{"ndc": PRODUCTS[1]["ndc"], "lot": "B2", "expiry": expiry,
                                   "qty": 100_000, "order_form": "CSOS-1"}])
        install_demo_bundle(store)
        gate = gate_for_store(store)
        disp = Dispenser(store, gate)
        req = _request(store)
        lines, at, j, user = disp._request_basics(req)
        resolved = disp._resolve_lines(store.conn, lines, at)
        creq = disp.build_request(req, resolved, at, j, user)
        decision = gate.decide(creq)
        if not decision.allowed:
            raise RuntimeError(f"benchmark request was not allowed: {decision.to_json()}")
        bg = gate.bundle_gate
        assert bg is not None
        fb = FactBuilder(bg.data, bg.meta, creq, Env(now=store.clock(), history=gate.history))
        ev = fb.build()[0]
        full_ctx = bg.full_context(fb, ev)
        part = bg.policies.partition(fb.chain, ev.tags, fb.rules, fb.caps_key, ev.flags)
        pruned_ctx = part.context(ev.context, ev.flags)
        one = cedarpy.PolicySet.from_str("permit(principal, action, resource);")
        ents = cedarpy.Entities.from_json_str("[]")
        uid = str(user["id"])
        r_full = cedar_request(uid, 1, full_ctx)
        r_pruned = cedar_request(uid, 1, pruned_ctx)
        r_empty = cedar_request(uid, 1, {})
        n = 2000 if quick else 20000
        gc.collect()
        gc.freeze()  # setup objects out of the collector's way, as a long-running terminal
        series = _interleaved({
            "decision": lambda: gate.decide(creq),
            "decision_cedar_every_time": lambda: _uncached(bg, gate, creq),
            "one_policy": lambda: cedarpy.is_authorized(r_full, one, ents),
            "one_policy_pruned_context": lambda: cedarpy.is_authorized(r_pruned, one, ents),
            "one_policy_empty_context": lambda: cedarpy.is_authorized(r_empty, one, ents),
            "full_set_uncompiled": lambda: cedarpy.is_authorized(r_full, bg.policies.full_set,
                                                                 ents),
        }, n)
        gc.unfreeze()
        s = {k: summary(v) for k, v in series.items()}
        d, f = s["decision"], s["one_policy"]
        return {
            "decision": {
                **d,
                "p99_ratio_vs_one_policy": ratio(d["p99_ms"], f["p99_ms"]),
                "p50_ratio_vs_one_policy": ratio(d["p50_ms"], f["p50_ms"]),
                "p99_ratio_vs_one_policy_pruned_context": ratio(
                    d["p99_ms"], s["one_policy_pruned_context"]["p99_ms"]),
                "p99_ratio_vs_one_policy_empty_context": ratio(
                    d["p99_ms"], s["one_policy_empty_context"]["p99_ms"]),
                "rules_in_bundle": len(bg.policies),
                "rules_evaluated_by_cedar": len(part.pids),
                "context_values_full": sum(len(v) if isinstance(v, list) else 1
                                           for v in full_ctx.values()),
                "context_values_sent": sum(len(v) if isinstance(v, list) else 1
                                           for v in pruned_ctx.values()),
                "what": "StoreGate.decide, Texas C-II Rx line, demo bundle (a repeated "
                        "request: Cedar's answer is remembered)",
            },
            "decision_cedar_every_time": {
                **s["decision_cedar_every_time"],
                "p99_ratio_vs_one_policy": ratio(s["decision_cedar_every_time"]["p99_ms"],
                                                 f["p99_ms"]),
                "what": "the same decision with remembered Cedar answers cleared before each "
                        "call (every decision calls Cedar)",
            },
            "one_policy": {**f, "what": "cedarpy, one permit policy, same full request"},
            "one_policy_pruned_context": s["one_policy_pruned_context"],
            "one_policy_empty_context": s["one_policy_empty_context"],
            "full_set_uncompiled": {**s["full_set_uncompiled"],
                                    "what": "cedarpy, every policy, same full request "
                                            "(no compilation, no facts)"},
        }
    finally:
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _bundle_load(quick: bool) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw, pem = build_demo_bundle()
    trust = TrustStore.from_pems([pem])
    k = Ed25519PrivateKey.generate()
    sig, msg = k.sign(raw[:4096]), raw[:4096]
    pub = k.public_key()
    n = 10 if quick else 40
    loads, parses, verifies = [], [], []
    for _ in range(n):
        t = time.perf_counter()
        BundleGate(verify_bundle(raw, trust))
        loads.append(time.perf_counter() - t)
        t = time.perf_counter()
        json.loads(raw)
        parses.append(time.perf_counter() - t)
        t = time.perf_counter()
        pub.verify(sig, msg)
        verifies.append(time.perf_counter() - t)
    ld = summary(loads)
    jp = summary(parses)
    return {"ms": ld["p50_ms"], "max_ms": ld["max_ms"], "n": n, "bytes": len(raw),
            "ratio_vs_json_parse": ratio(ld["p50_ms"], jp["p50_ms"]),
            "floor_json_parse_ms": jp["p50_ms"],
            "floor_ed25519_verify_ms": summary(verifies)["p50_ms"],
            "what": "verify_bundle + BundleGate (parse, validate against schema, map rules)"}


def run(quick: bool = False) -> dict[str, Any]:
    out = _decisions(quick)
    out["bundle_load"] = _bundle_load(quick)
    d = out["decision"]
    out["targets"] = TARGETS
    out["meets_targets"] = {
        "decision_p99_ms": d["p99_ms"] <= TARGETS["decision_p99_ms"],
        "p99_ratio_vs_one_policy": d["p99_ratio_vs_one_policy"]
        <= TARGETS["p99_ratio_vs_one_policy"],
        "bundle_load_ms": out["bundle_load"]["max_ms"] <= TARGETS["bundle_load_ms"],
    }
    return out


def _uncached(bg: Any, gate: Any, creq: Any) -> Any:
    """One decision with the remembered Cedar answers cleared first."""
    bg.policies.clear_memo()
    return gate.decide(creq)


if __name__ == "__main__":
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
