"""Chat page: pick a model, talk, watch the reply stream in; conversations in the sidebar.

Thin by design: widgets -> one ChatService call -> components render. Session-state keys live in
components/state.py; `?c=<conversation id>` in the URL names the open conversation, so a reload (or a
link from the History page) opens it again.
"""

from __future__ import annotations

import streamlit as st

from components import chat as view
from components import state
from components.auth_gate import require_principal
from components.history import user_timezone
from components.models import model_picker
from components.shell import page_services
from services.auth import Principal
from services.chat import Reply
from services.errors import UserError
from services.runtime import Services
from services.store import Conversation, Message, NotFound

principal: Principal = require_principal()  # first: a fresh server may run this file without app.py
services: Services = page_services()
chat, catalogue = services.chat, services.catalogue


# --- callbacks (run before the next script run) ---------------------------------------------------


def open_conversation(cid: str) -> None:
    st.query_params["c"] = cid
    st.session_state[state.WINDOW_PAGES] = 1


def new_chat() -> None:
    st.query_params.pop("c", None)
    st.session_state[state.WINDOW_PAGES] = 1


def show_earlier() -> None:
    st.session_state[state.WINDOW_PAGES] = st.session_state.get(state.WINDOW_PAGES, 1) + 1


def load_more_conversations() -> None:
    st.session_state[state.CONVERSATION_PAGES] = st.session_state.get(state.CONVERSATION_PAGES, 1) + 1


def regenerate(cid: str) -> None:
    st.session_state[state.PENDING] = cid


def send_example(text: str) -> None:
    st.session_state[state.EXAMPLE] = text


# --- sidebar: model picker and New chat ------------------------------------------------------------

with st.sidebar:
    model: str = model_picker(principal, chat)
    st.button("New chat", icon=":material/add:", on_click=new_chat, width="stretch")

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

last: Message | None = None
if conversation is not None:
    try:
        window = chat.window(principal, conversation, st.session_state.get(state.WINDOW_PAGES, 1))
    except UserError as exc:
        st.error(exc.message)
        st.stop()
    if window.has_more:
        st.button("Show earlier messages", icon=":material/history:", on_click=show_earlier)
    view.messages(window.messages, catalogue)
    last = window.messages[-1] if window.messages else None

first_screen = st.empty()
if conversation is None:
    with first_screen.container():
        view.welcome(send_example, offline=not catalogue.has_real_provider)

# --- input ---------------------------------------------------------------------------------------

if state.DRAFT in st.session_state:
    # A message that could not be sent goes back into the input box instead of being lost.
    st.session_state[state.CHAT_INPUT] = st.session_state.pop(state.DRAFT)
prompt = None if read_only else st.chat_input("Message", key=state.CHAT_INPUT, submit_mode="stop")
example = st.session_state.pop(state.EXAMPLE, None)
if not prompt and not read_only and isinstance(example, str):
    prompt = example
pending = st.session_state.pop(state.PENDING, None)

reply: Reply | None = None
if prompt:
    first_screen.empty()
    try:
        reply = chat.send(principal, conversation.id if conversation else None, prompt, model)
        reply.start()  # the model's latency overlaps the drawing below
    except UserError as exc:
        st.session_state[state.FLASH] = exc.message
        if prompt != example:
            st.session_state[state.DRAFT] = prompt
        st.rerun()
    if reply is not None and reply.created_conversation:
        st.query_params["c"] = str(reply.conversation_id)
        st.session_state[state.WINDOW_PAGES] = 1
    view.user_bubble(prompt)
elif pending and conversation is not None and not read_only and str(conversation.id) == pending:
    try:
        reply = chat.regenerate(principal, conversation.id, model)
        reply.start()
    except UserError as exc:
        view.input_error(exc.message)

if reply is None and conversation is not None and not read_only:
    view.last_message_actions(last, str(conversation.id), regenerate)

# --- sidebar: conversations, newest first. Drawn before the reply streams: after a stop Streamlit draws
# nothing more, and a chat created above must be listed. -------------------------------------------------

with st.sidebar:
    try:
        items, more = chat.recent_conversations(principal, st.session_state.get(state.CONVERSATION_PAGES, 1))
    except UserError as exc:
        st.error(exc.message)
    else:
        current = str(reply.conversation_id) if reply else (str(conversation.id) if conversation else None)
        view.conversation_list(items, current, open_conversation, more, load_more_conversations, user_timezone())

if flash := st.session_state.pop(state.FLASH, None):
    view.input_error(flash)  # last in the page, just above the input box that holds the text again

if reply is not None:
    # An example prompt is sent by a button, not the chat input, so it gets no chat-input stop: its own.
    view.live_reply(reply, catalogue, regenerate, from_chat_input=bool(prompt) and prompt != example)
