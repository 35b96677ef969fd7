"""Markdown neutraliser benchmark: what safe_stream costs for a long streamed reply.

    python bench/markdown.py [--reps 5]

Streams a 2,000-chunk, ~8 KB reply (paragraphs, lists, a table, code fences, a few images and HTML
tags, like a model's answer) through components.markdown.safe_stream and prints the best and median
wall time, the number of outputs (renders st.write_stream would make) and the number of parses, beside
one neutralise() of the whole text.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from markdown_it.token import Token  # noqa: E402

from components import markdown  # noqa: E402

BLOCK = (
    "Here is an answer with `inline code`, **bold**, a [link](https://example.test) and ![a pixel]"
    "(http://tracker.example/p.png).\n\n"
    "- first item with <b>html</b>\n- second item `![in code](x)`\n\n"
    "| name | value |\n|------|-------|\n| a | ![img](http://tracker.example/t.png) |\n\n"
    "```python\nprint('![kept](literal)')\n```\n\n"
)


def reply(size: int = 8192, chunks: int = 2000) -> list[str]:
    text = (BLOCK * (size // len(BLOCK) + 1))[:size]
    step = len(text) / chunks
    cuts = [round(i * step) for i in range(chunks + 1)]
    return [text[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    chunks = reply()
    text = "".join(chunks)
    parses = 0
    original = markdown._parse

    def counting(text: str, every_reference: bool = True) -> tuple[list[Token], bool]:
        nonlocal parses
        parses += 1
        return original(text, every_reference)

    markdown._parse = counting
    times, outputs = [], 0
    for _ in range(args.reps):
        parses = 0
        start = time.perf_counter()
        outputs = len(list(markdown.safe_stream(chunks)))
        times.append(time.perf_counter() - start)
    stream_parses = parses
    start = time.perf_counter()
    markdown.neutralise(text)
    whole = time.perf_counter() - start
    print(f"reply: {len(chunks)} chunks, {len(text):,} characters")
    print(f"safe_stream: best {min(times) * 1000:.0f} ms, median {statistics.median(times) * 1000:.0f} ms")
    print(f"  outputs (renders): {outputs}, parses: {stream_parses}")
    print(f"neutralise(whole reply) once: {whole * 1000:.1f} ms")


if __name__ == "__main__":
    main()
