"""The data of server-sent events from a streamed HTTP body, decoded without building an object per event.

Why not the SDK's own decoder: the openai SDK turns every event into a `ServerSentEvent` line by line and
then into a pydantic chunk model; with 50 streams of 100 chunks a second (bench/load.py) that was most of
the app process's CPU, on one core. This keeps to the event-stream rules that chat streams use
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation): lines end
with CRLF, LF or CR; `data:` lines (one leading space dropped) are joined with LF and handed over at the
blank line that ends the event; comments and other fields are skipped; an event without data is not
dispatched, nor is one the body ends before its blank line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def sse_data(chunks: Iterable[bytes]) -> Iterator[str]:
    """Each event's data, as UTF-8 text (UnicodeDecodeError for a body that is not), as the events end."""
    pending = b""  # the start of a line that has not ended yet
    data: list[bytes] = []
    for chunk in chunks:
        if not chunk:
            continue
        block = pending + chunk if pending else chunk
        held = b""
        if b"\r" in block:
            # A CR at the very end may be the first half of a CRLF split across reads: decide next time.
            if block.endswith(b"\r"):
                block, held = block[:-1], b"\r"
            block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = block.rfind(b"\n")
        if end < 0:
            pending = block + held
            continue
        pending = block[end + 1 :] + held
        yield from _events(block[:end], data)
    if pending.endswith(b"\r"):  # the body ended right after a CR: that was a line end
        yield from _events(pending[:-1].replace(b"\r\n", b"\n").replace(b"\r", b"\n"), data)


def _events(lines: bytes, data: list[bytes]) -> Iterator[str]:
    """The events that the complete LF-separated `lines` end; `data` carries an open event's lines over."""
    for line in lines.split(b"\n"):
        if not line:
            if data:
                yield b"\n".join(data).decode()
                data.clear()
        elif line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
        elif line == b"data":
            data.append(b"")
