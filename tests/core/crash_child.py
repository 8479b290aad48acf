"""Child process for the crash test: sells in a loop and reports each committed sale id."""

from __future__ import annotations

import sys
from pathlib import Path

from pharmacy.compliance import ComplianceRequest, Decision
from pharmacy.errors import PharmosError
from pharmacy.sales import Dispenser
from pharmacy.store import Store


class AllowAll:
    engine = "test-allow-all"

    def decide(self, request: ComplianceRequest) -> Decision:
        return Decision("allow", obligations=("register_entry",))


def main() -> None:
    store = Store.open(Path(sys.argv[1]))
    disp = Dispenser(store, AllowAll())
    for i in range(int(sys.argv[2])):
        req = {"lines": [{"ndc": "0904-6728-60", "qty": 1 + i % 2},
                         {"ndc": "0406-0552-01", "qty": 3}],
               "rx": {"rx_number": f"RX{i}"}, "user": {"id": "u1", "role": "pharmacist"}}
        try:
            result = disp.sell(req)
        except PharmosError as e:
            print(f"refused {e.code}", flush=True)
            continue
        print(f"sold {result.sale_id}", flush=True)


if __name__ == "__main__":
    main()
