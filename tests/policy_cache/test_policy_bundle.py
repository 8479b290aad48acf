"""Bundle format, signing, installation, and every bad input and fault the issue lists: a flipped
byte, an unknown signer, an expired bundle, an unknown format version, malformed JSON, a policy
that fails the schema, a stale bundle, a tampered store. Each gives a clear code, the last good
bundle stays active, and nothing is sold under an unverified bundle."""

from __future__ import annotations

import json
import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pharmacy.canonical import canonical_json
from pharmacy.errors import ComplianceDenied, PharmosError
from pharmacy.signing import SigningKey, TrustStore
from pharmacy.store import Store
from policy_cache import bundle as B
from policy_cache.errors import BundleInvalid, PolicyInvalid
from policy_cache.gate import gate_for_store
from policy_cache.install import install_bundle, show
from policy_cache.trust import trust_key
from tests.policy_cache.policy_support import (
    ALL_J,
    ISSUED,
    NDC,
    UNTIL,
    Checker,
    codes,
    hq_key,
    rx,
    sale,
    signed_bundle,
)

TAMPER_CODES = {"BUNDLE_MALFORMED", "SIGNATURE_INVALID", "UNKNOWN_SIGNING_KEY",
                "BUNDLE_TAMPERED", "BUNDLE_FORMAT_UNSUPPORTED", "BUNDLE_UNSIGNED"}
SECTION7_CODES = [
    "DEA_CII_NO_REFILL", "DEA_CII_REFILLS_IGNORED", "DEA_CII_PARTIAL_WINDOW_30D",
    "DEA_CII_PARTIAL_72H", "DEA_CII_LTCF_60D", "DEA_PARTIAL_EXCEEDS_QTY",
    "DEA_CII_ORAL_NOT_EMERGENCY", "DEA_CII_FAX_ORIGINAL_REQUIRED", "DEA_CIII_IV_6_MONTHS",
    "DEA_CIII_IV_5_REFILLS", "DEA_CIII_V_PARTIAL_6_MONTHS", "DEA_RX_MISSING_FIELD:prescriber.dea",
    "DEA_PRESCRIBER_INVALID", "DEA_CI_NOT_DISPENSABLE", "DEA_CV_OTC_AGE",
    "DEA_CV_OTC_48H_LIMIT", "DEA_CV_OTC_PHARMACIST_ONLY", "DEA_CV_OTC_LOG_INCOMPLETE",
    "CMEA_DAILY_3_6G", "CMEA_30DAY_LIMIT", "CMEA_ID_REQUIRED", "CMEA_LOG_INCOMPLETE",
    "DEA_DISPENSE_RECORD_INCOMPLETE", "TX_PMP_CHECK_REQUIRED", "TX_CII_30D",
    "TX_OPIOID_ACUTE_10D", "FL_ACUTE_OPIOID_LIMIT", "FL_PDMP_CHECK_REQUIRED", "NY_30_DAY_SUPPLY",
    "IN_RX_REQUIRED", "IN_H1_REGISTER_INCOMPLETE", "IN_SCHX_DUPLICATE_RX",
    "IN_RX_REGISTER_INCOMPLETE", "IN_SCHH_NO_REPEAT", "EXPIRED_LOT", "BUNDLE_EXPIRED"]


def trust() -> TrustStore:
    return TrustStore([hq_key().public])


def source_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "rules"
    shutil.copytree(B.default_source(), dst, ignore=shutil.ignore_patterns("__*"))
    return dst


def resign(doc: dict[str, Any], key: SigningKey | None = None) -> bytes:
    """Sign a hand-made envelope, bypassing sign_bundle's checks (a broken head office)."""
    key = key or hq_key()
    files = doc["files"]
    manifest = dict(doc["manifest"], key_id=key.key_id,
                    files=B._hashes(files))
    sig = key.sign(canonical_json(manifest).encode())
    out = dict(doc, manifest=manifest, signature={"alg": "ed25519", "key_id": key.key_id,
                                                  "sig": sig})
    return canonical_json(out).encode()


# ---- format -------------------------------------------------------------------------------------
def test_bundle_is_one_signed_json_file() -> None:
    raw = signed_bundle()
    doc = json.loads(raw)
    assert doc["format"] == "pharmos-policy-bundle" and doc["format_version"] == 1
    m = doc["manifest"]
    assert m["bundle_version"] == "t-1" and m["jurisdictions"] == ALL_J
    assert m["key_id"] == hq_key().key_id == doc["signature"]["key_id"]
    assert set(m["files"]) == set(doc["files"])
    assert {"schema.cedarschema", "data/jurisdictions.json", "data/products.json",
            "data/india_schedules.json"} <= set(doc["files"])
    vb = B.verify_bundle(raw, trust(), now=ISSUED)
    assert vb.meta.policy_count == m["policy_count"] > 80
    assert vb.meta.offline_until == UNTIL


def test_every_section7_code_is_in_the_bundle() -> None:
    from policy_cache.engine import PolicyEngine

    eng = PolicyEngine(B.verify_bundle(signed_bundle(), trust()))
    have = {r["code"] for r in eng.describe()}
    assert set(SECTION7_CODES) <= have, set(SECTION7_CODES) - have
    assert all(r["citation"] for r in eng.describe() if r["outcome"] in ("deny", "hold", "warn"))


def test_unsigned_bundle_is_refused() -> None:
    raw = B.build_bundle(None, version="u", jurisdictions=["US"], issued_at=ISSUED,
                         offline_until=UNTIL)
    with pytest.raises(BundleInvalid) as ei:
        B.verify_bundle(raw, trust())
    assert ei.value.code == "BUNDLE_UNSIGNED"


@pytest.mark.parametrize("mutation, needle", [
    (lambda t: t.replace('context.f.contains("dea:CI")', 'context.f.contains(42)'), "schema"),
    (lambda t: t.replace('@applies("dea")\n@jurisdiction("US")\n@rule("13")',
                         '@applies("dea")\n@jurisdiction("US")\n@rule("13")\n@id("dup")'),
     "annotation"),
    (lambda t: t + '\n@id("x.bad")\n@outcome("deny")\n@applies("any")\n@jurisdiction("US")\n'
               '@code("X")\n@citation("c")\n@message("m")\nforbid (principal, action, resource)'
               ' when { context.f.contains("a") };\n', "guard"),
    (lambda t: t.replace("context.cap_cii_cara_days", "context.cap_cii_cara_dayz")
     .replace("context has cap_cii_cara_days", "context has cap_cii_cara_dayz"), "cap"),
])
def test_invalid_policy_cannot_be_built_or_signed(tmp_path: Path, mutation: Any,
                                                  needle: str) -> None:
    src = source_copy(tmp_path)
    p = src / "10_dea.cedar"
    p.write_text(mutation(p.read_text()))
    with pytest.raises(PharmosError) as ei:
        B.build_bundle(src, version="bad", jurisdictions=["US"], issued_at=ISSUED,
                       offline_until=UNTIL)
    assert ei.value.code == "BUNDLE_POLICY_INVALID"
    good = json.loads(B.build_bundle(None, version="g", jurisdictions=["US"], issued_at=ISSUED,
                                     offline_until=UNTIL))
    files = B.read_source(src)
    doc = dict(good, files=files, manifest=dict(good["manifest"], files=B._hashes(files)))
    with pytest.raises(PolicyInvalid):
        B.sign_bundle(canonical_json(doc).encode(), hq_key())


# ---- installing, and the last good bundle -------------------------------------------------------
def _assert_good_active(store: Store, version: str = "t-1") -> None:
    info = show(store)
    assert info["status"] == "ok" and info["active"]["bundle_version"] == version
    d = Checker(store).check(sale(NDC["oxycodone"], 20, rx=rx()))
    assert d.allowed and d.bundle_version == version


@pytest.fixture
def good(pstore: Store) -> Store:
    _assert_good_active(pstore)
    return pstore


def test_flipped_bytes_are_always_refused(good: Store) -> None:
    raw = bytearray(signed_bundle())
    doc_text = raw.decode()
    rng = random.Random(7)
    positions = set(rng.sample(range(len(raw)), 1200))
    for marker in ('"manifest"', '"signature"', '"sig":"', '"key_id"', '"format_version"',
                   'forbid', '"offline_until"', "cap_pse_day_ug", "3600000", "cefixime"):
        i = doc_text.index(marker)
        positions.update(range(i, i + len(marker) + 3))
    seen: set[str] = set()
    for pos in sorted(positions):
        for bit in (0x01, 0x20):
            bad = bytearray(raw)
            bad[pos] ^= bit
            with pytest.raises(PharmosError) as ei:
                B.verify_bundle(bytes(bad), trust())
            assert ei.value.code in TAMPER_CODES, (pos, ei.value.code, ei.value.message)
            seen.add(ei.value.code)
    assert {"BUNDLE_MALFORMED", "SIGNATURE_INVALID", "BUNDLE_TAMPERED"} <= seen
    for pos in rng.sample(range(len(raw)), 15):
        bad = bytearray(raw)
        bad[pos] ^= 0x04
        with pytest.raises(PharmosError) as ei:
            install_bundle(good, bytes(bad))
        assert ei.value.code in TAMPER_CODES and ei.value.exit_code == 3
    _assert_good_active(good)


def test_foreign_signer_refused(good: Store) -> None:
    stranger = SigningKey.generate()
    with pytest.raises(PharmosError) as ei:
        install_bundle(good, signed_bundle(version="evil", key=stranger,
                                           issued=ISSUED + timedelta(hours=1)))
    assert ei.value.code == "UNKNOWN_SIGNING_KEY"
    _assert_good_active(good)


def test_expired_bundle_refused(good: Store) -> None:
    old = signed_bundle(issued=ISSUED + timedelta(hours=1),
                        until=datetime(2026, 11, 2, 14, 0, tzinfo=UTC), version="old")
    with pytest.raises(PharmosError) as ei:
        install_bundle(good, old)
    assert ei.value.code == "BUNDLE_EXPIRED"
    _assert_good_active(good)


def test_unknown_format_version_refused(good: Store) -> None:
    doc = json.loads(signed_bundle(issued=ISSUED + timedelta(hours=1), version="v2"))
    doc["format_version"] = 2
    doc["manifest"]["format_version"] = 2
    with pytest.raises(PharmosError) as ei:
        install_bundle(good, resign(doc))
    assert ei.value.code == "BUNDLE_FORMAT_UNSUPPORTED"
    assert "version 2" in ei.value.message
    _assert_good_active(good)


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b"[]", b'{"format": "zip"}',
                                 b'{"format": "pharmos-policy-bundle", "format_version": 1}'])
def test_malformed_bundle_refused(good: Store, raw: bytes) -> None:
    with pytest.raises(PharmosError) as ei:
        install_bundle(good, raw)
    assert ei.value.code in ("BUNDLE_MALFORMED", "BUNDLE_UNSIGNED")
    _assert_good_active(good)


def test_signed_bundle_with_schema_invalid_policy_refused(good: Store, tmp_path: Path) -> None:
    doc = json.loads(signed_bundle(issued=ISSUED + timedelta(hours=1), version="broken"))
    name = "policies/10_dea.cedar"
    doc["files"][name] = doc["files"][name].replace('context.refill_number > 0',
                                                    'context.refill_number > "zero"')
    with pytest.raises(PharmosError) as ei:
        install_bundle(good, resign(doc))
    assert ei.value.code == "BUNDLE_POLICY_INVALID"
    _assert_good_active(good)


def test_stale_bundle_refused_and_newer_replaces(good: Store) -> None:
    with pytest.raises(PharmosError) as ei:
        install_bundle(good, signed_bundle(issued=ISSUED - timedelta(days=1), version="t-0"))
    assert ei.value.code == "BUNDLE_STALE"
    _assert_good_active(good)
    again = install_bundle(good, signed_bundle())
    assert again["already_active"]
    for n in range(2, 7):
        out = install_bundle(good, signed_bundle(issued=ISSUED + timedelta(hours=n),
                                                 version=f"t-{n}"))
        assert out["installed"] and out["previous_version"] == f"t-{n - 1}" if n > 2 else True
    _assert_good_active(good, "t-6")
    rows = good.conn.execute("SELECT bundle_version, status FROM policy_bundles "
                             "ORDER BY installed_at").fetchall()
    assert [r[1] for r in rows].count("active") == 1 and len(rows) == 4  # active + 3 previous


def test_tampered_store_never_sells_restricted(good: Store) -> None:
    """The active bundle is re-verified when loaded; a body altered in the database is never
    used: restricted items are refused, unrestricted ones still sell."""
    body = bytearray(good.conn.execute(
        "SELECT body FROM policy_bundles WHERE status = 'active'").fetchone()[0])
    i = body.index(b"3600000")
    body[i] = ord("9")
    with good.transaction() as c:
        c.execute("UPDATE policy_bundles SET body = ? WHERE status = 'active'", (bytes(body),))
    fresh = Store.open(good.data_dir, clock=good.clock)
    try:
        checker = Checker(fresh)
        d = checker.check(sale(NDC["oxycodone"], 20, rx=rx()))
        assert d.decision == "deny" and codes(d) == ["BUNDLE_INVALID"]
        with pytest.raises(ComplianceDenied):
            checker.sell(sale(NDC["sudafed12h"], 1))
        assert checker.sell(sale(NDC["ibuprofen"], 1, patient=None)).sale_id
        assert show(fresh)["status"] == "BUNDLE_INVALID"
    finally:
        fresh.close()


def test_no_bundle_is_rule_49(store: Store) -> None:
    from pharmacy import inventory

    inventory.receive(store, [
        {"ndc": NDC["ibuprofen"], "lot": "IB9", "expiry": "2027-12-31", "qty": 50},
        {"ndc": NDC["oxycodone"], "lot": "OX9", "expiry": "2027-12-31", "qty": 50,
         "order_form": "222-1"},
        {"ndc": NDC["sudafed12h"], "lot": "SU9", "expiry": "2027-12-31", "qty": 50}])
    checker = Checker(store)
    for ndc in (NDC["oxycodone"], NDC["sudafed12h"]):
        d = checker.check(sale(ndc, 1, rx=rx()))
        assert d.decision == "deny" and codes(d) == ["BUNDLE_MISSING"]
        assert "rule 49" in (d.reasons[0].citation or "")
    assert checker.sell(sale(NDC["ibuprofen"], 1, patient=None)).decision.allowed
    assert show(store)["status"] == "BUNDLE_MISSING"


def test_trusting_a_key_then_installing(store: Store) -> None:
    with pytest.raises(PharmosError) as ei:
        install_bundle(store, signed_bundle())
    assert ei.value.code == "UNKNOWN_SIGNING_KEY"
    kid = trust_key(store, hq_key().public_pem())
    assert kid == hq_key().key_id
    assert install_bundle(store, signed_bundle())["installed"]
    assert gate_for_store(store).bundle_gate is not None


def test_key_endorsements_verify_and_refuse_what_they_should() -> None:
    """Rotation statements: signed by a trusted key, naming the new key exactly, retiring at
    most their signer; any edit breaks them."""
    import copy

    from pharmacy.signing import (
        SignatureInvalid,
        SigningKey,
        TrustStore,
        UnknownSigningKey,
        endorse_key,
        verify_endorsement,
    )

    old, new, other = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    trust = TrustStore([old.public])
    doc = endorse_key(old, new.public_pem(), issued_at="2026-11-27T00:00:00Z",
                      retire_signer=True)
    st = verify_endorsement(trust, doc)
    assert st["key_id"] == new.key_id and st["retire"] == [old.key_id]
    with pytest.raises(UnknownSigningKey):
        verify_endorsement(TrustStore([other.public]), doc)
    for path, value in ((("endorsement", "public_key"), other.public_pem().decode()),
                        (("endorsement", "key_id"), other.key_id),
                        (("endorsement", "retire"), [other.key_id]),
                        (("signature",), doc["signature"][:-4] + "AAA=")):
        bad = copy.deepcopy(doc)
        target = bad
        for k in path[:-1]:
            target = target[k]
        target[path[-1]] = value
        with pytest.raises(SignatureInvalid):
            verify_endorsement(trust, bad)
    for junk in ({}, {"endorsement": "x"}, {"endorsement": {"type": "other"}}):
        with pytest.raises(SignatureInvalid) as ei:
            verify_endorsement(trust, junk)
        assert ei.value.code == "BAD_ENDORSEMENT"
    with pytest.raises(SignatureInvalid):
        endorse_key(old, old.public_pem(), issued_at="2026-11-27")
