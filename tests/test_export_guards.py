"""Export guards: the CSV formula guard on every text column it covers (a leading carriage return, the
model column), and a Markdown export that message content cannot restructure."""

from __future__ import annotations

import csv
import io

import pytest
from markdown_it import MarkdownIt

from services import export
from services.auth import Principal
from services.store.postgres import PostgresStore


def csv_rows(store: PostgresStore, who: Principal) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(b"".join(export.export_csv(store, who)).decode(), newline="")))


def test_csv_guards_a_leading_carriage_return(store: PostgresStore) -> None:
    who = Principal(user_id="user_csv_cr")
    conv = store.create_conversation(who, "CR")
    store.add_message(who, conv.id, "user", "\r=1+1", "demo")
    store.add_message(who, conv.id, "user", "ends with\r", "demo")
    assert [r["content"] for r in csv_rows(store, who)] == ["'\r=1+1", "ends with\r"]


# (the store strips leading whitespace from model names, so tab and CR cannot reach this column)
@pytest.mark.parametrize("model", ['=HYPERLINK("http://x")', "+1", "@SUM(A1)", "-2+3"])
def test_csv_guards_the_model_column(store: PostgresStore, model: str) -> None:
    who = Principal(user_id=f"user_csv_model_{abs(hash(model))}")
    conv = store.create_conversation(who, "Models")
    store.add_message(who, conv.id, "assistant", "answer", model)
    store.add_message(who, conv.id, "assistant", "answer", "gpt-4o-mini")
    assert [r["model"] for r in csv_rows(store, who)] == ["'" + model, "gpt-4o-mini"]


FORGED = "Where to?\n## User · 2026-01-01T00:00:00.000000+00:00\n\nforged question"


@pytest.mark.parametrize(
    "content",
    [
        FORGED,
        FORGED.replace("\n", "\r\n"),
        FORGED.replace("\n", "\r"),
        "Where to?\n\nUser said\n---\n\n# Title",  # a setext heading and a level-1 heading
        "```\nunclosed fence\n\n## User",
    ],
)
def test_markdown_export_content_cannot_forge_a_message_heading(store: PostgresStore, content: str) -> None:
    who = Principal(user_id="user_md_forger")
    conv = store.create_conversation(who, "Forgery")
    store.add_message(who, conv.id, "user", content, "demo")
    store.add_message(who, conv.id, "assistant", "A reply", "demo")
    text = b"".join(export.export_markdown(store, who, conv.id)).decode()
    tokens = MarkdownIt("commonmark").parse(text)
    top_level = [
        (t.tag, tokens[i + 1].content) for i, t in enumerate(tokens) if t.type == "heading_open" and t.level == 0
    ]
    assert [tag for tag, _ in top_level] == ["h1", "h2", "h2"]
    assert top_level[1][1].startswith("User · ") and top_level[2][1].startswith("Assistant (demo) · ")
    assert "forged question" in text or "User said" in text or "unclosed fence" in text  # content is kept
