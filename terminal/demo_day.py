"""The headless demo day: a demo store, opening stock, the wired gate, a scripted day."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pharmacy import demo
from pharmacy.store import Store
from terminal import wiring


def prepare_demo_store(data_dir: Path, store_id: str = "demo-austin-01",
                       jurisdiction: str = "US-TX") -> dict[str, Any]:
    """Create a demo store in ``data_dir``: catalog, opening stock and (when the policy engine
    is installed) a demo-signed policy bundle with offline allowances."""
    store = Store.init(data_dir, store_id)
    try:
        store.set_setting("jurisdiction", jurisdiction)
        out = demo.seed(store)
        out["policy"] = wiring.install_demo_policy(store)
        return out
    finally:
        store.close()


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"pharmos demo day — store {s['store_id']} ({s['data_dir']})",
        f"  compliance gate : {s['gate']}",
        f"  sales           : {s['sales']} of {s['attempts']} attempts "
        f"({', '.join(f'{k} {v}' for k, v in sorted(s['sales_by_kind'].items()))})",
        f"  revenue         : {s['revenue']} ("
        + ", ".join(f"{k} {v}" for k, v in s.get("payments", {}).items()) + ")",
        f"  refunds         : {s['refunds']['count']} ({s['refunds']['total']}); cash "
        f"expected in the drawer on {s['day']['date']} {s['day']['cash_expected']}",
        "  refusals        : " + (", ".join(f"{k} {v}" for k, v in s["refusals"].items())
                                  or "none"),
        f"  stock value     : {s['stock_value']} over {s['batches']} batches",
        f"  register        : {s['register']['entries']} entries, chain "
        + ("verified" if s["register"]["chain_ok"] else "BROKEN"),
    ]
    return "\n".join(lines)
