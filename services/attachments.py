"""Files and images attached to chat messages: which are accepted, checked on the server whatever the browser
said, prepared once at upload (an image's thumbnail, a document's text), and how they reach a model.

The chat input's `file_type` is enforced only by the browser (and by file name), so every file is checked
here by its content: the magic bytes must say what the name says, an image must open in Pillow, a PDF in
pypdf, a text file must be UTF-8. A refusal names the file and the reason, and carries the files that
passed (`AttachmentRefused.kept`) so the page can hold them for the retry.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from PIL import Image, ImageOps

from services.errors import UserError
from services.providers import ImagePart
from services.store import InvalidInput, NewAttachment
from services.store.checks import clean_attachment_name

log = logging.getLogger(__name__)

MB = 1024 * 1024
MAX_FILES = 10  # files one message may carry
# Longest side of a stored thumbnail, shown at its own size: st.image passes a JPEG (or a PNG with
# transparency) no wider than its slot through untouched, where any other format or a scaled display
# would be decoded and re-encoded on every rerun.
THUMBNAIL_PX = 240
# An image is opened only below this many pixels (Pillow's own bomb guard starts warning near 89 MP).
MAX_IMAGE_PIXELS = 50_000_000
# What a model is sent: images larger than this (bytes or pixels) are scaled down and re-encoded first.
# Anthropic refuses images over 5 MB and scales anything over ~1.6 MP down itself; OpenAI reads at most
# 2048 px. Sending less than the provider would keep costs nothing but upload time.
MODEL_IMAGE_BYTES = 3_750_000
MODEL_IMAGE_PX = 2048
MAX_PDF_PAGES = 2_000
# Text kept from one document: the most CHAT_CONTEXT_CHARS can ever send. Extraction stops there, which bounds
# its time (pypdf reads about 0.6 M characters a second here: bench/attachments.py).
MAX_TEXT_CHARS = 2_000_000

IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}
PDF_TYPE = "application/pdf"
_TEXT_TYPES = {"txt": "text/plain", "md": "text/markdown", "markdown": "text/markdown", "csv": "text/csv",
               "json": "application/json"}  # fmt: skip
CODE_EXTENSIONS = (
    "py", "js", "mjs", "ts", "tsx", "jsx", "java", "kt", "scala", "c", "h", "cc", "cpp", "hpp", "cs", "go", "rs",
    "rb", "php", "swift", "sh", "bash", "sql", "html", "css", "xml", "yaml", "yml", "toml", "ini", "cfg", "r",
    "lua", "pl", "tex", "log", "ipynb",
)  # fmt: skip
TEXT_TYPES = {**_TEXT_TYPES, **{ext: "text/plain" for ext in CODE_EXTENSIONS}}
# What the chat input offers in the browser's file picker (checked again here by content).
FILE_TYPES = tuple(sorted({*IMAGE_TYPES, "pdf", *TEXT_TYPES}))
ACCEPTED = "images (PNG, JPEG, WebP, GIF), PDF, and text files such as .txt, .md, .csv, .json or code"

_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


@dataclass(frozen=True)
class Upload:
    """A file as the page received it: its name and bytes, nothing trusted yet."""

    name: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class Limits:
    file_bytes: int
    message_bytes: int
    max_files: int = MAX_FILES


class AttachmentRefused(UserError):
    """Files that cannot be sent, and why. `kept` are the files that passed, held for the retry."""

    def __init__(self, message: str, kept: Sequence[Upload] = ()) -> None:
        super().__init__(message)
        self.kept = tuple(kept)


class FileContent(Protocol):
    """A file on its way to a model: a just-checked NewAttachment or a stored AttachmentContent."""

    @property
    def name(self) -> str: ...

    @property
    def media_type(self) -> str: ...

    @property
    def text(self) -> str | None: ...

    @property
    def data(self) -> bytes | None: ...


def megabytes(size: int) -> str:
    return f"{size / MB:.1f} MB" if size >= MB / 10 else f"{max(1, round(size / 1024))} KB"


def sniff(data: bytes) -> str | None:
    """The media type the first bytes declare (the formats accepted here and PDF), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    # The PDF header may follow a little junk (the spec allows it within the first 1024 bytes).
    if b"%PDF-" in data[:1024]:
        return PDF_TYPE
    return None


def _extension(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def _described(media_type: str | None) -> str:
    if media_type is None:
        return "binary data"
    return "a PDF" if media_type == PDF_TYPE else f"a {media_type.split('/')[1].upper()} image"


def check(upload: Upload, limits: Limits) -> NewAttachment:
    """One file checked by its content and prepared for storing; AttachmentRefused says what is wrong.
    Everything the store checks is checked here too, so a file that passes is stored with its message."""
    try:
        name = clean_attachment_name(upload.name)
    except InvalidInput as exc:
        raise AttachmentRefused(f"A file name cannot be used: {exc.message}") from None
    extension = _extension(name)
    if extension not in FILE_TYPES:
        raise AttachmentRefused(f"“{name}” cannot be attached: only {ACCEPTED} can.")
    if upload.size > limits.file_bytes:
        raise AttachmentRefused(
            f"“{name}” is {megabytes(upload.size)}; a file may be at most {megabytes(limits.file_bytes)}."
        )
    if upload.size == 0:
        raise AttachmentRefused(f"“{name}” is empty.")
    found = sniff(upload.data)
    if extension in IMAGE_TYPES:
        if found is None or not found.startswith("image/"):
            raise AttachmentRefused(f"“{name}” is not an image: its content is {_described(found)}.")
        return _image(name, upload.data)
    if extension == "pdf":
        if found != PDF_TYPE:
            raise AttachmentRefused(f"“{name}” is not a PDF: its content is {_described(found)}.")
        return NewAttachment(name, PDF_TYPE, upload.data, text=pdf_text(name, upload.data))
    if found is not None:
        raise AttachmentRefused(f"“{name}” is not a text file: its content is {_described(found)}.")
    return NewAttachment(name, TEXT_TYPES[extension], upload.data, text=_text(name, upload.data))


def check_all(uploads: Sequence[Upload], limits: Limits) -> list[NewAttachment]:
    """Every file checked; if any fails (or together they are too many or too heavy), AttachmentRefused
    names each problem and keeps the files that passed."""
    if len(uploads) > limits.max_files:
        # Refused before any file is opened: the first max_files wait for the retry (checked then).
        extra = len(uploads) - limits.max_files
        raise AttachmentRefused(
            f"A message may carry at most {limits.max_files} files; remove {extra}.", uploads[: limits.max_files]
        )
    checked: list[NewAttachment] = []
    kept: list[Upload] = []
    problems: list[str] = []
    for upload in uploads:
        try:
            checked.append(check(upload, limits))
            kept.append(upload)
        except AttachmentRefused as exc:
            problems.append(exc.message)
    total = sum(u.size for u in kept)
    if total > limits.message_bytes:
        problems.append(
            f"The files weigh {megabytes(total)} together; one message may carry at most "
            f"{megabytes(limits.message_bytes)}. Remove some and send again."
        )
    if problems:
        raise AttachmentRefused(" ".join(problems), kept)
    return checked


def _text(name: str, data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AttachmentRefused(f"“{name}” is not UTF-8 text; save it as UTF-8 and attach it again.") from None
    if "\x00" in text:
        raise AttachmentRefused(f"“{name}” is not a text file: it contains NUL bytes.")
    return text[:MAX_TEXT_CHARS]


def pdf_text(name: str, data: bytes) -> str:
    """The text of a PDF's pages (pypdf), page after page; "" for a scan with no text layer."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pypdf warns about every small defect it repairs
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                raise AttachmentRefused(f"“{name}” is password-protected; attach a copy without a password.")
            if len(reader.pages) > MAX_PDF_PAGES:
                raise AttachmentRefused(f"“{name}” has more than {MAX_PDF_PAGES:,} pages.")
            parts: list[str] = []
            size = 0
            for page in reader.pages:
                text = page.extract_text() or ""
                parts.append(text)
                size += len(text)
                if size >= MAX_TEXT_CHARS:
                    break
    except AttachmentRefused:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        log.info("a PDF could not be read: %s", type(exc).__name__)
        raise AttachmentRefused(f"“{name}” could not be read as a PDF (it may be damaged).") from None
    # NUL cannot be stored in a text column; some PDFs' fonts map glyphs to it.
    return "\n\n".join(parts).replace("\x00", "")[:MAX_TEXT_CHARS]


def _image(name: str, data: bytes) -> NewAttachment:
    """An image verified by Pillow (format and pixel count), with its thumbnail made now, once."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            media_type = _FORMATS.get(probe.format or "")
            if media_type is None:
                raise AttachmentRefused(f"“{name}” is not a PNG, JPEG, WebP or GIF image.")
            width, height = probe.size
            if width * height > MAX_IMAGE_PIXELS:
                raise AttachmentRefused(
                    f"“{name}” is {width:,} × {height:,} pixels; images may have at most "
                    f"{MAX_IMAGE_PIXELS // 1_000_000} million pixels."
                )
            probe.verify()
        thumbnail = _thumbnail(data)
    except AttachmentRefused:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        log.info("an image could not be read: %s", type(exc).__name__)
        raise AttachmentRefused(f"“{name}” could not be read as an image (it may be damaged).") from None
    return NewAttachment(name, media_type, data, thumbnail=thumbnail)


def _thumbnail(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (THUMBNAIL_PX * 2, THUMBNAIL_PX * 2))  # JPEG: decode at a reduced scale, much faster
        small = ImageOps.exif_transpose(image)
        small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        out = io.BytesIO()
        if small.mode in ("RGBA", "LA", "PA") or "transparency" in small.info:
            small.convert("RGBA").save(out, format="PNG", optimize=True)
        else:
            small.convert("RGB").save(out, format="JPEG", quality=85)
        return out.getvalue()


# --- on the way to a model ------------------------------------------------------------------------------


def model_image(name: str, media_type: str, data: bytes) -> ImagePart:
    """The image as a model is sent it: as stored when small enough, else scaled to MODEL_IMAGE_PX and
    re-encoded (JPEG, or PNG when it has transparency). A GIF is sent as its first frame's image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if len(data) <= MODEL_IMAGE_BYTES and max(width, height) <= MODEL_IMAGE_PX:
                return ImagePart(name, media_type, data)
            image.draft("RGB", (MODEL_IMAGE_PX, MODEL_IMAGE_PX))
            scaled = ImageOps.exif_transpose(image)
            scaled.thumbnail((MODEL_IMAGE_PX, MODEL_IMAGE_PX))
            out = io.BytesIO()
            if scaled.mode in ("RGBA", "LA", "PA") or "transparency" in scaled.info:
                scaled.convert("RGBA").save(out, format="PNG", optimize=True)
                return ImagePart(name, "image/png", out.getvalue())
            scaled.convert("RGB").save(out, format="JPEG", quality=85)
            return ImagePart(name, "image/jpeg", out.getvalue())
    except (OSError, ValueError) as exc:
        # Checked at upload, so this is a stored file damaged since: send it as it is and let the model say.
        log.warning("a stored image could not be scaled: %s", type(exc).__name__)
        return ImagePart(name, media_type, data)


@dataclass(frozen=True)
class ForModel:
    """A message's files as a model gets them: documents as text after the message, images as parts."""

    text: str
    images: tuple[ImagePart, ...]
    notes: tuple[str, ...]  # files cut (or left out) to fit the context, in words for the user


def for_model(files: Sequence[FileContent], room: int) -> ForModel:
    """Documents' text, in order, within `room` characters (a file that does not fit whole is cut, and a
    note says so); images as ImageParts."""
    blocks: list[str] = []
    images: list[ImagePart] = []
    notes: list[str] = []
    for file in files:
        if file.media_type.startswith("image/"):
            if file.data is not None:
                images.append(model_image(file.name, file.media_type, file.data))
            continue
        text = file.text or ""
        header = f"\n\n[File: {file.name}]\n"
        footer = f"\n[End of file: {file.name}]"
        if not text.strip():
            text = "(No text could be read from this file: it may be a scanned image.)"
        if len(header) + len(text) + len(footer) > room:
            footer = f"\n[File cut here: the rest of {file.name} did not fit.]"
            fits = room - len(header) - len(footer)
            if fits <= 0:
                notes.append(f"“{file.name}” was left out: the conversation fills the model's context.")
                continue
            notes.append(
                f"“{file.name}” was cut to its first {fits:,} of {len(text):,} characters to fit the model's context."
            )
            text = text[:fits]
        block = header + text + footer
        blocks.append(block)
        room -= len(block)
    return ForModel("".join(blocks), tuple(images), tuple(notes))
