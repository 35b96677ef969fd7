"""services/streaming.py's gathering reader (the HTTP API turns it on): after text has arrived it leaves the
provider's stream alone until the consumer's next hand-over nears, so chunks are read in gulps; a close
still stops it at once, and nothing is lost or reordered."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import cast

from api.streaming import GATHER_S, HANDOVER_S, StreamPool
from services.chat import Reply
from services.providers import Usage
from services.streaming import Pump


class GatedStream:
    """A provider stream: "a" at once, "b" once `gate_b` is set, then "c" (noting that it was asked for it)."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.gate_b = threading.Event()
        self.asked_for_c = threading.Event()
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[str]:
        yield "a"
        self.gate_b.wait(30)
        yield "b"
        self.asked_for_c.set()
        yield "c"

    def close(self) -> None:
        self.closed.set()


def _after_first_hand_over(gather: float | None) -> tuple[Pump, GatedStream, threading.Thread]:
    stream = GatedStream()
    pump = Pump(lambda: stream, gather or 0.0)
    batches = pump.batches(lambda: 30.0, 0.01)  # the next hand-over is 30 s after the first
    assert next(batches) == "a"
    # The consumer goes on (it learns its next hand-over time by asking `interval` when it resumes).
    consumer = threading.Thread(target=lambda: list(batches), daemon=True)
    consumer.start()
    stream.gate_b.set()  # "b" arrives while the consumer waits for its next hand-over
    return pump, stream, consumer


def test_a_gathering_reader_does_not_read_on_until_the_hand_over_nears_and_a_close_stops_it() -> None:
    pump, stream, consumer = _after_first_hand_over(gather=30.0)
    # Read "b", then wait: "c" is not asked for while the hand-over is 30 s away. (A bounded look for
    # something that must not happen; without gathering it happens at once, as the next test shows.)
    assert not stream.asked_for_c.wait(0.5)
    pump.close()
    pump._thread.join(10)
    assert not pump._thread.is_alive()  # woken by the close, not by the end of its 30 s wait
    assert stream.closed.is_set() and not stream.asked_for_c.is_set()
    consumer.join(10)
    assert not consumer.is_alive()


def test_without_gathering_the_reader_reads_on_at_once() -> None:
    pump, stream, consumer = _after_first_hand_over(gather=None)
    assert stream.asked_for_c.wait(10)
    pump.close()
    consumer.join(10)


class SteadyStream:
    """Many chunks, each after a short pause, as a provider sends them."""

    def __init__(self, chunks: list[str], pause: threading.Event) -> None:
        self.usage: Usage | None = None
        self.chunks = chunks
        self.pause = pause

    def __iter__(self) -> Iterator[str]:
        for chunk in self.chunks:
            self.pause.wait(0.001)  # never set: a 1 ms gap between chunks
            yield chunk

    def close(self) -> None:
        pass


def test_a_gathering_reader_hands_over_every_chunk_in_order_and_the_end() -> None:
    chunks = [f"w{i} " for i in range(300)]
    pump = Pump(lambda: SteadyStream(chunks, threading.Event()), 0.02)
    got = list(pump.batches(lambda: 0.01, 0.05))
    assert "".join(got) == "".join(chunks)
    assert len([g for g in got if g]) < len(chunks)  # handed over in batches, as before


def test_the_api_pool_paces_its_replies_and_lets_their_readers_gather() -> None:
    class Started:
        def __init__(self) -> None:
            self.pace = lambda: 0.05  # the chat page's pace, which the API replaces
            self.gather_s = 0.0

        def __iter__(self) -> Iterator[str]:
            yield "x"

        def close(self) -> None:
            pass

    async def scenario() -> Started:
        pool = StreamPool(1)
        live = await pool.open(lambda: cast(Reply, Started()))
        assert "".join([c async for c in live.chunks()]) == "x"
        pool.shutdown()
        return cast(Started, live.reply)

    reply = asyncio.run(scenario())
    assert reply.pace() == HANDOVER_S and reply.gather_s == GATHER_S > 0
