"""A fake raw-TCP (port 9100) ESC/POS printer for tests, demos and support.

A real TCP server on 127.0.0.1 (port 0 by default) in one thread. It records every byte per
connection, answers real-time status requests (DLE EOT n) as a printer would, and can be
told to run out of paper, go offline, open its cover, go silent (never answer), or drop the
connection after N bytes of a document.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from typing import Any

from hardware.escpos_parse import Document, Tokenizer, parse


class FakeNetworkPrinter:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._listener = socket.create_server((host, port))
        self._listener.setblocking(False)
        self.host, self.port = self._listener.getsockname()[:2]
        self._sel = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"fake printer :{self.port}")
        self._lock = threading.Lock()
        self._conns: dict[socket.socket, dict[str, Any]] = {}
        self.connections: list[bytearray] = []
        # behaviour, changeable while running
        self.online = True
        self.paper = "ok"  # ok | low | out
        self.cover_open = False
        self.silent = False  # read everything, answer nothing
        self.drop_after: int | None = None  # close the connection after this many bytes
        self.refuse = False  # close every new connection at once
        self.status_requests: list[int] = []

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def start(self) -> FakeNetworkPrinter:
        self._sel.register(self._listener, selectors.EVENT_READ, None)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        for conn in list(self._conns):
            with contextlib.suppress(OSError):
                conn.close()
        self._conns.clear()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._sel.close()

    def __enter__(self) -> FakeNetworkPrinter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what arrived ----------------------------------------------------------------------
    @property
    def received(self) -> bytes:
        self.wait_closed(timeout=1.0)  # let the reader thread take in what the client sent
        with self._lock:
            return b"".join(bytes(c) for c in self.connections)

    def document(self, index: int = -1) -> Document:
        """The parsed stream of one connection (the last by default)."""
        self.wait_closed(timeout=1.0)
        with self._lock:
            data = bytes(self.connections[index])
        return parse(data)

    def wait_for(self, nbytes: int = 1, *, connections: int = 1, timeout: float = 3.0) -> bool:
        """Wait until ``connections`` connections were seen and the last holds ``nbytes``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.connections) >= connections and (
                        len(self.connections[connections - 1]) >= nbytes):
                    return True
            time.sleep(0.01)
        return False

    def wait_closed(self, timeout: float = 3.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._conns:
                return True
            time.sleep(0.01)
        return False

    # ---- status bytes ----------------------------------------------------------------------
    def status_reply(self, n: int) -> bytes:
        b = 0x12
        if n == 1 and (not self.online or self.cover_open or self.paper == "out"):
            b |= 0x08
        elif n == 2:
            b |= (0x04 if self.cover_open else 0) | (0x20 if self.paper == "out" else 0)
        elif n == 4:
            b |= {"ok": 0, "low": 0x0C, "out": 0x6C}[self.paper]
        return bytes([b])

    # ---- server loop -----------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._sel.select(timeout=0.05):
                if key.fileobj is self._listener:
                    self._accept()
                else:
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    self._read(sock)

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        if self.refuse:
            _reset(conn)
            return
        conn.setblocking(False)
        with self._lock:
            buf = bytearray()
            self.connections.append(buf)
        self._conns[conn] = {"buf": buf, "tok": Tokenizer()}
        self._sel.register(conn, selectors.EVENT_READ, None)

    def _drop(self, conn: socket.socket, *, reset: bool = False) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(conn)
        self._conns.pop(conn, None)
        if reset:
            _reset(conn)
        else:
            with contextlib.suppress(OSError):
                conn.close()

    def _read(self, conn: socket.socket) -> None:
        state = self._conns.get(conn)
        if state is None:
            return
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self._drop(conn)
            return
        if not data:
            self._drop(conn)
            return
        buf: bytearray = state["buf"]
        if self.drop_after is not None and len(buf) + len(data) >= self.drop_after:
            with self._lock:
                buf += data[: max(0, self.drop_after - len(buf))]
            self._drop(conn, reset=True)
            return
        with self._lock:
            buf += data
        for tok in state["tok"].feed(data):
            if tok.kind != "status":
                continue
            self.status_requests.append(tok.value)
            if not self.silent:
                with contextlib.suppress(OSError):
                    conn.sendall(self.status_reply(tok.value))


def _reset(conn: socket.socket) -> None:
    """Close with RST, like a printer that was switched off or unplugged."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        conn.close()
