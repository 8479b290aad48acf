"""Clinical commands: substitute (Orange Book equivalents) and interactions (DDI check)."""

from __future__ import annotations

import argparse
from typing import Any

from pharmacy.errors import BadInput
from pharmacy.store import Store
from terminal import wiring
from terminal.cli._common import add_data_dir, add_json, emit


def _open(args: argparse.Namespace) -> Store:
    return Store.open(wiring.resolve_data_dir(args.data_dir))


def _human_substitution(out: dict[str, Any]) -> str:
    p = out["prescribed"]
    head = (f"prescribed: {p.get('trade_name') or p['ingredient']} {p['strength']} "
            f"{p['df_route']} ({p.get('appl') or 'generic'}, TE {p.get('te_code') or 'none'})")
    lines = [head]
    for e in out["equivalents"]:
        stock = f"in stock {e['on_hand']} (lot {e['lot']})" if e["in_stock"] else "not in stock"
        price = e["price"] or "-"
        lines.append(f"{e['rank']:>3}. {e['appl']:<12} {e['te_code']:<16} {e['trade_name']} "
                     f"({e['applicant']})  {stock}  {price}")
    if out.get("note"):
        lines.append(out["note"])
    law = out.get("law")
    if law and law.get("substitution_required"):
        lines.append(f"{law['jurisdiction']}: substitution required ({law['citation']})")
    return "\n".join(lines)


def cmd_substitute(args: argparse.Namespace) -> int:
    from pharmacy import substitution

    with _open(args) as store:
        jurisdiction = args.jurisdiction or store.get_setting("jurisdiction")
        sub = substitution.find_equivalents(store.conn, args.query, store.clock().date(),
                                            jurisdiction=jurisdiction)
        out = sub.to_json()
        emit(args, out, _human_substitution(out))
    return 0


def _names(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def cmd_interactions(args: argparse.Namespace) -> int:
    from pharmacy import interactions

    extra = [interactions.load_file(p) for p in (args.source or [])]
    with _open(args) as store:
        out: dict[str, Any] = {}
        if args.install_source:
            out["installed"] = interactions.install_source(store, args.install_source,
                                                           args.source_name)
        drugs_arg, new_arg, active_arg = _names(args.drugs), args.new, _names(args.active)
        if not (drugs_arg or new_arg):
            if not out:
                raise BadInput("give --drugs A,B,... or --new X --active A,B,...",
                               code="BAD_ARGS")
            out["sources"] = interactions.installed_sources(store.conn)
            emit(args, out, f"installed {out['installed']['source']}: "
                            f"{out['installed']['pairs']} pairs")
            return 0
        if new_arg and drugs_arg:
            raise BadInput("use either --drugs or --new with --active", code="BAD_ARGS")
        index = interactions.index_for(store.conn, extra)
        conn = store.conn
        if new_arg:
            new = interactions.resolve_drug(conn, new_arg, index)
            active = [interactions.resolve_drug(conn, d, index) for d in active_arg]
            findings = index.check_new(new, active)
            drugs = [new, *active]
            checked = len(active)
        else:
            drugs = [interactions.resolve_drug(conn, d, index) for d in drugs_arg]
            findings = index.check(drugs)
            checked = len(drugs) * (len(drugs) - 1) // 2
        out.update({
            "drugs": [{"input": d.label, "ingredients": list(d.ingredients)} for d in drugs],
            "interactions": [f.to_json() for f in findings],
            "checked_pairs": checked,
            "sources": index.sources,
            "unrecognized": interactions.unrecognized(conn, drugs, index),
        })
        human = "\n".join(
            f"{f.severity.upper():<16} {f.drugs[0]} + {f.drugs[1]}: "
            f"{f.entries[0].management}" for f in findings) or "no interactions found"
        if out["unrecognized"]:
            human += "\nnot recognized (check spelling): " + ", ".join(out["unrecognized"])
        emit(args, out, human)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("substitute",
                       help="Orange Book equivalents of an NDC, GTIN, appl:N020610:001 or name")
    add_data_dir(p)
    add_json(p)
    p.add_argument("query", help="NDC, GTIN-14, appl:<N|A><Appl_No>:<Product_No>, or a name")
    p.add_argument("--jurisdiction", help="state law to apply (default: the store's)")
    p.set_defaults(handler=cmd_substitute)

    p = sub.add_parser("interactions", help="drug-drug interaction check by ingredient")
    add_data_dir(p)
    add_json(p)
    p.add_argument("--drugs", help="comma-separated names, NDCs or GTINs: check every pair")
    p.add_argument("--new", help="a new drug to check against --active")
    p.add_argument("--active", "--patient-meds", dest="active",
                   help="comma-separated active medications (with --new)")
    p.add_argument("--source", action="append",
                   help="also use this knowledge file for this check (repeatable)")
    p.add_argument("--install-source", help="install a knowledge file into the store")
    p.add_argument("--source-name", help="name for --install-source (default: file name)")
    p.set_defaults(handler=cmd_interactions)
