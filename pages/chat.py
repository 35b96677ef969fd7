"""Chat page: pick a model, talk, watch the reply stream in; conversations in the sidebar.

Thin by design: widgets -> one ChatService call -> components render. Session-state keys live in
components/state.py; `?c=<conversation id>` in the URL names the open conversation, so a reload (or a
link from the History page) opens it again.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable

import streamlit as st

from components import attachments as files_view
from components import chat as view
from components import conversation_tools as tools
from components import feedback as feedback_view
from components import state
from components.auth_gate import require_principal
from components.history import user_timezone
from components.models import model_picker
from components.shell import page_services
from services.attachments import FILE_TYPES, AttachmentRefused, Upload
from services.auth import Principal
from services.chat import REQUEST_HEAD_START_S, Reply, Window
from services.errors import UserError
from services.runtime import Services
from services.store import Conversation, Message, NotFound

principal: Principal = require_principal()  # first: a fresh server may run this file without app.py
services: Services = page_services()
chat, catalogue = services.chat, services.catalogue
feedback = services.feedback if services.feedback is not None and services.feedback.enabled else None


def _flash_errors(action: Callable[[], object]) -> None:
    """Run a callback's service call; a refusal becomes the one-shot notice above the input box."""
    try:
        action()
    except UserError as exc:
        st.session_state[state.FLASH] = exc.message


# --- callbacks (run before the next script run) ---------------------------------------------------


def open_conversation(cid: str) -> None:
    st.query_params["c"] = cid
    st.session_state[state.WINDOW_PAGES] = 1


def new_chat() -> None:
    st.query_params.pop("c", None)
    st.session_state[state.WINDOW_PAGES] = 1
    st.session_state.pop(state.NEW_INSTRUCTIONS, None)  # a new chat starts from the default instructions


def show_earlier() -> None:
    st.session_state[state.WINDOW_PAGES] = st.session_state.get(state.WINDOW_PAGES, 1) + 1


def load_more_conversations() -> None:
    st.session_state[state.CONVERSATION_PAGES] = st.session_state.get(state.CONVERSATION_PAGES, 1) + 1


def regenerate(cid: str) -> None:
    st.session_state[state.PENDING] = cid


def send_example(text: str) -> None:
    st.session_state[state.EXAMPLE] = text


def switch_version(message_id: str) -> None:
    # Stored as the conversation's current leaf: a reload or another tab shows the same version.
    _flash_errors(lambda: chat.switch(principal, message_id))
    st.session_state[state.WINDOW_PAGES] = 1


def start_edit(message_id: str) -> None:
    st.session_state[state.EDITING] = message_id


def save_edit(message_id: str) -> None:
    st.session_state.pop(state.EDITING, None)
    st.session_state[state.PENDING_EDIT] = (message_id, st.session_state.get(view.edit_key(message_id), ""))


def cancel_edit() -> None:
    st.session_state.pop(state.EDITING, None)


def filter_changed() -> None:
    st.session_state[state.CONVERSATION_PAGES] = 1


def rename_open() -> None:
    cid = st.session_state.pop(state.RENAMING, None)
    if cid:
        _flash_errors(lambda: chat.rename(principal, cid, st.session_state.get(state.RENAME_TEXT, "")))


def delete_open() -> None:
    cid = st.session_state.pop(state.CONFIRM_DELETE, None)
    if cid:
        _flash_errors(lambda: chat.delete(principal, cid))
        if st.query_params.get("c") == cid:
            new_chat()


def thumb_changed(message_id: str) -> None:
    # Clicking the given thumb again takes it back (the widget answers None): the feedback goes, comment too.
    if feedback is None:
        return
    rating = feedback_view.rating_of(message_id)
    if rating is None:
        _flash_errors(lambda: feedback.clear(principal, message_id))
    else:
        _flash_errors(lambda: feedback.give(principal, message_id, rating))


def save_comment(message_id: str) -> None:
    rating = feedback_view.rating_of(message_id)
    if feedback is not None and rating is not None:
        _flash_errors(lambda: feedback.give(principal, message_id, rating, feedback_view.typed_comment(message_id)))


def clear_comment(message_id: str) -> None:
    rating = feedback_view.rating_of(message_id)
    if feedback is not None and rating is not None:
        _flash_errors(lambda: feedback.give(principal, message_id, rating, ""))


def remove_pending_file(index: int) -> None:
    held = list(st.session_state.get(state.PENDING_FILES, []))
    if 0 <= index < len(held):
        del held[index]
    st.session_state[state.PENDING_FILES] = held


def open_file(attachment_id: uuid.UUID) -> bytes:
    """A stored original, read when its download button is clicked (never on an ordinary rerun)."""
    return chat.attachment_file(principal, attachment_id).data


def save_instructions(cid: str) -> None:
    _flash_errors(lambda: chat.set_instructions(principal, cid, st.session_state.get(f"instructions-{cid}", "")))


# --- sidebar: model picker and New chat ------------------------------------------------------------

with st.sidebar:
    model: str = model_picker(principal, chat)
    st.button("New chat", icon=":material/add:", on_click=new_chat, width="stretch")
    title_filter = tools.conversation_filter(filter_changed)

narrow_chats = st.container(key="narrow-chats")  # filled with the sidebar's list below, for phones

if not catalogue.has_real_provider:
    st.caption(
        ":material/info: Offline demo model: replies are canned and need no network. "
        "Set OPENAI_API_KEY, ANTHROPIC_API_KEY or OPENAI_BASE_URL to chat with a real model."
    )

# --- the open conversation -------------------------------------------------------------------------

conversation: Conversation | None = None
if cid_param := st.query_params.get("c"):
    try:
        conversation = chat.open_conversation(principal, cid_param)
    except NotFound:
        st.warning("That conversation does not exist (or is not yours). Starting a new chat.")
        st.query_params.pop("c", None)
    except UserError as exc:
        st.error(exc.message)
        st.stop()

read_only = conversation is not None and conversation.user_id != principal.user_id
if read_only:
    st.info("You are viewing another user's conversation. It is read-only.", icon=":material/visibility:")

# Every reply starts before the conversation is drawn: the model's latency overlaps that drawing (and the
# sidebar's), instead of the drawing delaying the request. An edit is then already the conversation's path;
# a regenerate replaces the reply it re-answers at the end of the page; a sent message is drawn at the end.
reply: Reply | None = None
regenerating = False
action_error: str | None = None
pending = st.session_state.pop(state.PENDING, None)
pending_edit = st.session_state.pop(state.PENDING_EDIT, None)
if conversation is not None and not read_only:
    if pending_edit is not None:
        try:
            reply = chat.edit(principal, pending_edit[0], pending_edit[1], model)
            reply.start(REQUEST_HEAD_START_S)
        except UserError as exc:
            action_error = exc.message
            st.session_state[state.EDITING] = pending_edit[0]  # the editor stays open with the text
    elif pending and str(conversation.id) == pending:
        try:
            reply = chat.regenerate(principal, conversation.id, model)
            reply.start(REQUEST_HEAD_START_S)
            regenerating = True
        except UserError as exc:
            action_error = exc.message

# The chat input sits in the page's bottom container wherever it is called, so it is read here, before the
# conversation is drawn.
if state.DRAFT in st.session_state:
    # A message that could not be sent goes back into the input box instead of being lost.
    st.session_state[state.CHAT_INPUT] = st.session_state.pop(state.DRAFT)
submitted = (
    None
    if read_only
    else st.chat_input(
        "Message",
        key=state.CHAT_INPUT,
        submit_mode="stop",
        accept_file="multiple",
        file_type=list(FILE_TYPES),  # the browser's picker only; every file is checked again by its content
        max_upload_size=services.settings.file_max_mb,
    )
)
# Files held after a refused send go with the next message (a file cannot be put back into the input).
held: list[Upload] = list(st.session_state.get(state.PENDING_FILES, []))
prompt: str | None = None
sending: list[Upload] = []
if submitted is not None:
    prompt = submitted.text
    sending = held + [Upload(f.name, f.getvalue()) for f in submitted.files]
example = st.session_state.pop(state.EXAMPLE, None)
if not prompt and not sending and not read_only and isinstance(example, str):
    prompt = example

if (prompt or sending) and reply is None:
    instructions = None if conversation else st.session_state.get(state.NEW_INSTRUCTIONS)
    try:
        reply = chat.send(
            principal,
            conversation.id if conversation else None,
            prompt or "",
            model,
            instructions=instructions,
            files=sending,
        )
        reply.start(REQUEST_HEAD_START_S)
    except UserError as exc:
        st.session_state[state.FLASH] = exc.message
        if prompt and prompt != example:
            st.session_state[state.DRAFT] = prompt
        # A refused file is named in the message and dropped; every other file waits for the retry.
        st.session_state[state.PENDING_FILES] = list(exc.kept if isinstance(exc, AttachmentRefused) else sending)
        st.rerun()
    if sending:
        st.session_state.pop(state.PENDING_FILES, None)  # sent with this message
    if reply is not None and reply.created_conversation:
        st.query_params["c"] = str(reply.conversation_id)
        st.session_state[state.WINDOW_PAGES] = 1
elif prompt or sending:
    # Typed while an edit was being answered: kept in the input box for the next run, never dropped.
    if prompt:
        st.session_state[state.DRAFT] = prompt
    st.session_state[state.PENDING_FILES] = sending
    prompt = None
    sending = []
sent: Message | None = reply.user_message if reply is not None and (prompt or sending) else None
view.preload_code_rendering()  # so that a reply's first code block draws at once

last: Message | None = None
if conversation is not None:
    tools.conversation_header(conversation, read_only=read_only, on_rename=rename_open, on_delete=delete_open)
    tools.instructions_box(
        conversation.instructions,
        f"instructions-{conversation.id}",
        read_only=read_only,
        on_save=functools.partial(save_instructions, str(conversation.id)),
    )
    try:
        window = chat.window(principal, conversation, st.session_state.get(state.WINDOW_PAGES, 1))
    except UserError as exc:
        st.error(exc.message)
        if reply is None:
            st.stop()
        window = Window([], False)  # a reply already started still streams and is stored
    if window.has_more:
        st.button("Show earlier messages", icon=":material/history:", on_click=show_earlier)
    # A message sent in this run is already stored: it is drawn below, with its reply, not in the history.
    shown = [m for m in window.messages if sent is None or m.id != sent.id]
    if regenerating:
        # Until its first words are stored, the path still ends with the reply being replaced.
        while shown and shown[-1].role == "assistant":
            shown = shown[:-1]
    branching = (
        None
        if read_only
        else view.Branching(
            switch_version, start_edit, save_edit, cancel_edit, editing=st.session_state.get(state.EDITING)
        )
    )
    ratings = None
    if feedback is not None:
        try:
            ratings = feedback_view.FeedbackControls(
                feedback.for_messages(principal, shown),
                thumb_changed,
                save_comment,
                clear_comment,
                feedback.comment_chars,
                read_only=read_only,
            )
        except UserError as exc:
            st.caption(f":material/error: {exc.message}")  # the conversation is still shown, without thumbs
    view.messages(
        shown, catalogue, window.versions, branching, window.attachments, open_file, ratings, replying=reply is not None
    )
    last = shown[-1] if shown else None

first_screen = st.empty()  # drawn in every run, so the page keeps the same places whether it is filled
if conversation is not None:
    # What was typed for a chat that started is its own: the next new chat starts from the default again.
    st.session_state.pop(state.NEW_INSTRUCTIONS, None)
elif reply is None:
    if state.NEW_INSTRUCTIONS not in st.session_state:
        # Read once per new chat, not on every run: the run that sends the first message does not wait for it.
        try:
            st.session_state[state.NEW_INSTRUCTIONS] = chat.default_instructions(principal)
        except UserError as exc:
            st.warning(f"Your default instructions could not be read, so the server's are shown. {exc.message}")
    with first_screen.container():
        tools.instructions_box(
            st.session_state.get(state.NEW_INSTRUCTIONS, services.settings.default_instructions),
            state.NEW_INSTRUCTIONS,
            read_only=False,
            on_save=None,
        )
        view.welcome(send_example, offline=not catalogue.has_real_provider)

# --- what this run sent --------------------------------------------------------------------------

if sent is not None and reply is not None:
    view.user_bubble(sent.content, reply.attachments, open_file, reply.notices)
if action_error is not None:
    view.input_error(action_error)

if reply is None and conversation is not None and not read_only:
    view.last_message_actions(last, str(conversation.id), regenerate)

# --- sidebar: conversations, newest first. Drawn before the reply streams: after a stop Streamlit draws
# nothing more, and a chat created above must be listed. -------------------------------------------------

with st.sidebar:
    try:
        items, more = chat.recent_conversations(
            principal, st.session_state.get(state.CONVERSATION_PAGES, 1), title_filter=title_filter
        )
    except UserError as exc:
        st.error(exc.message)
    else:
        current = str(reply.conversation_id) if reply else (str(conversation.id) if conversation else None)
        view.conversation_list(
            items, current, open_conversation, more, load_more_conversations, user_timezone(), title_filter
        )
        view.narrow_screen_chats(narrow_chats, items, current, open_conversation, new_chat)

if flash := st.session_state.pop(state.FLASH, None):
    view.input_error(flash)  # last in the page, just above the input box that holds the text again
if not read_only:
    files_view.pending_files(st.session_state.get(state.PENDING_FILES, []), remove_pending_file)

if reply is not None:
    # An example prompt is sent by a button, not the chat input, so it gets no chat-input stop: its own.
    live_feedback = None
    if feedback is not None:
        live_feedback = feedback_view.FeedbackControls(
            {}, thumb_changed, save_comment, clear_comment, feedback.comment_chars
        )
    view.live_reply(
        reply,
        catalogue,
        regenerate,
        from_chat_input=submitted is not None and prompt != example,
        feedback=live_feedback,
    )
