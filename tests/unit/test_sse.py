"""gateway.providers.sse.SSEParser: incremental event-stream parsing in arbitrary pieces."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import UpstreamResponseTooLarge
from gateway.providers.base import SSEEvent
from gateway.providers.sse import SSEParser
from tests.unit.fixtures import FIXTURES, random_pieces


def parse_pieces(pieces: list[bytes], *, close: bool = True) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for piece in pieces:
        events.extend(parser.feed(piece))
    if close:
        events.extend(parser.close())
    return events


def parse_whole(raw: bytes, *, close: bool = True) -> list[SSEEvent]:
    return parse_pieces([raw], close=close)


def every_split(raw: bytes) -> list[list[bytes]]:
    """``raw`` in two pieces at every position, plus one byte at a time."""
    splits = [[raw[:i], raw[i:]] for i in range(len(raw) + 1)]
    splits.append([raw[i : i + 1] for i in range(len(raw))])
    return splits


# --- line endings ----------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_line_endings(eol: bytes) -> None:
    raw = b"data: one" + eol + eol + b"event: ping" + eol + b"data: two" + eol + eol
    expected = [SSEEvent("one"), SSEEvent("two", "ping")]
    assert parse_whole(raw) == expected
    if eol != b"\r":
        assert parse_whole(raw, close=False) == expected
    else:
        # A final lone "\r" may be half of "\r\n", so the last event waits for
        # the next byte (or close()).
        assert parse_whole(raw, close=False) == expected[:1]


def test_mixed_line_endings() -> None:
    raw = b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\rdata: e\n\n"
    assert parse_whole(raw) == [SSEEvent("a\nb\nc"), SSEEvent("d"), SSEEvent("e")]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_every_split_gives_identical_events(eol: bytes) -> None:
    raw = (
        b": comment" + eol
        + b"event: first" + eol
        + b"data: {\"a\": 1}" + eol
        + eol
        + b"data:x" + eol
        + b"data:  two spaces" + eol
        + eol
        + b"data: caf\xc3\xa9 \xe2\x82\xac" + eol
        + eol
    )  # fmt: skip
    expected = [SSEEvent('{"a": 1}', "first"), SSEEvent("x\n two spaces"), SSEEvent("caf\u00e9 \u20ac")]
    assert parse_whole(raw) == expected
    for pieces in every_split(raw):
        assert parse_pieces(pieces) == expected, pieces


def test_cr_at_chunk_boundary_followed_by_lf_is_one_line_ending() -> None:
    # If "\r" | "\n" were two line endings, the second would be a blank line and
    # dispatch "a" early, and "b" would become a separate event.
    assert parse_pieces([b"data: a\r", b"\ndata: b\r\n\r\n"]) == [SSEEvent("a\nb")]
    assert parse_pieces([b"data: a\r", b"\n", b"data: b\r", b"\n\r", b"\n"]) == [SSEEvent("a\nb")]


def test_cr_at_chunk_boundary_followed_by_other_byte() -> None:
    assert parse_pieces([b"data: a\r", b"data: b\r", b"\r"]) == [SSEEvent("a\nb")]


def test_lone_cr_at_end_then_close() -> None:
    assert parse_pieces([b"data: a\r"]) == [SSEEvent("a")]


def test_gemini_style_crlf_crlf_separated_events() -> None:
    raw = b'data: {"n":1}\r\n\r\ndata: {"n":2}\r\n\r\n'
    expected = [SSEEvent('{"n":1}'), SSEEvent('{"n":2}')]
    for pieces in every_split(raw):
        assert parse_pieces(pieces, close=False) == expected


# --- fields -----------------------------------------------------------------------


def test_multi_line_data_joined_with_newline() -> None:
    raw = b"data: line one\ndata: line two\ndata:\ndata: four\n\n"
    assert parse_whole(raw) == [SSEEvent("line one\nline two\n\nfour")]


def test_event_names() -> None:
    raw = b"event: message_start\ndata: {}\n\nevent:content_block_delta\ndata: {}\n\ndata: plain\n\n"
    assert parse_whole(raw) == [
        SSEEvent("{}", "message_start"),
        SSEEvent("{}", "content_block_delta"),
        SSEEvent("plain", "message"),
    ]


def test_event_name_resets_after_dispatch() -> None:
    raw = b"event: error\ndata: x\n\ndata: y\n\n"
    assert parse_whole(raw) == [SSEEvent("x", "error"), SSEEvent("y", "message")]


def test_comments_ignored() -> None:
    raw = b": keep-alive\n\n:another\ndata: real\n: inside\n\n: OPENROUTER PROCESSING\n\n"
    assert parse_whole(raw) == [SSEEvent("real")]


def test_data_without_space() -> None:
    assert parse_whole(b"data:{}\n\n") == [SSEEvent("{}")]


def test_only_one_leading_space_removed() -> None:
    assert parse_whole(b"data:  x \n\n") == [SSEEvent(" x ")]


def test_unknown_fields_ignored() -> None:
    raw = b"id: 7\nretry: 1000\nfoo: bar\ndata: d\n\n"
    assert parse_whole(raw) == [SSEEvent("d")]


def test_field_without_colon() -> None:
    # "data" alone is the data field with an empty value
    assert parse_whole(b"data\ndata: x\n\n") == [SSEEvent("\nx")]


def test_blank_lines_without_data_dispatch_nothing() -> None:
    assert parse_whole(b"\n\n\n\nevent: ping\n\n") == []


def test_data_containing_colons() -> None:
    assert parse_whole(b'data: {"url": "http://x:1"}\n\n') == [SSEEvent('{"url": "http://x:1"}')]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert parse_whole(b"data: a\xffb\n\n") == [SSEEvent("a\ufffdb")]


def test_multibyte_character_split_across_chunks() -> None:
    raw = "data: \u65e5\u672c\u8a9e\n\n".encode()
    for pieces in every_split(raw):
        assert parse_pieces(pieces) == [SSEEvent("\u65e5\u672c\u8a9e")]


# --- close ------------------------------------------------------------------------


def test_close_delivers_final_event_without_trailing_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: first\n\ndata: last") == [SSEEvent("first")]
    assert parser.close() == [SSEEvent("last")]


def test_close_delivers_final_event_with_single_newline() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: end\ndata: last\n") == []
    assert parser.close() == [SSEEvent("last", "end")]


def test_close_with_nothing_pending() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: x\n\n") == [SSEEvent("x")]
    assert parser.close() == []
    assert SSEParser().close() == []


def test_events_returned_as_soon_as_complete() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\n") == []
    assert parser.feed(b"\n") == [SSEEvent("a")]
    assert parser.feed(b"data: b\n\ndata: c\n\ndata: d") == [SSEEvent("b"), SSEEvent("c")]
    assert parser.close() == [SSEEvent("d")]


# --- recorded streams --------------------------------------------------------------


def recorded_streams() -> list[Path]:
    return sorted(FIXTURES.glob("*/*.sse"))


def test_recorded_streams_found() -> None:
    names = {p.name for p in recorded_streams()}
    assert "chat_stream_text_include_usage.sse" in names
    assert "stream_text_three_chunks.sse" in names  # Gemini, CRLF separated


@pytest.mark.parametrize("path", recorded_streams(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recorded_streams_parse_identically_in_random_pieces(path: Path) -> None:
    raw = path.read_bytes()
    whole = parse_whole(raw)
    assert whole, "no events parsed"
    assert all(e.data for e in whole)
    for seed in range(25):
        assert parse_pieces(random_pieces(raw, seed)) == whole
    assert parse_pieces([raw[i : i + 1] for i in range(len(raw))]) == whole


def test_recorded_openai_stream_event_count() -> None:
    events = parse_whole((FIXTURES / "openai" / "chat_stream_tool_call_include_usage.sse").read_bytes())
    assert len(events) == 9
    assert events[-1] == SSEEvent("[DONE]")
    assert all(e.event == "message" for e in events)


def test_recorded_gemini_crlf_stream_has_no_stray_cr() -> None:
    events = parse_whole((FIXTURES / "gemini" / "stream_text_three_chunks.sse").read_bytes())
    assert len(events) >= 3
    assert all("\r" not in e.data for e in events)
    assert all(e.data.startswith("{") and e.data.endswith("}") for e in events)


# --- linear work and bounded memory ---------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_work_is_linear_in_the_input_fed_one_byte_at_a_time(eol: bytes) -> None:
    """``copied`` counts the bytes moved into and out of the unfinished line: at most
    twice the input whatever its size (re-joining the buffer on every piece would
    grow with the square of the line)."""
    for size in (1_000, 10_000, 100_000):
        raw = b"data: " + b"x" * size + eol + eol
        parser = SSEParser()
        events: list[SSEEvent] = []
        for i in range(len(raw)):
            events.extend(parser.feed(raw[i : i + 1]))
        assert events == [SSEEvent("x" * size)]
        assert parser.copied <= 2 * len(raw), (size, parser.copied)


def test_work_is_linear_for_many_short_lines_in_pieces() -> None:
    raw = b"".join(b"data: %d\n\n" % i for i in range(5_000))
    parser = SSEParser()
    events = [e for i in range(0, len(raw), 7) for e in parser.feed(raw[i : i + 7])]
    assert [e.data for e in events] == [str(i) for i in range(5_000)]
    assert parser.copied <= 2 * len(raw)


@pytest.mark.parametrize("piece", [1, 1000, 1 << 20], ids=["1B", "1KB", "whole"])
def test_a_line_over_the_cap_is_refused_before_it_ends(piece: int) -> None:
    parser = SSEParser(max_line_bytes=4096)
    raw = b"data: " + b"x" * 10_000  # never ends
    with pytest.raises(UpstreamResponseTooLarge) as exc:
        for i in range(0, len(raw), piece):
            parser.feed(raw[i : i + piece])
    assert exc.value.reason == "max_sse_line_bytes" and exc.value.code == "upstream_response_too_large"
    assert "upstream.max_sse_line_bytes (4096)" in exc.value.message
    assert i < 4096 + piece, "refused as soon as the cap was passed"


def test_a_complete_line_over_the_cap_is_refused_too() -> None:
    with pytest.raises(UpstreamResponseTooLarge):
        SSEParser(max_line_bytes=100).feed(b"data: " + b"x" * 200 + b"\n\n")
    assert SSEParser(max_line_bytes=100).feed(b"data: " + b"x" * 94 + b"\n\n") == [SSEEvent("x" * 94)]


def test_an_event_over_the_cap_is_refused_line_by_line() -> None:
    parser = SSEParser(max_line_bytes=100, max_event_bytes=1000)
    line = b"data: " + b"y" * 90 + b"\n"
    assert parser.feed(line * 10) == []
    with pytest.raises(UpstreamResponseTooLarge) as exc:
        parser.feed(line * 2)
    assert exc.value.reason == "max_sse_event_bytes"
    # the cap is per event: many events of 900 bytes pass
    events = SSEParser(max_line_bytes=100, max_event_bytes=1000).feed((line * 9 + b"\n") * 20)
    assert len(events) == 20
