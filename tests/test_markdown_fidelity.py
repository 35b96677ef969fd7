"""Fidelity of the markdown neutraliser: the exact text it produces, the parser it is built on, and what a
stream shows when.

A correct neutraliser changes only `![` (to `!\\[`), `<` (to `\\<`) and a URL scheme's colon inside literal
HTML (to `\\:`); everything else stays byte-identical. Its blunt fallback (used when a token cannot be
placed) is just as safe but turns every `<` into `&lt;`, code included, so each example below holds a `<`
in a code span: an exact match then also proves the precise path placed every token.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.footnote import footnote_plugin

import components.markdown as markdown
from components.markdown import build_parser, neutralise, parse, safe_stream

CODE = " `<`"  # shown as written by the precise path, as `&lt;` by the fallback

# Each case ends with a line the code span can be appended to without changing what the text is (a table
# keeps a body row after its delimiter row).
FIDELITY = [
    # Paragraphs: every line, with the continuation's own indentation kept.
    ("first line\nsecond ![x](u) and <b>\nthird <i>", "first line\nsecond !\\[x](u) and \\<b>\nthird \\<i>"),
    ("![a](u)\n<b> ![c](u)\nlast", "!\\[a](u)\n\\<b> !\\[c](u)\nlast"),
    ("a\n   ![x](u) <b>", "a\n   !\\[x](u) \\<b>"),
    ("a\n\tb <b>\nc", "a\n\tb \\<b>\nc"),
    ("a\0 <b>", "a\0 \\<b>"),  # markdown-it reads NUL as U+FFFD, and the source keeps it
    # Headings: ATX with a closing sequence, setext over two lines.
    ("## Title ![x](u) <b> ##", "## Title !\\[x](u) \\<b> ##"),
    ("# <b> #<b>", "# \\<b> #\\<b>"),
    ("Title <b>\nmore ![x](u)\n===", "Title \\<b>\nmore !\\[x](u)\n==="),
    # Containers: blockquotes (nested, lazy), lists (nested, ordered with `)`), footnote definitions.
    ("> a\n> b ![x](u)\n> > c <i>", "> a\n> b !\\[x](u)\n> > c \\<i>"),
    ("> a\nb <b>", "> a\nb \\<b>"),
    ("- a\n- b <b>\n  more ![x](u)\n1. x\n   2) <i>", "- a\n- b \\<b>\n  more !\\[x](u)\n1. x\n   2) \\<i>"),
    ("> 1. one\n>    - two ![x](u) <b>", "> 1. one\n>    - two !\\[x](u) \\<b>"),
    ("[^1]: note ![x](u)\n    continued <b>\n\ntext[^1]", "[^1]: note !\\[x](u)\n    continued \\<b>\n\ntext[^1]"),
    # The label holds the same text as the definition: the content is the *last* place it occurs.
    ("[^<b>x]: <b>x\n  y", "[^<b>x]: \\<b>x\n  y"),
    # Indented code and code inside a list item stay as written; the text around them does not.
    ("    indented <b> ![x](u)\n\npara <b>", "    indented <b> ![x](u)\n\npara \\<b>"),
    ("- a\n\n  b <b>\n\n      code <i>", "- a\n\n  b \\<b>\n\n      code <i>"),
    # Tables: escaped pipes, several marks per cell and per row, marks in earlier cells' code spans.
    (
        "| a | <b> |\n|---|---|\n| ![x](u) \\| <i> | c <i> ![y](v) |",
        "| a | \\<b> |\n|---|---|\n| !\\[x](u) \\| \\<i> | c \\<i> !\\[y](v) |",
    ),
    (
        "| `<` | <b> |\n|---|---|\n| ![a](u) ![b](v) | a \\| ![x](u) |",
        "| `<` | \\<b> |\n|---|---|\n| !\\[a](u) !\\[b](v) | a \\| !\\[x](u) |",
    ),
    (
        "| <a> <b> | ![x](u) `<` ![y](v) |\n|---|---|\n| c | d |",
        "| \\<a> \\<b> | !\\[x](u) `<` !\\[y](v) |\n|---|---|\n| c | d |",
    ),
    ("| <b> ![x](u) |\n|---|\n| `<` |", "| \\<b> !\\[x](u) |\n|---|\n| `<` |"),
    ("|<b>|\n|-|\n|c|", "|\\<b>|\n|-|\n|c|"),  # a mark at the start of the line, or right after another
    ("<b> | a\n--|--\nc | d", "\\<b> | a\n--|--\nc | d"),
    ("| <<b> | `<` |\n|---|---|\n| c | d |", "| <\\<b> | `<` |\n|---|---|\n| c | d |"),
    ("| < <b> |\n|---|\n| c |", "| < \\<b> |\n|---|\n| c |"),  # a `<` that is text still counts
    ("x\n\n| a |\n|---|\n| <b> ![x](u) |", "x\n\n| a |\n|---|\n| \\<b> !\\[x](u) |"),
    ("| a \\| <b> |\n|---|\n| c |", "| a \\| \\<b> |\n|---|\n| c |"),  # a header cell with an escaped pipe
    # Strikethrough and HTML blocks (one that repeats its first tag; one in a footnote with that tag as label).
    ("~~<b>~~ and ~~![x](u)~~", "~~\\<b>~~ and ~~!\\[x](u)~~"),
    ("<div>\n<b>\n</div>\n\n<!-- c -->", "\\<div>\n\\<b>\n\\</div>\n\n\\<!-- c -->"),
    ("<div> <div>\nx", "\\<div> \\<div>\nx"),
    ("[^<div>]: <div>\nx", "[^<div>]: \\<div>\nx"),
    # A URL inside a tag made literal has its colon escaped; one after the tag is left to the renderer.
    ('<a href="http://a.test"> then http://b.test/', '\\<a href="http\\://a.test"> then http://b.test/'),
    # References: an image whose reference is not defined is still an image to the renderer once it is.
    ("![x][nope]", "!\\[x][nope]"),
    # Defined (as every label is, for the first parse), `[![a](u)]` is a label; undefined, a linked image.
    ("\\![ref][![a](u)](v)", "\\![ref][!\\[a](u)](v)"),
    # Dollar math only in its narrowest form: a space, a digit or a blank line makes it text, and text
    # is searched for images.
    ("$![x](u)$", "$![x](u)$"),
    ("$ ![x](u) $", "$ !\\[x](u) $"),
    ("$![x](u)$1", "$!\\[x](u)$1"),
    ("1$![x](u)$", "1$!\\[x](u)$"),
    ("$$\n![x](u)\n\n$$", "$$\n!\\[x](u)\n\n$$"),
    ("$$\n![x](u)\n$$ (eq1)", "$$\n!\\[x](u)\n$$ (eq1)"),
    # Inline footnotes are not a syntax here: the image inside is an ordinary image.
    ("a^[![x](u)]", "a^[!\\[x](u)]"),
]


@pytest.mark.parametrize(("text", "expected"), FIDELITY)
def test_only_the_image_and_html_marks_change(text: str, expected: str) -> None:
    assert neutralise(text + CODE) == expected + CODE


def test_a_token_that_cannot_be_placed_makes_everything_literal(monkeypatch: pytest.MonkeyPatch) -> None:
    def unplaceable(*args: object) -> int:
        raise markdown._Unmapped

    monkeypatch.setattr(markdown, "_place_in_block", unplaceable)
    # The fallback leaves no `![` and no `<` anywhere, code included (as its docstring says).
    assert neutralise("a ![x](u) <b>" + CODE) == "a !\\[x](u) &lt;b>" + " `&lt;`"


def test_the_passes_are_capped_and_what_is_left_made_literal(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each pass escapes one level of images inside images' alt text: with one pass, the fallback does the rest.
    text = "![![x](u)](u)" + CODE
    assert neutralise(text) == "!\\[!\\[x](u)](u)" + CODE
    monkeypatch.setattr(markdown, "_MAX_PASSES", 1)
    assert neutralise(text) == "!\\[!\\[x](u)](u)" + " `&lt;`"


def kinds(tokens: list[Token]) -> list[str]:
    found: list[str] = []
    for token in tokens:
        found.append(token.type)
        found.extend(kinds(token.children or []))
    return found


@pytest.mark.parametrize(
    "text",
    [
        "$ ![x](u) $",  # not math with a space inside the dollars
        "$![x](u)$1",  # nor next to a digit
        "1$![x](u)$",
        "$$\n![x](u)\n\n$$",  # nor a block over a blank line
        "$$\n![x](u)\n$$ (eq1)",  # nor a block with a label
        "a^[![x](u)]",  # no inline footnotes
        "[^unused]: ![x](u)",  # a definition nothing refers to is kept where it is
        "[^1]: ![x](u)\n\nnote[^1]",
    ],
)
def test_the_parser_sees_images_another_renderer_might_see(text: str) -> None:
    assert "image" in kinds(build_parser().parse(text))


def test_the_parser_reads_what_streamlit_renders() -> None:
    md = build_parser()
    assert "math_inline" in kinds(md.parse("$![x](u)$"))
    assert "table_open" in kinds(md.parse("| a |\n|---|\n| b |"))
    assert "s_open" in kinds(md.parse("~~gone~~"))
    assert "html_inline" in kinds(md.parse("a <b> c"))
    assert "html_block" in kinds(md.parse("<div>\nx\n</div>"))
    # Footnote definitions stay in place: the definition's tokens come before the text after it.
    tokens = md.parse("[^1]: n\n\nafter[^1]")
    assert [t.type for t in tokens][:2] == ["footnote_reference_open", "paragraph_open"]


def test_image_and_html_tokens_remember_where_they_start() -> None:
    inline = build_parser().parse("a ![x](u) <b> [![y](v)](w)")[1]
    children = inline.children or []
    positions = [(t.type, t.meta.get("source_pos")) for t in children if t.type in ("image", "html_inline")]
    assert positions == [("image", 2), ("html_inline", 10), ("image", 15)]


def plain_parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    footnote_plugin(md, inline=False, move_to_end=False)
    dollarmath_plugin(md, allow_labels=False, allow_space=False, allow_digits=False, allow_blank_lines=False)
    return md


def without_positions(tokens: list[Token]) -> list[tuple[str, str, str, object]]:
    return [(t.type, t.content, t.markup, without_positions(t.children or [])) for t in tokens]


@pytest.mark.parametrize(
    "text",
    [
        "[![a](u)](v) and [<b>](w)",  # a link label is scanned silently before it is parsed
        "![![a](u) <i>](v)",
        "[x ![y](u) [z](v)](w) ![",
        "<b> ![a](u) <",
    ],
)
def test_recording_positions_changes_nothing_else(text: str) -> None:
    assert without_positions(build_parser().parse(text)) == without_positions(plain_parser().parse(text))


def test_references_count_as_defined_only_for_the_first_parse() -> None:
    assert "image" in kinds(parse("![x][nope]"))
    assert "image" not in kinds(parse("![x][nope]", every_reference=False))
    assert "image" in kinds(parse("![x][ref]\n\n[ref]: u", every_reference=False))


# --- Streaming: what is shown after each chunk ---------------------------------------------------------


def timeline(chunks: list[str], min_growth: int) -> tuple[list[str], list[str]]:
    """What the stream has shown after each chunk and at the end, and every part it yielded."""
    consumed: list[str] = []

    def source() -> Iterator[str]:
        for chunk in chunks:
            consumed.append(chunk)
            yield chunk
        consumed.append("")  # the end of the stream

    shown = [""] * (len(chunks) + 1)
    parts: list[str] = []
    for part in safe_stream(source(), min_growth):
        parts.append(part)
        shown[len(consumed) - 1] += part
    for at in range(1, len(shown)):
        shown[at] = shown[at - 1] + shown[at]
    return shown, parts


def test_a_closed_block_is_shown_neutralised_and_prose_after_it_streams_at_once() -> None:
    done = "!\\[a](u) \\<b>\n\n"
    shown, parts = timeline(["![a](u) <b>\n\n", "b c", " d", " e"], min_growth=3)
    # After the first chunk the paragraph may still grow; once a block follows it is closed, and the
    # prose after it needs no parse to be shown.
    assert shown == ["", done + "b c", done + "b c d", done + "b c d e", done + "b c d e"]
    assert parts == [done + "b c", " d", " e"]


def test_the_open_block_is_held_back_from_its_first_mark() -> None:
    shown, parts = timeline(["Intro\n\nsee ", "<b> and", " more"], min_growth=1)
    assert shown == ["Intro\n\nsee ", "Intro\n\nsee ", "Intro\n\nsee ", "Intro\n\nsee \\<b> and more"]
    assert parts == ["Intro\n\nsee ", "\\<b> and more"]


def test_the_open_block_is_held_back_from_its_first_mark_not_a_later_one() -> None:
    shown, parts = timeline(["a <b> c", " <i> d"], min_growth=1)
    assert shown == ["a ", "a ", "a \\<b> c \\<i> d"]
    assert parts == ["a ", "\\<b> c \\<i> d"]


def test_only_the_last_line_of_an_open_fence_is_held() -> None:
    shown, _ = timeline(["```\n<1>\n", "<2>\n", "x"], min_growth=1)
    assert shown == ["```\n<1>\n", "```\n<1>\n<2>\n", "```\n<1>\n<2>\nx", "```\n<1>\n<2>\nx"]


def test_the_last_block_of_a_container_is_the_open_one() -> None:
    shown, _ = timeline(["> a <b>\n>\n> c", " d"], min_growth=1)
    assert shown == ["> a \\<b>\n>\n> c", "> a \\<b>\n>\n> c d", "> a \\<b>\n>\n> c d"]


def test_every_line_of_an_open_paragraph_is_held() -> None:
    # The code span or link a mark is in may close on a later line of the same paragraph.
    shown, _ = timeline(["<b>\n\nc <i>\nd"], min_growth=1)
    assert shown == ["\\<b>\n\nc ", "\\<b>\n\nc \\<i>\nd"]


def test_reference_definitions_alone_leave_everything_open() -> None:
    shown, parts = timeline(["[r]: /u", "<"], min_growth=1)
    assert shown == ["[r]: /u", "[r]: /u", "[r]: /u<"]
    assert parts == ["[r]: /u", "<"]


def parse_lengths(monkeypatch: pytest.MonkeyPatch, chunks: list[str]) -> list[int]:
    """The length of the text at each parse the stream (and its final neutralise) makes."""
    lengths: list[int] = []
    real = markdown._neutralise

    def counting(text: str) -> tuple[str, list[Token]]:
        lengths.append(len(text))
        return real(text)

    monkeypatch.setattr(markdown, "_neutralise", counting)
    list(safe_stream(chunks))
    return lengths


def test_prose_streams_without_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_lengths(monkeypatch, ["word "] * 100) == []


def test_a_held_block_is_parsed_again_only_after_it_grows_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    # At least 32 characters (the last length is the final neutralise).
    assert parse_lengths(monkeypatch, ["<"] + ["a"] * 40) == [32, 41]


def test_a_long_held_block_is_parsed_again_after_a_sixteenth(monkeypatch: pytest.MonkeyPatch) -> None:
    # A sixteenth of the text parsed last: 62 characters after 1000.
    assert parse_lengths(monkeypatch, ["<" + "a" * 999, "a" * 61, "a", "a" * 31]) == [1000, 1062, 1093]


@pytest.mark.parametrize(
    ("read", "too_deep"),
    [
        ("> " * 19 + "x", "> " * 20 + "x"),  # each blockquote is a level
        ("- " * 9 + "x", "- " * 10 + "x"),  # each list and each item is a level
        ("![" * 20 + "x" + "](u)" * 20, "![" * 21 + "x" + "](u)" * 21),  # each label scanned inside a label
    ],
)
def test_the_parser_marks_text_nested_past_what_it_reads(read: str, too_deep: str) -> None:
    md = build_parser()
    env: dict[str, object] = {}
    md.parse(read, env)
    assert markdown._TOO_DEEP not in env
    md.parse(too_deep, env)
    assert env[markdown._TOO_DEEP] is True


# With every reference defined this text holds nothing to escape and stays within the parser's depth; parsed
# without definitions (the second look, for images that only an undefined reference leaves standing) its
# unmatched brackets go past it. What that parse could not read cannot be searched, so the whole text is made
# literal rather than passed as it is.
DEEP_ONLY_WITHOUT_DEFINITIONS = "[[[[[])" + "[" * 11 + "<" + "[" * 7


def test_text_too_deep_only_without_definitions_is_made_literal_as_a_whole() -> None:
    text = DEEP_ONLY_WITHOUT_DEFINITIONS + CODE
    tokens, too_deep = markdown._parse(text)
    assert not too_deep and markdown.unsafe_tokens(tokens) == []
    assert markdown._parse(text, every_reference=False)[1] is True
    assert neutralise(text) == text.replace("<", "&lt;")
