"""Where a markdown message can be cut into separately rendered elements without changing how it renders.

A streamed reply is drawn block by block: finished blocks are frozen in their own `st.markdown` elements
and never re-sent; only the last (open) block is redrawn as it grows. Stored messages go through the same
splitter, so a reloaded bubble is made of the same elements as the live one.

Blocks are the top-level blocks of markdown-it's parse with the parser `components.markdown` uses (the
same configuration as the neutraliser, set up like Streamlit's renderer). Cutting between two top-level
blocks changes nothing, except:
- reference links and footnotes: a definition applies to the whole message, so a message with any
  definition is one block;
- `$$` math: Streamlit's renderer allows blank lines inside it, our parser's strict math does not, so
  a cut is never made while an odd number of `$$` precede it;
- lists are whole top-level blocks: never split across a loose list, and ordered numbering holds.
Everything before the last block is final: only the last block can still change as text is appended.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from components.markdown import parser

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


@dataclass(frozen=True)
class Split:
    closed: list[str]  # source of each finished block, in order
    open: str  # the last block: it may still grow while the message streams
    open_at: int = 0  # where the open block starts in the text that was split
    whole: bool = False  # definitions make the whole message one block


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for match in re.finditer(r"\r\n|\r|\n", text):
        starts.append(match.end())
    return starts


def _has_definitions(tokens: list[Any], env: dict[str, Any]) -> bool:
    if env.get("references"):
        return True
    return any(token.type.startswith("footnote") for token in tokens)


def split_blocks(text: str) -> Split:
    env: dict[str, Any] = {}
    tokens = parser().parse(text, env)
    if _has_definitions(tokens, env):
        return Split([], text.rstrip("\r\n"), 0, whole=True)
    starts = sorted(
        {token.map[0] for token in tokens if token.level == 0 and token.nesting >= 0 and token.map is not None}
    )
    if not starts:
        return Split([], text.rstrip("\r\n"))
    lines = _line_starts(text)
    offsets = [lines[line] for line in starts if line < len(lines)]
    cuts = [at for at in offsets[1:] if text.count("$$", 0, at) % 2 == 0]
    pieces: list[str] = []
    begin = offsets[0]
    for at in cuts:
        pieces.append(text[begin:at].rstrip("\r\n"))
        begin = at
    return Split(pieces, text[begin:].rstrip("\r\n"), begin)


def close_for_display(block: str) -> str:
    """An unfinished block (a stopped or failed reply) closed for display only: an open code fence, `$$`
    math or `**` is closed so the rest of the bubble does not render as code or bold. Stored text keeps
    what was received."""
    lines = block.splitlines()
    if lines and (opening := _FENCE.match(lines[0])):
        marker = opening.group(1)
        closed = len(lines) > 1 and lines[-1].strip().startswith(marker[0] * len(marker)) and not lines[-1].strip(
            marker[0]
        )
        return block if closed else f"{block}\n{marker}"
    if block.count("$$") % 2:
        return f"{block}\n$$"
    if block.count("**") % 2:
        return f"{block}**"
    return block


class BlockSplitter:
    """`split_blocks` for a text that only grows (a streaming reply): parses only from the open block on,
    since everything before it is final. Ends with the same blocks `split_blocks` gives the whole text,
    which is how a stored message is drawn (tests/test_blocks.py checks that for generated text)."""

    def __init__(self) -> None:
        self.closed: list[str] = []
        self.whole = False  # a definition arrived: the message is one block from now on
        self._base = 0

    def feed(self, text: str) -> tuple[list[str], bool]:
        """The blocks that `text` (the whole message so far) newly finished, and whether the blocks drawn
        so far must go first: a definition arrived (the message is one block from now on), or text that
        looked like one turned out not to be (`[r]: http://a` followed by more words)."""
        split = split_blocks(text if self.whole else text[self._base :])
        if split.whole:
            reset = not self.whole
            self.whole, self._base, self.closed = True, 0, []
            return [], reset
        reset = self.whole
        if reset:
            self.whole, self._base, self.closed = False, 0, []
        finished = [block for block in split.closed if block.strip()]
        self.closed.extend(finished)
        self._base += split.open_at
        return finished, reset

    def open_block(self, text: str) -> str:
        return text[self._base :].rstrip("\r\n")
