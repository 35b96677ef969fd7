"""Streams a blocking `services.chat.Reply` to an async response, on the API's own bounded thread pool.

Why not Starlette's `iterate_in_threadpool`: it borrows from anyio's default limiter (40 threads), which
Streamlit's own file serving shares, so 50 long replies would starve each other and the UI's assets. Here
each stream gets one thread of a pool sized by CHAT_API_MAX_STREAMS for its whole life; when every thread
is busy a new stream is refused at once (503 with Retry-After), never queued behind minutes-long replies.

The worker thread owns the Reply: it starts it (`ChatService.send`, which validates, rate-limits and stores
the user's message), iterates it, and closes it. Closing must happen on that thread (a generator cannot be
closed while another thread is inside it). When the client goes away the async side sets `cancel`; the
reply hands over at least every tick (about 0.2 s) even while the provider is silent, so the worker sees
the flag promptly and calls `reply.close()`, which stores the reply as `interrupted` with what was
generated. Cancelling the request's task alone would leave the generator running in its thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from api.errors import ApiError
from services.chat import Reply

log = logging.getLogger(__name__)

BUSY_MESSAGE = "The server is streaming as many replies as it can right now. Please try again in a few seconds."
BUSY_RETRY_AFTER_S = 5

_STARTED, _TEXT, _END, _FAILED = "started", "text", "end", "failed"

# How often a streamed reply hands text to the HTTP response (its first text goes at once, its end as soon
# as the provider has ended). The chat page's 50 ms is for a person watching words appear; an HTTP client
# renders as it likes, and every hand-over costs a wake-up of the worker, one of the event loop, an SSE
# event through the middleware and a socket write: with 50 streams at once (bench/load.py) those were the
# bulk of the process's work once the provider's chunks were parsed cheaply.
HANDOVER_S = 0.1
# And the provider's chunks are read in gulps of up to this long (services.streaming.Pump's gather_s): a
# reply's end may reach the client that much later, its first text never does.
GATHER_S = 0.05


class StreamPool:
    """At most `max_streams` replies in flight, each on its own thread of this pool."""

    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self._executor = ThreadPoolExecutor(max_workers=max_streams, thread_name_prefix="api-stream")
        self._lock = threading.Lock()
        self._active = 0

    @property
    def active(self) -> int:
        return self._active

    def _acquire(self) -> bool:
        with self._lock:
            if self._active >= self.max_streams:
                return False
            self._active += 1
            return True

    def _release(self) -> None:
        with self._lock:
            self._active -= 1

    async def open(self, start: Callable[[], Reply]) -> LiveReply:
        """Run `start` (blocking: it stores the user's message) on a pool thread and return the live reply
        once it has started. Raises whatever `start` raised (before anything was streamed, so the route can
        still answer with a status), or ApiError 503 when every stream slot is taken."""
        if not self._acquire():
            raise ApiError(503, "busy", BUSY_MESSAGE, {"Retry-After": str(BUSY_RETRY_AFTER_S)})
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancel = threading.Event()

        def post(kind: str, value: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:  # the event loop has closed (server shutting down): nobody is listening
                cancel.set()

        try:
            self._executor.submit(self._work, start, post, cancel)
        except RuntimeError:  # the pool was shut down
            self._release()
            raise
        try:
            kind, value = await queue.get()
        except BaseException:
            # The request was cancelled while the turn was starting: the worker stops the reply as soon as
            # it has one (stored as `interrupted`), instead of streaming it to nobody.
            cancel.set()
            raise
        if kind == _FAILED:
            raise value
        return LiveReply(value, queue, cancel)

    def _work(self, start: Callable[[], Reply], post: Callable[[str, Any], None], cancel: threading.Event) -> None:
        # The slot is freed before the last message is posted: a client that has read the end may open its
        # next stream at once and must not find its own finished one still counted.
        try:
            reply = start()
        except BaseException as exc:  # noqa: BLE001 - handed to the route, which maps it to a status
            self._release()
            post(_FAILED, exc)
            return
        reply.pace = lambda: HANDOVER_S
        reply.gather_s = GATHER_S
        post(_STARTED, reply)
        last: tuple[str, Any] = (_END, None)
        try:
            for text in reply:
                if cancel.is_set():
                    break
                if text:
                    post(_TEXT, text)
        except BaseException as exc:  # noqa: BLE001 - the reply stores its own errors; this is a bug
            log.exception("a streamed reply failed outside its own error handling")
            last = (_FAILED, exc)
        finally:
            try:
                # Explicit: after a break (client gone) this stores the reply as `interrupted`; after the
                # end it does nothing. Either way `reply.outcome` is set before the consumer hears the end.
                reply.close()
            finally:
                self._release()
                post(*last)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class LiveReply:
    """A started reply: `chunks()` yields its text as it arrives; when it has ended, `reply.outcome` says how
    (status, stored message, usage). Leaving `chunks()` early (client disconnected) closes the reply."""

    def __init__(self, reply: Reply, queue: asyncio.Queue[tuple[str, Any]], cancel: threading.Event) -> None:
        self.reply = reply
        self._queue = queue
        self._cancel = cancel

    def cancel(self) -> None:
        """Stop the reply (stored as `interrupted`); safe to call at any time, more than once."""
        self._cancel.set()

    async def chunks(self, idle_s: float | None = None) -> AsyncGenerator[str, None]:
        """The reply's text as it arrives; with `idle_s`, also "" whenever that long passes with nothing
        (so the caller can send a keep-alive, which is also how a server notices a vanished client).

        Text that has piled up while the event loop was busy comes as one piece: each piece is one write
        to the client, and with many streams in a busy process (bench/load.py: 50 at once, the loop waiting
        for the GIL after every socket write) one write per piece left the loop further behind each time,
        the first text reaching clients seconds after the provider sent it."""
        held: tuple[str, Any] | None = None
        try:
            while True:
                if held is not None:
                    (kind, value), held = held, None
                elif idle_s is None:
                    kind, value = await self._queue.get()
                else:
                    try:
                        kind, value = await asyncio.wait_for(self._queue.get(), idle_s)
                    except TimeoutError:
                        yield ""
                        continue
                if kind == _TEXT:
                    pieces = [value]
                    while held is None and not self._queue.empty():
                        item = self._queue.get_nowait()
                        if item[0] == _TEXT:
                            pieces.append(item[1])
                        else:
                            held = item  # the end or a failure: after this text, as it came
                    yield "".join(pieces)
                elif kind == _END:
                    return
                elif kind == _FAILED:
                    raise value
        finally:
            # Normal end: the reply is already closed and this is a no-op. A disconnect cancels this
            # generator at its `await`: the worker closes the reply on its own thread.
            self._cancel.set()


_pool_lock = threading.Lock()
_pool: StreamPool | None = None


def stream_pool(max_streams: int) -> StreamPool:
    """The process's one pool (built on first use with CHAT_API_MAX_STREAMS)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = StreamPool(max_streams)
        return _pool
