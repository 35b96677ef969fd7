"""Attachments from the chat service to the wire, with real parts: PostgreSQL (RLS), the real openai and
anthropic SDKs against the local wire servers, files made by Pillow and a hand-written PDF. Each test checks
the exact request body the provider received for an image or a PDF."""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from devtools.files import image_bytes, pdf_bytes
from devtools.wire_servers import Script, WireServer
from services.attachments import AttachmentRefused, Upload
from services.auth import Principal
from services.chat import ChatService, Reply
from services.config import settings_from
from services.providers import Provider
from services.providers.anthropic_chat import AnthropicProvider
from services.providers.catalogue import Catalogue, ModelOption, accepts_images, build_catalogue
from services.providers.demo import DemoProvider
from services.providers.openai_chat import OpenAIProvider
from services.store.postgres import PostgresStore

PNG = image_bytes(40, 30)
PDF = pdf_bytes(["Quarterly report\nRevenue rose 12%.", "Second page"])
PDF_TEXT = "Quarterly report\nRevenue rose 12%.\n\nSecond page"


@pytest.fixture(scope="module")
def wires() -> Iterator[dict[str, WireServer]]:
    with WireServer("openai") as o, WireServer("anthropic") as a, WireServer("openai") as local:
        yield {"openai": o, "anthropic": a, "local": local}


def service(store: PostgresStore, wires: dict[str, WireServer], **env: str) -> ChatService:
    """OpenAI and Anthropic (their known models) and a compatible server "local" configured the way a user
    does it, with CHAT_IMAGE_MODELS naming its image model."""
    settings = settings_from(
        {
            "CHAT_OPENAI_SERVERS": json.dumps(
                [{"name": "local", "url": wires["local"].base_url, "models": ["llava:7b", "llama3"]}]
            ),
            "CHAT_IMAGE_MODELS": "local/llava*",
            **env,
        }
    )
    configured = build_catalogue(settings)
    providers: dict[str, Provider] = {
        "openai": OpenAIProvider(api_key="sk-test", base_url=wires["openai"].base_url, timeout_s=5.0),
        "anthropic": AnthropicProvider(api_key="sk-ant-test", base_url=wires["anthropic"].base_url, timeout_s=5.0),
        "local": configured.resolve("local/llava:7b")[0],
        "demo": DemoProvider(chars_per_s=1_000_000),
    }
    known = [("openai", "gpt-4o-mini"), ("openai", "gpt-3.5-turbo"), ("anthropic", "claude-haiku-4-5")]
    options = [ModelOption(f"{p}/{m}", p, m, f"{p} · {m}", p, accepts_images(p, m)) for p, m in known]
    options += [o for o in map(configured.option, ("local/llava:7b", "local/llama3")) if o is not None]
    catalogue = Catalogue(providers, options, default="openai/gpt-4o-mini")
    return ChatService(store, catalogue, None, settings=settings)


def user() -> Principal:
    return Principal(user_id=f"user_files_{uuid.uuid4().hex[:8]}")


def finish(reply: Reply) -> str:
    try:
        text = "".join(reply)
    finally:
        reply.close()
    assert reply.outcome is not None and reply.outcome.status == "complete", reply.outcome
    return text


def sent(wire: WireServer, before: int) -> dict[str, Any]:
    (request,) = wire.requests[before:]
    return request.body


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


PDF_BLOCK = f"\n\n[File: report.pdf]\n{PDF_TEXT}\n[End of file: report.pdf]"


def test_openai_gets_an_image_as_a_data_url_content_part(store: PostgresStore, wires: dict[str, WireServer]) -> None:
    chat, wire = service(store, wires), wires["openai"]
    before = len(wire.requests)
    reply = chat.send(user(), None, "What is in this picture?", "openai/gpt-4o-mini", files=[Upload("cat.png", PNG)])
    finish(reply)
    assert sent(wire, before)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PNG)}"}},
            ],
        }
    ]
    assert [(a.name, a.media_type, a.size) for a in reply.attachments] == [("cat.png", "image/png", len(PNG))]


def test_openai_gets_a_pdf_as_its_text_after_the_message(store: PostgresStore, wires: dict[str, WireServer]) -> None:
    chat, wire = service(store, wires), wires["openai"]
    before = len(wire.requests)
    finish(chat.send(user(), None, "Summarise this", "openai/gpt-4o-mini", files=[Upload("report.pdf", PDF)]))
    assert sent(wire, before)["messages"] == [{"role": "user", "content": "Summarise this" + PDF_BLOCK}]


def test_anthropic_gets_an_image_block_with_a_base64_source(store: PostgresStore, wires: dict[str, WireServer]) -> None:
    chat, wire = service(store, wires), wires["anthropic"]
    before = len(wire.requests)
    finish(chat.send(user(), None, "Describe it", "anthropic/claude-haiku-4-5", files=[Upload("cat.png", PNG)]))
    body = sent(wire, before)
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(PNG)}},
                {"type": "text", "text": "Describe it"},
            ],
        }
    ]


def test_anthropic_gets_a_pdf_as_its_text_after_the_message(store: PostgresStore, wires: dict[str, WireServer]) -> None:
    chat, wire = service(store, wires), wires["anthropic"]
    before = len(wire.requests)
    finish(chat.send(user(), None, "Summarise this", "anthropic/claude-haiku-4-5", files=[Upload("report.pdf", PDF)]))
    assert sent(wire, before)["messages"] == [{"role": "user", "content": "Summarise this" + PDF_BLOCK}]


def test_a_compatible_server_model_listed_for_images_gets_them_in_openai_form(
    store: PostgresStore, wires: dict[str, WireServer]
) -> None:
    chat, wire = service(store, wires), wires["local"]
    before = len(wire.requests)
    files = [Upload("cat.png", PNG), Upload("report.pdf", PDF)]
    finish(chat.send(user(), None, "Both, please", "local/llava:7b", files=files))
    body = sent(wire, before)
    assert body["model"] == "llava:7b"
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Both, please" + PDF_BLOCK},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PNG)}"}},
            ],
        }
    ]


@pytest.mark.parametrize("model", ["local/llama3", "openai/gpt-3.5-turbo"])
def test_a_model_without_images_is_refused_before_anything_is_stored_or_sent(
    store: PostgresStore, wires: dict[str, WireServer], model: str
) -> None:
    chat, who = service(store, wires), user()
    before = {name: len(w.requests) for name, w in wires.items()}
    files = [Upload("cat.png", PNG), Upload("notes.txt", b"keep me")]
    with pytest.raises(AttachmentRefused) as refused:
        chat.send(who, None, "What is this?", model, files=files)
    label = model.replace("/", " · ")
    assert refused.value.message == (
        f"{label} does not take images, so nothing was sent. Pick a model that does, "
        "or remove the images and send again."
    )
    assert refused.value.kept == tuple(files)  # every file is held for the retry with another model
    assert {name: len(w.requests) for name, w in wires.items()} == before
    assert chat.recent_conversations(who)[0] == []


def test_a_later_turn_sends_the_earlier_image_again_from_the_store(
    store: PostgresStore, wires: dict[str, WireServer]
) -> None:
    chat, wire, who = service(store, wires), wires["openai"], user()
    first = chat.send(who, None, "Look", "openai/gpt-4o-mini", files=[Upload("cat.png", PNG)])
    reply_text = finish(first)
    before = len(wire.requests)
    finish(chat.send(who, first.conversation_id, "And now?", "openai/gpt-4o-mini"))
    assert sent(wire, before)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PNG)}"}},
            ],
        },
        {"role": "assistant", "content": reply_text},
        {"role": "user", "content": "And now?"},
    ]


def test_a_text_model_later_in_the_chat_gets_the_words_without_the_image_and_the_user_is_told(
    store: PostgresStore, wires: dict[str, WireServer]
) -> None:
    chat, who = service(store, wires), user()
    first = chat.send(who, None, "Look", "openai/gpt-4o-mini", files=[Upload("cat.png", PNG)])
    reply_text = finish(first)
    before = len(wires["local"].requests)
    later = chat.send(who, first.conversation_id, "Now in words", "local/llama3")
    finish(later)
    assert sent(wires["local"], before)["messages"] == [
        {"role": "user", "content": "Look"},
        {"role": "assistant", "content": reply_text},
        {"role": "user", "content": "Now in words"},
    ]
    assert later.notices == ("Images of earlier messages were not sent: local · llama3 does not take images.",)


def test_a_large_image_is_scaled_down_before_it_is_sent(store: PostgresStore, wires: dict[str, WireServer]) -> None:
    big = image_bytes(2600, 1800, "JPEG", noise=True)
    assert len(big) > 3_750_000
    chat, wire = service(store, wires), wires["anthropic"]
    before = len(wire.requests)
    reply = chat.send(user(), None, "Big one", "anthropic/claude-haiku-4-5", files=[Upload("big.jpg", big)])
    finish(reply)
    source = sent(wire, before)["messages"][0]["content"][0]["source"]
    assert source["media_type"] == "image/jpeg"
    with Image.open(io.BytesIO(base64.b64decode(source["data"]))) as seen:
        assert max(seen.size) == 2048
    # The original is what is stored (and downloaded), untouched.
    assert chat.attachment_file(Principal(user_id=reply.attachments[0].user_id), reply.attachments[0].id).data == big


def test_a_document_longer_than_the_context_is_cut_and_the_user_is_told(
    store: PostgresStore, wires: dict[str, WireServer]
) -> None:
    chat, wire = service(store, wires, CHAT_CONTEXT_CHARS="1000", CHAT_MAX_MESSAGE_CHARS="1000"), wires["openai"]
    long_pdf = pdf_bytes(["\n".join(f"line {n} of the long report" for n in range(200))])
    before = len(wire.requests)
    reply = chat.send(user(), None, "Read it", "openai/gpt-4o-mini", files=[Upload("long.pdf", long_pdf)])
    finish(reply)
    content = sent(wire, before)["messages"][0]["content"]
    assert len(content) == 1000
    assert content.startswith("Read it\n\n[File: long.pdf]\nline 0 of the long report\n")
    assert content.endswith("\n[File cut here: the rest of long.pdf did not fit.]")
    (note,) = reply.notices
    assert note.startswith("“long.pdf” was cut to its first ") and "to fit the model's context" in note


def test_an_edited_message_keeps_its_files_and_sends_them_with_the_new_text(
    store: PostgresStore, wires: dict[str, WireServer]
) -> None:
    chat, wire, who = service(store, wires), wires["openai"], user()
    first = chat.send(who, None, "What is this?", "openai/gpt-4o-mini", files=[Upload("cat.png", PNG)])
    finish(first)
    assert first.user_message is not None
    with pytest.raises(AttachmentRefused, match="does not take images"):
        chat.edit(who, first.user_message.id, "And this?", "local/llama3")  # refused before storing
    before = len(wire.requests)
    edited = chat.edit(who, first.user_message.id, "What animal is this?", "openai/gpt-4o-mini")
    finish(edited)
    assert sent(wire, before)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What animal is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PNG)}"}},
            ],
        }
    ]
    window = chat.window(who, chat.open_conversation(who, first.conversation_id))
    assert [m.content for m in window.messages][0] == "What animal is this?"
    assert [a.name for a in window.attachments[window.messages[0].id]] == ["cat.png"]
    assert len(window.versions[window.messages[0].id].ids) == 2  # the refused edit stored nothing


@pytest.mark.parametrize("typed", ["", "  \n "])
def test_files_sent_without_words_are_stored_and_sent_as_a_message_naming_them(
    store: PostgresStore, wires: dict[str, WireServer], typed: str
) -> None:
    chat, wire, who = service(store, wires), wires["openai"], user()
    before = len(wire.requests)
    files = [Upload("report.pdf", PDF), Upload("notes.txt", b"keep me")]
    reply = chat.send(who, None, typed, "openai/gpt-4o-mini", files=files)
    finish(reply)
    words = "Attached: report.pdf, notes.txt"
    notes_block = "\n\n[File: notes.txt]\nkeep me\n[End of file: notes.txt]"
    assert sent(wire, before)["messages"] == [{"role": "user", "content": words + PDF_BLOCK + notes_block}]
    window = chat.window(who, chat.open_conversation(who, reply.conversation_id))
    assert [(m.role, m.content) for m in window.messages][0] == ("user", words)
    assert chat.open_conversation(who, reply.conversation_id).title == words


def test_regenerating_an_answer_to_an_image_with_a_text_model_is_refused_before_anything_is_sent(
    store: PostgresStore, wires: dict[str, WireServer]
) -> None:
    chat, who = service(store, wires), user()
    first = chat.send(who, None, "What is this?", "openai/gpt-4o-mini", files=[Upload("cat.png", PNG)])
    finish(first)
    before = {name: len(w.requests) for name, w in wires.items()}
    with pytest.raises(AttachmentRefused) as refused:
        chat.regenerate(who, first.conversation_id, "local/llama3")
    assert refused.value.message == (
        "local · llama3 does not take images, so nothing was sent. Pick a model that does, "
        "or remove the images and send again."
    )
    assert {name: len(w.requests) for name, w in wires.items()} == before
    assert [m.role for m in chat.window(who, chat.open_conversation(who, first.conversation_id)).messages] == [
        "user",
        "assistant",
    ]


def test_each_message_of_a_chat_brings_its_own_files_and_a_text_model_is_told_of_dropped_images(
    store: PostgresStore, wires: dict[str, WireServer]
) -> None:
    # A first message without files, then an image (to a model that takes it), then a PDF to a text model:
    # the PDF follows its own message, the image is left out, and the user is told.
    chat, local, who = service(store, wires), wires["local"], user()
    hello = chat.send(who, None, "Hello", "local/llama3")
    said = [finish(hello)]
    cid = hello.conversation_id
    said.append(finish(chat.send(who, cid, "Look", "openai/gpt-4o-mini", files=[Upload("cat.png", PNG)])))
    before = len(local.requests)
    later = chat.send(who, cid, "And this report", "local/llama3", files=[Upload("report.pdf", PDF)])
    finish(later)
    assert sent(local, before)["messages"] == [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": said[0]},
        {"role": "user", "content": "Look"},
        {"role": "assistant", "content": said[1]},
        {"role": "user", "content": "And this report" + PDF_BLOCK},
    ]
    assert later.notices == ("Images of earlier messages were not sent: local · llama3 does not take images.",)


def test_an_image_whose_reply_failed_goes_again_with_the_next_question(
    store: PostgresStore, wires: dict[str, WireServer]
) -> None:
    # The reply to the image failed (stored empty, as an error): the next question is merged into the same
    # user turn, and the image must stay in it.
    chat, wire, who = service(store, wires), wires["openai"], user()
    wire.queue(Script(status=500))
    failed = chat.send(who, None, "Look", "openai/gpt-4o-mini", files=[Upload("cat.png", PNG)])
    try:
        assert "".join(failed) == ""
    finally:
        failed.close()
    assert failed.outcome is not None and failed.outcome.status == "error"
    before = len(wire.requests)
    finish(chat.send(who, failed.conversation_id, "And now?", "openai/gpt-4o-mini"))
    assert sent(wire, before)["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look\n\nAnd now?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PNG)}"}},
            ],
        }
    ]
