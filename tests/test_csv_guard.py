"""CSV export formula guard (issue 9, finding 6): OWASP's rule, on every text cell, through Postgres COPY.

A cell whose first character other than spaces is `=`, `+`, `-`, `@`, a tab or a carriage return gets a
leading apostrophe. The old guard let "- ..." and " =..." through. The JSON export stays lossless."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from services import export
from services.auth import Principal
from services.store.postgres import PostgresStore

GUARDED = [
    "=1+1",
    "+1+1",
    "-1+1",
    "@SUM(A1)",
    "\t=1+1",
    "\r=1+1",
    "- item",  # missed before: "-" then a space
    ' =HYPERLINK("http://evil.test")',  # missed before: a space first
    "  +1",
    "   -2",
    " @x",
    "-5",  # any leading "-", numbers included: the CSV is for reading, JSON is exact
    "--",
]
UNGUARDED = ["hello", "a=b", "1-2", "x @y", "  hello", "'already quoted", "\nline", "5-"]


@pytest.fixture(scope="module")
def exported(store: PostgresStore) -> tuple[list[str], dict[str, dict[str, str]], dict[str, Any]]:
    who = Principal(user_id="user_csv_guard")
    conversation = store.create_conversation(who, "- a title like a list item")
    texts = GUARDED + UNGUARDED
    ids = [str(store.add_message(who, conversation.id, "user", text, "-model").id) for text in texts]
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(b"".join(export.export_csv(store, who)).decode()))}
    document = json.loads(b"".join(export.export_json(store, who)))
    return ids, rows, document


def cell(exported: tuple[list[str], dict[str, dict[str, str]], object], text: str) -> dict[str, str]:
    ids, rows, _ = exported
    return rows[ids[(GUARDED + UNGUARDED).index(text)]]


@pytest.mark.parametrize("text", GUARDED, ids=repr)
def test_formula_cells_get_an_apostrophe(
    exported: tuple[list[str], dict[str, dict[str, str]], object], text: str
) -> None:
    assert cell(exported, text)["content"] == "'" + text


@pytest.mark.parametrize("text", UNGUARDED, ids=repr)
def test_ordinary_text_is_kept_exactly(
    exported: tuple[list[str], dict[str, dict[str, str]], object], text: str
) -> None:
    assert cell(exported, text)["content"] == text


def test_every_text_column_is_guarded(exported: tuple[list[str], dict[str, dict[str, str]], object]) -> None:
    row = cell(exported, "hello")
    assert row["conversation_title"] == "'- a title like a list item"
    assert row["model"] == "'-model"


def test_json_export_is_lossless(exported: tuple[list[str], dict[str, dict[str, str]], dict[str, Any]]) -> None:
    ids, _, document = exported
    messages = {m["id"]: m for m in document["messages"]}
    assert [messages[i]["content"] for i in ids] == GUARDED + UNGUARDED
    assert messages[ids[0]]["model"] == "-model"
    assert [c["title"] for c in document["conversations"]] == ["- a title like a list item"]
