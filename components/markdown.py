"""Markdown that is safe to render: model and user text never make the browser fetch anything.

Streamlit escapes HTML unless `unsafe_allow_html` (never passed here), but markdown images
(`![..](..)`, reference images) would still be fetched from any URL the text names. `neutralise` turns
them, and raw `<img`, into literal text; fenced code blocks are left exactly as written. Stored text is
never changed: only what is rendered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# "![" opens an inline or reference image; "<img" is raw HTML. Both become literal text.
_IMAGE = re.compile(r"!\[|<(?=img)", re.IGNORECASE)
# A tail that could still become one of the above (or a code fence) once the next chunk arrives.
_UNSTABLE_TAIL = re.compile(r"(!|<|<i|<im)$|(^|\n) {0,3}(`{1,2}|~{1,2})?$", re.IGNORECASE)


# Inline code spans (`x`, ``x``) render literally, so images inside them need no escaping. A backtick
# after a backslash is a literal backtick, not a span: "\\`![x](u)`" must still be escaped.
_CODE_SPAN = re.compile(r"((?<!\\)``[^\n]*?``|(?<![\\`])`[^`\n]*`)")


def _outside_code_spans(line: str) -> str:
    parts = _CODE_SPAN.split(line)
    for i in range(0, len(parts), 2):  # even parts are outside code spans
        parts[i] = _IMAGE.sub(lambda m: "!\\[" if m.group(0) == "![" else "\\<", parts[i])
    return "".join(parts)


def neutralise(text: str) -> str:
    """Markdown with images turned into literal text; fenced code blocks are left exactly as written."""
    out: list[str] = []
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        match = _FENCE.match(line)
        if fence is None:
            if match:
                fence = match.group(1)
                out.append(line)
            else:
                out.append(_outside_code_spans(line))
        else:
            if (
                match
                and match.group(1)[0] == fence[0]
                and len(match.group(1)) >= len(fence)
                and not line[match.end() :].strip()
            ):
                fence = None
            out.append(line)
    return "".join(out)


def safe_stream(chunks: Iterable[str]) -> Iterator[str]:
    """Neutralise a stream for st.write_stream, which renders the accumulated text after each chunk.

    Each output is the growth of `neutralise(text so far)`; a tail that the next chunk could turn into an
    image or a fence (a trailing "!", "<im", "``") is held back until it is decided, so what has been
    rendered is always a prefix of the final, safe text.
    """
    text = ""
    sent = 0
    for chunk in chunks:
        text += chunk
        tail = _UNSTABLE_TAIL.search(text)
        stable = text[: tail.start()] if tail and tail.end() == len(text) else text
        # Only the last, incomplete line can change; earlier lines are already final.
        safe = neutralise(stable)
        if len(safe) > sent:
            yield safe[sent:]
            sent = len(safe)
    safe = neutralise(text)
    if len(safe) > sent:
        yield safe[sent:]
