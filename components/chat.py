"""Chat rendering: message bubbles with a quiet meta line, the streamed reply, the sidebar conversation
list, and the inline error with Retry.

Model and user text is markdown rendered without `unsafe_allow_html` (HTML shows as text), and before
rendering every image (`![..](..)`, reference images, raw `<img>`) is neutralised so the browser never
fetches a URL that a model or a user put in a message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

import streamlit as st

from components.markdown import neutralise, safe_stream
from services.chat import Outcome, Reply
from services.providers.catalogue import Catalogue
from services.providers.demo import EXAMPLES
from services.store import Conversation, Message

AVATARS = {"user": ":material/person:", "assistant": ":material/smart_toy:"}
STATUS_NOTES = {
    "interrupted": "Stopped before the end.",
    "error": "This reply failed before it was complete.",
    "streaming": "Still being written, or cut off.",
}


def meta_line(message: Message, catalogue: Catalogue) -> str:
    option = catalogue.option(message.model)
    parts = [option.label if option else message.model]
    if message.input_tokens is not None or message.output_tokens is not None:
        parts.append(f"{message.input_tokens or 0:,} in · {message.output_tokens or 0:,} out tokens")
    if message.latency_ms is not None:
        parts.append(f"{message.latency_ms / 1000:.1f} s")
    return " · ".join(parts)


def message_bubble(message: Message, catalogue: Catalogue) -> None:
    with st.chat_message(message.role, avatar=AVATARS.get(message.role)):
        if message.content:
            st.markdown(neutralise(message.content))
        if message.role == "assistant":
            note = STATUS_NOTES.get(message.status)
            st.caption(f"{meta_line(message, catalogue)}" + (f" · {note}" if note else ""))


def messages(items: Sequence[Message], catalogue: Catalogue) -> None:
    for message in items:
        message_bubble(message, catalogue)


def user_bubble(text: str) -> None:
    with st.chat_message("user", avatar=AVATARS["user"]):
        st.markdown(neutralise(text))


def streamed_reply(reply: Iterable[str], close: Callable[[], None]) -> None:
    """Stream a reply into an assistant bubble. `close` runs whatever happens, including Streamlit
    stopping the script (stop button, rerun, closed tab) in the middle of the stream."""
    try:
        st.write_stream(safe_stream(reply))
    finally:
        close()


def live_reply(reply: Reply, catalogue: Catalogue, on_regenerate: Callable[[str], None]) -> None:
    """The reply being generated: streamed into a bubble, then its meta line, or an error with Retry."""
    cid = str(reply.conversation_id)
    with st.chat_message("assistant", avatar=AVATARS["assistant"]):
        streamed_reply(reply, reply.close)
        outcome = reply.outcome
        outcome_line(outcome, catalogue)
        if outcome is not None and outcome.status == "error":
            st.toast(f"The reply failed: {outcome.error}", icon=":material/error:")
            reply_error(outcome.error or "The reply failed.", "retry-live", on_regenerate, cid)
        else:
            regenerate_button("regenerate-live", on_regenerate, cid)


def last_message_actions(last: Message | None, cid: str, on_regenerate: Callable[[str], None]) -> None:
    """Under a conversation's last message: Retry when it has no complete reply, else Regenerate."""
    if last is None:
        return
    if last.role == "user" or last.status == "error":
        reply_error("The last message has no complete reply.", "retry-last", on_regenerate, cid)
    else:
        regenerate_button("regenerate-last", on_regenerate, cid)


def regenerate_button(key: str, on_regenerate: Callable[[str], None], cid: str) -> None:
    st.button("Regenerate", key=key, icon=":material/refresh:", on_click=on_regenerate, args=(cid,), type="tertiary")


def outcome_line(outcome: Outcome | None, catalogue: Catalogue) -> None:
    if outcome is None or outcome.message is None:
        return
    note = STATUS_NOTES.get(outcome.status) if outcome.status != "error" else None
    st.caption(meta_line(outcome.message, catalogue) + (f" · {note}" if note else ""))


def reply_error(text: str, retry_key: str, on_retry: Callable[[str], None], cid: str) -> None:
    """An inline error with a Retry button (the message the user typed is already stored)."""
    st.error(text, icon=":material/error:")
    st.button("Retry", key=retry_key, icon=":material/refresh:", on_click=on_retry, args=(cid,))


# Every ASCII punctuation character may be backslash-escaped in markdown (CommonMark), and a button label is
# markdown: escaping all of them shows a title exactly as typed ("# Release notes", "**bold**", ":smile:").
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def plain_label(text: str) -> str:
    """`text` as a widget label that renders literally: no bold, no code, no links, no icons."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(text.split()))


DAY_GROUPS = ("Today", "Yesterday", "Previous 7 days", "Older")


def day_group(moment: datetime, today: date) -> str:
    """Which sidebar group a conversation last active at `moment` (in the user's time zone) falls in."""
    age = (today - moment.date()).days
    if age <= 0:
        return "Today"
    if age == 1:
        return "Yesterday"
    return "Previous 7 days" if age <= 7 else "Older"


def grouped_by_day(
    conversations: Sequence[Conversation], tz: ZoneInfo, now: datetime
) -> list[tuple[str, list[Conversation]]]:
    """Conversations (newest first) in DAY_GROUPS order, empty groups left out, days in the user's zone."""
    today = now.astimezone(tz).date()
    groups: dict[str, list[Conversation]] = {name: [] for name in DAY_GROUPS}
    for conversation in conversations:
        groups[day_group(conversation.updated_at.astimezone(tz), today)].append(conversation)
    return [(name, items) for name, items in groups.items() if items]


def conversation_list(
    conversations: Sequence[Conversation],
    current: str | None,
    on_select: Callable[[str], None],
    has_more: bool,
    on_more: Callable[[], None],
    tz: ZoneInfo,
) -> None:
    st.caption("Conversations")
    if not conversations:
        st.caption("No conversations yet.")
    for group, items in grouped_by_day(conversations, tz, datetime.now(tz)):
        st.caption(group)
        for conversation in items:
            cid = str(conversation.id)
            # Plain text, one line, at the left (a content-width button sits left; a long title ends in "…").
            st.button(
                plain_label(conversation.title),
                key=f"conversation-{cid}",
                type="primary" if cid == current else "tertiary",
                on_click=on_select,
                args=(cid,),
                width="content",
                wrap=False,
            )
    if has_more:
        st.button("Load more", key="conversations-more", on_click=on_more, icon=":material/expand_more:")


# --- the first screen ---------------------------------------------------------------------------------

# Prompts the offline demo model answers meaningfully (services/providers/demo.py knows them too).
EXAMPLE_PROMPTS = EXAMPLES


def welcome(on_example: Callable[[str], None], *, offline: bool) -> None:
    """The empty chat: a short welcome and example prompts that send when clicked."""
    st.subheader("What would you like to talk about?")
    st.caption(
        "Type a message below, or start with one of these. Your conversations are kept in the sidebar "
        "and on the History page." + (" The offline demo model answers them without any network." if offline else "")
    )
    cols = st.columns(2)
    for n, example in enumerate(EXAMPLE_PROMPTS):
        cols[n % 2].button(
            plain_label(example),
            key=f"example-{n}",
            icon=":material/chat_bubble:",
            on_click=on_example,
            args=(example,),
            width="stretch",
        )


# --- input errors -------------------------------------------------------------------------------------


def input_error(text: str) -> None:
    """An error about what the user just sent, where they are looking: at the end of the page, right above
    the input box (which holds their text again), and as a toast that stays in view however far the
    conversation is scrolled."""
    st.error(text, icon=":material/error:")
    st.toast(text, icon=":material/error:")
