"""Chat rendering: message bubbles with a quiet meta line, the streamed reply, the sidebar conversation
list, and the inline error with Retry.

Model and user text is markdown rendered without `unsafe_allow_html` (HTML shows as text), and before
rendering every image (`![..](..)`, reference images, raw `<img>`) is neutralised so the browser never
fetches a URL that a model or a user put in a message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import streamlit as st

from components.markdown import neutralise, safe_stream
from services.chat import Outcome, Reply
from services.providers.catalogue import Catalogue
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


def conversation_list(
    conversations: Sequence[Conversation],
    current: str | None,
    on_select: Callable[[str], None],
    has_more: bool,
    on_more: Callable[[], None],
) -> None:
    st.caption("Conversations")
    if not conversations:
        st.caption("No conversations yet.")
    for conversation in conversations:
        cid = str(conversation.id)
        st.button(
            neutralise(conversation.title),
            key=f"conversation-{cid}",
            type="primary" if cid == current else "tertiary",
            on_click=on_select,
            args=(cid,),
            width="stretch",
        )
    if has_more:
        st.button("Load more", key="conversations-more", on_click=on_more, icon=":material/expand_more:")
