"""The offline demo model: no network, deterministic, streams word by word at a configurable pace.

It is the default when no provider key is set, so the app works out of the box; the reply says plainly
that it is a demo and how to configure a real provider.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

from services.config import Settings
from services.providers import Turn, Usage

DEMO_MODEL = "echo-1"
ECHO_CHARS = 400
CONFIGURE_HINT = "Set OPENAI_API_KEY, ANTHROPIC_API_KEY or OPENAI_BASE_URL to chat with a real model."


def demo_reply(prompt: str) -> str:
    """The full reply to `prompt`; a pure function, so tests can compare what was streamed and stored."""
    echoed = " ".join(prompt.split())
    if len(echoed) > ECHO_CHARS:
        echoed = echoed[:ECHO_CHARS] + " …"
    return (
        "This is the **offline demo model**. "
        f"You wrote:\n\n> {echoed}\n\n"
        "It answers without any network access, word by word, so you can try the app, stop a reply "
        "half-way, regenerate it, and find it again on the History page. A few things it shows:\n\n"
        "- replies are saved while they stream, about once a second;\n"
        "- a stopped reply is kept with the words received so far;\n"
        "- the meta line under each reply names the model and the tokens used.\n\n"
        f"{CONFIGURE_HINT}"
    )


def _approx_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


class _DemoReply:
    def __init__(self, text: str, input_tokens: int, chars_per_s: float) -> None:
        self._text = text
        self._input_tokens = input_tokens
        self._chars_per_s = chars_per_s
        self._closed = threading.Event()
        self.usage: Usage | None = None

    def __iter__(self) -> Iterator[str]:
        words = self._text.split(" ")
        start = time.monotonic()
        sent_chars = 0
        for i, word in enumerate(words):
            chunk = word if i == len(words) - 1 else word + " "
            # Pace by schedule, not by per-chunk sleeps, so the rate holds however small the chunks are.
            due = start + sent_chars / self._chars_per_s
            delay = due - time.monotonic()
            if delay > 0.001 and self._closed.wait(delay):
                return
            if self._closed.is_set():
                return
            sent_chars += len(chunk)
            yield chunk
        self.usage = Usage(self._input_tokens, _approx_tokens(self._text))

    def close(self) -> None:
        self._closed.set()


class DemoProvider:
    name = "demo"
    label = "Offline demo"

    def __init__(self, chars_per_s: float = Settings.demo_chars_per_s) -> None:
        self.chars_per_s = chars_per_s

    def stream(self, model: str, turns: Sequence[Turn], *, max_tokens: int) -> _DemoReply:
        prompt = next((t.content for t in reversed(turns) if t.role == "user"), "")
        input_tokens = sum(_approx_tokens(t.content) for t in turns)
        return _DemoReply(demo_reply(prompt), input_tokens, self.chars_per_s)
