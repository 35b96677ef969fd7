"""History page under AppTest: the real app.py (CHAT_AUTH=none, a reviewer) on the real test database.

Pages through, searches, filters, bad query parameters, the detail view, export buttons, the usage
chart, the reviewer toggle and both delete dialogs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from streamlit.testing.v1 import AppTest

from components import state
from components.auth_gate import LOCAL_USER
from services.history_query import parse_query
from services.runtime import reset_shared_services
from services.store.embedded import EmbeddedDatabase

ROOT = Path(__file__).resolve().parents[1]
ME = LOCAL_USER.user_id
T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def seed(admin_url: str, user_id: str, count: int, title: str = "Chat") -> uuid.UUID:
    """One conversation of `count` messages, one minute apart; even ones say 'apple', every 5th is an error."""
    cid = uuid.uuid4()
    with psycopg.connect(admin_url) as conn:
        conn.execute("insert into public.conversations (id, user_id, title) values (%s, %s, %s)", [cid, user_id, title])
        conn.execute(
            """
            insert into public.messages (conversation_id, user_id, role, content, model, status,
                                         input_tokens, output_tokens, created_at)
            select %(cid)s, %(uid)s, case when i %% 2 = 0 then 'user' else 'assistant' end,
                   concat_ws(' ', 'note', i::text, case when i %% 2 = 0 then 'apple' end),
                   case when i %% 3 = 0 then 'demo' else 'gpt-4o' end,
                   case when i %% 5 = 0 then 'error' else 'complete' end,
                   i, 2 * i, %(t0)s + i * interval '1 minute'
            from generate_series(0, %(n)s - 1) as i
            """,
            {"cid": cid, "uid": user_id, "n": count, "t0": T0},
        )
    return cid


def detail_box(at: AppTest) -> Any:
    """The "Message details" picker (its key changes with the page, so find it by label)."""
    (box,) = [s for s in at.selectbox if s.label == "Message details"]
    return box


def numbers(at: AppTest) -> list[int]:
    frame = at.dataframe[0].value
    return [int(text.split()[1]) for text in frame["Preview"]]


@pytest.fixture
def app(database: EmbeddedDatabase, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppTest]:
    with psycopg.connect(database.admin_url) as conn:
        conn.execute("delete from public.conversations")  # each test starts from a known history
    monkeypatch.setenv("CHAT_AUTH", "none")
    monkeypatch.setenv("DATABASE_URL", database.app_url)
    monkeypatch.setenv("DATABASE_ADMIN_URL", database.admin_url)
    reset_shared_services()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.run()
    at.switch_page("pages/history.py")
    yield at
    reset_shared_services()


def test_pages_through_with_cursors_in_the_url(app: AppTest, database: EmbeddedDatabase) -> None:
    seed(database.admin_url, ME, 45)
    app.run()
    assert not app.exception
    assert numbers(app) == list(range(44, 24, -1))
    assert app.query_params.get("before") is None
    older = app.button(key="history.older")
    assert not older.disabled and app.button(key="history.newer").disabled
    older.click().run()
    assert numbers(app) == list(range(24, 4, -1))
    page2 = app.query_params["before"]
    app.button(key="history.older").click().run()
    assert numbers(app) == [4, 3, 2, 1, 0]
    assert app.button(key="history.older").disabled
    app.button(key="history.newer").click().run()
    assert numbers(app) == list(range(24, 4, -1))
    app.button(key="history.newer").click().run()
    assert numbers(app) == list(range(44, 24, -1))
    assert "after" not in app.query_params and "before" not in app.query_params  # back at the canonical URL

    # A bookmarked page reloads as the same page in a new session.
    fresh = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    fresh.run()
    fresh.switch_page("pages/history.py")
    fresh.query_params.update({"limit": "20", "before": page2})
    fresh.run()
    assert numbers(fresh) == list(range(24, 4, -1))
    assert not fresh.warning


def test_page_size_from_the_widget_and_the_url(app: AppTest, database: EmbeddedDatabase) -> None:
    seed(database.admin_url, ME, 30)
    app.query_params["limit"] = "10"
    app.run()
    assert numbers(app) == list(range(29, 19, -1))
    app.selectbox(key=state.HISTORY_LIMIT).set_value(50).run()
    assert app.query_params["limit"] == "50" and len(numbers(app)) == 30


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"limit": "7"}, "Page size"),
        ({"limit": "abc"}, "Page size"),
        ({"limit": "1000"}, "Page size"),
        ({"before": "not-a-cursor"}, "not valid"),
        ({"after": "AAAA"}, "not valid"),
        ({"before": "x", "after": "y"}, "not valid"),
        ({"role": "system"}, "Unknown role"),
        ({"status": "done"}, "Unknown status"),
        ({"from": "yesterday"}, "not a date"),
        ({"conversation": "123"}, "conversation"),
    ],
)
def test_bad_query_params_show_a_notice_and_the_first_page(
    app: AppTest, database: EmbeddedDatabase, params: dict[str, str], says: str
) -> None:
    seed(database.admin_url, ME, 25)
    app.query_params.update(params)
    app.run()
    assert not app.exception and not app.error
    assert any(says in w.value for w in app.warning), [w.value for w in app.warning]
    assert numbers(app) == list(range(24, 4, -1))
    assert "before" not in app.query_params and "after" not in app.query_params


@pytest.mark.parametrize(
    "params",
    [{"limit": "²"}, {"to": "9999-12-31"}, {"role": "![x](http://127.0.0.1:9/x.png)"}],
    ids=["unicode-digit-limit", "last-representable-day", "image-markdown-role"],
)
def test_hostile_links_show_the_first_page_and_a_plain_notice(
    app: AppTest, database: EmbeddedDatabase, params: dict[str, str]
) -> None:
    seed(database.admin_url, ME, 25)
    app.query_params.update(params)
    app.run()
    assert not app.exception and not app.error
    assert len(app.warning) == 1
    assert numbers(app) == list(range(24, 4, -1))
    assert set(app.query_params) == {"limit"}  # the URL now says what is shown
    # Nothing rendered anywhere (warnings, captions, markdown, widgets) carries the link's image syntax.
    rendered = [str(node.proto) for node in [*app.main, *app.sidebar] if hasattr(node, "proto")]
    assert len(rendered) > 10 and not any("![" in text or "x.png" in text for text in rendered)


def test_a_cursor_from_another_listing_falls_back_to_the_first_page(app: AppTest, database: EmbeddedDatabase) -> None:
    seed(database.admin_url, ME, 45)
    app.run()
    app.button(key="history.older").click().run()
    cursor = app.query_params["before"]
    app.query_params.update({"q": "apple", "before": cursor})  # same cursor, different listing
    app.run()
    assert any("not valid" in w.value for w in app.warning)
    assert numbers(app) == [n for n in range(44, -1, -1) if n % 2 == 0][:20]


def test_search_and_filters_update_the_url_and_keep_paging(app: AppTest, database: EmbeddedDatabase) -> None:
    seed(database.admin_url, ME, 60)
    app.run()
    app.text_input(key=state.HISTORY_QUERY).input("apple").run()
    assert app.query_params["q"] == "apple"
    assert numbers(app) == [n for n in range(59, -1, -1) if n % 2 == 0][:20]
    app.button(key="history.older").click().run()
    assert numbers(app) == [n for n in range(59, -1, -1) if n % 2 == 0][20:]
    assert app.query_params["q"] == "apple" and app.query_params["before"]

    app.selectbox(key=state.HISTORY_STATUS).set_value("error").run()
    assert "before" not in app.query_params  # a filter change starts at the first page
    assert numbers(app) == [n for n in range(59, -1, -1) if n % 2 == 0 and n % 5 == 0]
    app.selectbox(key=state.HISTORY_ROLE).set_value("assistant").run()
    assert app.query_params["role"] == "assistant"
    assert "No messages match." in [i.value for i in app.info]  # apple is only in user messages

    app.text_input(key=state.HISTORY_QUERY).input("").run()
    app.selectbox(key=state.HISTORY_STATUS).set_value(None).run()
    app.selectbox(key=state.HISTORY_MODEL).set_value("demo").run()
    assert numbers(app) == [n for n in range(59, -1, -1) if n % 2 == 1 and n % 3 == 0]
    assert set(app.dataframe[0].value["Model"]) == {"demo"}


def test_date_range_in_the_url_selects_whole_days(app: AppTest, database: EmbeddedDatabase) -> None:
    seed(database.admin_url, ME, 10)
    seed(database.admin_url, ME, 3, title="Later")  # same times: both conversations on 2026-05-01
    app.query_params.update({"from": "2026-05-02"})
    app.run()
    assert "No messages match." in [i.value for i in app.info]
    app.query_params.update({"from": "2026-05-01", "to": "2026-05-01"})
    app.run()
    assert len(numbers(app)) == 13
    assert app.date_input(key=state.HISTORY_FROM).value.isoformat() == "2026-05-01"


def test_an_end_date_before_the_start_from_the_widgets_is_ignored(app: AppTest, database: EmbeddedDatabase) -> None:
    seed(database.admin_url, ME, 3)
    app.run()
    app.date_input(key=state.HISTORY_FROM).set_value(date(2026, 5, 1)).run()
    assert app.query_params["from"] == "2026-05-01" and len(numbers(app)) == 3
    app.date_input(key=state.HISTORY_TO).set_value(date(2026, 4, 30)).run()
    assert not app.exception
    assert [w.value for w in app.warning] == ["The date range ends before it starts; the end date is ignored."]
    assert "to" not in app.query_params and len(numbers(app)) == 3
    assert app.date_input(key=state.HISTORY_TO).value is None  # the widget follows the URL


def test_detail_view_renders_markdown_safely_and_links_to_the_chat(app: AppTest, database: EmbeddedDatabase) -> None:
    cid = seed(database.admin_url, ME, 1, title="Pics ![t](http://evil.test/t.png)")
    with psycopg.connect(database.admin_url) as conn:
        conn.execute(
            "update public.messages set content = %s where conversation_id = %s",
            ["note 0 **bold** ![x](http://evil.test/x.png) <img src=http://evil.test/y.png> `![code](z)`", cid],
        )
    app.run()
    detail_box(app).select_index(1).run()
    bodies = [m.value for m in app.markdown]
    body = next(b for b in bodies if "**bold**" in b)
    assert "!\\[x](http://evil.test/x.png)" in body and "![x]" not in body
    assert "`![code](z)`" in body  # code spans are shown as written
    assert all("![t]" not in b for b in bodies)
    assert not any(getattr(m.proto, "allow_html", False) for m in app.markdown)
    links = app.get("page_link")
    assert len(links) == 1 and links[0].proto.query_string == f"c={cid}"
    assert [b.proto.label for b in app.get("download_button")] == ["Conversation as Markdown"]


def test_export_buttons_and_usage_chart(app: AppTest, database: EmbeddedDatabase) -> None:
    seed(database.admin_url, ME, 12)
    app.query_params.update({"from": "2026-04-25", "to": "2026-05-03"})
    app.run()
    app.radio(key=state.HISTORY_VIEW).set_value("Usage").run()
    assert not app.exception
    assert len(app.get("vega_lite_chart")) == 3  # messages, tokens, feedback per day
    assert [m.value for m in app.metric] == ["12", str(sum(3 * i for i in range(12))), "0", "0"]
    app.radio(key=state.HISTORY_VIEW).set_value("Export & delete").run()
    labels = [b.proto.label for b in app.get("download_button")]
    assert labels == ["All messages as CSV", "All data as JSON"]


def test_reviewer_toggle_shows_every_user_read_only(app: AppTest, database: EmbeddedDatabase) -> None:
    seed(database.admin_url, ME, 3)
    seed(database.admin_url, "user_other", 3, title="Someone else")
    app.run()
    assert "User" not in app.dataframe[0].value.columns and len(numbers(app)) == 3
    app.toggle(key=state.HISTORY_ALL_USERS).set_value(True).run()
    assert app.query_params["scope"] == "all"
    frame = app.dataframe[0].value
    assert set(frame["User"]) == {LOCAL_USER.claims["name"], "user_other"} and len(frame) == 6  # a name, else the id
    options = detail_box(app).options
    idx = next(i for i in range(1, len(options)) if frame["User"].iloc[i - 1] == "user_other")
    detail_box(app).select_index(idx).run()
    assert any("read-only" in c.value for c in app.caption)
    assert [link.proto.label for link in app.get("page_link")] == ["Open in chat (read-only)"]
    assert not app.get("download_button")
    assert all(b.key != "history.delete.one" for b in app.button)


def test_parse_query_drops_all_users_for_non_reviewers() -> None:
    query, notices = parse_query({"scope": "all", "limit": "20"}, may_review=False)
    assert query.all_users is False and any("only for reviewers" in n for n in notices)
    query, notices = parse_query({"scope": "all"}, may_review=True)
    assert query.all_users is True and notices == []


def test_delete_one_conversation_through_the_dialog(app: AppTest, database: EmbeddedDatabase) -> None:
    keep = seed(database.admin_url, ME, 2, title="Keep")
    gone = seed(database.admin_url, ME, 1, title="Gone")
    with psycopg.connect(database.admin_url) as conn:  # make "Gone" the newest message
        conn.execute("update public.messages set created_at = %s where conversation_id = %s", [T0 + timedelta(1), gone])
    app.run()
    detail_box(app).select_index(1).run()
    app.button(key="history.delete.one").click().run()
    assert app.button(key="history.delete.one.confirm")  # the dialog asks first
    app.button(key="history.delete.one.cancel").click().run()
    with psycopg.connect(database.admin_url) as conn:
        assert conn.execute("select count(*) from public.conversations where id = %s", [gone]).fetchone() == (1,)
    detail_box(app).select_index(1).run()
    app.button(key="history.delete.one").click().run()
    app.button(key="history.delete.one.confirm").click().run()
    assert not app.exception
    assert "Conversation deleted." in [s.value for s in app.success]
    with psycopg.connect(database.admin_url) as conn:
        left = conn.execute("select id from public.conversations where user_id = %s", [ME]).fetchall()
    assert left == [(keep,)]
    assert len(numbers(app)) == 2


def test_delete_all_my_data_needs_typed_confirmation(app: AppTest, database: EmbeddedDatabase) -> None:
    seed(database.admin_url, ME, 5)
    seed(database.admin_url, "user_other", 4)
    app.run()
    app.radio(key=state.HISTORY_VIEW).set_value("Export & delete").run()
    app.button(key="history.delete.all").click().run()
    # Typing and clicking once is enough (issue 12, item 5): the form sends the text with the click.
    app.text_input(key="history.delete.all.typed").input("delete")
    app.button(key="history.delete.all.confirm").click().run()
    assert any("Type DELETE" in e.value for e in app.error)
    with psycopg.connect(database.admin_url) as conn:
        assert conn.execute("select count(*) from public.messages where user_id = %s", [ME]).fetchone() == (5,)
    app.text_input(key="history.delete.all.typed").input("DELETE")
    app.button(key="history.delete.all.confirm").click().run()
    assert not app.exception
    assert any("5 messages" in s.value for s in app.success)
    with psycopg.connect(database.admin_url) as conn:
        mine = conn.execute("select count(*) from public.messages where user_id = %s", [ME]).fetchone()
        theirs = conn.execute("select count(*) from public.messages where user_id = 'user_other'").fetchone()
    assert (mine, theirs) == ((0,), (4,))


def test_coming_back_from_chat_keeps_the_filters_the_url_names(app: AppTest, database: EmbeddedDatabase) -> None:
    # Issue 12, item 1: History -> Chat -> History wrote the widgets' defaults (10 per page, today..today)
    # into the URL, and older messages vanished.
    seed(database.admin_url, ME, 25)
    app.run()
    assert len(numbers(app)) == 20
    for _ in range(2):  # the second visit was the broken one; the third must be as good
        app.switch_page("pages/chat.py").run()
        assert not app.exception
        app.query_params.clear()  # Streamlit's navigation drops the query string on a page switch
        app.switch_page("pages/history.py").run()
        assert not app.exception
        assert dict(app.query_params) in ({}, {"limit": "20"}), dict(app.query_params)
        assert len(numbers(app)) == 20 and not app.warning
        assert app.date_input(key=state.HISTORY_FROM).value is None
        assert app.selectbox(key=state.HISTORY_LIMIT).value == 20

    # Filters named by the URL survive a round trip through Chat that keeps the link.
    app.selectbox(key=state.HISTORY_ROLE).set_value("user").run()
    assert app.query_params["role"] == "user" and len(numbers(app)) == 13
    app.switch_page("pages/chat.py").run()
    app.query_params.update({"role": "user", "limit": "20"})
    app.switch_page("pages/history.py").run()
    assert app.query_params["role"] == "user" and len(numbers(app)) == 13
    assert app.selectbox(key=state.HISTORY_ROLE).value == "user"


def test_empty_filters_read_all_and_user_rows_have_no_token_none(app: AppTest, database: EmbeddedDatabase) -> None:
    # Issue 12, item 6: an empty filter showed Streamlit's "Choose an option" placeholder, cut off; a user
    # message (no usage) showed "None" under Tokens.
    seed(database.admin_url, ME, 4)
    with psycopg.connect(database.admin_url) as conn:
        conn.execute("update public.messages set input_tokens = null, output_tokens = null where role = 'user'")
    app.run()
    for key in (state.HISTORY_CONVERSATION, state.HISTORY_ROLE, state.HISTORY_MODEL, state.HISTORY_STATUS):
        box = app.selectbox(key=key)
        assert box.value is None and box.proto.placeholder == "All", (key, box.proto.placeholder)
    frame = app.dataframe[0].value
    tokens = dict(zip(frame["Role"], frame["Tokens"], strict=False))
    assert list(frame["Tokens"]) == ["9", "", "3", ""] and tokens["user"] == ""
    assert all(str(t) not in ("None", "<NA>", "nan") for t in frame["Tokens"])


def test_reviewer_sees_names_opens_others_chats_read_only_and_usage_by_user(
    app: AppTest, database: EmbeddedDatabase
) -> None:
    # Issue 12, item 8: users appeared as raw ids, another user's message had no way into its chat, and
    # Usage did not say who used what.
    seed(database.admin_url, ME, 3)
    theirs = seed(database.admin_url, "local:bob", 4, title="Bob's chat")
    with psycopg.connect(database.admin_url) as conn:
        conn.execute("delete from public.profiles")
        conn.execute("insert into public.profiles (user_id, display_name) values ('local:bob', 'Bob **Builder**')")
        conn.execute("update public.messages set created_at = now() - interval '1 hour'")  # inside Usage's range
    fresh = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    fresh.run()  # a new session keeps its own name from the token's claims
    fresh.switch_page("pages/history.py").run()
    fresh.toggle(key=state.HISTORY_ALL_USERS).set_value(True).run()
    frame = fresh.dataframe[0].value
    assert set(frame["User"]) == {"Bob **Builder**", LOCAL_USER.claims["name"]}, set(frame["User"])
    idx = next(i for i in range(len(frame)) if frame["User"].iloc[i] == "Bob **Builder**")
    detail_box(fresh).select_index(idx + 1).run()
    assert "User: Bob **Builder** (local:bob)" in [t.value for t in fresh.text]  # literal text, id alongside
    (link,) = fresh.get("page_link")
    assert link.proto.label == "Open in chat (read-only)" and f"c={theirs}" in link.proto.query_string
    fresh.radio(key=state.HISTORY_VIEW).set_value("Usage").run()
    assert not fresh.exception
    by_user = fresh.dataframe[0].value
    assert dict(zip(by_user["User"], by_user["Messages"], strict=True)) == {
        "Bob **Builder**": 4,
        LOCAL_USER.claims["name"]: 3,
    }
