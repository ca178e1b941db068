"""Large attachments: their base64 decoded straight from the source bytes gives exactly what the standard
library gives (or the library decodes it, flagging what it flags), and parsing and converting a message
cost a small multiple of its size (issue 6: the mailgate's peak was 8.6x a 6.8 MB message)."""

from __future__ import annotations

import base64
import hashlib
import random
import tracemalloc
from email.message import EmailMessage

import pytest

from espmail.mime import convert, parse_message
from espmail.mime.parse import ParsedMessage

_RANDOM = random.Random(6)


def _message(body: bytes, *, eol: bytes = b"\n", boundary: str = "b0und") -> bytes:
    lines = [
        b"From: Ruth <ruth@physics.example.edu>",
        b"To: e1234-class@esp.example.org",
        b"Subject: slides",
        b"MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{boundary}"'.encode(),
        b"",
        f"--{boundary}".encode(),
        b"Content-Type: text/plain; charset=utf-8",
        b"",
        b"See attached.",
        f"--{boundary}".encode(),
        b'Content-Type: application/pdf; name="slides.pdf"',
        b'Content-Disposition: attachment; filename="slides.pdf"',
        b"Content-Transfer-Encoding: base64",
        b"",
        body,
        f"--{boundary}--".encode(),
        b"",
    ]
    return eol.join(lines)


def _wrapped(data: bytes, width: int = 76, eol: bytes = b"\n") -> bytes:
    encoded = base64.b64encode(data)
    return eol.join(encoded[i : i + width] for i in range(0, len(encoded), width))


def _by_the_library(raw: bytes) -> tuple[list[bytes], tuple[str, ...]]:
    """Attachments and defects as convert finds them with the standard library decoding every part."""
    parsed = parse_message(raw)
    assert isinstance(parsed, ParsedMessage)
    parsed.source = None  # without the source, every part goes through get_payload(decode=True)
    converted = convert(parsed)
    return [a.content for a in converted.attachments], converted.defects


def _direct(raw: bytes) -> tuple[list[bytes], tuple[str, ...]]:
    converted = convert(parse_message(raw))
    return [a.content for a in converted.attachments], converted.defects


_PAYLOAD = bytes(_RANDOM.randrange(256) for _ in range(3000))
VARIANTS = {
    "lf": _wrapped(_PAYLOAD),
    "crlf": _wrapped(_PAYLOAD, eol=b"\r\n"),
    "one pad": _wrapped(_PAYLOAD[:-1]),
    "two pads": _wrapped(_PAYLOAD[:-2]),
    "one line": base64.b64encode(_PAYLOAD[:-2]),
    "short lines": _wrapped(_PAYLOAD, width=4),
    "padding missing": _wrapped(_PAYLOAD[:-2]).rstrip(b"="),
    "invalid characters": _wrapped(_PAYLOAD).replace(b"A", b"!", 3),
    "spaces at line ends": _wrapped(_PAYLOAD).replace(b"\n", b" \n"),
    "padding inside": _wrapped(_PAYLOAD[:-2]) + b"\nQUJD",
    "length one too many": _wrapped(_PAYLOAD) + b"\nQ",
    "blank lines": _wrapped(_PAYLOAD).replace(b"\n", b"\n\n", 5),
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_base64_from_the_source_is_what_the_library_decodes(name: str, eol: bytes) -> None:
    raw = _message(VARIANTS[name].replace(b"\r\n", b"\n").replace(b"\n", eol), eol=eol)
    assert _direct(raw) == _by_the_library(raw)


def test_a_large_attachment_travels_exactly() -> None:
    data = _RANDOM.randbytes(300_000)
    message = EmailMessage()
    message["From"] = "ruth@physics.example.edu"
    message["Subject"] = "slides"
    message.set_content("See attached.\n")
    message.add_attachment(data, maintype="application", subtype="pdf", filename="slides.pdf")
    raw = message.as_bytes()
    (attachment,) = convert(parse_message(raw)).attachments
    assert hashlib.sha256(attachment.content).digest() == hashlib.sha256(data).digest()
    assert _direct(raw) == _by_the_library(raw)


def _peak_above(start: int) -> int:
    return tracemalloc.get_traced_memory()[1] - start


def test_parsing_and_converting_cost_a_small_multiple_of_the_message() -> None:
    """Before: parsing peaked at 7.7x the message above it (a str copy, then a 4-byte-per-character
    StringIO), converting at 4.6x (get_payload(decode=True) re-encodes, splits and joins the text)."""
    data = _RANDOM.randbytes(2 * 1024 * 1024)
    raw = _message(_wrapped(data))
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        parsed = parse_message(raw)
        parse_peak = _peak_above(start)
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        converted = convert(parsed)
        convert_peak = _peak_above(start)
    finally:
        tracemalloc.stop()
    assert converted.attachments[0].content == data
    assert parse_peak < 3.2 * len(raw), f"parsing took {parse_peak / len(raw):.1f}x the message"
    assert convert_peak < 1.2 * len(raw), f"converting took {convert_peak / len(raw):.1f}x the message"
