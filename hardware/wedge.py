"""Keyboard-wedge scanner capture: a pure state machine fed (timestamp, key text) events.

A keyboard-wedge scanner "types" its data, 1–15 ms per character; people type 60+ ms per
character (ECOSYSTEM.md). Keys arriving no more than ``max_interkey_ms`` apart are held;
when the configured suffix (usually Enter) ends a fast burst of at least ``min_length``
characters that starts with the configured prefix, the burst is a scan: the GUI swallows
those keys and the Enter. Anything else is handed back as :class:`PassThrough` keys, in
order, to be delivered to the focused widget. Without a suffix, a fast burst ends when no
key follows within the inter-key limit.

The GUI feeds this from an application-wide event filter and calls :meth:`poll` when
:meth:`deadline` passes (a single-shot timer). Qt note: send a ``QKeyEvent`` whose text is
``"\\x1d"`` to simulate a GS in tests — ``QTest.keyClicks(w, "\\x1d")`` aborts the process.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hardware.config import ScannerConfig
from hardware.scans import ScanEvent, scan_event

MAX_BUFFER = 512


@dataclass(frozen=True)
class PassThrough:
    """Keys that were not a scan, to be delivered to the focused widget in this order."""

    keys: tuple[str, ...]

    @property
    def text(self) -> str:
        return "".join(self.keys)


WedgeEvent = ScanEvent | PassThrough


class WedgeCapture:
    def __init__(self, *, max_interkey_ms: float = 35.0, min_length: int = 6,
                 prefix: str = "", suffix: str = "\r", gs_substitute: str | None = None,
                 strict_gs: bool = True, source: str = "wedge") -> None:
        self.gap = max_interkey_ms / 1000.0
        self.min_length = min_length
        self.prefix = prefix
        self.suffix = suffix
        self.gs_substitute = gs_substitute
        self.strict_gs = strict_gs
        self.source = source
        self._keys: list[tuple[float, str]] = []

    @classmethod
    def from_config(cls, cfg: ScannerConfig) -> WedgeCapture:
        return cls(max_interkey_ms=cfg.max_interkey_ms, min_length=cfg.min_length,
                   prefix=cfg.prefix, suffix=cfg.suffix, gs_substitute=cfg.gs_substitute,
                   strict_gs=cfg.strict_gs)

    @property
    def holding(self) -> bool:
        return bool(self._keys)

    def deadline(self) -> float | None:
        """When :meth:`poll` must be called if no other key arrives."""
        return self._keys[-1][0] + self.gap if self._keys else None

    def _is_suffix(self, text: str) -> bool:
        if not self.suffix:
            return False
        if self.suffix in ("\r", "\n"):  # Enter arrives as CR or LF depending on platform
            return text.endswith(("\r", "\n"))
        return text.endswith(self.suffix)

    def _burst(self) -> tuple[bool, str]:
        """(fast, text) of the held keys."""
        times = [t for t, _ in self._keys]
        fast = all(b - a <= self.gap for a, b in itertools.pairwise(times))
        return fast, "".join(k for _, k in self._keys)

    def _release(self) -> list[WedgeEvent]:
        keys = tuple(k for _, k in self._keys)
        self._keys = []
        return [PassThrough(keys)] if keys else []

    def _scan(self, text: str) -> list[WedgeEvent]:
        at = self._keys[0][0]
        self._keys = []
        body = text[len(self.prefix):]
        return [scan_event(self.source, body, at, gs_substitute=self.gs_substitute,
                           strict_gs=self.strict_gs)]

    def _looks_like_scan(self, fast: bool, text: str, body_len: int) -> bool:
        return fast and text.startswith(self.prefix) and body_len >= self.min_length

    def _timeout(self) -> list[WedgeEvent]:
        fast, text = self._burst()
        body_len = len(text) - len(self.prefix)
        if not self.suffix and self._looks_like_scan(fast, text, body_len):
            return self._scan(text)
        return self._release()

    def feed(self, t: float, key: str) -> list[WedgeEvent]:
        """One key press with its text ("" for modifiers, which are ignored)."""
        if not key:
            return []
        out: list[WedgeEvent] = []
        if self._keys and t - self._keys[-1][0] > self.gap:
            out += self._timeout()
        self._keys.append((t, key))
        fast, text = self._burst()
        if self._is_suffix(text):
            stripped = (text[:-1] if self.suffix in ("\r", "\n")
                        else text[: -len(self.suffix)])
            if self._looks_like_scan(fast, text, len(stripped) - len(self.prefix)):
                return out + self._scan(stripped)
            return out + self._release()
        if len(self._keys) > MAX_BUFFER:
            out += self._release()
        return out

    def poll(self, t: float) -> list[WedgeEvent]:
        """Call when :meth:`deadline` has passed: releases or completes the held keys."""
        if self._keys and t - self._keys[-1][0] > self.gap:
            return self._timeout()
        return []

    def flush(self) -> list[WedgeEvent]:
        """Give back whatever is held (focus change, window closing)."""
        return self._release()
