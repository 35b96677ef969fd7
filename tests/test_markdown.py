"""Rendering safety: no text from a user or a model can make the browser fetch an image."""

from __future__ import annotations

import pytest

from components.markdown import neutralise, parse, safe_stream, unsafe_tokens


@pytest.mark.parametrize(
    "text",
    [
        "![x](http://evil.test/a.png)",
        "look ![x][ref]\n\n[ref]: http://evil.test/b.png",
        "<img src=http://evil.test/c.png>",
        "<IMG SRC=http://evil.test/d.png>",
        "\\`![x](http://evil.test/e.png)`",  # escaped backtick: not a code span, so the image is live
        "`code` then ![x](http://evil.test/f.png) then `more`",
        "- item ![x](http://evil.test/g.png)",
        "> quote ![x](http://evil.test/h.png)",
    ],
)
def test_images_outside_code_are_made_literal(text: str) -> None:
    out = neutralise(text)
    assert "![" not in out.replace("!\\[", "")
    assert "<img" not in out.lower().replace("\\<img", "")


@pytest.mark.parametrize(
    "text",
    [
        "`![code](z)`",
        "``![code](z) with ` inside``",
        "```\n![in a fence](z)\n<img src=z>\n```",
        "~~~python\nprint('![x](y)')\n~~~",
    ],
)
def test_code_is_shown_exactly_as_written(text: str) -> None:
    assert neutralise(text) == text


def test_streamed_output_adds_up_to_the_neutralised_text() -> None:
    text = "Here: ![x](http://evil.test/i.png) and <img src=j> done"
    chunks = [text[i : i + 3] for i in range(0, len(text), 3)]
    assert "".join(safe_stream(chunks)) == neutralise(text)


# Each of these made the browser fetch the URL through the regex neutraliser this module replaced: it
# split lines where markdown does not, and paired backticks differently from the renderer.
BYPASSES = [
    "x\u2028```\n![x](http://evil.test/1.png)",  # U+2028 is no line break to markdown: no fence opens
    "x\u2029```\n![x](http://evil.test/2.png)",
    "x\x85```\n![x](http://evil.test/3.png)",
    "x\x0b```\n![x](http://evil.test/4.png)",
    "x\x0c```\n![x](http://evil.test/5.png)",
    "`a\nb` ![x](http://evil.test/6.png) `c`",  # a code span over two lines pairs the backticks differently
    "`a``b` ![x](http://evil.test/7.png) `c`",  # a run of two backticks cannot close a run of one
    "```a`b\n![x](http://evil.test/8.png)\n```",  # a backtick in the info string: not a fence
    "| a | b |\n|---|---|\n| `x | ![y](http://evil.test/9.png)` |",  # cells split before code spans
]


@pytest.mark.parametrize("text", BYPASSES)
def test_regex_bypasses_are_closed(text: str) -> None:
    assert unsafe_tokens(parse(text, every_reference=False)), "the case must be hostile to begin with"
    assert not unsafe_tokens(parse(neutralise(text), every_reference=False))
    assert not unsafe_tokens(parse(neutralise(text)))


@pytest.mark.parametrize(
    "text",
    [
        "[^1]: ![x](http://evil.test/a.png)\n\nnote[^1]",  # inside a footnote definition
        "[^unused]: ![x](http://evil.test/b.png)",  # in a definition nothing refers to
        "[![x](http://evil.test/c.png)](http://example.test)",  # inside a link
        "![![x](http://evil.test/d.png)](http://evil.test/e.png)",  # in an image's alt text
        "# title ![x](http://evil.test/f.png) ##",
        "a | b\n--|--\n![x](http://evil.test/g.png) \\| ![y](http://evil.test/h.png) | c ![z](http://evil.test/i)",
        "<div>\n![x](http://evil.test/j.png)\n</div>",  # an HTML block hides markdown until it is escaped
        "[^<a]: x <b>y</b>",
        "1. one\n   > ![x](http://evil.test/k.png)",
    ],
)
def test_images_in_every_container_are_made_literal(text: str) -> None:
    out = neutralise(text)
    assert not unsafe_tokens(parse(out)) and not unsafe_tokens(parse(out, every_reference=False))


def test_only_the_image_and_html_characters_change() -> None:
    text = "Keep `![code](z)` and $![math](z)$, not ![x](http://evil.test/a.png) or <b>"
    assert neutralise(text) == "Keep `![code](z)` and $![math](z)$, not !\\[x](http://evil.test/a.png) or \\<b>"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # An HTML block (the tag alone on its line) and inline HTML: the scheme's colon is escaped too.
        ('<img src="http://evil.test/a.png">', '\\<img src="http\\://evil.test/a.png">'),
        ('a <img src="https://e.test/x"> b <i>', 'a \\<img src="https\\://e.test/x"> b \\<i>'),
        (
            '| a | <b title="ftp://q.test"> |\n|---|---|\n| c | d |',
            '| a | \\<b title="ftp\\://q.test"> |\n|---|---|\n| c | d |',
        ),
        # Already escaped: a second backslash would show as text.
        ('x <a href="http\\://z.test">', 'x \\<a href="http\\://z.test">'),
        # URLs outside HTML are left to the renderer, which links them correctly.
        ("see http://ok.test/ and <b>", "see http://ok.test/ and \\<b>"),
    ],
)
def test_urls_inside_literal_html_are_not_linked_with_the_tags_end(text: str, expected: str) -> None:
    assert neutralise(text) == expected


# markdown-it stops descending at 20 levels of nesting and leaves the rest unparsed, where Streamlit's renderer
# does not stop: each of these, one level past what markdown-it reads, made Chromium fetch the image. Such text
# is made literal as a whole (the fallback: no `![` and no `<` left, code spans included).
TOO_DEEP = [
    "> " * 20 + "![x](http://evil.test/deep-quote.png)",
    "- " * 10 + "![x](http://evil.test/deep-list.png)",  # a list and its item are a level each
    "![" * 21 + "x" + "](u)" * 20 + "](http://evil.test/deep-image.png)",
]


@pytest.mark.parametrize("text", TOO_DEEP)
def test_text_nested_too_deep_to_parse_is_made_literal_as_a_whole(text: str) -> None:
    assert neutralise(text + " `<`") == text.replace("![", "!\\[") + " `&lt;`"


def test_nesting_the_parser_reads_is_still_neutralised_exactly() -> None:
    text = "- " * 9 + "![x](u) <b> `<`\n\n" + "> " * 19 + "<i>\n\n" + "![" * 20 + "x" + "](u)" * 20
    expected = "- " * 9 + "!\\[x](u) \\<b> `<`\n\n" + "> " * 19 + "\\<i>\n\n" + "!\\[" * 20 + "x" + "](u)" * 20
    assert neutralise(text) == expected
