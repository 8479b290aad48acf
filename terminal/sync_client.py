"""Terminal side of head-office sync (Qt-free): enrollment, the HTTP client, one sync round,
the scheduler and the status shown to the pharmacist.

A sync round pushes (outbox events after the last ack, dirty counter rows, document updates),
then pulls pages until the server has nothing newer, then installs head-office publications
(policy bundles, allowances, models) with the packages that own them. Every step is
idempotent, so a connection cut anywhere is repaired by the next round: nothing is lost and
nothing counts twice.

The token lives in the OS keyring (service ``pharmos``). A kiosk with no usable keyring gets a
key file readable only by its user (``sync-token`` in the data directory, mode 0600); sync
status flags it.

Threads: one :class:`~pharmacy.store.Store` per thread. :func:`sync_data_dir` opens its own;
the GUI calls it from a worker, never the UI thread.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import random
import re
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import httpx

from pharmacy import event_columns, replication
from pharmacy.clock import parse_iso
from pharmacy.errors import BadInput, IntegrityFailure, PharmosError
from pharmacy.store import Store

log = logging.getLogger("pharmos.sync")

KEYRING_SERVICE = "pharmos"
TOKEN_FILE = "sync-token"
PROTOCOL = replication.SYNC_PROTOCOL
PUSH_PROTOCOL = replication.PUSH_PROTOCOL
USER_AGENT = "pharmos-terminal/0.1"
# request bodies: the best gzip level (a day of sales: ~7 ms here, about 7% smaller than 6)
UPLOAD_GZIP_LEVEL = 9


class SyncUnavailable(PharmosError):
    """The server could not be reached (after retries). Nothing is lost; try later."""

    code = "SYNC_UNAVAILABLE"
    exit_code = 1


class SyncRejected(PharmosError):
    """The server refused the request with a stable code (bad token, scope, protocol...)."""

    code = "SYNC_REJECTED"
    exit_code = 1

    def __init__(self, message: str, *, code: str | None = None, status: int = 400,
                 **details: Any) -> None:
        super().__init__(message, code=code, **details)
        self.status = status


class NotEnrolled(BadInput):
    code = "NOT_ENROLLED"


# ---- token storage --------------------------------------------------------------------------
def _keyring_account(terminal_id: str) -> str:
    return f"terminal:{terminal_id}"


def _keyring_usable() -> bool:
    try:
        import keyring
        from keyring.backends import fail, null

        kr = keyring.get_keyring()
    except Exception:  # keyring missing or its backend failed to load
        return False
    return not isinstance(kr, fail.Keyring | null.Keyring)


def save_token(data_dir: Path, terminal_id: str, token: str, mode: str = "auto") -> str:
    """Store the token; returns where: ``keyring`` or ``file`` (the kiosk fallback)."""
    if mode not in ("auto", "keyring", "file"):
        raise BadInput(f"token store {mode!r} is not auto, keyring or file", code="BAD_ARGS")
    if mode in ("auto", "keyring"):
        try:
            import keyring
            from keyring.errors import KeyringError

            if _keyring_usable():
                keyring.set_password(KEYRING_SERVICE, _keyring_account(terminal_id), token)
                if keyring.get_password(KEYRING_SERVICE,
                                        _keyring_account(terminal_id)) == token:
                    return "keyring"
        except (ImportError, KeyringError, RuntimeError) as e:
            log.warning("keyring unusable: %s", e)
        if mode == "keyring":
            raise PharmosError("the OS keyring is not available on this machine; use "
                               "--token-store file for a kiosk (see docs/sync.md)",
                               code="NO_KEYRING")
    path = data_dir / TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, token.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return "file"


def load_token(data_dir: Path, terminal_id: str, where: str) -> str:
    if where == "keyring":
        try:
            import keyring

            token = keyring.get_password(KEYRING_SERVICE, _keyring_account(terminal_id))
        except Exception as e:
            raise PharmosError(f"cannot read the terminal token from the OS keyring: {e}",
                               code="NO_KEYRING") from None
        if not token:
            raise NotEnrolled("the terminal token is not in this user's keyring; enroll the "
                              "terminal again with a new code")
        return str(token)
    path = data_dir / TOKEN_FILE
    try:
        st = path.stat()
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise IntegrityFailure(f"{path} is readable by other users; chmod 600 it",
                                   code="TOKEN_FILE_MODE")
        return path.read_text("ascii").strip()
    except FileNotFoundError:
        raise NotEnrolled(f"no token file {path}; enroll the terminal again") from None


def delete_token(data_dir: Path, terminal_id: str, where: str) -> None:
    if where == "keyring":
        with contextlib.suppress(Exception):
            import keyring

            keyring.delete_password(KEYRING_SERVICE, _keyring_account(terminal_id))
    else:
        with contextlib.suppress(FileNotFoundError):
            (data_dir / TOKEN_FILE).unlink()


# ---- HTTP client ----------------------------------------------------------------------------
RETRY_STATUS = frozenset({429, 502, 503, 504})


@dataclass
class SyncClient:
    """httpx with timeouts, retries with exponential backoff and full jitter, gzip both ways."""

    base_url: str
    token: str | None = None
    timeout: float = 30.0
    retries: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    rng: Callable[[], float] = random.random
    push_protocol: int = PUSH_PROTOCOL  # falls back to 1 when head office speaks only 1
    stats: dict[str, int] = field(default_factory=lambda: {"requests": 0, "retries": 0,
                                                           "bytes_up": 0, "bytes_down": 0})

    def __post_init__(self) -> None:
        try:
            self._http = httpx.Client(
                base_url=self.base_url.rstrip("/"), transport=self.transport,
                timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)),
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"})
        except httpx.InvalidURL as e:
            raise BadInput(f"head office address {self.base_url!r} is not a URL: {e}",
                           code="BAD_SERVER_URL") from None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _delay(self, attempt: int) -> float:
        return float(self.rng() * min(self.max_backoff, self.backoff * (2 ** attempt)))

    def request(self, method: str, path: str, body: Any = None, *,
                raw: bool = False) -> Any:
        headers: dict[str, str] = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        content: bytes | None = None
        if body is not None:
            content = json.dumps(body, separators=(",", ":")).encode("utf-8")
            headers["Content-Type"] = "application/json"
            if len(content) > 1024:
                content = gzip.compress(content, compresslevel=UPLOAD_GZIP_LEVEL)
                headers["Content-Encoding"] = "gzip"
        last: str = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats["retries"] += 1
                self.sleep(self._delay(attempt - 1))
            self.stats["requests"] += 1
            try:
                resp = self._http.request(method, path, content=content, headers=headers)
            except httpx.TransportError as e:
                last = f"{type(e).__name__}: {e}"
                continue
            self.stats["bytes_up"] += len(content or b"")
            self.stats["bytes_down"] += len(resp.content)
            if resp.status_code in RETRY_STATUS:
                last = f"HTTP {resp.status_code}"
                continue
            if resp.status_code >= 400:
                raise _rejected(resp)
            if raw:
                return resp.content
            try:
                return resp.json()
            except (ValueError, RecursionError):
                last = "the server sent a body that is not JSON"
                continue
        raise SyncUnavailable(f"head office at {self.base_url} is unreachable ({last}); the "
                              "terminal keeps working offline and syncs later",
                              url=self.base_url, attempts=self.retries + 1)

    # ---- endpoints ----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = self.request("GET", "/v1/health")
        return out

    def enroll(self, code: str, name: str | None, replica_id: str | None) -> dict[str, Any]:
        out: dict[str, Any] = self.request("POST", "/v1/enroll", {
            "protocol": PROTOCOL, "code": code, "name": name, "replica_id": replica_id})
        return out

    def push(self, payload: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self.request("POST", "/v1/push", payload)
        return out

    def pull(self, payload: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self.request("POST", "/v1/pull", payload)
        return out

    def known(self, event_ids: list[str]) -> set[str]:
        known: set[str] = set()
        for i in range(0, len(event_ids), 2000):
            out = self.request("POST", "/v1/events/known", {
                "protocol": PROTOCOL, "event_ids": event_ids[i:i + 2000]})
            known.update(out["known"])
        return known

    def blob(self, sha256: str) -> bytes:
        data: bytes = self.request("GET", f"/v1/blobs/{sha256}", raw=True)
        return data


def _rejected(resp: httpx.Response) -> SyncRejected:
    try:
        err = resp.json()["error"]
        code, message, details = str(err["code"]), str(err["message"]), err.get("details") or {}
    except (ValueError, KeyError, TypeError):
        code, message, details = f"HTTP_{resp.status_code}", resp.text[:200], {}
    return SyncRejected(f"head office refused the request: {message}", code=code,
                        status=resp.status_code, **details)


# ---- enrollment -----------------------------------------------------------------------------
def enroll(data_dir: Path, server_url: str, code: str, *, name: str | None = None,
           token_store: str = "auto", client: SyncClient | None = None) -> dict[str, Any]:
    """Enroll this terminal; creates the data dir's store for the server's store if needed."""
    from pharmacy.store import DB_NAME

    store: Store | None = Store.open(data_dir) if (data_dir / DB_NAME).exists() else None
    try:
        if store is not None and replication.get_state(store.conn, "terminal_id"):
            raise BadInput(f"{data_dir} is already enrolled as terminal "
                           f"{replication.get_state(store.conn, 'terminal_id')}; revoke it at "
                           "head office and use a fresh data directory", code="ALREADY_ENROLLED")
        own = client is None
        c = client or SyncClient(server_url, retries=3)
        try:
            resp = c.enroll(code, name, store.replica_id if store else None)
        finally:
            if own:
                c.close()
        if store is None:
            store = Store.init(data_dir, resp["store_id"])
        elif store.store_id != resp["store_id"]:
            raise BadInput(
                f"{data_dir} holds store {store.store_id!r} but the code enrolls into store "
                f"{resp['store_id']!r}; terminal {resp['terminal_id']} was created at head "
                "office: revoke it and use the right data directory", code="STORE_MISMATCH")
        where = save_token(data_dir, resp["terminal_id"], resp["token"], token_store)
        with store.transaction() as conn:
            for key in ("terminal_id", "tenant_id"):
                replication.set_state(conn, key, resp[key])
            replication.set_state(conn, "server_url", server_url.rstrip("/"))
            replication.set_state(conn, "token_storage", where)
            replication.set_state(conn, "trusted_keys", json.dumps(resp.get("trusted_keys", [])))
            if resp.get("jurisdiction"):
                store.set_setting("jurisdiction", resp["jurisdiction"])  # nests as a savepoint
        trusted = _install_trusted_keys(store)
        out = {"terminal_id": resp["terminal_id"], "tenant_id": resp["tenant_id"],
               "store_id": resp["store_id"], "server": server_url.rstrip("/"),
               "replica_id": store.replica_id, "token_storage": where,
               "trusted_keys": trusted}
        if where == "file":
            out["warning"] = token_file_warning(data_dir)
        return out
    finally:
        if store is not None:
            store.close()


def token_file_warning(data_dir: Path) -> str:
    return (f"no usable OS keyring: the terminal token is in {data_dir / TOKEN_FILE} "
            "(mode 0600). Anyone who can read that file or a backup of this directory can "
            "sync as this terminal; revoke the terminal if a backup leaks.")


def _resolve(module: str, name: str) -> Callable[..., Any] | None:
    if importlib.util.find_spec(module.split(".")[0]) is None:
        return None
    try:
        if importlib.util.find_spec(module) is None:
            return None
        fn = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
    return fn if callable(fn) else None


def _install_trusted_keys(store: Store) -> int:
    keys = json.loads(replication.get_state(store.conn, "trusted_keys", "[]") or "[]")
    if not keys:
        return 0
    done = int(replication.get_state(store.conn, "trusted_keys_installed", "0") or 0)
    installers = [fn for fn in (_resolve("policy_cache.trust", "trust_key"),
                                _resolve("models.bundle", "trust_key")) if fn is not None]
    if not installers or done == len(keys) * len(installers):
        return len(keys) if installers else 0
    # the same head-office key signs policy and model bundles
    for fn in installers:
        for pem in keys:
            fn(store, pem.encode("ascii") if isinstance(pem, str) else pem)
    with store.transaction() as conn:
        replication.set_state(conn, "trusted_keys_installed", len(keys) * len(installers))
    return len(keys)


# ---- one sync round -------------------------------------------------------------------------
@dataclass
class SyncResult:
    pushed: int = 0
    pulled: int = 0
    server_seq: int | None = None
    installed: list[dict[str, Any]] = field(default_factory=list)
    rebased: list[dict[str, Any]] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    bytes_up: int = 0
    bytes_down: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pushed": self.pushed, "pulled": self.pulled,
                               "server_seq": self.server_seq}
        if self.installed:
            out["installed"] = self.installed
        if self.rebased:
            out["rebased"] = self.rebased
        if self.retired:
            out["retired_replicas"] = self.retired
        out["bytes"] = {"up": self.bytes_up, "down": self.bytes_down}
        return out


def _status_report(store: Store) -> dict[str, Any]:
    p = replication.pending(store.conn)
    return {"pending_events": p["events"], "pending_counters": p["counters"],
            "pending_docs": p["docs"],
            "last_success": replication.get_state(store.conn, "last_success"),
            "offline_since": replication.get_state(store.conn, "offline_since"),
            "version": USER_AGENT}


def push_payload(store: Store, batch: replication.PushBatch,
                 protocol: int = PUSH_PROTOCOL) -> dict[str, Any]:
    """The push request of a page. Protocol 2 sends the events as columns (what does not
    pack goes whole); protocol 1 sends every event whole, for a server that speaks only 1."""
    groups: list[dict[str, Any]] = []
    events = batch.events
    if protocol >= 2:
        groups, events = event_columns.pack(batch.events)
    # one key per payload: the retries of this request share it, a later push never does
    payload = {"protocol": protocol if groups else PROTOCOL,
               "idempotency_key": str(uuid.uuid4()),
               "store_id": store.store_id, "replica_id": store.replica_id,
               "replica_seq": replication.replica_seq(store.conn, store.replica_id),
               "events": events, "counters": batch.counters, "docs": batch.docs,
               "status": _status_report(store)}
    if groups:
        payload["event_groups"] = groups
    return payload


def push_all(store: Store, client: SyncClient, result: SyncResult,
             first: replication.PushBatch | None = None) -> None:
    """Push page by page until the outbox is acknowledged. ``first``: a page the caller has
    already collected (so it is not read twice)."""
    repairs = 0
    pending = first
    while True:
        store.mark_high_water()  # the high-water mark only grows: it covers a page read before
        batch = pending if pending is not None else replication.collect_push(store)
        pending = None
        if batch.empty:
            return
        try:
            client.push(push_payload(store, batch, client.push_protocol))
        except SyncRejected as e:
            if e.code == "PROTOCOL_VERSION" and client.push_protocol > PROTOCOL:
                log.warning("head office speaks sync protocol %s; pushing with %s",
                            e.details.get("supported"), PROTOCOL)
                client.push_protocol = PROTOCOL
                pending = batch
                continue
            if repairs >= 6 or e.code not in ("REPLICA_FORKED", "COUNTER_REGRESSION",
                                               "REPLICA_BEHIND"):
                raise
            repairs += 1
            if e.code == "REPLICA_FORKED":
                _repair_fork(store, client, str(e.details["replica_id"]), result)
            elif e.code == "REPLICA_BEHIND":
                _repair_regression(store, [str(e.details["replica_id"])], result)
            else:
                _repair_regression(store, [str(r) for r in e.details.get("replicas", [])],
                                   result)
            continue
        replication.ack_push(store, batch)
        result.pushed += len(batch.events) + len(batch.counters) + len(batch.docs)
        if batch.final:
            return


def _repair_fork(store: Store, client: SyncClient, replica: str, result: SyncResult) -> None:
    log.warning("replica %s forked (database restored or copied); rebasing", replica)
    if replica == store.replica_id:
        store.rekey("server-regression")
    ids = replication.unacked_event_ids(store.conn, replica)
    known = client.known(ids) if ids else set()
    res = replication.rebase_forked(store, replica, known)
    result.rebased.append(res.to_json())


def _repair_regression(store: Store, replicas: list[str], result: SyncResult) -> None:
    if not replicas:
        raise SyncRejected("the server reported a counter regression without replicas",
                           code="COUNTER_REGRESSION")
    for replica in replicas:
        log.warning("server holds newer counters for replica %s; retiring it", replica)
        if replica == store.replica_id:
            store.rekey("server-regression")
        replication.retire_replica(store, replica, "server-regression")
        result.retired.append(replica)


def pull_all(store: Store, client: SyncClient, result: SyncResult) -> None:
    resets = 0
    while True:
        cursor = int(replication.get_state(store.conn, "pull_cursor", "0") or 0)
        try:
            page = client.pull({"protocol": PROTOCOL, "store_id": store.store_id,
                                "replica_id": store.replica_id,
                                "replica_seq": replication.replica_seq(store.conn,
                                                                       store.replica_id),
                                "cursor": cursor, "limit": 2000,
                                "status": _status_report(store)})
        except SyncRejected as e:
            if resets >= 3 or e.code not in ("CURSOR_AHEAD", "REPLICA_BEHIND"):
                raise
            resets += 1
            if e.code == "REPLICA_BEHIND":
                _repair_regression(store, [str(e.details["replica_id"])], result)
            else:
                log.warning("head office is behind this terminal (server restored); "
                            "resending everything")
                replication.resend_all(store)
            push_all(store, client, result)
            continue
        applied = replication.apply_pull(store, page)  # checks the page (BAD_PAGE)
        result.pulled += applied.rows
        if page.get("server_seq") is not None:
            result.server_seq = int(page["server_seq"])
        if not page.get("more"):
            return
        if int(page["next_cursor"]) <= cursor:  # would ask for the same page for ever
            raise replication.ReplicationError(
                f"head office sent a malformed pull page (more to come, but the cursor stays "
                f"at {page['next_cursor']})", code="BAD_PAGE", field="next_cursor")


def install_key_endorsement(store: Store, doc: dict[str, Any]) -> dict[str, Any]:
    """Head office rotated its signing key: trust the endorsed key for policy and model
    bundles once the endorsement checks out against a key trusted now; drop a key it
    retires. The list installed at enrollment follows, so a retired key stays retired."""
    from pharmacy.signing import (
        TrustStore,
        endorsed_pems,
        load_public_pem,
        public_pem,
        verify_endorsement,
    )

    trusts, retires = [], []
    for module in ("policy_cache.trust", "models.bundle"):
        add, retire = _resolve(module, "trust_key"), _resolve(module, "retire_key")
        if add is not None and retire is not None:
            trusts.append(add)
            retires.append(retire)
    pems = json.loads(replication.get_state(store.conn, "trusted_keys", "[]") or "[]")
    current = _resolve("policy_cache.trust", "trust_store")  # also keys trusted by hand
    trust: TrustStore = current(store) if current is not None else TrustStore()
    for p in pems:
        trust.add(load_public_pem(p.encode("ascii")))
    statement = verify_endorsement(trust, doc)
    new_pem = public_pem(load_public_pem(statement["public_key"].encode("ascii")))
    for add in trusts:
        add(store, new_pem)
    for retire in retires:
        for kid in statement["retire"]:
            retire(store, kid)
    keep = endorsed_pems(pems, statement)
    with store.transaction() as conn:
        replication.set_state(conn, "trusted_keys", json.dumps(keep))
        replication.set_state(conn, "trusted_keys_installed", len(keep) * len(trusts))
    return {"trusted": statement["key_id"], "retired": ",".join(statement["retire"])}


_INSTALLERS = {
    "key_endorsement": ("terminal.sync_client", "install_key_endorsement", False),
    "policy_bundle": ("policy_cache.install", "install_bundle", True),
    "model": ("models.bundle", "install_model_bundle", True),
    "allowances": ("policy_cache.allowances", "grant_allowances", False),
    "user": ("pharmacy.users", "install_published_user", False),
}


_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_publication(kind: str, body: dict[str, Any]) -> str | None:
    """Why a publication cannot be installed as it stands, or None. A bundle (policy, model)
    names its download: ``sha256`` the hex digest, ``size`` (optional) a whole number of
    bytes. The other kinds' installers check their own bodies."""
    if not _INSTALLERS[kind][2]:
        return None
    sha = body.get("sha256")
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        return f"the {kind} publication's sha256 {sha!r:.80} is not a sha256 hex digest"
    size = body.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool)
                             or size < 0):
        return f"the {kind} publication's size {size!r:.80} is not a whole number of bytes"
    return None


def _failed(store: Store, result: SyncResult, pub: replication.Publication, code: str,
            message: str) -> None:
    replication.mark_publication(store, pub.event_id, "failed", f"{code}: {message}")
    result.installed.append({"kind": pub.kind, "event_id": pub.event_id, "ok": False,
                             "error": code})


def install_publications(store: Store, client: SyncClient, result: SyncResult) -> None:
    """Install pending publications. One that cannot install is marked failed with a code
    (a malformed body: BAD_PUBLICATION; an installer that fails with anything but a domain
    error: INSTALL_FAILED, traceback logged), so no publication holds up every sync. A
    download that cannot be made stays pending; so does one whose installer found this
    terminal's database unusable (the error fails the sync)."""
    _install_trusted_keys(store)
    replication.fail_unreadable_publications(store)
    # a new key before the bundles it signs; a grant is capped by a bundle
    order = {"key_endorsement": -1, "policy_bundle": 0, "model": 1, "allowances": 2, "user": 3}
    for pub in sorted(replication.pending_publications(store.conn),
                      key=lambda p: (order[p.kind], p.server_seq)):
        module, name, needs_blob = _INSTALLERS[pub.kind]
        fn = _resolve(module, name)
        if fn is None:
            replication.note_publication_error(store, pub.event_id,
                                               f"{module}.{name} is not installed")
            continue
        bad = check_publication(pub.kind, pub.body)
        if bad is not None:
            _failed(store, result, pub, "BAD_PUBLICATION", bad)
            continue
        try:
            if needs_blob:
                data = client.blob(str(pub.body["sha256"]))
                size = pub.body.get("size")
                if hashlib.sha256(data).hexdigest() != pub.body["sha256"] or \
                        (size is not None and len(data) != size):
                    raise IntegrityFailure(f"{pub.kind} download does not match its sha256",
                                           code="DOWNLOAD_MISMATCH")
                info = fn(store, data)
            else:
                info = fn(store, pub.body)
        except SyncUnavailable as e:
            replication.note_publication_error(store, pub.event_id, e.message)
            return
        except PharmosError as e:
            _failed(store, result, pub, e.code, e.message)
            continue
        except Exception as e:
            if replication.terminal_broken(e):
                raise  # the database, not the publication: it stays pending
            log.exception("installing %s publication %s failed", pub.kind, pub.event_id)
            _failed(store, result, pub, "INSTALL_FAILED", f"{type(e).__name__}: {e}")
            continue
        replication.mark_publication(store, pub.event_id, "installed")
        entry: dict[str, Any] = {"kind": pub.kind, "event_id": pub.event_id, "ok": True}
        if isinstance(info, dict):
            entry["info"] = {k: v for k, v in info.items() if isinstance(v, str | int | bool)}
        result.installed.append(entry)


def client_for(store: Store, **kw: Any) -> SyncClient:
    url = replication.get_state(store.conn, "server_url")
    terminal_id = replication.get_state(store.conn, "terminal_id")
    if not url or not terminal_id:
        raise NotEnrolled(f"the terminal in {store.data_dir} is not enrolled; run 'pharmos "
                          "enroll --data-dir ... --server URL --code CODE'")
    where = replication.get_state(store.conn, "token_storage", "keyring") or "keyring"
    return SyncClient(url, load_token(store.data_dir, terminal_id, where), **kw)


def sync(store: Store, client: SyncClient | None = None, **client_kw: Any) -> SyncResult:
    """One sync round: push, pull, install publications. Records the outcome in status."""
    own = client is None
    result = SyncResult()
    c: SyncClient | None = client
    try:
        c = c or client_for(store, **client_kw)
        push_all(store, c, result)
        pull_all(store, c, result)
        install_publications(store, c, result)
        # what arrived or was rebased during the round
        again = replication.collect_push(store)
        if not again.empty:
            push_all(store, c, result, first=again)
    except PharmosError as e:
        replication.record_attempt(store, ok=False, error=f"{e.code}: {e.message}")
        raise
    except Exception as e:  # a bug or a broken database: recorded if it can be, then raised
        log.exception("sync failed")
        with contextlib.suppress(Exception):
            replication.record_attempt(store, ok=False,
                                       error=f"SYNC_FAILED: {type(e).__name__}: {e}")
        raise
    finally:
        if c is not None:
            result.bytes_up, result.bytes_down = c.stats["bytes_up"], c.stats["bytes_down"]
            if own:
                c.close()
    replication.record_attempt(store, ok=True, server_seq=result.server_seq)
    return result


def sync_data_dir(data_dir: Path, **client_kw: Any) -> SyncResult:
    """Open the store, run one round, close it (for a worker thread or the scheduler)."""
    with Store.open(data_dir) as store:
        return sync(store, **client_kw)


def status(store: Store) -> dict[str, Any]:
    out = replication.status(store.conn)
    where = replication.get_state(store.conn, "token_storage")
    out.update({
        "enrolled": replication.get_state(store.conn, "terminal_id") is not None,
        "server": replication.get_state(store.conn, "server_url"),
        "terminal_id": replication.get_state(store.conn, "terminal_id"),
        "store_id": store.store_id,
        "replica_id": store.replica_id,
        "token_storage": where,
    })
    if where == "file":
        out["warning"] = token_file_warning(store.data_dir)
    return out


# ---- scheduling -----------------------------------------------------------------------------
def parse_at(text: str) -> dtime:
    try:
        hh, mm = text.split(":")
        return dtime(int(hh), int(mm))
    except ValueError:
        raise BadInput(f"time {text!r} is not HH:MM", code="BAD_TIME") from None


def last_nightly(now: datetime, at: dtime) -> datetime:
    """The most recent scheduled nightly time at or before ``now`` (in now's timezone)."""
    today = now.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    return today if today <= now else today - timedelta(days=1)


def nightly_due(last_success: datetime | None, now: datetime, at: dtime) -> bool:
    """True when the last nightly slot passed without a successful sync after it."""
    return last_success is None or last_success < last_nightly(now, at)


class SyncScheduler:
    """Nightly sync at a fixed local time (misfire grace of hours, and a catch-up at start for
    a terminal that was off at that time), plus opportunistic syncs every few minutes."""

    def __init__(self, data_dir: Path, *, at: str = "02:00", every_minutes: float = 5,
                 misfire_grace_hours: float = 8,
                 run: Callable[[], object] | None = None,
                 now: Callable[[], datetime] | None = None,
                 after_nightly: Callable[[], object] | None = None) -> None:
        self.data_dir = data_dir
        self.after_nightly = after_nightly  # e.g. the due PMP reports; runs online or not
        self.at = parse_at(at)
        # 0 turns the opportunistic sync off; NaN fails both range checks
        if not 0 <= every_minutes <= 24 * 60:
            raise BadInput(f"the sync interval {every_minutes} is not 0 (off) to 1440 minutes",
                           code="BAD_ARGS")
        if not 0 <= misfire_grace_hours <= 24 * 7:
            raise BadInput(f"the catch-up window {misfire_grace_hours} is not 0 to 168 hours",
                           code="BAD_ARGS")
        self.every_minutes = every_minutes
        self.grace = int(misfire_grace_hours * 3600)
        self._run_fn = run or (lambda: sync_data_dir(self.data_dir))
        self._now = now or (lambda: datetime.now().astimezone())
        self._busy = threading.Lock()
        self._sched: Any = None
        self.runs: list[dict[str, Any]] = []

    def run_once(self, reason: str) -> bool:
        """One sync unless one is already running; failures are recorded, never raised."""
        if not self._busy.acquire(blocking=False):
            return False
        started = time.monotonic()
        try:
            self._run_fn()
            self.runs.append({"reason": reason, "ok": True,
                              "seconds": round(time.monotonic() - started, 3)})
            return True
        except PharmosError as e:
            log.info("sync (%s) failed: %s", reason, e.message)
            self.runs.append({"reason": reason, "ok": False, "error": e.code})
            return False
        finally:
            if reason in ("nightly", "catch-up") and self.after_nightly is not None:
                try:
                    self.after_nightly()
                except PharmosError as e:  # recorded, never raised into the scheduler
                    log.warning("after the nightly sync: %s", e.message)
                    self.runs.append({"reason": f"{reason} (after)", "ok": False,
                                      "error": e.code})
            self._busy.release()

    def last_success(self) -> datetime | None:
        with contextlib.closing(Store.open(self.data_dir)) as store:
            raw = replication.get_state(store.conn, "last_success")
        return parse_iso(raw) if raw else None

    def start(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        now = self._now()
        sched = BackgroundScheduler(timezone=now.tzinfo)
        sched.add_job(self.run_once, CronTrigger(hour=self.at.hour, minute=self.at.minute,
                                                 timezone=now.tzinfo),
                      args=["nightly"], id="nightly", misfire_grace_time=self.grace,
                      coalesce=True, max_instances=1)
        if self.every_minutes > 0:
            sched.add_job(self.run_once, IntervalTrigger(
                seconds=self.every_minutes * 60, jitter=max(1, int(self.every_minutes * 6))),
                args=["opportunistic"], id="opportunistic", coalesce=True, max_instances=1,
                misfire_grace_time=60)
        try:
            last = self.last_success()
        except PharmosError:
            last = None
        if nightly_due(last, now, self.at):
            sched.add_job(self.run_once, "date", run_date=now, args=["catch-up"],
                          id="catch-up", misfire_grace_time=self.grace)
        sched.start()
        self._sched = sched

    def shutdown(self, wait: bool = True) -> None:
        if self._sched is not None:
            self._sched.shutdown(wait=wait)
            self._sched = None

    @contextlib.contextmanager
    def running(self) -> Iterator[SyncScheduler]:
        self.start()
        try:
            yield self
        finally:
            self.shutdown()


def format_status(st: dict[str, Any]) -> str:
    p = st["pending"]
    lines = [
        f"server:        {st.get('server') or 'not enrolled'}",
        f"last success:  {st.get('last_success') or 'never'}",
        f"offline since: {st.get('offline_since') or '-'}",
        f"pending:       {p['events']} events, {p['counters']} counter rows, "
        f"{p['docs']} document updates",
    ]
    if st.get("last_error"):
        lines.append(f"last error:    {st['last_error']}")
    if st.get("warning"):
        lines.append(f"WARNING:       {st['warning']}")
    return "\n".join(lines)

