"""The ESC/POS stream parser against python-escpos' own output (its recording Dummy)."""

from __future__ import annotations

from escpos.printer import Dummy
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.escpos_parse import Tokenizer, parse


def dummy() -> Dummy:
    d = Dummy(profile="TM-T88V")
    d.hw("INIT")
    return d


def test_text_style_qr_cut_kick_status() -> None:
    d = dummy()
    d.cashdraw(5)
    d.set(align="center", bold=True)
    d.textln("HEADER")
    d.set(align="left", bold=False)
    d.textln("plain line")
    d.set(double_height=True, double_width=True)
    d.textln("BIG")
    d.set(normal_textsize=True)
    d.qr("sale-42", native=True, size=4)
    d.barcode("5901234123457", "EAN13")
    d.cut(mode="PART")
    d.cashdraw(2)
    d._raw(b"\x10\x04\x01\x10\x04\x04")
    doc = parse(d.output, profile="TM-T88V")
    assert doc.texts == ["HEADER", "plain line", "BIG"]
    head = doc.line_with("HEADER")
    assert head.align == "center" and head.bold
    plain = doc.line_with("plain")
    assert plain.align == "left" and not plain.bold
    big = doc.line_with("BIG")
    assert (big.width, big.height) == (2, 2)
    assert doc.qr_codes == ["sale-42"] and doc.cuts == ["partial"] and doc.kicks == [5, 2]
    assert doc.barcodes and doc.barcodes[0][1].startswith("590123412345")
    assert doc.status_queries == [1, 4]
    assert doc.index_of("kick", 5) < doc.index_of("line") < doc.index_of("qr") < doc.index_of(
        "cut") < doc.index_of("kick", 2)
    assert doc.unknown == [] and doc.trailing == b""


def test_code_pages_decode_text() -> None:
    d = dummy()
    d.charcode("CP858")
    d.textln("Préçis €5")
    d2 = dummy()
    d2.textln("naïve 5µg")  # automatic code page switching
    assert parse(d.output, profile="TM-T88V").texts == ["Préçis €5"]
    assert parse(d2.output, profile="TM-T88V").texts == ["naïve 5µg"]


def test_full_cut_and_feed_and_images_are_skipped_by_length() -> None:
    data = (b"\x1b@abc\n\x1bd\x03\x1dv0\x00\x02\x00\x02\x00" + b"\xff" * 4 + b"def\n"
            + b"\x1dVA\x05" + b"\x1b*\x00\x03\x00\x01\x02\x03" + b"\x1dV\x00")
    doc = parse(data)
    assert doc.texts == ["abc", "def"]
    assert doc.cuts == ["full", "full"]
    assert ("feed", 3) in doc.events


def test_incremental_feed_matches_whole_stream() -> None:
    d = dummy()
    d.textln("line one")
    d.qr("0190f3c2-aaaa-7bbb-8ccc-1234567890ab", native=True)
    d._raw(b"\x10\x04\x01")
    d.cut()
    data = d.output
    whole = [t.raw for t in Tokenizer().feed(data)]
    for step in (1, 2, 3, 7):
        tok = Tokenizer()
        parts = []
        for i in range(0, len(data), step):
            parts += [t.raw for t in tok.feed(data[i:i + step])]
        assert tok.pending == b""
        merged_text = b"".join(parts)
        assert merged_text == b"".join(whole)
        assert [p for p in parts if p.startswith(b"\x10\x04")] == [b"\x10\x04\x01"]


def test_truncated_stream_keeps_the_tail() -> None:
    d = dummy()
    d.textln("x")
    d.qr("hello", native=True)
    data = d.output[:-3]
    doc = parse(data)
    assert doc.texts == ["x"] and doc.qr_codes == [] and doc.trailing


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_parse_without_error(data: bytes) -> None:
    doc = parse(data)
    assert isinstance(doc.text, str)
    tok = Tokenizer()
    raws = b"".join(t.raw for t in tok.feed(data))
    assert raws + tok.pending == data
