"""An incremental server-sent-events parser (the WHATWG event-stream rules).

Bytes arrive in arbitrary pieces; :meth:`SSEParser.feed` returns the events
completed so far. Lines may end in ``\\n``, ``\\r\\n`` or ``\\r`` (Gemini separates
events with ``\\r\\n\\r\\n``); ``data:`` lines of one event are joined with ``\\n``;
comment lines (``:``) and unknown fields are ignored.
"""

from __future__ import annotations

from gateway.providers.base import SSEEvent


class SSEParser:
    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._event = ""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            # A lone trailing \r may be the first half of \r\n: keep it for later.
            hold = buf.endswith(b"\r")
            if hold:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if hold:
                buf += b"\r"
        events: list[SSEEvent] = []
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = buf[start:nl]
            start = nl + 1
            if not line:
                if self._data:
                    events.append(SSEEvent("\n".join(self._data), self._event or "message"))
                self._data = []
                self._event = ""
                continue
            self._line(line)
        self._buf = buf[start:]
        return events

    def _line(self, line: bytes) -> None:
        if line[0] == 0x3A:  # ':' comment
            return
        field, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif field == b"event":
            self._event = value.decode("utf-8", "replace")

    def close(self) -> list[SSEEvent]:
        """End of stream: an event not closed by a blank line is still delivered
        (many servers omit the last blank line)."""
        events = self.feed(b"\n\n") if self._buf or self._data else []
        self._buf = b""
        return events
