"""Attached files on the page: thumbnails and download chips in a message bubble (chat page, History's detail
view), and the files waiting to be sent again after a refusal.

Thumbnails are the stored thumbnail bytes, handed to `st.image` at their own size (a JPEG or PNG that fits
is passed through without decoding): the browser fetches them from this app's own media endpoint, never from
a URL anyone wrote in a message, and the markdown neutraliser never sees them.
An original is read only when its download button is clicked (`st.download_button` with a callable), never
on an ordinary rerun.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from services.attachments import Upload, megabytes
from services.store import Attachment

FileOpener = Callable[[uuid.UUID], bytes]
ICONS = {"application/pdf": ":material/picture_as_pdf:", "image": ":material/image:"}


def _label(text: str) -> str:
    # File names are user data and captions and labels are markdown: shown literally, never as a link or an
    # image to fetch. (components/chat.py imports this module, hence the import here.)
    from components.chat import plain_label

    return plain_label(text)


def _icon(media_type: str) -> str:
    return ICONS.get(media_type) or ICONS.get(media_type.split("/")[0]) or ":material/description:"


def files_in_bubble(place: DeltaGenerator, items: Sequence[Attachment], open_file: FileOpener) -> None:
    """A message's files: image thumbnails in a row, then one chip per file that downloads the original."""
    if not items:
        return
    with place.container():
        images = [a for a in items if a.is_image and a.thumbnail]
        if images:
            with st.container(horizontal=True, gap="small", key=f"thumbs-{images[0].id}"):
                for image in images:
                    assert image.thumbnail is not None
                    st.image(image.thumbnail, caption=_label(image.name), width="content")
        with st.container(horizontal=True, gap="small"):
            for item in items:
                st.download_button(
                    f"{_label(item.name)} · {megabytes(item.size)}",
                    data=functools.partial(open_file, item.id),
                    file_name=item.name,
                    mime=item.media_type,
                    icon=_icon(item.media_type),
                    on_click="ignore",
                    key=f"file-{item.id}",
                    type="tertiary",
                    help="Download the original",
                )


def pending_files(files: Sequence[Upload], on_remove: Callable[[int], None]) -> None:
    """Files held after a refused send (a file cannot be put back into the chat input): sent with the next
    message unless removed here."""
    if not files:
        return
    with st.container(horizontal=True, gap="small", vertical_alignment="center", key="pending-files"):
        st.caption("Sent with your next message:", width="content")
        for n, upload in enumerate(files):
            st.button(
                f"{_label(upload.name)} · {megabytes(upload.size)}",
                key=f"pending-file-{n}-{upload.name}",
                icon=":material/close:",
                help="Remove this file",
                on_click=on_remove,
                args=(n,),
            )
