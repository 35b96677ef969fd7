"""The offline demo model: no network, deterministic, streams word by word at a configurable pace.

It is the default when no provider key is set, so the app works out of the box; the reply says plainly
that it is a demo and how to configure a real provider.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence

from services.config import Settings
from services.providers import Turn, Usage

DEMO_MODEL = "echo-1"
ECHO_CHARS = 400
CONFIGURE_HINT = "Set OPENAI_API_KEY, ANTHROPIC_API_KEY or OPENAI_BASE_URL to chat with a real model."


# The chat page's first screen offers these; the demo model answers each one for real.
ANSWERS = {
    "What can you do here?": (
        "Here you can chat with a model and keep every conversation:\n\n"
        "- **Chat**: replies stream in word by word; the button in the input box stops one half-way, "
        "and **Regenerate** asks again.\n"
        "- **Sidebar**: your conversations, newest first, grouped by day; **New chat** starts another.\n"
        "- **History**: search every message, filter by role, model, status or dates, see usage per day, "
        "export everything as CSV or JSON, or delete your data.\n\n"
        "I am the offline demo model, so my answers are canned. " + CONFIGURE_HINT
    ),
    "Show me a small markdown table": (
        "Here are the inner planets:\n\n"
        "| Planet | Distance from the Sun (AU) | Moons |\n"
        "|---|---:|---:|\n"
        "| Mercury | 0.39 | 0 |\n"
        "| Venus | 0.72 | 0 |\n"
        "| Earth | 1.00 | 1 |\n"
        "| Mars | 1.52 | 2 |\n\n"
        "Tables, lists, `code` and links all render; images are shown as text, never fetched."
    ),
    "Write a haiku about streaming text": (
        "Words arrive one by one,\n"
        "a sentence finds its ending —\n"
        "or you press stop first.\n\n"
        "(Stop this one half-way to see the partial reply kept with a note.)"
    ),
    "How do I connect a real model?": (
        "Set one of these before starting the app, then pick the model in the sidebar:\n\n"
        "1. `OPENAI_API_KEY` for OpenAI models;\n"
        "2. `ANTHROPIC_API_KEY` for Claude models;\n"
        "3. `CHAT_OPENAI_SERVERS` for OpenAI-compatible servers, such as Ollama, vLLM or llama.cpp, "
        "beside the others (their models are found by asking the server), or `OPENAI_BASE_URL` for one "
        "server in place of OpenAI.\n\n"
        "The variables can also go in `.streamlit/secrets.toml`; the README lists every setting."
    ),
}
EXAMPLES = tuple(ANSWERS)


def as_code_span(text: str) -> str:
    """`text` as an inline code span, which markdown shows exactly as written (a "#" is no heading, "**" no
    bold): fenced by one more backtick than its longest run of backticks, padded when it touches one."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def demo_reply(prompt: str, instructions: str | None = None, images: Sequence[str] = ()) -> str:
    """The full reply to `prompt`; a pure function, so tests can compare what was streamed and stored.
    Standing instructions cannot steer a canned model, so it says it received them (first line quoted), and
    it names the images it was sent (`images`: their file names) without pretending to see them."""
    if images:
        names = ", ".join(as_code_span(name) for name in images)
        seen = f"(Images received: {names}. The offline demo model cannot look at them.)\n\n"
        return seen + demo_reply(prompt, instructions)
    if instructions:
        first = " ".join(instructions.split())
        first = first if len(first) <= 120 else first[:120] + " …"
        return f"(Instructions received: {as_code_span(first)})\n\n" + demo_reply(prompt)
    if (answer := ANSWERS.get(prompt.strip())) is not None:
        return answer
    echoed = " ".join(prompt.split())
    if len(echoed) > ECHO_CHARS:
        echoed = echoed[:ECHO_CHARS] + " …"
    # Quoted as text: a message that starts with "#" or holds "**" is shown as written, not as markdown.
    return (
        "This is the **offline demo model**. "
        f"You wrote:\n\n> {as_code_span(echoed)}\n\n"
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

    def stream(
        self, model: str, turns: Sequence[Turn], *, max_tokens: int, system: str | None = None
    ) -> _DemoReply:
        last = next((t for t in reversed(turns) if t.role == "user"), None)
        prompt, images = (last.content, [i.name for i in last.images]) if last else ("", [])
        input_tokens = sum(_approx_tokens(t.content) for t in turns) + _approx_tokens(system or "")
        return _DemoReply(demo_reply(prompt, system, images), input_tokens, self.chars_per_s)
