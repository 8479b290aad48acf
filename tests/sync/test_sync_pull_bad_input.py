"""Hostile or broken pull pages from head office.

A page whose shape is wrong is refused whole (ReplicationError BAD_PAGE: nothing stored, the
cursor stays, the sync fails with that code in its status) and the next good page applies.
A well-formed event whose body does not check out is parked with a coded reason, and the rest
of the page applies. Publications that cannot install are failed with a code, never left
pending to fail every sync.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid
from typing import Any

import httpx
import pytest

from crdt import shared_doc
from pharmacy import inventory, register, replication
from pharmacy.errors import BadInput, PharmosError
from pharmacy.store import Store
from terminal import sync_client
from tests.conftest import SMALL_CATALOG

NDC = "0904-6728-60"
BATCH = {"batch_id": "00904672860:X1", "ndc": NDC, "lot": "X1", "expiry": "2028-01-31",
         "received_at": "2026-11-01T00:00:00Z", "unit_cost_cents": 120}
SHA = "ab" * 32


def page(events: Any = (), counters: Any = (), cursor: Any = 10, **kw: Any) -> dict[str, Any]:
    return {"events": list(events), "counters": list(counters), "next_cursor": cursor,
            "more": False, "server_seq": cursor, **kw}


def fev(seq: Any, kind: str, body: Any, replica: Any = "other", **kw: Any) -> dict[str, Any]:
    ev = {"server_seq": seq, "event_id": str(uuid.uuid4()), "replica_id": replica,
          "kind": kind, "created_at": "2026-11-02T15:00:00Z",
          "body": body if isinstance(body, str) else json.dumps(body)}
    ev.update(kw)
    return ev


def without(ev: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in ev.items() if k != key}


def cursor(store: Store) -> int:
    return int(replication.status(store.conn)["pull_cursor"])


def foreign(store: Store) -> dict[str, tuple[int, str | None]]:
    return {r[0]: (r[1], r[2]) for r in store.conn.execute(
        "SELECT event_id, applied, error FROM sync_foreign_events")}


def good_batch(seq: int, lot: str = "G1") -> dict[str, Any]:
    return fev(seq, "batch", {**BATCH, "batch_id": f"00904672860:{lot}", "lot": lot})


def lots(store: Store) -> set[str]:
    return {r["lot"] for r in inventory.stock(store.conn, store.clock().date())}


# ---- malformed pages: refused whole ----------------------------------------------------------
COUNTER = {"counter_id": "stock:00904672860:X1", "replica_id": "other", "p": 1, "n": 0}

BAD_PAGES = {
    "server_seq not a number": page([fev("abc", "sale", {})], cursor=1),
    "server_seq beyond INTEGER": page([fev(10**20, "sale", {})], cursor=1),
    "server_seq negative": page([fev(-1, "sale", {})], cursor=1),
    "server_seq a boolean": page([fev(True, "sale", {})], cursor=1),
    "body not JSON": page([fev(1, "sale", "{not json")], cursor=1),
    "body missing": page([without(fev(1, "sale", {}), "body")], cursor=1),
    "created_at missing": page([without(fev(1, "sale", {}), "created_at")], cursor=1),
    "kind not text": page([{**fev(1, "sale", {}), "kind": 7}], cursor=1),
    "event_id not text": page([{**fev(1, "sale", {}), "event_id": None}], cursor=1),
    "event_id a lone surrogate": page([{**fev(1, "sale", {}), "event_id": "e\udcff"}],
                                      cursor=1),
    "replica_id an int": page([fev(1, "product", SMALL_CATALOG[0], replica=5)], cursor=1),
    "event not an object": page(["sale"], cursor=1),
    "events not a list": {**page(cursor=1), "events": {"a": 1}},
    "counter p beyond 2**53": page(counters=[{**COUNTER, "p": 10**20}], cursor=1),
    "counter p negative": page(counters=[{**COUNTER, "p": -5}], cursor=1),
    "counter n text": page(counters=[{**COUNTER, "n": "3"}], cursor=1),
    "counter n missing": page(counters=[without(COUNTER, "n")], cursor=1),
    "counter id not text": page(counters=[{**COUNTER, "counter_id": 1}], cursor=1),
    "counters not a list": {**page(cursor=1), "counters": "x"},
    "next_cursor not a number": page(cursor="x"),
    "next_cursor missing": without(page(cursor=1), "next_cursor"),
    "next_cursor negative": page(cursor=-1),
    "server_seq of the page text": {**page(cursor=1), "server_seq": "1"},
    "page not an object": [1, 2],
}


@pytest.mark.parametrize("bad", list(BAD_PAGES), ids=list(BAD_PAGES))
def test_a_malformed_page_is_refused_whole_and_the_next_page_applies(store: Store,
                                                                      bad: str) -> None:
    with pytest.raises(replication.ReplicationError) as exc:
        replication.apply_pull(store, BAD_PAGES[bad])
    assert exc.value.code == "BAD_PAGE"
    assert cursor(store) == 0 and foreign(store) == {}
    assert store.conn.execute("SELECT COUNT(*) FROM counters WHERE replica_id = 'other'"
                              ).fetchone()[0] == 0
    res = replication.apply_pull(store, page([good_batch(2)], cursor=2))
    assert res.events == 1 and res.waiting == 0 and cursor(store) == 2
    assert "G1" in lots(store)


def test_a_bad_page_names_what_is_wrong(store: Store) -> None:
    with pytest.raises(replication.ReplicationError) as exc:
        replication.apply_pull(store, page([good_batch(1), fev("abc", "sale", {})], cursor=2))
    assert exc.value.details == {"index": 1, "field": "server_seq"}
    assert "event 2" in exc.value.message
    assert lots(store) == set()  # the good event before it was not applied either


def test_counter_rows_at_the_bound_merge(store: Store) -> None:
    replication.apply_pull(store, page(counters=[{**COUNTER, "p": 2**53, "n": 2**53}],
                                       cursor=1))
    assert store.conn.execute("SELECT p, n FROM counters WHERE replica_id = 'other'"
                              ).fetchone()[:] == (2**53, 2**53)


def test_bodies_may_arrive_parsed(store: Store) -> None:
    ev = {**good_batch(1), "body": {**BATCH, "batch_id": "00904672860:P1", "lot": "P1"}}
    assert replication.apply_pull(store, page([ev], cursor=1)).waiting == 0
    assert "P1" in lots(store)


# ---- well-formed pages with bad events: the event is parked ----------------------------------
def _reg(seq: Any = 1, body: str | None = None, **over: Any) -> dict[str, Any]:
    fields = {"entry_id": "e1", "replica_id": "other", "seq": seq,
              "created_at": "2026-11-01T00:00:00Z", "kind": "dispense", "ndc": "0406-0552-01",
              "qty": 1}
    text = body if body is not None else json.dumps(fields, sort_keys=True,
                                                    separators=(",", ":"))
    entry = {**fields, "body": text, "prev_hash": register.GENESIS,
             "hash": register.entry_hash(register.GENESIS, text)}
    entry.update(over)
    return entry


def _doc(data: str) -> dict[str, Any]:
    return {"update_id": "u1", "doc": "will_call", "data": data}


GARBAGE = base64.b64encode(b"\xff\x00garbage").decode()

BAD_EVENTS = {
    "batch cost beyond INTEGER": ("batch", {**BATCH, "unit_cost_cents": 10**20}, "BAD_EVENT"),
    "batch cost beyond 2**31-1": ("batch", {**BATCH, "unit_cost_cents": 2**31}, "BAD_EVENT"),
    "batch cost negative": ("batch", {**BATCH, "unit_cost_cents": -1}, "BAD_EVENT"),
    "batch cost text": ("batch", {**BATCH, "unit_cost_cents": "120"}, "BAD_EVENT"),
    "batch lot an object": ("batch", {**BATCH, "lot": {"a": 1}}, "BAD_LOT"),
    "batch lot with spaces": ("batch", {**BATCH, "lot": " X1"}, "BAD_LOT"),
    "batch expiry never": ("batch", {**BATCH, "expiry": "never"}, "BAD_EXPIRY"),
    "batch expiry not YYYY-MM-DD": ("batch", {**BATCH, "expiry": "20280131"}, "BAD_EXPIRY"),
    "batch ndc a number": ("batch", {**BATCH, "ndc": 904672860}, "BAD_EVENT"),
    "batch supplier a list": ("batch", {**BATCH, "supplier": ["x"]}, "BAD_EVENT"),
    "batch received_at missing": ("batch", without(BATCH, "received_at"), "BAD_EVENT"),
    "batch body a list": ("batch", [BATCH], "BAD_EVENT"),
    "batch_status unknown status": ("batch_status", {"batch_id": BATCH["batch_id"],
                                                     "status": "lost", "status_at": "x"},
                                    "BAD_STATUS"),
    "batch_status status_at a number": ("batch_status", {"batch_id": BATCH["batch_id"],
                                                         "status": "recalled",
                                                         "status_at": 5}, "BAD_EVENT"),
    "product with a bad ndc": ("product", {**SMALL_CATALOG[0], "ndc": "nope"}, "BAD_NDC"),
    "register seq text": ("register", _reg(seq="x"), "BAD_REGISTER_ENTRY"),
    "register seq 0": ("register", _reg(seq=0), "BAD_REGISTER_ENTRY"),
    "register body a list": ("register", _reg(body="[1]"), "BAD_REGISTER_ENTRY"),
    "register body not JSON": ("register", _reg(body="{"), "BAD_REGISTER_ENTRY"),
    "register hash wrong": ("register", _reg(hash="0" * 64), "BAD_REGISTER_ENTRY"),
    "register column differs from body": ("register", _reg(qty=500), "BAD_REGISTER_ENTRY"),
    "register prev_hash not hex": ("register", _reg(prev_hash="x"), "BAD_REGISTER_ENTRY"),
    "register entry a list": ("register", [1], "BAD_EVENT"),
    "doc update garbage": ("doc_update", _doc(GARBAGE), "BAD_DOC_UPDATE"),
    "doc update not base64": ("doc_update", _doc("%%%"), "BAD_DOC_UPDATE"),
    "doc update data missing": ("doc_update", without(_doc(GARBAGE), "data"), "BAD_EVENT"),
}


@pytest.mark.parametrize("bad", list(BAD_EVENTS), ids=list(BAD_EVENTS))
def test_a_bad_event_is_parked_with_its_code_and_the_page_goes_on(store: Store,
                                                                   bad: str) -> None:
    kind, body, code = BAD_EVENTS[bad]
    ev = fev(1, kind, body)
    res = replication.apply_pull(store, page([ev, good_batch(2)], cursor=2))
    assert res.events == 2 and res.waiting == 1 and cursor(store) == 2
    applied, error = foreign(store)[ev["event_id"]]
    assert applied == 0 and error is not None and error.startswith(f"{code}: "), error
    assert replication.status(store.conn)["waiting_events"] == 1
    # nothing of it got in, and every screen that reads what it would have touched works
    assert lots(store) == {"G1"}
    assert register.verify(store.conn).ok
    assert replication.doc_view(store.conn, "will_call") == {}
    # the next page applies, and retrying the parked event (after progress) changes nothing
    replication.apply_pull(store, page([good_batch(3, "G2")], cursor=3))
    assert lots(store) == {"G1", "G2"} and cursor(store) == 3
    assert foreign(store)[ev["event_id"]] == (0, error)


def test_a_good_register_entry_and_doc_update_still_apply(store: Store) -> None:
    from pycrdt import Doc, Map

    d: Doc[Any] = Doc()
    d.get("items", type=Map)["rx-1"] = Map({"label": "A.B.", "status": "waiting"})
    data = base64.b64encode(bytes(d.get_update())).decode()
    res = replication.apply_pull(store, page([fev(1, "register", _reg()),
                                              fev(2, "doc_update", _doc(data))], cursor=2))
    assert res.waiting == 0
    v = register.verify(store.conn)
    assert v.ok and v.entries == 1
    assert replication.doc_view(store.conn, "will_call")["rx-1"]["label"] == "A.B."


def test_a_parked_event_from_an_older_version_does_not_break_the_retry(store: Store) -> None:
    store.conn.execute("INSERT INTO sync_foreign_events(event_id, server_seq, replica_id, kind, "
                       "created_at, body) VALUES ('old', 1, 'other', 'batch', 'x', '{bad')")
    replication.apply_pull(store, page([good_batch(2)], cursor=2))
    applied, error = foreign(store)["old"]
    assert applied == 0 and error is not None and error.startswith("BAD_EVENT: ")


# ---- what means "the terminal is broken" is not a bad event ----------------------------------
def test_terminal_broken_tells_database_errors_from_bad_data() -> None:
    assert replication.terminal_broken(sqlite3.OperationalError("database is locked"))
    assert replication.terminal_broken(sqlite3.DatabaseError("file is not a database"))
    assert replication.terminal_broken(
        sqlite3.ProgrammingError("Cannot operate on a closed database."))
    assert not replication.terminal_broken(sqlite3.IntegrityError("CHECK constraint failed"))
    assert not replication.terminal_broken(sqlite3.DataError("string or blob too big"))
    assert not replication.terminal_broken(
        sqlite3.ProgrammingError("Error binding parameter 1: type 'dict' is not supported"))
    assert not replication.terminal_broken(OverflowError("too large"))


def test_a_locked_database_fails_the_pull_and_parks_nothing(store: Store,
                                                            monkeypatch: Any) -> None:
    def locked(*a: Any) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(replication, "_apply_event", locked)
    with pytest.raises(sqlite3.OperationalError):
        replication.apply_pull(store, page([good_batch(1)], cursor=1))
    assert cursor(store) == 0 and foreign(store) == {}
    monkeypatch.undo()
    replication.apply_pull(store, page([good_batch(1)], cursor=1))
    assert lots(store) == {"G1"}


@pytest.mark.parametrize("error", [OverflowError("x"), AttributeError("x"), IndexError("x"),
                                   sqlite3.IntegrityError("x"),
                                   sqlite3.ProgrammingError("Error binding parameter 1")])
def test_any_error_of_the_data_parks_the_event(store: Store, monkeypatch: Any,
                                               error: Exception) -> None:
    def bad(*a: Any) -> None:
        raise error

    monkeypatch.setattr(replication, "_apply_event", bad)
    ev = good_batch(1)
    replication.apply_pull(store, page([ev], cursor=1))
    assert foreign(store)[ev["event_id"]] == (0, f"{type(error).__name__}: {error}")
    assert cursor(store) == 1


# ---- publications ----------------------------------------------------------------------------
def pubs(store: Store) -> list[tuple[str, str, str | None]]:
    return [(r[0], r[1], r[2]) for r in store.conn.execute(
        "SELECT kind, state, last_error FROM sync_publications ORDER BY server_seq")]


def test_a_publication_whose_body_is_not_an_object_is_failed(store: Store) -> None:
    replication.apply_pull(store, page([fev(1, "model", [1, 2], replica="hq:x"),
                                        fev(2, "model", {"kind": "forecast", "sha256": SHA},
                                            replica="hq:x")], cursor=2))
    (kind, state, error), second = pubs(store)
    assert (kind, state) == ("model", "failed") and error is not None
    assert error.startswith("BAD_PUBLICATION: ")
    assert second == ("model", "pending", None)
    pending = replication.pending_publications(store.conn)
    assert [p.body["sha256"] for p in pending] == [SHA]
    replication.mark_publication(store, pending[0].event_id, "installed")
    errors = replication.status(store.conn)["publication_errors"]
    assert [e["error"][:16] for e in errors] == ["BAD_PUBLICATION:"]


def test_a_stored_publication_body_that_is_not_an_object_stops_blocking(store: Store) -> None:
    """What an older version stored: pending, with a list body."""
    with store.transaction() as c:
        for i, body in enumerate(("[1, 2]", "not json", json.dumps({"kind": "forecast",
                                                                    "sha256": SHA}))):
            c.execute("INSERT INTO sync_publications(event_id, server_seq, kind, body, "
                      "updated_at) VALUES (?, ?, 'model', ?, 'x')", (f"p{i}", i + 1, body))
    assert [p.event_id for p in replication.pending_publications(store.conn)] == ["p2"]
    replication.mark_publication(store, "p2", "failed", "X")  # compares with the old rows
    assert replication.fail_unreadable_publications(store) == 2
    assert [s for _, s, _ in pubs(store)] == ["failed", "failed", "failed"]
    assert replication.fail_unreadable_publications(store) == 0


class FakeBlobs:
    def __init__(self, data: bytes = b"bundle") -> None:
        self.data = data
        self.asked: list[str] = []

    def blob(self, sha256: str) -> bytes:
        self.asked.append(sha256)
        return self.data


def _install(store: Store, monkeypatch: Any, events: list[dict[str, Any]],
             installer: Any, blobs: FakeBlobs | None = None) -> sync_client.SyncResult:
    replication.apply_pull(store, page(events, cursor=len(events)))
    monkeypatch.setattr(sync_client, "_resolve", lambda module, name: installer)
    result = sync_client.SyncResult()
    sync_client.install_publications(store, blobs or FakeBlobs(), result)  # type: ignore[arg-type]
    return result


BAD_PUBLICATIONS = {
    "model without sha256": ("model", {"kind": "forecast"}),
    "model sha256 not hex": ("model", {"kind": "forecast", "sha256": "../../etc"}),
    "model sha256 a number": ("model", {"kind": "forecast", "sha256": 5}),
    "model size text": ("model", {"kind": "forecast", "sha256": SHA, "size": "big"}),
    "model size negative": ("model", {"kind": "forecast", "sha256": SHA, "size": -1}),
    "policy bundle without sha256": ("policy_bundle", {"size": 3}),
}


@pytest.mark.parametrize("bad", list(BAD_PUBLICATIONS), ids=list(BAD_PUBLICATIONS))
def test_a_malformed_publication_is_failed_without_a_download(store: Store, monkeypatch: Any,
                                                              bad: str) -> None:
    kind, body = BAD_PUBLICATIONS[bad]
    blobs = FakeBlobs()
    result = _install(store, monkeypatch, [fev(1, kind, body, replica="hq:x")],
                      lambda s, data: {"ok": True}, blobs)
    assert blobs.asked == []
    assert [(e["kind"], e["ok"], e["error"]) for e in result.installed] == [
        (kind, False, "BAD_PUBLICATION")]
    [(_, state, error)] = pubs(store)
    assert state == "failed" and error is not None and error.startswith("BAD_PUBLICATION: ")
    assert replication.pending_publications(store.conn) == []


def test_an_installer_that_crashes_fails_its_publication_only(store: Store,
                                                              monkeypatch: Any) -> None:
    import hashlib

    data = b"bundle"
    sha = hashlib.sha256(data).hexdigest()
    seen: list[Any] = []

    def installer(s: Store, arg: Any) -> dict[str, Any]:
        seen.append(arg)
        if arg == {"per_day": "broken"}:
            raise KeyError("per_day")
        return {"version": "1"}

    result = _install(store, monkeypatch, [
        fev(1, "allowances", {"per_day": "broken"}, replica="hq:x"),
        fev(2, "model", {"kind": "forecast", "sha256": sha, "size": len(data)},
            replica="hq:x")], installer, FakeBlobs(data))
    assert [(e["kind"], e["ok"], e.get("error")) for e in result.installed] == [
        ("model", True, None), ("allowances", False, "INSTALL_FAILED")]
    states = {k: (s, e) for k, s, e in pubs(store)}
    assert states["allowances"] == ("failed", "INSTALL_FAILED: KeyError: 'per_day'")
    assert states["model"] == ("installed", None)


def test_an_installer_that_finds_the_database_locked_leaves_it_pending(
        store: Store, monkeypatch: Any) -> None:
    def installer(s: Store, arg: Any) -> None:
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError):
        _install(store, monkeypatch, [fev(1, "allowances", {"per_day": {}}, replica="hq:x")],
                 installer)
    assert [s for _, s, _ in pubs(store)] == ["pending"]


def test_a_download_of_another_size_is_a_mismatch(store: Store, monkeypatch: Any) -> None:
    import hashlib

    data = b"bundle"
    result = _install(store, monkeypatch, [
        fev(1, "model", {"kind": "forecast", "sha256": hashlib.sha256(data).hexdigest(),
                         "size": 99}, replica="hq:x")],
        lambda s, d: None, FakeBlobs(data))
    assert [e["error"] for e in result.installed] == ["DOWNLOAD_MISMATCH"]


# ---- shared documents and the register, as stored by an older version ------------------------
def test_stored_garbage_in_a_document_is_a_coded_error(store: Store) -> None:
    store.conn.execute("INSERT INTO doc_updates(update_id, doc, replica_id, data, created_at, "
                       "pushed) VALUES ('u', 'will_call', 'other', ?, 'x', 1)",
                       (b"\xff\x00garbage",))
    with pytest.raises(BadInput) as exc:
        replication.doc_view(store.conn, "will_call")
    assert exc.value.code == "BAD_DOC_UPDATE"
    with pytest.raises(BadInput) as exc:
        replication.edit_doc(store, "will_call", lambda st: shared_doc.will_call_put(
            st, "rx-1", {"label": "A"}, actor="me", at="now"))
    assert exc.value.code == "BAD_DOC_UPDATE"


def test_shared_doc_decode_errors_are_doc_errors() -> None:
    with pytest.raises(shared_doc.DocDecodeError):
        shared_doc.view(shared_doc.WILL_CALL, [b"\xff\x00garbage"])
    with pytest.raises(shared_doc.DocError):
        shared_doc.merge([b"\xff\x00garbage", b"\x01"])
    with pytest.raises(shared_doc.DocDecodeError):
        shared_doc.check_update(b"\x00\x05")
    shared_doc.check_update(shared_doc.settings_set([], "k", 1))


def test_a_plain_value_on_the_will_call_board_is_not_an_item() -> None:
    from pycrdt import Doc, Map

    d: Doc[Any] = Doc()
    d.get("items", type=Map)["rx-9"] = 5
    state = [bytes(d.get_update())]
    assert shared_doc.will_call_view(state) == {}
    state.append(shared_doc.will_call_put(state, "rx-9", {"label": "A"}, actor="t", at="x"))
    assert shared_doc.will_call_view(state)["rx-9"]["label"] == "A"


@pytest.mark.parametrize("body, reason", [
    ("[1]", "entry body is not a JSON object"),
    ("{", "entry body is not valid JSON"),
])
def test_register_verify_reports_a_stored_body_that_is_not_an_object(store: Store, body: str,
                                                                     reason: str) -> None:
    store.conn.execute("INSERT INTO register(replica_id, seq, entry_id, created_at, kind, ndc, "
                       "qty, body, prev_hash, hash) VALUES ('other', 1, 'e1', 'x', 'dispense', "
                       "'n', 1, ?, ?, ?)",
                       (body, register.GENESIS, register.entry_hash(register.GENESIS, body)))
    v = register.verify(store.conn)
    assert not v.ok and v.broken is not None and v.broken["reason"] == reason


def test_insert_foreign_refuses_what_verify_would_flag(store: Store) -> None:
    with pytest.raises(register.BadRegisterEntry) as exc:
        register.insert_foreign(store.conn, _reg(body="[1]"))
    assert exc.value.code == "BAD_REGISTER_ENTRY" and exc.value.details == {"field": "body"}
    assert register.insert_foreign(store.conn, _reg())
    assert not register.insert_foreign(store.conn, _reg())  # the same entry twice
    assert register.verify(store.conn).ok


# ---- a whole sync round ----------------------------------------------------------------------
class Server:
    """Head office answering pulls from a list of pages (the last one repeats)."""

    def __init__(self, *pages: Any) -> None:
        self.pages = list(pages)
        self.pulls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/pull":
            pg = self.pages[min(self.pulls, len(self.pages) - 1)]
            self.pulls += 1
            return httpx.Response(200, json=pg)
        return httpx.Response(200, json={"ok": True})


def _client(store: Store, server: Server) -> sync_client.SyncClient:
    with store.transaction() as c:
        replication.set_state(c, "server_url", "http://hq.test")
        replication.set_state(c, "terminal_id", "t1")
    return sync_client.SyncClient("http://hq.test", "tok",
                                  transport=httpx.MockTransport(server), retries=0)


def test_a_hostile_page_fails_that_sync_with_a_recorded_code_and_the_next_sync_works(
        store: Store) -> None:
    server = Server(page([fev("abc", "batch", BATCH)], cursor=1),
                    page([good_batch(1)], cursor=1))
    client = _client(store, server)
    with pytest.raises(replication.ReplicationError) as exc:
        sync_client.sync(store, client)
    assert exc.value.code == "BAD_PAGE"
    st = sync_client.status(store)
    assert st["last_error"].startswith("BAD_PAGE: ") and st["offline_since"] is not None
    assert st["pull_cursor"] == 0 and st["last_success"] is None
    res = sync_client.sync(store, client)
    assert res.pulled == 1 and res.server_seq == 1
    st = sync_client.status(store)
    assert st["last_error"] is None and st["pull_cursor"] == 1 and lots(store) == {"G1"}


def test_a_page_with_a_bad_batch_syncs_and_parks_it(store: Store) -> None:
    bad = fev(1, "batch", {**BATCH, "unit_cost_cents": 10**20})
    client = _client(store, Server(page([bad, good_batch(2)], cursor=2)))
    sync_client.sync(store, client)
    st = sync_client.status(store)
    assert st["last_error"] is None and st["pull_cursor"] == 2 and st["waiting_events"] == 1
    assert foreign(store)[bad["event_id"]][1].startswith("BAD_EVENT: ")  # type: ignore[union-attr]
    sync_client.sync(store, client)  # the same page again: nothing new, still fine
    assert sync_client.status(store)["last_error"] is None


def test_more_to_come_without_moving_the_cursor_is_a_bad_page(store: Store) -> None:
    server = Server({**page(cursor=0), "more": True})
    with pytest.raises(replication.ReplicationError) as exc:
        sync_client.sync(store, _client(store, server))
    assert exc.value.code == "BAD_PAGE" and server.pulls == 1


def test_a_bad_publication_does_not_fail_the_sync(store: Store) -> None:
    server = Server(page([fev(1, "model", {"kind": "forecast"}, replica="hq:x")], cursor=1))
    res = sync_client.sync(store, _client(store, server))
    assert [(e["ok"], e.get("error")) for e in res.installed] == [(False, "BAD_PUBLICATION")]
    assert sync_client.status(store)["last_error"] is None
    res = sync_client.sync(store, _client(store, server))
    assert res.installed == []  # failed for good, not retried


def test_an_unexpected_error_is_recorded_in_the_status(store: Store, monkeypatch: Any) -> None:
    def boom(*a: Any) -> None:
        raise RuntimeError("kaput")

    monkeypatch.setattr(replication, "apply_pull", boom)
    with pytest.raises(RuntimeError):
        sync_client.sync(store, _client(store, Server(page(cursor=1))))
    assert sync_client.status(store)["last_error"] == "SYNC_FAILED: RuntimeError: kaput"


def test_every_refusal_here_is_a_pharmos_error() -> None:
    assert issubclass(replication.ReplicationError, PharmosError)
    assert issubclass(register.BadRegisterEntry, BadInput)
