"""An incremental server-sent-events parser (the WHATWG event-stream rules).

Bytes arrive in arbitrary pieces; :meth:`SSEParser.feed` returns the events
completed so far. Lines may end in ``\\n``, ``\\r\\n`` or ``\\r`` (Gemini separates
events with ``\\r\\n\\r\\n``); ``data:`` lines of one event are joined with ``\\n``;
comment lines (``:``) and unknown fields are ignored.

Parsing is linear in the input: each piece is scanned once, and only the one
unfinished line is kept between pieces (a list of its parts, joined once when
the line ends), so a stream fed one byte at a time costs what it costs whole.
Memory is bounded: a line longer than ``max_line_bytes`` or an event whose data
passes ``max_event_bytes`` raises :class:`UpstreamResponseTooLarge` at once,
before the rest of it is read.
"""

from __future__ import annotations

from gateway.config.upstream import SSE_EVENT_BYTES, SSE_LINE_BYTES
from gateway.errors import UpstreamResponseTooLarge
from gateway.providers.base import SSEEvent


class SSEParser:
    __slots__ = (
        "_cr",
        "_data",
        "_data_bytes",
        "_event",
        "_max_event",
        "_max_line",
        "_partial",
        "_partial_bytes",
        "copied",
    )

    def __init__(
        self,
        *,
        max_line_bytes: int = SSE_LINE_BYTES,
        max_event_bytes: int = SSE_EVENT_BYTES,
    ) -> None:
        self._max_line = max_line_bytes
        self._max_event = max_event_bytes
        self._partial: list[bytes] = []
        """The parts of the line not yet ended."""
        self._partial_bytes = 0
        self._cr = False
        """The last piece ended in ``\\r``, held back: it ends a line, together with a
        ``\\n`` opening the next piece if there is one."""
        self._data: list[str] = []
        self._data_bytes = 0
        self._event = ""
        self.copied = 0
        """Bytes copied into unfinished lines and joined out of them: the parser's
        only work beyond one scan of each piece (at most twice the input)."""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._cr:
            if not chunk:
                return []
            self._cr = False
            chunk = b"\n" + (chunk[1:] if chunk[:1] == b"\n" else chunk)
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):  # may be the first half of \r\n: kept for the next piece
                self._cr = True
                chunk = chunk[:-1]
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if not lines:
            if tail:
                self._hold(tail)
            return []
        if self._partial:
            self._hold(lines[0])  # the cap holds for the line as a whole
            lines[0] = b"".join(self._partial)
            self.copied += len(lines[0])
            self._partial = []
            self._partial_bytes = 0
        if len(chunk) > self._max_line and any(len(line) > self._max_line for line in lines):
            raise self._line_too_long()
        events: list[SSEEvent] = []
        for line in lines:
            if line:
                self._line(line)
            elif self._data:
                events.append(SSEEvent("\n".join(self._data), self._event or "message"))
                self._data = []
                self._data_bytes = 0
                self._event = ""
            else:
                self._event = ""
        if tail:
            self._hold(tail)
        return events

    def _hold(self, part: bytes) -> None:
        self._partial_bytes += len(part)
        if self._partial_bytes > self._max_line:
            raise self._line_too_long()
        self._partial.append(part)
        self.copied += len(part)

    def _line_too_long(self) -> UpstreamResponseTooLarge:
        return UpstreamResponseTooLarge(
            f"an upstream event-stream line passed upstream.max_sse_line_bytes ({self._max_line}); "
            "the stream was not read further",
            limit="max_sse_line_bytes",
        )

    def _line(self, line: bytes) -> None:
        if line[0] == 0x3A:  # ':' comment
            return
        field, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            self._data_bytes += len(value) + 1
            if self._data_bytes > self._max_event:
                raise UpstreamResponseTooLarge(
                    f"an upstream event's data passed upstream.max_sse_event_bytes ({self._max_event}); "
                    "the stream was not read further",
                    limit="max_sse_event_bytes",
                )
            self._data.append(value.decode("utf-8", "replace"))
        elif field == b"event":
            self._event = value.decode("utf-8", "replace")

    def close(self) -> list[SSEEvent]:
        """End of stream: an event not closed by a blank line is still delivered
        (many servers omit the last blank line)."""
        events = self.feed(b"\n\n") if self._partial or self._data or self._cr else []
        self._partial = []
        self._partial_bytes = 0
        self._cr = False
        return events
