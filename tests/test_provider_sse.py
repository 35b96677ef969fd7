"""services/providers/sse.py, the event-stream decoder the OpenAI provider reads chunks with: generated
streams in every line-ending style, cut into arbitrary reads, give back exactly the data that was sent; and
the provider, reading the wire server through it, keeps every reply and fault as the SDK's own stream did."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.wire_servers import Script, WireServer
from services.providers import ProviderError, Turn, Usage
from services.providers.openai_chat import OpenAIProvider
from services.providers.sse import sse_data

# A line's text: no CR or LF (those end lines), anything else, including ":" and non-ASCII.
LINE = st.text(st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]), max_size=12)
OTHER_LINE = st.one_of(
    LINE.map(lambda t: ":" + t),  # a comment
    LINE.map(lambda t: "event: " + t),
    LINE.map(lambda t: "id:" + t),
    st.just("retry: 10"),
)
# One event: its data lines (maybe none), with other lines mixed in anywhere.
EVENT = st.tuples(st.lists(LINE, max_size=3), st.lists(OTHER_LINE, max_size=2), st.booleans(), st.booleans())


def _render(events: list[tuple[list[str], list[str], bool, bool]], eol: str) -> tuple[bytes, list[str]]:
    """The stream's bytes, and the data an event-stream reader must hand over (events with data only)."""
    out: list[str] = []
    expected: list[str] = []
    for data, others, others_first, no_space in events:
        lines = [("data:" if no_space else "data: ") + d for d in data]
        lines = others + lines if others_first else lines + others
        out.extend(line + eol for line in lines)
        out.append(eol)  # the blank line that ends the event
        if data:
            # Without the space after the colon, a value's own leading space is the one the reader drops.
            sent = [d[1:] if no_space and d.startswith(" ") else d for d in data]
            expected.append("\n".join(sent))
    return "".join(out).encode(), expected


def _cut(body: bytes, cuts: list[int]) -> Iterator[bytes]:
    edges = sorted({min(c, len(body)) for c in cuts} | {0, len(body)})
    return (body[a:b] for a, b in zip(edges, edges[1:], strict=False))


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(EVENT, max_size=6),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
def test_every_event_comes_back_whole_however_the_reads_fall(
    events: list[tuple[list[str], list[str], bool, bool]], eol: str, cuts: list[int]
) -> None:
    body, expected = _render(events, eol)
    assert list(sse_data(_cut(body, cuts))) == expected


def test_a_crlf_split_between_two_reads_is_one_line_end() -> None:
    # "data: a\r" | "\ndata: b\r\n\r\n" is one event with two data lines, not two events.
    assert list(sse_data([b"data: a\r", b"\ndata: b\r\n\r\n"])) == ["a\nb"]
    # ...while a CR that the body ends with still ends its line (and so the event).
    assert list(sse_data([b"data: a\r\r"])) == ["a"]
    assert list(sse_data([b"data: a\r", b"\r"])) == ["a"]


def test_an_event_the_body_ends_inside_is_not_handed_over() -> None:
    assert list(sse_data([b"data: one\n\n", b"data: two\n"])) == ["one"]
    assert list(sse_data([b"data: one\n\ndata: tw"])) == ["one"]


def test_a_character_split_between_reads_arrives_whole() -> None:
    body = 'data: {"content": "naïve 💬"}\n\n'.encode()
    assert list(sse_data([body[:22], body[22:25], body[25:]])) == ['{"content": "naïve 💬"}']


def test_text_that_is_not_utf8_is_an_error() -> None:
    with pytest.raises(UnicodeDecodeError):
        list(sse_data([b"data: \xff\xfe\n\n"]))


# --- the provider reading the wire server through it ---------------------------------------------------


@pytest.fixture(scope="module")
def wire() -> Iterator[WireServer]:
    with WireServer("openai") as server:
        yield server


def _provider(wire: WireServer, timeout_s: float = 2.0) -> OpenAIProvider:
    return OpenAIProvider(api_key="sk-test", base_url=wire.base_url, timeout_s=timeout_s)


def test_a_long_reply_arrives_whole_in_order_with_its_usage(wire: WireServer) -> None:
    chunks = [f"w{i} " for i in range(300)] + ["naïve 💬", "\n\n", 'quote " and \\ backslash']
    wire.queue(Script(chunks=chunks, usage=(5, 303)))
    reply = _provider(wire).stream("m", [Turn("user", "hi")], max_tokens=500)
    assert list(reply) == chunks
    assert reply.usage == Usage(5, 303)


def test_the_response_is_released_when_the_reply_ends_early(wire: WireServer) -> None:
    # Closing after the first chunk hangs up on the server (the next request still works).
    wire.queue(Script(chunks=["a", "b", "c"], chunk_delay_s=0.5))
    reply = _provider(wire).stream("m", [Turn("user", "hi")], max_tokens=5)
    stream = iter(reply)
    assert next(stream) == "a"
    reply.close()
    with pytest.raises(ProviderError):
        next(stream)
    wire.queue(Script(chunks=["again"]))
    assert list(_provider(wire).stream("m", [Turn("user", "hi")], max_tokens=5)) == ["again"]
