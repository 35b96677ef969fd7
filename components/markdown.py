"""Markdown that is safe to render: model and user text never make the browser fetch anything.

Streamlit escapes HTML unless `unsafe_allow_html` (never passed here), but markdown images (`![..](..)`,
reference images) would still be fetched from any URL the text names. Regular expressions cannot tell
where markdown puts code spans, fences and containers, so the text is parsed with markdown-it-py set up
like Streamlit's renderer (CommonMark, GFM tables, strikethrough and footnotes, dollar math). Every image
and every raw HTML node the parser finds is made literal by editing the *source*: a backslash before the
image's `[` and before the HTML's `<`. Nothing else changes, so the rest renders as written. Stored text
is never changed: only what is rendered. Text nested deeper than the parser reads (markdown-it stops at 20
levels; the renderer does not) cannot be searched, so it is made literal as a whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.rules_block import StateBlock
from markdown_it.rules_inline import StateInline
from markdown_it.rules_inline.html_inline import html_inline
from markdown_it.rules_inline.image import image
from markdown_it.token import Token
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.footnote import footnote_plugin

# markdown-it breaks lines only here (its normalize rule); U+2028, \x85, \v, \f stay inside a line.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# Each pass makes at least one `![` or `<` permanently literal, so the loop ends on its own; the cap
# only bounds the work on hostile input before the blunt fallback below.
_MAX_PASSES = 32
_POS = "source_pos"
_TOO_DEEP = "nesting_limit_reached"
# A URL inside raw HTML made literal (`<img src="http://x/a.png">`) is auto-linked by Streamlit's renderer
# with the tag's `">` inside the address; with the scheme's colon escaped (`http\://`, which shows as
# `http://`) the renderer links only the URL itself.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*(:)//")


def _recording(rule: Any) -> Any:
    """Wrap an inline rule so the tokens it makes remember where in the inline source they started."""

    def wrapped(state: StateInline, silent: bool) -> bool:
        start, count = state.pos, len(state.tokens)
        if not rule(state, silent):
            return False
        if not silent:
            for token in state.tokens[count:]:
                token.meta[_POS] = start
        return True

    return wrapped


def _watch_depth(md: MarkdownIt) -> None:
    """markdown-it stops descending at `maxNesting` levels (20: a dozen nested lists, or images inside
    images' alt text twenty deep) and leaves what lies deeper unparsed, while Streamlit's renderer has no
    such limit. Mark the parse's env when that happens, so the text is made literal as a whole instead."""
    limit = md.options["maxNesting"]
    tokenize_blocks, skip_token = md.block.tokenize, md.inline.skipToken

    def watched_tokenize(state: StateBlock, startLine: int, endLine: int) -> None:  # markdown-it's names
        if state.level >= limit:  # the block parser skips the container's lines from here
            state.env[_TOO_DEEP] = True
        tokenize_blocks(state, startLine, endLine)

    def watched_skip_token(state: StateInline) -> None:
        if state.level >= limit:  # the inline parser jumps to the end of the text from here
            state.env[_TOO_DEEP] = True
        skip_token(state)

    md.block.tokenize = watched_tokenize  # type: ignore[method-assign]
    md.inline.skipToken = watched_skip_token  # type: ignore[method-assign]


def build_parser() -> MarkdownIt:
    """The parser both `neutralise` and its tests use: what Streamlit's renderer accepts, made strict.

    Footnote definitions stay where they are written (and are kept even when nothing refers to them), so
    an image inside one is seen; math is recognised only in its narrowest form, so text that another
    renderer might not take as math is still searched for images.
    """
    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    footnote_plugin(md, inline=False, move_to_end=False)
    dollarmath_plugin(md, allow_labels=False, allow_space=False, allow_digits=False, allow_blank_lines=False)
    md.inline.ruler.at("image", _recording(image))
    md.inline.ruler.at("html_inline", _recording(html_inline))
    _watch_depth(md)
    return md


class _EveryReference(dict[str, Any]):
    """Reference definitions that match every label: `![x][ref]` is treated as an image whether or not
    `[ref]: url` is written (or has yet to stream in), so a later definition cannot switch an image on."""

    def get(self, key: str, default: Any = None) -> Any:
        return {"href": "", "title": ""}


_PARSER = build_parser()


def parser() -> MarkdownIt:
    """The one configured parser (the block splitter reads block boundaries with it too)."""
    return _PARSER


def _parse(text: str, every_reference: bool = True) -> tuple[list[Token], bool]:
    """The tokens, and whether some of the text was too deeply nested for the parser to read."""
    env: dict[str, Any] = {"references": _EveryReference()} if every_reference else {}
    tokens = _PARSER.parse(text, env)
    return tokens, bool(env.get(_TOO_DEEP))


def parse(text: str, every_reference: bool = True) -> list[Token]:
    return _parse(text, every_reference)[0]


def unsafe_tokens(tokens: Iterable[Token]) -> list[Token]:
    """Every image and raw HTML token, at any depth (tests use this to check the output)."""
    found: list[Token] = []
    for token in tokens:
        if token.type in ("image", "html_inline", "html_block"):
            found.append(token)
        if token.children:
            found.extend(unsafe_tokens(token.children))
    return found


def _lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of each line as markdown-it counts lines, end excluding the line break."""
    spans, start = [], 0
    for match in _LINE_BREAK.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return spans


class _Unmapped(Exception):
    """A token whose place in the source could not be found (the caller falls back to escaping all)."""


def _line_text(text: str, spans: list[tuple[int, int]], line: int) -> tuple[int, str]:
    if not 0 <= line < len(spans):
        raise _Unmapped
    start, end = spans[line]
    return start, text[start:end].replace("\0", "\ufffd")  # markdown-it's own NUL replacement, same length


def _place_in_block(text: str, spans: list[tuple[int, int]], inline: Token, pos: int) -> int:
    """Source offset of `inline.content[pos]` for inline content built from whole lines (paragraphs,
    headings): each content line is its source line minus container markers, indentation and, for an
    ATX heading, the `#` marks, so the stripped content line is the last place it occurs in its line."""
    content = inline.content
    line_in_block = content.count("\n", 0, pos)
    line_start = content.rfind("\n", 0, pos) + 1
    line_end = content.find("\n", pos)
    content_line = content[line_start : len(content) if line_end < 0 else line_end]
    core = content_line.strip()
    lead = len(content_line) - len(content_line.lstrip())
    if inline.map is None:
        raise _Unmapped
    start, source_line = _line_text(text, spans, inline.map[0] + line_in_block)
    found = source_line.rfind(core)
    if found < 0:
        raise _Unmapped
    return start + found + (pos - line_start - lead)


def _place_in_cell(text: str, spans: list[tuple[int, int]], row: list[Token], cell: int, pos: int) -> int:
    """Source offset of `row[cell].content[pos]` in a table row. Cells are trimmed and `\\|` loses its
    backslash, so offsets shift; but neither adds nor removes a `![` or `<`, and container markers
    hold none, so the n-th one in the row's cells is the n-th one in the source line."""
    inline = row[cell]
    marker = "![" if inline.content.startswith("![", pos) else "<"
    before = sum(other.content.count(marker) for other in row[:cell]) + inline.content.count(marker, 0, pos)
    if inline.map is None:
        raise _Unmapped
    start, source_line = _line_text(text, spans, inline.map[0])
    found = -1
    for _ in range(before + 1):
        found = source_line.find(marker, found + 1)
        if found < 0:
            raise _Unmapped
    return start + found


def _edits(text: str, tokens: list[Token]) -> dict[int, str]:
    """Source offset -> replacement for every image and raw HTML token in this parse."""
    spans = _lines(text)
    edits: dict[int, str] = {}

    def add(offset: int, expected: str, replacement: str) -> None:
        if text[offset : offset + len(expected)] != expected:
            raise _Unmapped
        edits[offset] = replacement

    def literal_html(offset: int, end: int) -> None:
        """Make the tag at `offset` literal, and keep the URLs in it (up to `end`) from being linked with
        the tag's closing characters."""
        add(offset, "<", "\\<")
        # An escaped colon (`http\://`, from an earlier pass or the writer) does not match: nothing to undo.
        for match in _SCHEME.finditer(text, offset, end):
            edits[match.start(1)] = "\\:"

    rows: dict[int, list[Token]] = {}
    parents: dict[int, str] = {}
    for index, token in enumerate(tokens):
        if token.type == "inline":
            parents[id(token)] = tokens[index - 1].type  # an inline token always follows its block's opening
            if parents[id(token)] in ("th_open", "td_open") and token.map is not None:
                rows.setdefault(token.map[0], []).append(token)
        elif token.type == "html_block":
            if token.map is None:
                raise _Unmapped
            start, source_line = _line_text(text, spans, token.map[0])
            first = token.content.split("\n", 1)[0].strip()
            found = source_line.rfind(first)  # (an HTML block's first line starts with its `<`: never empty)
            if found < 0:
                raise _Unmapped
            literal_html(start + found, start + len(source_line))

    for token in tokens:
        if token.type != "inline" or not token.children:
            continue
        for child in token.children:
            if child.type not in ("image", "html_inline"):
                continue
            pos = child.meta.get(_POS)
            if pos is None:
                raise _Unmapped
            if parents[id(token)] in ("th_open", "td_open") and token.map is not None:
                row = rows[token.map[0]]
                offset = _place_in_cell(text, spans, row, row.index(token), pos)
            else:
                offset = _place_in_block(text, spans, token, pos)
            if child.type == "image":
                add(offset, "![", "!\\[")
            else:
                literal_html(offset, offset + len(child.content.split("\n", 1)[0]))
    return edits


def _apply(text: str, edits: dict[int, str]) -> str:
    out, last = [], 0
    for offset in sorted(edits):
        out.append(text[last:offset])
        out.append(edits[offset])
        last = offset + (2 if edits[offset] == "!\\[" else 1)
    out.append(text[last:])
    return "".join(out)


def _escape_everything(text: str) -> str:
    """The blunt fallback: no `![` and no `<` are left at all, so no image or HTML can be parsed
    (code spans then show the escapes; only reached if a token could not be placed). `&lt;` rather than
    a backslash, which a backslash already in the text would cancel."""
    return text.replace("<", "&lt;").replace("![", "!\\[")


def _neutralise(text: str) -> tuple[str, list[Token]]:
    """The neutralised text and its own parse (the streaming code reads block boundaries from it)."""
    for _ in range(_MAX_PASSES):
        tokens, too_deep = _parse(text)
        if "![" not in text and "<" not in text:
            return text, tokens
        if too_deep:
            break
        try:
            edits = _edits(text, tokens)
            if not edits:
                # Also as parsed without definitions: `[ref][![a](u)](v)` is a reference link (the image
                # inside its label) when `[ref]` is defined, but plain text and a linked image when it is not.
                undefined, too_deep = _parse(text, every_reference=False)
                if too_deep:
                    break
                edits = _edits(text, undefined)
        except _Unmapped:
            break
        if not edits:
            return text, tokens
        text = _apply(text, edits)
    text = _escape_everything(text)
    return text, parse(text)


def neutralise(text: str) -> str:
    """Markdown with every image and raw HTML node made literal; everything else is left as written."""
    if "![" not in text and "<" not in text:
        return text  # neither an image nor HTML can be parsed without one of these
    return _neutralise(text)[0]


def _open_block(safe: str, tokens: list[Token]) -> int:
    """The line where the block still being written starts: lines before it can no longer change.

    The last block may still grow (a code span or link closing on a later line, a setext underline, a
    table's delimiter row); blocks before it are closed, and with every reference treated as defined
    their images do not depend on what follows. An open code fence is code to its end, so only its
    last line is still open.
    """
    starts = [(token.map[0], token) for token in tokens if token.map is not None]
    if not starts:
        return 0  # nothing but reference definitions, which make no tokens
    start, last = max(starts, key=lambda pair: pair[0])
    last_line = len(_lines(safe)) - 1
    if last.type == "fence" and last_line > start:
        return last_line
    return start


def _first_candidate(text: str, start: int) -> int:
    """Where the first `![` or `<` after `start` is (len(text) if none): the open block up to there
    has nothing to escape whatever follows, because escapes go after a `!` and before a `<`."""
    found = [at for at in (text.find("![", start), text.find("<", start)) if at >= 0]
    return min(found, default=len(text))


def safe_stream(chunks: Iterable[str], min_growth: int = 32) -> Iterator[str]:
    """Neutralise a stream for st.write_stream, which renders the accumulated text after each chunk.

    Every output extends what was sent before, and what has been sent is always a prefix of
    `neutralise(final text)` that is itself safe to render: closed blocks neutralised, then the open
    block as written up to its first `![` or `<` (the rest of that block waits until it is closed).
    Prose streams chunk by chunk without parsing; the text is re-parsed only while the open block
    holds something back, and then only after it has grown by `min_growth` characters or a sixteenth
    of its length, so a long reply costs a bounded number of parses.
    """
    text = sent = stable = ""
    block_start = parsed_at = 0
    for chunk in chunks:
        text += chunk
        held = _first_candidate(text, block_start)
        if held < len(text) and len(text) - parsed_at >= max(min_growth, parsed_at // 16):
            parsed_at = len(text)
            safe, tokens = _neutralise(text)
            line = _open_block(safe, tokens)
            stable, block_start = safe[: _lines(safe)[line][0]], _lines(text)[line][0]
            held = _first_candidate(text, block_start)
        visible = stable + text[block_start:held]
        if len(visible) > len(sent) and visible.startswith(sent):
            yield visible[len(sent) :]
            sent = visible
    final = neutralise(text)
    # A mismatch would mean an earlier output was wrong; sending more could not repair it.
    if len(final) > len(sent) and final.startswith(sent):
        yield final[len(sent) :]
