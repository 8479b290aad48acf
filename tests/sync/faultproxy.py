"""A misbehaving network between terminals and the sync server, on 127.0.0.1.

An HTTP/1.1 proxy that forwards raw bytes (gzip bodies untouched) and, per request, may:
drop the request, drop the response after the server handled it, send the request twice,
replay an earlier request out of order before forwarding this one, or SIGKILL the server
while it is handling a push. Decisions come from a seeded RNG, so a failing run repeats.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


class FaultProxy:
    def __init__(self, upstream_port: int, *, seed: int = 0, drop_request: float = 0.0,
                 drop_response: float = 0.0, duplicate: float = 0.0, replay: float = 0.0,
                 kill: Callable[[], None] | None = None) -> None:
        self.upstream_port = upstream_port
        self.rng = random.Random(seed)
        self.p = {"drop_request": drop_request, "drop_response": drop_response,
                  "duplicate": duplicate, "replay": replay}
        self.kill = kill
        self.kill_next_push = False
        self.killed = threading.Event()
        self.stash: list[tuple[str, str, dict[str, str], bytes]] = []
        self.counts: dict[str, int] = {k: 0 for k in (*self.p, "forwarded", "killed")}
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy._handle(self)

            def do_POST(self) -> None:
                proxy._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def set(self, **p: float) -> None:
        with self.lock:
            self.p.update(p)

    def _roll(self, name: str) -> bool:
        with self.lock:
            hit = self.rng.random() < self.p[name]
            if hit:
                self.counts[name] += 1
            return hit

    def _forward(self, method: str, path: str, headers: dict[str, str],
                 body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, [(k, v) for k, v in resp.getheaders()
                                 if k.lower() not in HOP], data
        finally:
            conn.close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP | {"host"}}
        method, path = h.command, h.path
        if self._roll("drop_request"):
            h.close_connection = True
            return
        if path == "/v1/push":
            with self.lock:
                self.stash.append((method, path, headers, body))
            if self.kill_next_push and self.kill is not None:
                self.kill_next_push = False
                self._kill_during(method, path, headers, body)
                h.close_connection = True
                return
        if self.stash and self._roll("replay"):
            with self.lock:
                old = self.rng.choice(self.stash)
            with contextlib.suppress(OSError, http.client.HTTPException):
                self._forward(*old)
        try:
            status, rheaders, data = self._forward(method, path, headers, body)
            if self._roll("duplicate"):
                status, rheaders, data = self._forward(method, path, headers, body)
        except (OSError, http.client.HTTPException):
            status, rheaders, data = 502, [("Content-Type", "text/plain")], b"upstream down"
        with self.lock:
            self.counts["forwarded"] += 1
        if self._roll("drop_response"):
            h.close_connection = True
            return
        h.send_response(status)
        for k, v in rheaders:
            if k.lower() != "content-length":
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _kill_during(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        """Send the push upstream and SIGKILL the server while it is handling it."""
        def send() -> None:
            with contextlib.suppress(OSError, http.client.HTTPException):
                self._forward(method, path, headers, body)

        t = threading.Thread(target=send, daemon=True)
        t.start()
        time.sleep(self.rng.uniform(0.002, 0.03))
        assert self.kill is not None
        self.kill()
        self.killed.set()
        with self.lock:
            self.counts["killed"] += 1
        t.join(5)
