"""Walking keyset pages: the one loop behind "load more", "show earlier" and the exports.

Listings return one `Page` per call with an opaque cursor to the next one; callers that need several
pages (or all of them) go through here instead of writing the cursor loop again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

from services.store import Page

T = TypeVar("T")


def walk_pages(fetch: Callable[[str | None], Page[T]], pages: int | None = None) -> Iterator[Page[T]]:
    """Pages from `fetch(cursor)`, first one with cursor None, until the listing ends or `pages` pages
    (at least one) have been read; `pages=None` reads to the end. Lazy: a page is fetched when wanted."""
    cursor: str | None = None
    taken = 0
    while True:
        page = fetch(cursor)
        yield page
        taken += 1
        cursor = page.next_cursor
        if cursor is None or (pages is not None and taken >= pages):
            return


def collect_pages(fetch: Callable[[str | None], Page[T]], pages: int | None = None) -> tuple[list[T], str | None]:
    """The items of `walk_pages(fetch, pages)` in listing order, and the cursor to continue from (None when
    the listing has ended)."""
    items: list[T] = []
    cursor: str | None = None
    for page in walk_pages(fetch, pages):
        items.extend(page.items)
        cursor = page.next_cursor
    return items, cursor
