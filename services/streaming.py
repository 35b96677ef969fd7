"""Hands a provider's reply stream from a reader thread to the thread that renders it, coalesced.

Why a thread: Streamlit re-sends an element's whole text every time it is rendered, so chunks must be
batched; but batching on the rendering thread alone would hold a chunk back until the *next* one arrives,
which can be seconds when the model pauses. And a rendering thread blocked on the provider (opening the
request, or waiting for a chunk) never calls into Streamlit, so it never notices a stop. The reader thread
opens the request and appends to a buffer; the consumer takes whatever has arrived with *timed* waits, so
it wakes at least every `tick_s` even while the provider is silent (to checkpoint, to notice a stop or a
revocation, to hang up).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator

from services.providers import ReplyStream

log = logging.getLogger(__name__)

# How long before the consumer's next hand-over a gathering reader reads again (see Pump).
_GATHER_MARGIN_S = 0.01


class Pump:
    """Opens the provider stream and reads it on a helper thread; `batches` hands over everything received
    since the last hand-over (at most once per interval), or "" when a tick passes with nothing new.

    `gather_s` (off by default; may be changed while it runs): once text waits for a later hand-over, the reader
    leaves the connection alone for up to that long (until just before the hand-over), so the chunks that
    arrive meanwhile are read in one go. A provider sends a chunk every few milliseconds, and each read
    costs the process a wake-up, system calls and a turn at the GIL; with 50 replies at once (the HTTP API
    under bench/load.py) that was much of its work. The price: the provider's last chunk may wait up to
    that much longer."""

    def __init__(self, open_stream: Callable[[], ReplyStream], gather_s: float = 0.0) -> None:
        self._open = open_stream
        self.gather_s = gather_s
        self._cond = threading.Condition()
        self._buf: list[str] = []
        self._done = False
        self._closed = False
        self._error: BaseException | None = None
        self._next_at = 0.0  # time.monotonic() of the consumer's next hand-over, once it has had text
        self.stream: ReplyStream | None = None  # set once the request is open
        # In a copy of the caller's context, so the provider's log lines carry the turn's request id.
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._read,), name="chat-reply", daemon=True
        )
        self._thread.start()

    def _read(self) -> None:
        try:
            stream = self._open()
            with self._cond:
                self.stream = stream
                closed = self._closed
                self._cond.notify_all()  # wait_open()
            if closed:  # stopped while the request was being opened: hang up now
                close_quietly(stream)
                return
            for chunk in stream:
                if not chunk:
                    continue
                with self._cond:
                    if self._closed:
                        return
                    self._buf.append(chunk)
                    if len(self._buf) == 1:  # the consumer only ever waits for "something" or "done"
                        self._cond.notify()
                    if self.gather_s > 0:
                        # Wake a little before the hand-over, so what arrived meanwhile still goes with it.
                        until = min(time.monotonic() + self.gather_s, self._next_at - _GATHER_MARGIN_S)
                        while not self._closed and (wait := until - time.monotonic()) > 0:
                            self._cond.wait(wait)
                        if self._closed:
                            return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            with self._cond:
                self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify()

    def wait_open(self, timeout_s: float) -> bool:
        """Wait at most `timeout_s` for the provider request to be open (or to have ended); True if open.
        Waiting on the condition releases the GIL, so the helper thread can build and send the request
        instead of waiting for the caller's next switch interval."""
        with self._cond:
            self._cond.wait_for(lambda: self.stream is not None or self._done, timeout_s)
            return self.stream is not None

    def batches(self, interval: Callable[[], float], tick_s: float) -> Iterator[str]:
        """Joined text, the first piece as soon as it arrives and later ones at most once per `interval()`
        seconds (asked after each hand-over, so the caller can pace by what it renders); "" whenever
        `tick_s` passes with nothing to hand over. Re-raises, on the consumer's thread, whatever ended the
        reader's stream. The interval counts from the hand-over, so the time the consumer spends on it
        (drawing, a checkpoint) does not stretch the gap between two updates the user sees."""
        next_at = time.monotonic()
        while True:
            woke_at = time.monotonic() + tick_s
            with self._cond:
                while not self._buf and not self._done and (wait := woke_at - time.monotonic()) > 0:
                    self._cond.wait(wait)
                while self._buf and not self._done and (wait := min(next_at, woke_at) - time.monotonic()) > 0:
                    self._cond.wait(wait)
                ready = self._done or time.monotonic() >= next_at
                text = "".join(self._buf) if ready else ""
                if ready:
                    self._buf.clear()
                done, error = self._done, self._error
            handed_at = time.monotonic()
            if text or not done:
                yield text
            if text:
                next_at = self._next_at = handed_at + interval()
            if done:
                if error is not None:
                    raise error
                return

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._buf.clear()
            stream = self.stream
            self._cond.notify_all()  # a reader gathering (see the class doc) stops at once
        # From this thread while the helper may be blocked reading: closing the response unblocks it. A
        # request still being opened is closed by the helper itself once it is open.
        if stream is not None:
            close_quietly(stream)


def close_quietly(stream: ReplyStream) -> None:
    try:
        stream.close()
    except Exception:  # noqa: BLE001 - closing a broken stream can fail; there is nothing left to save
        log.debug("closing the provider stream failed", exc_info=True)
