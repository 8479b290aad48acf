"""`pharmos models ...`: evaluate and train (head office), install, show, and the terminal's
suggestions (reorder, expiry risk, diversion review)."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pharmacy.errors import BadInput
from pharmacy.store import Store
from terminal import wiring
from terminal.cli._common import add_data_dir, add_json, emit

PUBLISHED_XGBOOST_MAPE = {"M01AB": 17.89, "M01AE": 16.92, "N02BA": 17.98, "N02BE": 16.05}


def _open(args: argparse.Namespace) -> Store:
    return Store.open(wiring.resolve_data_dir(args.data_dir))


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise BadInput(f"cannot read {what} {path}: {e.strerror}", code="BAD_INPUT_FILE") from None


def _configs(quick: bool) -> tuple[Any, Any]:
    from models.train import DiversionConfig, ForecastConfig

    if not quick:
        return ForecastConfig(), DiversionConfig()
    return (ForecastConfig(n_estimators=40, seeds=(0,), scale_windows=(13,), blends=(0.4,)),
            DiversionConfig(n_estimators=50, train_users=60, calib_users=60, test_users=40))


# ---- head office ---------------------------------------------------------------------------------
def cmd_evaluate(args: argparse.Namespace) -> int:
    from models.dataset import load_weekly
    from models.train import holdout_forecast

    data = load_weekly(args.dataset)
    cfg, _ = _configs(args.quick)
    t = time.perf_counter()
    try:
        fc, _, scores, selection = holdout_forecast(data, cfg)
    except ValueError as e:
        raise BadInput(f"cannot evaluate on {args.dataset}: {e}", code="BAD_DATASET") from None
    classes = {name: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()}
               for name, s in scores.items()}
    out = {
        "dataset": str(args.dataset), "weeks": data.n_weeks, "holdout_weeks": cfg.holdout,
        "protocol": "weekly; last 52 weeks held out; rolling one-step-ahead; model trained "
                    "before the hold-out; run through the terminal's ONNX forecaster",
        "settings": {"scale_window": fc.meta.scale_window, "naive_blend": fc.meta.naive_blend,
                     "sigma_k": round(fc.meta.sigma_k, 4), "estimator": cfg.estimator_json(),
                     "selection": selection},
        "classes": classes,
        "all_beat_baselines": all(s["beats_naive"] and s["beats_snaive"]
                                  for s in scores.values()),
        "published_xgboost_mape": PUBLISHED_XGBOOST_MAPE,
        "seconds": round(time.perf_counter() - t, 2),
    }
    lines = [f"{'series':<7} {'MSE':>9} {'naive':>9} {'s-naive':>9} {'MAPE%':>7} {'XGB%':>6}"]
    for name, s in classes.items():
        pub = PUBLISHED_XGBOOST_MAPE.get(name)
        lines.append(f"{name:<7} {s['mse']:>9.1f} {s['naive_mse']:>9.1f} {s['snaive_mse']:>9.1f}"
                     f" {s['mape']:>7.2f} {'' if pub is None else f'{pub:.2f}':>6}")
    lines.append("beats Naive and Seasonal-Naive on every series: "
                 + ("yes" if out["all_beat_baselines"] else "NO"))
    emit(args, out, "\n".join(lines))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from models.bundle import build_bundle
    from models.dataset import load_weekly
    from models.train import new_version, train_diversion, train_forecast
    from pharmacy.signing import SigningKey

    key_path = Path(args.key)
    if not key_path.exists():
        raise BadInput(f"no signing key at {key_path}; create one with 'pharmos models keygen "
                       f"{key_path}'", code="NO_SIGNING_KEY")
    key = SigningKey.load(key_path)
    data = load_weekly(args.dataset)
    fcfg, dcfg = _configs(args.quick)
    t = time.perf_counter()
    try:
        forecast = train_forecast(data, fcfg)
    except ValueError as e:
        raise BadInput(f"cannot train on {args.dataset}: {e}", code="BAD_DATASET") from None
    diversion = train_diversion(dcfg)
    now = datetime.now(UTC)
    version = args.version or new_version(now, forecast.onnx)
    files = {forecast.meta["file"]: forecast.onnx, **diversion.files}
    bundle = build_bundle(files, {"forecast": forecast.meta, "diversion": diversion.meta}, key,
                          version=version, issued_at=now, stores=args.store or None)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(bundle)
    d = diversion.metrics
    out = {"bundle": str(out_path), "version": version, "bytes": len(bundle),
           "key_id": key.key_id, "seconds": round(time.perf_counter() - t, 2),
           "forecast": {name: {"mse": round(s["mse"], 3), "naive_mse": round(s["naive_mse"], 3),
                               "snaive_mse": round(s["snaive_mse"], 3),
                               "mape": round(s["mape"], 3)}
                        for name, s in forecast.holdout.items()},
           "diversion": {"precision": d["precision"], "recall": d["recall"],
                         "ordinary_flagged_rate": d["ordinary_flagged_rate"]}}
    emit(args, out, f"wrote {out_path} (model bundle {version}, {len(bundle)} bytes, "
                    f"signed by {key.key_id})")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from pharmacy.signing import SigningKey

    path = Path(args.path)
    if path.exists():
        raise BadInput(f"{path} exists; not overwriting a signing key", code="KEY_EXISTS")
    key = SigningKey.generate()
    key.save(path)
    emit(args, {"key": str(path), "public": str(path) + ".pub", "key_id": key.key_id},
         f"wrote {path} and {path}.pub (key id {key.key_id})")
    return 0


# ---- terminal ------------------------------------------------------------------------------------
def cmd_trust(args: argparse.Namespace) -> int:
    from models.bundle import trust_key

    pem = _read(args.public_key, "public key")
    with _open(args) as store:
        kid = trust_key(store, pem)
    emit(args, {"trusted": kid}, f"models signed by key {kid} are now accepted")
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    from models.bundle import install_model_bundle

    data = _read(args.bundle, "model bundle")
    with _open(args) as store:
        result = install_model_bundle(store, data)
    emit(args, result, f"model bundle {result['version']}: {result['status']}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from models.bundle import installed
    from models.runtime import REGISTRY

    with _open(args) as store:
        active = REGISTRY.active(store)
        out = {"active": active.to_json(), "installed": installed(store)}
    emit(args, out, active.note)
    return 0


def cmd_reorder(args: argparse.Namespace) -> int:
    from models.suggest import accept_reorder, reorder_run

    with _open(args) as store:
        out = reorder_run(store, record=True)
        if args.accept:
            out["purchase_order"] = accept_reorder(store, user_id=args.user,
                                                   supplier=args.supplier)
    lines = [out["model"]["note"]]
    for s in out["suggestions"]:
        if s["order_units"] > 0:
            lines.append(f"{s['ndc']:<13} order {s['order_packs']} x {s['pack_size']}"
                         f"  ({s['model_version']})  {s['name']}")
    if "purchase_order" in out:
        lines.append(f"draft purchase order {out['purchase_order']['po_id']}")
    emit(args, out, "\n".join(lines))
    return 0


def cmd_expiry(args: argparse.Namespace) -> int:
    from models.suggest import expiry_run

    with _open(args) as store:
        out = expiry_run(store, min_p=args.min_p)
    lines = [out["model"]["note"]]
    for d in out["items"]:
        if d["action"] != "none":
            lines.append(f"{d['ndc']:<13} lot {d['lot']:<10} {d['expiry']} "
                         f"p={d['p_expire']:.2f} {d['action']}: {d['reason']}")
    emit(args, out, "\n".join(lines))
    return 0


def cmd_diversion(args: argparse.Namespace) -> int:
    from models.suggest import diversion_run

    if not 1 <= args.days <= 366:
        raise BadInput(f"--days {args.days} is not 1 to 366", code="BAD_ARGS")
    with _open(args) as store:
        out = diversion_run(store, days=args.days)
    lines = [out.get("note") or out["model"]["note"]]
    for u in out["users"]:
        if u.get("flagged"):
            lines.append(f"review {u['user_id']}: " + "; ".join(u["reasons"]))
    emit(args, out, "\n".join(lines))
    return 0


def register(sub: Any) -> None:
    m = sub.add_parser("models", help="demand forecast, reorder, expiry risk, diversion")
    msub = m.add_subparsers(dest="models_command", required=True)

    p = msub.add_parser("evaluate", help="hold-out evaluation on a weekly sales file")
    add_json(p)
    p.add_argument("--dataset", required=True, help="salesweekly.csv (or the ISO-date copy)")
    p.add_argument("--quick", action="store_true", help="small model (tests)")
    p.set_defaults(handler=cmd_evaluate)

    p = msub.add_parser("train", help="head office: train, export ONNX, sign a bundle")
    add_json(p)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", required=True, help="bundle file to write")
    p.add_argument("--key", required=True, help="Ed25519 private key (PEM)")
    p.add_argument("--version", help="bundle version (default: time + hash)")
    p.add_argument("--store", action="append", help="limit the bundle to a store (repeatable)")
    p.add_argument("--quick", action="store_true", help="small models (tests)")
    p.set_defaults(handler=cmd_train)

    p = msub.add_parser("keygen", help="head office: create a model-signing key")
    add_json(p)
    p.add_argument("path")
    p.set_defaults(handler=cmd_keygen)

    p = msub.add_parser("trust", help="accept models signed by this public key")
    add_data_dir(p)
    add_json(p)
    p.add_argument("public_key")
    p.set_defaults(handler=cmd_trust)

    p = msub.add_parser("install", help="verify and install a signed model bundle")
    add_data_dir(p)
    add_json(p)
    p.add_argument("bundle")
    p.set_defaults(handler=cmd_install)

    p = msub.add_parser("show", help="the active model and installed bundles")
    add_data_dir(p)
    add_json(p)
    p.set_defaults(handler=cmd_show)

    p = msub.add_parser("reorder", help="reorder suggestions (optionally into a PO draft)")
    add_data_dir(p)
    add_json(p)
    p.add_argument("--accept", action="store_true",
                   help="put every suggestion with a quantity on a draft purchase order")
    p.add_argument("--user", help="user accepting the suggestions")
    p.add_argument("--supplier")
    p.set_defaults(handler=cmd_reorder)

    p = msub.add_parser("expiry-risk", help="batches likely to expire before they sell")
    add_data_dir(p)
    add_json(p)
    p.add_argument("--min-p", type=float, default=0.5,
                   help="suggest an action from this probability (default 0.5)")
    p.set_defaults(handler=cmd_expiry)

    p = msub.add_parser("diversion", help="users whose controlled activity is unusual")
    add_data_dir(p)
    add_json(p)
    p.add_argument("--days", type=int, default=7,
                   help="window in days (the thresholds are set for 7)")
    p.set_defaults(handler=cmd_diversion)
