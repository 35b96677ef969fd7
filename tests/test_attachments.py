"""Server-side checks of attached files (services/attachments.py): content decides, not the name the browser
sent; limits hold; refusals name the file and keep the files that passed; thumbnails and PDF text are made
once, at upload."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pypdf import PdfReader, PdfWriter

from devtools.files import image_bytes, pdf_bytes
from services.attachments import (
    FILE_TYPES,
    THUMBNAIL_PX,
    AttachmentRefused,
    Limits,
    Upload,
    check,
    check_all,
    for_model,
    sniff,
)
from services.store import NewAttachment

LIMITS = Limits(file_bytes=1_000_000, message_bytes=1_500_000, max_files=3)
PNG = image_bytes(640, 480)
PDF = pdf_bytes(["Hello from a PDF"])


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_each_image_format_is_recognised_verified_and_thumbnailed(fmt: str) -> None:
    data = image_bytes(900, 600, fmt)
    checked = check(Upload(f"picture.{fmt.lower()}", data), LIMITS)
    assert checked.media_type == f"image/{fmt.lower()}"
    assert checked.data == data and checked.text is None
    assert checked.thumbnail is not None
    with Image.open(io.BytesIO(checked.thumbnail)) as thumb:
        # JPEG (PNG for transparency): what st.image serves without re-encoding it on every rerun.
        assert thumb.format == "JPEG" and max(thumb.size) == THUMBNAIL_PX


def test_the_content_decides_the_type_not_the_name() -> None:
    # A JPEG saved as .png is still an image (and is stored as what it is).
    assert check(Upload("really-a-jpeg.png", image_bytes(fmt="JPEG")), LIMITS).media_type == "image/jpeg"
    refusals = {
        "report.png": (PDF, "“report.png” is not an image: its content is a PDF."),
        "photo.pdf": (PNG, "“photo.pdf” is not a PDF: its content is a PNG image."),
        "notes.txt": (PNG, "“notes.txt” is not a text file: its content is a PNG image."),
        "script.py": (PDF, "“script.py” is not a text file: its content is a PDF."),
        "binary.png": (b"\x00\x01 not an image", "“binary.png” is not an image: its content is binary data."),
        "latin1.txt": ("café".encode("latin-1"), "“latin1.txt” is not UTF-8 text; save it as UTF-8 and attach it"),
        "nul.md": (b"a\x00b", "“nul.md” is not a text file: it contains NUL bytes."),
        "tool.exe": (b"MZ", "“tool.exe” cannot be attached: only images (PNG, JPEG, WebP, GIF), PDF, and text"),
        "empty.txt": (b"", "“empty.txt” is empty."),
    }
    for name, (data, message) in refusals.items():
        with pytest.raises(AttachmentRefused) as refused:
            check(Upload(name, data), LIMITS)
        assert refused.value.message.startswith(message), name


def test_file_names_are_cleaned_as_the_store_keeps_them_and_unusable_ones_refused() -> None:
    assert check(Upload("C:\\Users\\me\\a  b.txt", b"x"), LIMITS).name == "a b.txt"
    with pytest.raises(AttachmentRefused, match="A file name cannot be used: File name contains a NUL"):
        check(Upload("bad\x00.txt", b"x"), LIMITS)


def test_a_damaged_image_or_pdf_is_refused_by_name() -> None:
    with pytest.raises(AttachmentRefused, match="“cut.png” could not be read as an image"):
        check(Upload("cut.png", PNG[: len(PNG) // 2]), LIMITS)
    with pytest.raises(AttachmentRefused, match="“cut.pdf” could not be read as a PDF"):
        check(Upload("cut.pdf", b"%PDF-1.4\nnothing else"), LIMITS)


def test_a_password_protected_pdf_is_refused_and_an_open_one_is_read() -> None:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(PDF)))
    writer.encrypt("secret")
    locked = io.BytesIO()
    writer.write(locked)
    with pytest.raises(AttachmentRefused, match="password-protected"):
        check(Upload("locked.pdf", locked.getvalue()), LIMITS)
    assert check(Upload("open.pdf", PDF), LIMITS).text == "Hello from a PDF"


def test_text_files_keep_their_text_without_a_byte_order_mark() -> None:
    checked = check(Upload("data.csv", "\ufeffa,b\n1,2\n".encode()), LIMITS)
    assert (checked.media_type, checked.text) == ("text/csv", "a,b\n1,2\n")
    assert check(Upload("main.RS", b"fn main() {}"), LIMITS).media_type == "text/plain"


def test_size_and_count_limits_refuse_naming_the_file_and_keep_the_files_that_passed() -> None:
    small = Upload("small.txt", b"fine")
    big = Upload("big.txt", b"x" * 1_200_000)
    with pytest.raises(AttachmentRefused) as refused:
        check_all([small, big, Upload("fake.png", PDF)], LIMITS)
    assert refused.value.message == (
        "“big.txt” is 1.1 MB; a file may be at most 1.0 MB. “fake.png” is not an image: its content is a PDF."
    )
    assert refused.value.kept == (small,)
    heavy = [Upload(f"part{n}.txt", b"y" * 900_000) for n in range(2)]
    with pytest.raises(AttachmentRefused) as refused:
        check_all(heavy, LIMITS)
    assert "weigh 1.7 MB together; one message may carry at most 1.4 MB" in refused.value.message
    assert refused.value.kept == tuple(heavy)
    many = [Upload(f"{n}.png", b"not even an image") for n in range(4)]
    with pytest.raises(AttachmentRefused) as refused:
        check_all(many, LIMITS)
    assert refused.value.message == "A message may carry at most 3 files; remove 1."  # before any file is read
    assert refused.value.kept == tuple(many[:3])


def test_an_image_with_too_many_pixels_is_refused_before_it_is_decoded() -> None:
    # A tiny PNG that declares a huge canvas: refused from its header, never decompressed.
    out = io.BytesIO()
    Image.new("1", (10_000, 6_000)).save(out, format="PNG")
    huge = out.getvalue()
    assert len(huge) < 100_000
    with pytest.raises(AttachmentRefused, match="10,000 × 6,000 pixels"):
        check(Upload("huge.png", huge), Limits(file_bytes=50_000_000, message_bytes=50_000_000))


def test_documents_fill_the_room_in_order_and_every_cut_is_told() -> None:
    files = [
        NewAttachment("a.txt", "text/plain", b"", text="A" * 50),
        NewAttachment("b.txt", "text/plain", b"", text="B" * 500),
        NewAttachment("c.txt", "text/plain", b"", text="C" * 50),
    ]
    result = for_model(files, 200)
    assert len(result.text) <= 200
    assert result.text.startswith("\n\n[File: a.txt]\n" + "A" * 50 + "\n[End of file: a.txt]\n\n[File: b.txt]\nBBB")
    assert result.notes[0].startswith("“b.txt” was cut to its first ") and "of 500 characters" in result.notes[0]
    assert result.notes[1] == "“c.txt” was left out: the conversation fills the model's context."
    assert for_model(files, 10_000).notes == ()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.sampled_from(FILE_TYPES))
def test_arbitrary_bytes_under_any_accepted_name_are_accepted_or_refused_never_crash(data: bytes, ext: str) -> None:
    try:
        checked = check(Upload(f"file.{ext}", data), LIMITS)
    except AttachmentRefused as exc:
        assert exc.message.startswith("“file.")
        return
    # What passes is what its content says it is.
    found = sniff(data)
    assert checked.media_type == found or (found is None and checked.text is not None)
