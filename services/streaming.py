"""Hands a provider's reply stream from a reader thread to the thread that renders it, coalesced.

Why a thread: Streamlit re-sends the whole accumulated text for every chunk `st.write_stream` renders
(4.1 MB of websocket traffic measured for a 2,000-chunk reply), so chunks must be batched; but batching
on the rendering thread alone would hold a chunk back until the *next* one arrives, which can be seconds
when the model pauses. A reader thread that appends to a buffer lets the consumer take whatever has
arrived, at most once per interval, without ever waiting for more than "something" or "done".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from services.providers import ReplyStream

log = logging.getLogger(__name__)


class Pump:
    """Reads the provider stream on a helper thread and hands over everything received since the last
    hand-over. This is what coalesces: the page renders at most once per interval however small the
    provider's chunks are, and a chunk never waits for the *next* one to arrive before it is shown."""

    def __init__(self, chunks: Iterator[str], stream: ReplyStream) -> None:
        self._chunks = chunks
        self._stream = stream
        self._cond = threading.Condition()
        self._buf: list[str] = []
        self._done = False
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, name="chat-reply", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for chunk in self._chunks:
                if not chunk:
                    continue
                with self._cond:
                    if self._closed:
                        return
                    self._buf.append(chunk)
                    if len(self._buf) == 1:  # the consumer only ever waits for "something" or "done"
                        self._cond.notify()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            with self._cond:
                self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify()

    def batches(self, interval_s: float, first_shown_at: float) -> Iterator[str]:
        """Joined text at most once per `interval_s` (counted from `first_shown_at`); re-raises, on the
        consumer's thread, whatever ended the reader's stream."""
        next_at = first_shown_at + interval_s
        while True:
            with self._cond:
                while not self._buf and not self._done:
                    self._cond.wait()
                while not self._done and (wait := next_at - time.monotonic()) > 0:
                    self._cond.wait(wait)
                text = "".join(self._buf)
                self._buf.clear()
                done, error = self._done, self._error
            if text:
                yield text
                next_at = time.monotonic() + interval_s
            if done:
                if error is not None:
                    raise error
                return

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._buf.clear()
        # From this thread while the helper may be blocked reading: closing the response unblocks it.
        close_quietly(self._stream)


def close_quietly(stream: ReplyStream) -> None:
    try:
        stream.close()
    except Exception:  # noqa: BLE001 - closing a broken stream can fail; there is nothing left to save
        log.debug("closing the provider stream failed", exc_info=True)
