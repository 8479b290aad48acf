"""Keyboard-wedge capture with simulated key events at scanner and at human speeds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.config import ScannerConfig
from hardware.scans import ScanEvent
from hardware.wedge import PassThrough, WedgeCapture, WedgeEvent
from pharmacy.gs1 import GS

IBU_GTIN = "00309046728603"
DSCSA = f"01{IBU_GTIN}17271200" + f"10IB2701{GS}21SN000123"


def type_keys(cap: WedgeCapture, text: str, *, start: float, ms: float) -> list[WedgeEvent]:
    out: list[WedgeEvent] = []
    t = start
    for ch in text:
        out += cap.feed(t, ch)
        t += ms / 1000
    return out


def settle(cap: WedgeCapture, events: list[WedgeEvent], t: float) -> list[WedgeEvent]:
    """Run the GUI's single-shot timer: poll once the deadline has passed."""
    d = cap.deadline()
    if d is not None:
        events += cap.poll(max(t, d) + 0.001)
    return events


def scans(events: list[WedgeEvent]) -> list[ScanEvent]:
    return [e for e in events if isinstance(e, ScanEvent)]


def typed(events: list[WedgeEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, PassThrough))


def test_scanner_speed_burst_is_a_scan_and_enter_is_swallowed() -> None:
    cap = WedgeCapture()
    events = type_keys(cap, DSCSA + "\r", start=10.0, ms=4)
    assert not cap.holding and typed(events) == ""
    [scan] = scans(events)
    assert scan.ok and scan.data is not None
    assert (scan.data.gtin, scan.data.lot, scan.data.serial) == (IBU_GTIN, "IB2701", "SN000123")
    assert scan.at == 10.0 and scan.source == "wedge"


def test_human_speed_typing_passes_through_in_order() -> None:
    cap = WedgeCapture()
    events = type_keys(cap, "ibuprofen\r", start=0.0, ms=90)
    events = settle(cap, events, 1.0)
    assert scans(events) == []
    assert typed(events) == "ibuprofen\r"


def test_fast_typist_short_burst_is_not_a_scan() -> None:
    cap = WedgeCapture(min_length=6)
    events = type_keys(cap, "12\r", start=0.0, ms=20)  # two quick digits and Enter
    assert scans(events) == [] and typed(events) == "12\r"


def test_human_then_scan_then_human() -> None:
    cap = WedgeCapture()
    events = type_keys(cap, "qty 2 ", start=0.0, ms=120)
    events += type_keys(cap, DSCSA + "\n", start=1.0, ms=8)  # LF suffix also ends a scan
    events += type_keys(cap, "ok", start=2.0, ms=150)
    events = settle(cap, events, 3.0)
    assert typed(events) == "qty 2 ok"
    assert [s.data.lot for s in scans(events) if s.data] == ["IB2701"]


def test_scan_that_slows_down_in_the_middle_is_released_not_parsed() -> None:
    cap = WedgeCapture(max_interkey_ms=35)
    events = type_keys(cap, DSCSA[:10], start=0.0, ms=5)
    events += type_keys(cap, DSCSA[10:] + "\r", start=0.2, ms=5)  # a 150 ms hiccup
    events = settle(cap, events, 1.0)
    assert typed(events) == DSCSA[:10]  # handed back as typing, nothing lost
    [rest] = scans(events)  # the fast remainder is a scan that does not parse
    assert rest.error is not None and rest.text == DSCSA[10:]


def test_lost_gs_from_the_wedge_is_an_error_event_not_typing() -> None:
    cap = WedgeCapture()
    events = type_keys(cap, DSCSA.replace(GS, "") + "\r", start=0.0, ms=3)
    [scan] = scans(events)
    assert scan.error is not None and scan.error.code == "SCAN_MISSING_GS"
    assert typed(events) == ""


def test_gs_substitute_and_prefix_from_config() -> None:
    cfg = ScannerConfig(prefix="$", suffix="\t", gs_substitute="~", max_interkey_ms=20,
                        min_length=8)
    cap = WedgeCapture.from_config(cfg)
    events = type_keys(cap, "$" + DSCSA.replace(GS, "~") + "\t", start=0.0, ms=2)
    [scan] = scans(events)
    assert scan.data is not None and scan.data.serial == "SN000123"
    # a fast burst without the prefix is typing (e.g. a barcode meant for a text field)
    events = type_keys(cap, "ABCDEFGHIJ\t", start=5.0, ms=2)
    assert scans(events) == [] and typed(events) == "ABCDEFGHIJ\t"


def test_no_suffix_scanner_ends_on_the_pause() -> None:
    cap = WedgeCapture(suffix="")
    events = type_keys(cap, IBU_GTIN, start=0.0, ms=5)
    assert events == [] and cap.holding
    deadline = cap.deadline()
    assert deadline is not None
    assert cap.poll(deadline - 0.01) == []
    [scan] = scans(cap.poll(deadline + 0.001))
    assert scan.data is not None and scan.data.gtin == IBU_GTIN


def test_modifier_keys_are_ignored_and_flush_returns_held_keys() -> None:
    cap = WedgeCapture()
    assert cap.feed(0.0, "") == []
    cap.feed(0.0, "a")
    assert cap.holding
    assert typed(cap.flush()) == "a" and not cap.holding


def test_auto_repeat_without_enter_is_released() -> None:
    cap = WedgeCapture()
    events = type_keys(cap, "x" * 600, start=0.0, ms=30)  # a held key at 30 ms repeat
    events = settle(cap, events, 100.0)
    assert scans(events) == [] and typed(events) == "x" * 600


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(min_value=0.0005, max_value=0.3),
                          st.sampled_from(list("0123456789ABab~\r\n\t" + GS))), max_size=80))
def test_no_key_is_ever_lost_or_duplicated(keys: list[tuple[float, str]]) -> None:
    cap = WedgeCapture()
    events: list[WedgeEvent] = []
    t = 0.0
    for gap, k in keys:
        t += gap
        events += cap.feed(t, k)
    events = settle(cap, events, t + 1)
    rebuilt = ""
    for e in events:
        if isinstance(e, PassThrough):
            rebuilt += e.text
        else:
            rebuilt += e.text + "\r"  # a scan swallowed its body and one Enter
    assert len(rebuilt) == len(keys)
