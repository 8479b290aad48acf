"""`pharmos policy`: build and sign bundles (head office); trust, install, show, grant and
check on a terminal."""

from __future__ import annotations

import argparse
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from pharmacy.clock import iso, parse_iso, utcnow
from pharmacy.errors import BadInput
from pharmacy.signing import SigningKey
from pharmacy.store import Store
from terminal import wiring
from terminal.cli._common import add_data_dir, add_json, emit, read_json_input

MAX_OFFLINE_HOURS = 24 * 365

ALL_JURISDICTIONS = "US,US-TX,US-FL,US-NY,US-CA,IN"


def _open(args: argparse.Namespace) -> Store:
    return Store.open(wiring.resolve_data_dir(args.data_dir))


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror}", code="BAD_INPUT_FILE") from None


def _write(path: str, data: bytes) -> None:
    p = Path(path)
    if not p.name or p.is_dir():  # '' or '.' names no file; with_name would raise
        raise BadInput(f"cannot write {path!r}: give a file name, not a folder",
                       code="BAD_OUTPUT_FILE")
    tmp = p.with_name(p.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, p)
    except OSError as e:
        raise BadInput(f"cannot write {path}: {e.strerror}", code="BAD_OUTPUT_FILE") from None


# ---- head office ------------------------------------------------------------------------------
def cmd_keygen(args: argparse.Namespace) -> int:
    key = SigningKey.generate()
    path = Path(args.out)
    if not path.name or path.is_dir():
        raise BadInput(f"--out {args.out!r} is a folder; give the private key's file name",
                       code="BAD_OUTPUT_FILE")
    if path.exists() and not args.force:
        raise BadInput(f"{path} exists; pass --force to replace it", code="KEY_EXISTS")
    key.save(path)
    emit(args, {"key_id": key.key_id, "private_key": str(path),
                "public_key": str(path) + ".pub"},
         f"key {key.key_id}: private {path}, public {path}.pub")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from policy_cache.bundle import build_bundle, peek_meta

    try:
        issued = parse_iso(args.issued_at) if args.issued_at else utcnow()
        iso(issued + timedelta(hours=MAX_OFFLINE_HOURS))  # a time the bundle can carry
    except (ValueError, OverflowError):
        raise BadInput(f"--issued-at {args.issued_at!r} is not an ISO time such as "
                       "2026-11-27T09:00:00Z", code="BAD_TIME") from None
    if not 0 < args.offline_hours <= MAX_OFFLINE_HOURS:  # NaN fails both
        raise BadInput(f"--offline-hours must be more than 0 and at most {MAX_OFFLINE_HOURS} "
                       "(a year)", code="BAD_OFFLINE_HOURS")
    raw = build_bundle(args.source, version=args.version,
                       jurisdictions=[j.strip() for j in args.jurisdictions.split(",")
                                      if j.strip()],
                       issued_at=issued, offline_until=issued + timedelta(hours=args.offline_hours))
    _write(args.out, raw)
    meta = peek_meta(raw)
    emit(args, {"out": args.out, "signed": False, **meta},
         f"built {args.out}: bundle {meta['bundle_version']}, {meta['policy_count']} policies, "
         f"offline until {meta['offline_until']} (unsigned)")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from policy_cache.bundle import peek_meta, sign_bundle

    key = SigningKey.load(Path(args.key))
    signed = sign_bundle(_read(args.input), key)
    _write(args.out, signed)
    meta = peek_meta(signed)
    emit(args, {"out": args.out, "signed": True, **meta},
         f"signed {args.out} with key {key.key_id}")
    return 0


def cmd_endorse(args: argparse.Namespace) -> int:
    import json

    from pharmacy.signing import endorse_key

    try:
        key = SigningKey.load(Path(args.key))
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot load the signing key {args.key}: {e}", code="BAD_KEY") from None
    doc = endorse_key(key, _read(args.new), issued_at=iso(utcnow()),
                      retire_signer=args.retire_old)
    _write(args.out, (json.dumps(doc, indent=2) + "\n").encode())
    st = doc["endorsement"]
    emit(args, {"out": args.out, "signed_by": key.key_id, "trusted": st["key_id"],
                "retire": st["retire"]},
         f"{args.out}: key {key.key_id} endorses key {st['key_id']}"
         + (" and retires itself" if st["retire"] else ""))
    return 0


# ---- terminal -----------------------------------------------------------------------------------
def cmd_trust(args: argparse.Namespace) -> int:
    from policy_cache.trust import trust_key, trusted_key_ids

    pem = _read(args.pubkey)
    with _open(args) as store:
        kid = trust_key(store, pem)
        emit(args, {"trusted": kid, "trusted_keys": trusted_key_ids(store)},
             f"trusted head-office key {kid}")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    from policy_cache.install import install_bundle

    raw = _read(args.file)
    with _open(args) as store:
        result = install_bundle(store, raw)
        emit(args, result, f"installed policy bundle {result['bundle_version']} "
                           f"(offline until {result['offline_until']})"
             if result.get("installed") else f"bundle {result['bundle_version']} is already "
                                              "active")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from policy_cache.install import show

    with _open(args) as store:
        info = show(store)
    active = info["active"]
    human = ("no verified policy bundle is active (" + info["status"] + ")" if active is None
             else f"bundle {active['bundle_version']} ({info['status']}), {active['rules']} "
                  f"rules, offline until {active['offline_until']}, jurisdictions "
                  f"{', '.join(active['jurisdictions'])}")
    emit(args, info, human)
    return 0


def cmd_grant(args: argparse.Namespace) -> int:
    from policy_cache.allowances import current_allowances, grant_allowances

    grant = read_json_input(args.input)
    with _open(args) as store:
        grant_allowances(store, grant)
        out = current_allowances(store)
        emit(args, {"allowances": out}, f"offline allowances granted until "
                                        f"{(out or {}).get('valid_until')}")
    return 0


def _decision_out(decision: Any) -> dict[str, Any]:
    return {"decision": decision.decision,
            "reasons": [r.to_json() for r in decision.reasons],
            "obligations": list(decision.obligations),
            "bundle_version": decision.bundle_version}


def cmd_check(args: argparse.Namespace) -> int:
    req = read_json_input(args.input)
    with _open(args) as store:
        decision = wiring.dispenser(store).check(req)
    out = _decision_out(decision)
    lines = [f"{decision.decision.upper()} (bundle {decision.bundle_version})"]
    for r in decision.reasons:
        lines.append(f"  {r.severity:<5} {r.code}: {r.message}"
                     + (f" [{r.citation}]" if r.citation else ""))
    if decision.obligations:
        lines.append("  obligations: " + ", ".join(decision.obligations))
    emit(args, out, "\n".join(lines))
    return 0 if decision.decision == "allow" else 2


def cmd_rules(args: argparse.Namespace) -> int:
    from policy_cache.bundle import build_bundle, verify_bundle
    from policy_cache.engine import PolicyEngine

    if args.data_dir or os.environ.get("PHARMOS_DATA_DIR"):
        from policy_cache.gate import gate_for_store

        with _open(args) as store:
            bg = gate_for_store(store).bundle_gate
            if bg is None:
                raise BadInput("no verified policy bundle is active on this terminal",
                               code="BUNDLE_MISSING")
            rules = bg.policies.describe()
            version = bg.meta.bundle_version
    else:
        from pharmacy.signing import TrustStore

        key = SigningKey.generate()
        from policy_cache.bundle import sign_bundle

        now = utcnow()
        raw = sign_bundle(build_bundle(args.source, version="source", jurisdictions=["US"],
                                       issued_at=now, offline_until=now + timedelta(hours=1)),
                          key)
        rules = PolicyEngine(verify_bundle(raw, TrustStore([key.public]))).describe()
        version = "source"
    emit(args, {"bundle_version": version, "rules": rules},
         "\n".join(f"{r['rule_id']:<36} {r['outcome']:<10} {r['code'] or '':<34} "
                   f"{r['citation'] or ''}" for r in rules))
    return 0


def _date_arg(value: str, flag: str) -> Any:
    from datetime import date

    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{flag} {value!r} is not a date (YYYY-MM-DD)", code="BAD_DATE") from None
    if not 1900 <= day.year <= 9998:
        raise BadInput(f"{flag} {value} is not a date pharmos keeps records for",
                       code="BAD_DATE")
    return day


def cmd_pmp_report(args: argparse.Namespace) -> int:
    from pharmacy.phi import FileKeyProvider, PhiVault
    from policy_cache import pmp

    if args.due:
        if not args.outbox:
            raise BadInput("--due writes into a folder: give --outbox DIR", code="BAD_ARGS")
        with _open(args) as store:
            vault = PhiVault(store.conn, FileKeyProvider(store.data_dir), store.clock)
            reports = pmp.write_due_reports(store, vault, user_id=args.user,
                                            outbox=args.outbox, tz=store.time_zone(args.tz))
        emit(args, {"reports": reports}, "\n".join(
            f"{r['file']}: {r['dispensings']} dispensing(s)" for r in reports)
            or "no day is due")
        return 0
    if not args.date_from or not args.out:
        raise BadInput("give --from DATE and --out FILE (or --due --outbox DIR)",
                       code="BAD_ARGS")
    start = _date_arg(args.date_from, "--from")
    end = _date_arg(args.date_to, "--to") if args.date_to else start
    with _open(args) as store:
        tz = store.time_zone(args.tz)
        vault = PhiVault(store.conn, FileKeyProvider(store.data_dir), store.clock)
        out = pmp.write_report(store, vault, user_id=args.user, start=start, end=end, tz=tz,
                               out=args.out, production=not args.test,
                               pharmacy={"npi": args.npi, "ncpdp": args.ncpdp,
                                         "dea": args.dea})
    emit(args, out, f"{out['file']}: {out['dispensings']} dispensing(s) for "
         f"{out['period']['from']}..{out['period']['to']}"
         + (" (zero report)" if out["zero_report"] else "")
         + f", control number {out['control_number']}")
    return 0


def cmd_pmp_status(args: argparse.Namespace) -> int:
    from policy_cache import pmp

    with _open(args) as store:
        out = pmp.report_status(store.conn, store.clock(), store.time_zone(args.tz))
    un = out["unreported"]
    emit(args, out, f"{un['dispensings']} controlled dispensing(s) not reported"
         + (f" (days {', '.join(un['days'])})" if un["days"] else "")
         + "".join(f"\n{a['code']}: {a['message']} [{a['citation']}]" for a in out["alerts"]))
    return 0


def cmd_pmp_schedule(args: argparse.Namespace) -> int:
    """After each nightly sync, write the due reports into a folder (settings pmp.*)."""
    with _open(args) as store:
        if args.off:
            store.set_setting("pmp.outbox_dir", "")
        else:
            if not args.outbox or not args.user:
                raise BadInput("give --outbox DIR and --user ID (or --off)", code="BAD_ARGS")
            if not Path(args.outbox).is_dir():
                raise BadInput(f"{args.outbox} is not a folder", code="BAD_OUTPUT_FILE")
            store.set_setting("pmp.outbox_dir", str(Path(args.outbox).resolve()))
            store.set_setting("pmp.user_id", args.user)
        out = {"outbox": store.get_setting("pmp.outbox_dir") or None,
               "user": store.get_setting("pmp.user_id") if not args.off else None}
    emit(args, out, f"due PMP reports go to {out['outbox']} after each nightly sync"
         if out["outbox"] else "no PMP reports are written automatically")
    return 0


def register(sub: Any) -> None:
    pmp = sub.add_parser("pmp", help="prescription monitoring program (ASAP) reports")
    pms = pmp.add_subparsers(dest="pmp_command", required=True)
    p = pms.add_parser("report", help="write the ASAP file of a period's controlled "
                       "dispensings (a zero report when there were none)")
    add_data_dir(p)
    p.add_argument("--from", dest="date_from", help="first day (YYYY-MM-DD)")
    p.add_argument("--to", dest="date_to", help="last day (default: --from)")
    p.add_argument("--user", required=True, help="user id of who runs it (PHI access audit)")
    p.add_argument("--out", help="file to write (mode 0600: it holds PHI)")
    p.add_argument("--due", action="store_true", help="one report per day not reported yet, "
                   "up to yesterday, into --outbox")
    p.add_argument("--outbox", help="folder for --due reports")
    p.add_argument("--tz", help="the store's time zone (default: setting 'timezone', or UTC)")
    p.add_argument("--test", action="store_true", help="mark the file as a test file (TH07 T)")
    for flag in ("npi", "ncpdp", "dea"):
        p.add_argument(f"--{flag}", help=f"pharmacy {flag.upper()} (default: setting "
                      f"pharmacy.{flag})")
    add_json(p)
    p.set_defaults(handler=cmd_pmp_report)
    p = pms.add_parser("schedule", help="write the due reports into a folder after each "
                       "nightly sync")
    add_data_dir(p)
    p.add_argument("--outbox", help="folder the files go to (then uploaded to the state)")
    p.add_argument("--user", help="user id the reports' patient reads are audited under")
    p.add_argument("--off", action="store_true", help="stop writing them")
    add_json(p)
    p.set_defaults(handler=cmd_pmp_schedule)
    p = pms.add_parser("status", help="controlled dispensings no report has covered yet, and "
                       "the state deadlines they are close to")
    add_data_dir(p)
    p.add_argument("--tz", help="the store's time zone (default: setting 'timezone', or UTC)")
    add_json(p)
    p.set_defaults(handler=cmd_pmp_status)

    pol = sub.add_parser("policy", help="signed policy bundles and compliance decisions")
    ps = pol.add_subparsers(dest="policy_command", required=True)

    p = ps.add_parser("keygen", help="create a head-office Ed25519 signing key")
    add_json(p)
    p.add_argument("--out", required=True, help="private key file (public key: <out>.pub)")
    p.add_argument("--force", action="store_true")
    p.set_defaults(handler=cmd_keygen)

    p = ps.add_parser("build", help="build an unsigned bundle; every policy is validated")
    add_json(p)
    p.add_argument("--out", required=True)
    p.add_argument("--source", help="rules directory (default: the rules shipped with pharmos)")
    p.add_argument("--version", required=True, help="bundle version, e.g. 2026.11.02-1")
    p.add_argument("--offline-hours", type=float, default=72.0,
                   help="hours after issue that terminals may rely on it (offline_until)")
    p.add_argument("--jurisdictions", default=ALL_JURISDICTIONS)
    p.add_argument("--issued-at", help="ISO time (default: now)")
    p.set_defaults(handler=cmd_build)

    p = ps.add_parser("sign", help="sign a bundle with a head-office key")
    add_json(p)
    p.add_argument("--key", required=True)
    p.add_argument("--in", dest="input", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(handler=cmd_sign)

    p = ps.add_parser("endorse", help="rotate the head-office key: the current key endorses "
                      "a new one (publish it with 'pharmos server admin endorse-key')")
    add_json(p)
    p.add_argument("--key", required=True, help="the current private key (terminals trust it)")
    p.add_argument("--new", required=True, help="the new public key (PEM)")
    p.add_argument("--retire-old", action="store_true",
                   help="terminals stop trusting the current key once they trust the new one")
    p.add_argument("--out", required=True)
    p.set_defaults(handler=cmd_endorse)

    p = ps.add_parser("trust", help="trust a head-office public key on this terminal")
    add_data_dir(p)
    add_json(p)
    p.add_argument("pubkey")
    p.set_defaults(handler=cmd_trust)

    p = ps.add_parser("install", help="verify and install a signed bundle")
    add_data_dir(p)
    add_json(p)
    p.add_argument("file")
    p.set_defaults(handler=cmd_install)

    p = ps.add_parser("show", help="the active bundle, allowances and trusted keys")
    add_data_dir(p)
    add_json(p)
    p.set_defaults(handler=cmd_show)

    p = ps.add_parser("grant", help="grant offline allowances (JSON on stdin)")
    add_data_dir(p)
    add_json(p)
    p.add_argument("input", nargs="?", default="-")
    p.set_defaults(handler=cmd_grant)

    p = ps.add_parser("check", help="the decision for a sale request, without selling")
    add_data_dir(p)
    add_json(p)
    p.add_argument("input", nargs="?", default="-")
    p.set_defaults(handler=cmd_check)

    p = ps.add_parser("rules", help="list the rules of the active (or the shipped) bundle")
    add_data_dir(p)
    add_json(p)
    p.add_argument("--source", help="rules directory (without --data-dir)")
    p.set_defaults(handler=cmd_rules)
