"""Background work for the counter: database work on ONE worker thread, network work on a
small pool beside it (never queued behind the database), results delivered on the main thread
by signal. Workers never touch widgets (Anki #4536).

    tasks.db(counter.scan, text, on_done=self.show_cart)
    tasks.net(sync_client.sync_now, on_done=...)

A domain error (PharmosError) goes to ``on_error`` when given, else to the ``failed`` signal,
which the main window shows in its one error bar. Anything else is logged with its traceback
and reported as an internal error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal

log = logging.getLogger("pharmos.terminal")

Done = Callable[[Any], None]
Failed = Callable[[BaseException], bool | None]  # return True when handled


class TaskManager(QObject):
    """One database worker, one network pool; completions come back on the main thread."""

    failed = Signal(object)  # BaseException not handled by the caller
    busy_changed = Signal(bool)
    _deliver = Signal(object)
    _posted = Signal(object)

    def __init__(self, parent: QObject | None = None, *, net_workers: int = 2) -> None:
        super().__init__(parent)
        self._db = ThreadPoolExecutor(1, thread_name_prefix="pharmos-db")
        self._net = ThreadPoolExecutor(net_workers, thread_name_prefix="pharmos-net")
        self._io = ThreadPoolExecutor(1, thread_name_prefix="pharmos-devices")
        self._pending = 0
        self._closed = False
        # emitted from worker threads only, so the default connection queues them
        self._deliver.connect(self._on_deliver)
        self._posted.connect(self._on_posted)
        self.db_thread: threading.Thread | None = None
        self._db.submit(self._mark_db_thread).result()

    def _mark_db_thread(self) -> None:
        self.db_thread = threading.current_thread()

    # ---- submitting --------------------------------------------------------------------------
    def db(self, fn: Callable[..., Any], *args: Any, on_done: Done | None = None,
           on_error: Failed | None = None, **kwargs: Any) -> Future[Any]:
        """Run ``fn`` on the database worker (the only thread that touches the store)."""
        return self._submit(self._db, fn, args, kwargs, on_done, on_error)

    def net(self, fn: Callable[..., Any], *args: Any, on_done: Done | None = None,
            on_error: Failed | None = None, **kwargs: Any) -> Future[Any]:
        """Run network work beside the database worker, never behind it."""
        return self._submit(self._net, fn, args, kwargs, on_done, on_error)

    def device(self, fn: Callable[..., Any], *args: Any, on_done: Done | None = None,
               on_error: Failed | None = None, **kwargs: Any) -> Future[Any]:
        """Device work (printers, drawer) on their own thread."""
        return self._submit(self._io, fn, args, kwargs, on_done, on_error)

    def _submit(self, pool: ThreadPoolExecutor, fn: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any], on_done: Done | None,
                on_error: Failed | None) -> Future[Any]:
        if self._closed:
            fut: Future[Any] = Future()
            fut.set_exception(RuntimeError("the terminal is shutting down"))
            return fut
        self._pending += 1
        if self._pending == 1:
            self.busy_changed.emit(True)
        fut = pool.submit(fn, *args, **kwargs)
        fut.add_done_callback(lambda f: self._send(self._deliver, (f, on_done, on_error)))
        return fut

    @staticmethod
    def _send(signal: Any, item: Any) -> None:
        """Always asynchronous: from the main thread (a future that was already done) the
        delivery is posted to the event loop instead of running inside the caller."""
        if threading.current_thread() is threading.main_thread():
            QTimer.singleShot(0, lambda: signal.emit(item))
        else:
            signal.emit(item)

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the main thread; callable from any thread (device callbacks)."""
        self._send(self._posted, fn)

    def _on_posted(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as err:
            self.report(err)

    # ---- delivering --------------------------------------------------------------------------
    def _on_deliver(self, item: tuple[Future[Any], Done | None, Failed | None]) -> None:
        fut, on_done, on_error = item
        self._pending -= 1
        try:
            exc = fut.exception()
            if exc is not None:
                if on_error is not None and on_error(exc):
                    return
                self.report(exc)
            elif on_done is not None:
                try:
                    on_done(fut.result())
                except Exception as err:  # a bug in a slot: log it, show it, keep running
                    self.report(err)
        finally:
            if self._pending == 0:
                self.busy_changed.emit(False)

    def report(self, exc: BaseException) -> None:
        from pharmacy.errors import PharmosError

        if not isinstance(exc, PharmosError):
            log.error("internal error", exc_info=(type(exc), exc, exc.__traceback__))
        self.failed.emit(exc)

    # ---- lifecycle ---------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return self._pending

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Process events until every submitted task has been delivered (tests, shutdown)."""
        app = QCoreApplication.instance()
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            if app is not None:
                app.processEvents()
            time.sleep(0.001)
        return self._pending == 0

    def shutdown(self, wait: bool = True) -> None:
        self._closed = True
        self._net.shutdown(wait=False, cancel_futures=True)
        self._io.shutdown(wait=wait)
        self._db.shutdown(wait=wait)
