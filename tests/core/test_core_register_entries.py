from __future__ import annotations

from pharmacy import inventory, register
from pharmacy.store import Store


def test_entries_by_key_in_one_read(stocked: Store) -> None:
    inventory.adjust(stocked, "0406-0552-01", "OX1", -2, "DAMAGED")
    rid = stocked.replica_id
    got = register.entries(stocked.conn, [(rid, 2), (rid, 1), (rid, 99)])
    assert set(got) == {(rid, 1), (rid, 2)}  # an unknown key is simply absent
    assert got[(rid, 1)]["kind"] == "receive" and got[(rid, 2)]["body"]["reason"] == "DAMAGED"
    assert got[(rid, 2)]["name"] == "Oxycodone HCl 5 mg tablets"
    assert register.entries(stocked.conn, []) == {}
