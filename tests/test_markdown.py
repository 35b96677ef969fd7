"""Rendering safety: no text from a user or a model can make the browser fetch an image."""

from __future__ import annotations

import pytest

from components.markdown import neutralise, safe_stream


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
