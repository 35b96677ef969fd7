"""Chat rendering: message bubbles with a quiet meta line, the streamed reply, the sidebar conversation
list, and the inline error with Retry.

Model and user text is markdown rendered without `unsafe_allow_html` (HTML shows as text), and before
rendering every image (`![..](..)`, reference images, raw `<img>`) is neutralised so the browser never
fetches a URL that a model or a user put in a message.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import streamlit as st
from streamlit.delta_generator import DeltaGenerator
from streamlit.runtime.scriptrunner_utils.script_run_context import get_run_yield_check

from components import feedback as feedback_view
from components import state
from components.attachments import FileOpener, files_in_bubble
from components.blocks import BlockSplitter, close_for_display
from components.markdown import neutralise
from services.chat import Reply
from services.feedback import rateable
from services.providers.catalogue import Catalogue
from services.providers.demo import EXAMPLES
from services.store import Attachment, Conversation, Message, Versions

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


# Pace of redrawing the open block: at least this often (the longest freeze while text arrives) ...
FASTEST_S = 0.05
SLOWEST_S = 0.2
# ... and, beyond this size, slow enough that re-sending a growing block costs about REDRAW_COST x its size.
FREEZE_WINS_BELOW = 16 * 1024
REDRAW_COST = 5


class Bubble:
    """A chat bubble of a fixed shape: finished markdown blocks (each its own element, never re-sent),
    the open block (redrawn as it grows), the attached files, the meta line, the actions. Every bubble has
    all these slots, a
    user bubble too: Streamlit keeps an earlier run's element at the same place until this run draws
    there, so a user bubble drawn where an assistant bubble was would otherwise show its meta line."""

    def __init__(self, role: str) -> None:
        with st.chat_message(role, avatar=AVATARS.get(role)):
            self._frozen = st.container()
            self._open = st.empty()
            self.files = st.empty()
            self.meta = st.empty()
            self.actions = st.empty()
        self._splitter = BlockSplitter()
        self._drawn: list[DeltaGenerator] = []  # the frozen blocks' places
        self._shown_open: str | None = None
        self._grew_at: float | None = None
        self._rate = 0.0  # characters a second the open block grows by (smoothed)

    def show(self, text: str, unfinished: bool = False) -> None:
        """Draw `text` (the whole message so far). `unfinished` closes an open fence or `**` for display."""
        finished, reset = self._splitter.feed(text)
        if reset:
            # A reference or footnote definition applies to the whole message (or turned out not to be
            # one): the blocks drawn so far are emptied one by one. Not by redrawing their container: a
            # block redrawn in place keeps its children, and Streamlit's send queue may drop an `empty()`
            # that a redraw of the same place follows before the queue is flushed.
            for drawn in self._drawn:
                drawn.empty()
            self._drawn = []
            self._shown_open = None
        for block in finished:
            slot = self._frozen.empty()
            slot.markdown(neutralise(block))
            self._drawn.append(slot)
        if finished:
            self._shown_open = None
        block = self._splitter.open_block(text)
        self._measure(len(block))
        if unfinished:
            block = close_for_display(block)
        if block != self._shown_open:
            if block.strip():
                self._open.markdown(neutralise(block))
            else:
                self._open.empty()
            self._shown_open = block

    def _measure(self, open_size: int) -> None:
        now = time.monotonic()
        shown = len(self._shown_open or "")
        if self._grew_at is not None and open_size > shown and now > self._grew_at:
            rate = (open_size - shown) / (now - self._grew_at)
            self._rate = rate if not self._rate else 0.7 * self._rate + 0.3 * rate
        self._grew_at = now

    def interval(self) -> float:
        """Seconds until the open block is redrawn again: re-sending it costs its size each time, so a
        big block growing slowly is redrawn less often (up to 16 KB never slower than the freeze limit)."""
        size = len(self._shown_open or "")
        if not self._rate:
            return FASTEST_S
        paced = size / (REDRAW_COST * self._rate)
        if size <= FREEZE_WINS_BELOW:
            return min(SLOWEST_S, max(FASTEST_S, paced))
        return max(SLOWEST_S, min(paced, 2.0))


def tick() -> None:
    """Call into Streamlit without drawing: this is where a stop or rerun request is noticed (it raises
    here), so a reply waiting on a silent provider still stops within a tick."""
    check = get_run_yield_check()
    if check is not None:
        check()


# The first code block on a page makes the browser fetch Streamlit's syntax highlighter (a lazily loaded
# script) and the code font: while they load (0.5-0.6 s measured by bench/stream.py's mixed reply) a reply
# streaming its first code block shows nothing new. An invisible code block drawn with the page loads both
# before any reply needs them. Out of the flow and hidden (also from screen readers); it takes no space.
CODE_PRELOAD_KEY = "code-preload"
CODE_PRELOAD_CSS = (
    f"<style>.st-key-{CODE_PRELOAD_KEY}{{position:absolute;width:1px;height:1px;overflow:hidden;"
    "visibility:hidden;pointer-events:none}</style>"
)


def preload_code_rendering() -> None:
    with st.container(key=CODE_PRELOAD_KEY):
        st.html(CODE_PRELOAD_CSS)
        st.code("x = 1  # a comment: its italic face is a font file of its own", language="python")


@dataclass(frozen=True)
class Branching:
    """What the shown messages can do on the tree: switch versions, edit a user message. `editing` is the
    id of the message whose editor is open. Without it (reviewers' read-only view) versions are only
    counted, never switched."""

    on_switch: Callable[[str], None]
    on_edit: Callable[[str], None]
    on_save_edit: Callable[[str], None]
    on_cancel_edit: Callable[[], None]
    editing: str | None = None


def edit_key(message_id: str) -> str:
    """The session-state key of the text area that edits this message."""
    return f"edit-text-{message_id}"


def version_switcher(mid: str, versions: Versions, branching: Branching | None) -> None:
    """`‹ 2 / 3 ›`: the arrows show the previous or next version (and its branch's continuation)."""
    label = f"{versions.index + 1} / {len(versions.ids)}"
    if branching is None:
        st.caption(f"Version {label}")
        return
    previous, following = versions.previous, versions.next
    # Its own content-wide row, so the arrows stay beside the count whatever else shares the actions row.
    with st.container(horizontal=True, width="content", vertical_alignment="center", gap=None):
        st.button(
            "‹", key=f"version-prev-{mid}", type="tertiary", disabled=previous is None, help="Previous version",
            on_click=branching.on_switch, args=(str(previous),),
        )
        st.caption(label, width="content")
        st.button(
            "›", key=f"version-next-{mid}", type="tertiary", disabled=following is None, help="Next version",
            on_click=branching.on_switch, args=(str(following),),
        )


def message_bubble(
    message: Message,
    catalogue: Catalogue,
    versions: Versions | None = None,
    branching: Branching | None = None,
    files: Sequence[Attachment] = (),
    open_file: FileOpener | None = None,
    feedback: feedback_view.FeedbackControls | None = None,
    replying: bool = False,
) -> Bubble:
    """A stored message. `replying`: this run goes on to write a reply, so nothing here may rerun the page."""
    bubble = Bubble(message.role)
    if files and open_file is not None:
        files_in_bubble(bubble.files, files, open_file)
    mid = str(message.id)
    if branching is not None and branching.editing == mid:
        # The editor in place of the text: saving makes a new version and answers it; the original stays.
        # Editor and buttons sit in the open block's place: the run that answers the edit draws the new text
        # there, which replaces them at once (anywhere else they would stay, faded, until that run ends).
        with bubble._open.container():
            st.text_area("Edit message", value=message.content, key=edit_key(mid), label_visibility="collapsed")
            with st.container(horizontal=True):
                st.button("Save", key=f"edit-save-{mid}", type="primary", on_click=branching.on_save_edit, args=(mid,))
                st.button("Cancel", key=f"edit-cancel-{mid}", on_click=branching.on_cancel_edit)
        return bubble
    bubble.show(message.content, unfinished=message.status != "complete")
    if message.role == "assistant":
        note = STATUS_NOTES.get(message.status)
        bubble.meta.caption(f"{meta_line(message, catalogue)}" + (f" · {note}" if note else ""))
    editable = branching is not None and message.role == "user"
    copyable = message.role == "assistant" and bool(message.content)
    rate = feedback is not None and rateable(message)
    if versions is not None or editable or copyable or rate:
        with bubble.actions.container(horizontal=True, vertical_alignment="center", gap="small"):
            if versions is not None:
                version_switcher(mid, versions, branching)
            if editable and branching is not None:
                st.button(
                    "Edit", key=f"edit-{mid}", icon=":material/edit:", type="tertiary",
                    on_click=branching.on_edit, args=(mid,),
                )
            if copyable:
                copy_popover(message.content, mid, lazy=not replying)
            if rate and feedback is not None:
                feedback_view.controls(message.id, feedback)
    return bubble


def copy_popover(text: str, message_id: str, lazy: bool = True) -> None:
    """Copy a reply as its raw markdown: a popover holding the text as a code block, whose copy icon copies it.

    Streamlit 1.67 has no copy button for arbitrary text; its code blocks (st.code, and fenced code inside
    markdown) carry one, which copies the block's text as given (navigator.clipboard.writeText). The text
    goes to the browser as data in the code element, never as HTML, and no script of this app's runs.

    `lazy`: the text is sent only when the popover is opened (opening it reruns the page), not with every
    reply on every run: drawn eagerly, each reply's text went to the browser twice, and the Copy of a reply
    just streamed was 7% of its bytes. Only a run that is writing a reply draws eagerly: opening a lazy
    popover there would rerun the page, which stops the reply."""
    popover = st.popover(
        "Copy", icon=":material/content_copy:", type="tertiary", help="This reply as markdown",
        key=f"copy-{message_id}" if lazy else None, on_change="rerun" if lazy else "ignore",
    )  # fmt: skip
    if lazy and not popover.open:
        return
    with popover:
        # st.code drops one newline at each end of its text: padded, the copied text is `text` exactly.
        st.code(f"\n{text}\n", language="markdown", wrap_lines=True, height=COPY_HEIGHT_PX)


COPY_HEIGHT_PX = 320  # beyond this the code block scrolls inside the popover; its copy icon stays in view


def messages(
    items: Sequence[Message],
    catalogue: Catalogue,
    versions: Mapping[uuid.UUID, Versions] | None = None,
    branching: Branching | None = None,
    files: Mapping[uuid.UUID, Sequence[Attachment]] | None = None,
    open_file: FileOpener | None = None,
    feedback: feedback_view.FeedbackControls | None = None,
    replying: bool = False,
) -> list[Bubble]:
    known, attached = versions or {}, files or {}
    return [
        message_bubble(
            m, catalogue, known.get(m.id), branching, attached.get(m.id, ()), open_file, feedback, replying
        )
        for m in items
    ]


def user_bubble(
    text: str, files: Sequence[Attachment] = (), open_file: FileOpener | None = None, notices: Sequence[str] = ()
) -> None:
    """The message just sent, with its files, and what the user should know about them (a file cut to fit
    the model's context)."""
    bubble = Bubble("user")
    bubble.show(text)
    if files and open_file is not None:
        files_in_bubble(bubble.files, files, open_file)
    if notices:
        bubble.meta.caption(" ".join(plain_label(note) for note in notices))


def streamed_reply(reply: Reply, bubble: Bubble) -> None:
    """Stream a reply into a bubble block by block. The reply is closed whatever happens, including
    Streamlit stopping the script (stop button, rerun, closed tab) in the middle of the stream."""
    reply.pace = bubble.interval
    text = ""
    try:
        for piece in reply:
            if piece:
                text += piece
                bubble.show(text)
            else:
                tick()
    finally:
        reply.close()
    outcome = reply.outcome
    if outcome is not None and outcome.status != "complete":
        bubble.show(text, unfinished=True)


def live_reply(
    reply: Reply,
    catalogue: Catalogue,
    on_regenerate: Callable[[str], None],
    from_chat_input: bool,
    feedback: feedback_view.FeedbackControls | None = None,
) -> None:
    """The reply being generated. What must stay on the page if the user stops it is drawn first: after
    a stop Streamlit draws nothing more.

    Every live reply has its own Stop button (pressing it reruns the page, which ends the reply as
    interrupted): the chat input's stop button appears only for runs a chat-input submission started, and
    not even for those when the submission lands while an earlier run is finishing (the browser counts
    that run's end as the end of the submitted one). A chat-input run also shows Regenerate from the
    start, so it is still there if the chat input's stop button ends the run."""
    cid = str(reply.conversation_id)
    bubble = Bubble("assistant")
    bubble.meta.caption(reply.option.label)
    # The actions row always holds two elements, before and after: a container redrawn in place keeps
    # children that this run drew earlier and does not draw again.
    with bubble.actions.container(horizontal=True):
        # Escape presses it, from anywhere on the page, the chat input included (Streamlit's shortcuts let
        # Escape through from text fields).
        st.button("Stop", key="stop-live", icon=":material/stop_circle:", type="tertiary", shortcut="Esc")
        if from_chat_input:
            regenerate_button("regenerate-live", on_regenerate, cid)
        else:
            st.empty()
    streamed_reply(reply, bubble)
    outcome = reply.outcome
    if outcome is not None and outcome.message is not None:
        note = STATUS_NOTES.get(outcome.status) if outcome.status != "error" else None
        bubble.meta.caption(meta_line(outcome.message, catalogue) + (f" · {note}" if note else ""))
    failed = outcome is not None and outcome.status == "error"
    with bubble.actions.container(horizontal=not failed):
        if outcome is not None and failed:
            st.toast(f"The reply failed: {outcome.error}", icon=":material/error:")
            reply_error(outcome.error or "The reply failed.", "retry-live", on_regenerate, cid)
        else:
            regenerate_button("regenerate-done", on_regenerate, cid)
            finished = outcome.message if outcome is not None else None
            drawn = False
            if finished is not None and finished.content:
                copy_popover(finished.content, str(finished.id))
                drawn = True
            if feedback is not None and finished is not None and rateable(finished):
                feedback_view.controls(finished.id, feedback)  # a new reply has none yet: only the thumbs
                drawn = True
            if not drawn:
                st.empty()


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
    title_filter: str = "",
) -> None:
    st.caption("Conversations")
    if not conversations:
        note = f"No conversation titles contain “{plain_label(title_filter)}”." if title_filter else ""
        st.caption(note or "No conversations yet.")
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


# Shown only on a narrow screen (a phone): there the sidebar covers the page once opened, and Streamlit 1.67
# offers no way to close it from Python after a pick (it remembers its open state in the browser), nor does a
# popover close after a click inside it. A select box does close on a pick, so a phone gets the conversations
# as one at the top of the page and never has to open the sidebar to switch.
NARROW_ONLY_CSS = (
    "<style>.st-key-narrow-chats{display:none}"
    "@media (max-width: 640px){.st-key-narrow-chats{display:block}}</style>"
)


def narrow_screen_chats(
    place: DeltaGenerator,
    conversations: Sequence[Conversation],
    current: str | None,
    on_select: Callable[[str], None],
    on_new: Callable[[], None],
) -> None:
    """The newest conversations as a select box at the top of the page, for phones (see NARROW_ONLY_CSS)."""
    titles = {str(c.id): " ".join(c.title.split()) for c in conversations}
    if current and current not in titles:
        titles[current] = "This conversation"
    # The box shows the open conversation, whatever was picked in it before (a pick changes the URL).
    st.session_state[state.NARROW_CHAT_PICK] = current or ""

    def picked() -> None:
        cid = st.session_state.get(state.NARROW_CHAT_PICK) or ""
        on_select(cid) if cid else on_new()

    with place:
        st.html(NARROW_ONLY_CSS)
        st.selectbox(
            "Chat",
            ["", *titles],
            key=state.NARROW_CHAT_PICK,
            format_func=lambda cid: titles.get(cid, "New chat") if cid else "New chat",
            on_change=picked,
            label_visibility="collapsed",
        )


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
