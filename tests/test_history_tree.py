"""History over the message tree: every stored version is listed, those on the current path are marked,
and the exports carry what rebuilds the tree (parent ids, each conversation's current leaf)."""

from __future__ import annotations

import json
import uuid
from zoneinfo import ZoneInfo

from components.history import history_frame
from services.auth import Principal
from services.history import HistoryService
from services.history_query import HistoryQuery
from services.store.postgres import PostgresStore


def test_every_version_is_listed_and_the_current_path_marked(store: PostgresStore) -> None:
    me = Principal(user_id=f"user_hist_{uuid.uuid4().hex[:8]}")
    cid = store.create_conversation(me, "versions").id
    question = store.add_message(me, cid, "user", "question", "demo")
    first = store.add_message(me, cid, "assistant", "first answer", "demo")
    second = store.add_message(me, cid, "assistant", "second answer", "demo", parent_id=question.id)
    history = HistoryService(store)
    view = history.page(me, HistoryQuery(), ZoneInfo("UTC"))
    assert {r.id for r in view.page.items} == {question.id, first.id, second.id}
    assert view.on_path == {question.id, second.id}
    frame = history_frame(view.page.items, ZoneInfo("UTC"), show_user=False, on_path=view.on_path)
    assert dict(zip(frame["Preview"], frame["Version"], strict=True)) == {
        "question": "current",
        "first answer": "other version",
        "second answer": "current",
    }
    store.choose_branch(me, first.id)
    assert history.page(me, HistoryQuery(), ZoneInfo("UTC")).on_path == {question.id, first.id}

    with history.export_json(me) as spooled:
        document = json.loads(spooled.read())
    parents = {m["id"]: m["parent_id"] for m in document["messages"]}
    assert parents == {str(question.id): None, str(first.id): str(question.id), str(second.id): str(question.id)}
    (conversation,) = document["conversations"]
    assert conversation["current_leaf_id"] == str(first.id) and conversation["instructions"] == ""
