"""Real files for tests and benchmarks of attachments: images made by Pillow, PDFs written by hand.

`pdf_bytes` writes a small valid PDF (one Helvetica text line per page line, a correct cross-reference
table) that pypdf reads back exactly, so a test can compare the extracted text with what it wrote.
`padding` adds an uncompressible stream object, to reach a given file size without more text.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

from PIL import Image


def image_bytes(width: int = 64, height: int = 48, fmt: str = "PNG", *, noise: bool = False) -> bytes:
    """An image in `fmt` (PNG, JPEG, WEBP, GIF): a gradient, or random pixels (`noise`: incompressible,
    so the file is about as large as its pixels)."""
    if noise:
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    else:
        image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    out = io.BytesIO()
    image.save(out, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return out.getvalue()


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf_bytes(pages: Sequence[str], *, padding: int = 0) -> bytes:
    """A PDF with one page per item of `pages` (its lines as text lines), optionally padded by `padding`
    bytes of random data in an unreferenced stream (it still counts in the file, as an embedded image would)."""
    objects: list[bytes] = []
    count = len(pages)
    # 1: catalog, 2: page tree, 3: font, then per page: page object and content stream.
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(pages):
        lines = text.split("\n")
        ops = ["BT", "/F1 10 Tf", "12 TL", "40 800 Td"]
        for n, line in enumerate(lines):
            ops.append(("" if n == 0 else "T* ") + f"({_escape(line)}) Tj")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >>"
            f" /Contents {5 + 2 * i} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    if padding:
        blob = os.urandom(padding)
        objects.append(b"<< /Length %d >>\nstream\n" % len(blob) + blob + b"\nendstream")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()
