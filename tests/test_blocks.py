"""The block splitter: where a message may be cut into separately rendered elements, and that a streamed
message ends with exactly the blocks its stored copy is drawn with."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.blocks import BlockSplitter, close_for_display, split_blocks

MIXED = (
    "# Title\n\nFirst paragraph\nstill first.\n\n- a\n- b\n\n1. one\n\n2. two\n\n"
    "```py\ncode\n\nmore code\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n$$\nx\n\ny\n$$\n\nLast words"
)


def test_blocks_are_cut_between_top_level_blocks_only() -> None:
    split = split_blocks(MIXED)
    assert split.closed == [
        "# Title",
        "First paragraph\nstill first.",
        "- a\n- b",
        "1. one\n\n2. two",  # a loose ordered list stays one element: looseness and numbering hold
        "```py\ncode\n\nmore code\n```",  # never inside a fence, even at a blank line
        "| a | b |\n|---|---|\n| 1 | 2 |",
        "$$\nx\n\ny\n$$",  # never inside $$ math, which Streamlit's renderer lets span blank lines
    ]
    assert split.open == "Last words" and not split.whole


@pytest.mark.parametrize(
    "text",
    ["See [the docs][d].\n\nMore.\n\n[d]: https://example.com", "A claim[^1].\n\nMore.\n\n[^1]: The source."],
    ids=["reference", "footnote"],
)
def test_a_definition_makes_the_whole_message_one_block(text: str) -> None:
    split = split_blocks(text)
    assert split.whole and split.closed == [] and split.open == text


def test_an_open_fence_keeps_everything_after_it_in_the_open_block() -> None:
    assert split_blocks("Intro\n\n```\ncode\n\nstill code").closed == ["Intro"]


@pytest.mark.parametrize(
    ("shown", "displayed"),
    [
        ("```py\nx = 1", "```py\nx = 1\n```"),
        ("~~~~\nx\n~~~~", "~~~~\nx\n~~~~"),
        ("Some **bold", "Some **bold**"),
        ("Some **bold** text", "Some **bold** text"),
        ("$$\nx +", "$$\nx +\n$$"),
    ],
)
def test_unfinished_markdown_is_closed_for_display(shown: str, displayed: str) -> None:
    assert close_for_display(shown) == displayed


PIECES = st.sampled_from(
    ["word ", "more words", "\n", "\n\n", "# ", "- ", "1. ", "2. ", "  ", "```", "~~~", "| a | b |", "|---|---|",
     "$$", "> ", "**", "[x][r]", "[r]: http://e.x", "[^1]", "[^1]: note", "---", "===", "    code", "<div>", "`"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=40), st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_streaming_ends_with_the_blocks_of_the_stored_message(pieces: list[str], cuts: list[int]) -> None:
    # Blocks frozen while a message streams are never redrawn, so every block frozen from any prefix must
    # be a block of the final message, and the stream must end with exactly the stored message's blocks.
    text = "".join(pieces)
    final = split_blocks(text)
    splitter = BlockSplitter()
    for cut in sorted(cuts):
        splitter.feed(text[:cut])
    splitter.feed(text)
    if final.whole:
        assert splitter.whole
    else:
        assert not splitter.whole
        assert splitter.closed == [block for block in final.closed if block.strip()]
        assert splitter.open_block(text) == final.open
