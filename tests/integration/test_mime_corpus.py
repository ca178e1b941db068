"""Every real message of the corpus converts, and agrees with an oracle built on the standard library."""

from __future__ import annotations

import email
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message
from pathlib import Path

import pytest

from espmail.mime import convert, estimate_sendgrid_size, parse_message, to_sendgrid_attachments

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
FILES = sorted([*CORPUS.glob("nodemailer/*.eml"), *CORPUS.glob("ses-forwarder/*.txt")])
C1_OR_REPLACEMENT = re.compile("[\x80-\x9f\ufffd]")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def normalized(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


@dataclass
class Oracle:
    """What the standard library alone says the message holds, walked with ``msg.walk()``."""

    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    leaf_hashes: Counter[str] = field(default_factory=Counter)
    content_ids: dict[str, str] = field(default_factory=dict)  # payload sha256 -> content id
    messages: list[Message] = field(default_factory=list)  # message/* parts


def oracle(raw: bytes) -> Oracle:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    result = Oracle()
    inside_messages: set[int] = set()
    for part in message.walk():
        if id(part) in inside_messages:
            continue
        if part.get_content_maintype() == "message":
            inside_messages |= {id(inner) for inner in part.walk()} - {id(part)}
            result.messages.append(part)
            continue
        if part.is_multipart():
            continue
        assert part.get_content_maintype() != "multipart", "no multipart without parts in the corpus"
        content_type = part.get_content_type()
        is_body = (
            content_type in ("text/plain", "text/html")
            and part.get_filename() is None
            and part.get_content_disposition() != "attachment"
        )
        if is_body:
            text = part.get_content()
            if text.strip():
                (result.plain if content_type == "text/plain" else result.html).append(text)
            continue
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        if payload:
            result.leaf_hashes[sha256(payload)] += 1
            if part["content-id"]:
                result.content_ids[sha256(payload)] = str(part["content-id"]).strip().strip("<>")
    return result


def contains_in_order(haystack: str, needles: list[str]) -> bool:
    position = 0
    for needle in needles:
        found = haystack.find(needle, position)
        if found < 0:
            return False
        position = found + len(needle)
    return True


@pytest.mark.parametrize("path", FILES, ids=[f"{path.parent.name}/{path.name}" for path in FILES])
def test_corpus_message_converts_like_the_oracle_says(path: Path) -> None:
    raw = path.read_bytes()
    expected = oracle(raw)

    converted = convert(parse_message(raw))

    # Safe to send: one-line subject, JSON-encodable everything, valid SendGrid attachments.
    assert "\r" not in converted.subject
    assert "\n" not in converted.subject
    json.dumps([converted.subject, converted.text, converted.html, list(converted.defects)]).encode()
    to_sendgrid_attachments(converted.attachments)
    assert estimate_sendgrid_size(converted) >= len(raw) // 2
    assert converted.size == len(raw)

    # Bodies: every readable text part is there, in order; a single one exactly as the library reads it.
    if expected.plain and converted.text is not None:
        assert contains_in_order(normalized(converted.text), [normalized(text) for text in expected.plain])
        if len(expected.plain) == 1 and not C1_OR_REPLACEMENT.search(expected.plain[0]):
            assert converted.text == expected.plain[0]
    elif expected.plain:
        assert converted.html is not None, "plain parts only go missing from text when HTML carries them"
    else:
        assert converted.text is None
    if expected.html:
        assert converted.html is not None
        assert contains_in_order(converted.html, expected.html)
        if len(expected.html) == 1 and not expected.plain and not C1_OR_REPLACEMENT.search(expected.html[0]):
            assert converted.html == expected.html[0]
    else:
        assert converted.html is None

    # Attachments: the leaves' decoded bytes, each exactly once.
    leaves = [item for item in converted.attachments if not item.content_type.startswith("message/")]
    assert Counter(sha256(item.content) for item in leaves) == expected.leaf_hashes

    # Inline content ids are kept, and what the HTML shows by cid: is inline.
    referenced = set(re.findall(r"cid:([^\"'\s>]+)", converted.html or "", flags=re.IGNORECASE))
    for item in leaves:
        wanted_id = expected.content_ids.get(sha256(item.content))
        assert item.content_id == wanted_id
        if wanted_id is not None and wanted_id in referenced:
            assert item.disposition == "inline"

    # message/* parts travel as attachments whose bytes say what the library read.
    messages = [item for item in converted.attachments if item.content_type.startswith("message/")]
    non_empty = [part for part in expected.messages if _has_content(part)]
    assert [item.content_type for item in messages] == [part.get_content_type() for part in non_empty]
    for item, part in zip(messages, non_empty, strict=True):
        _assert_same_message(item.content, part)


def _inner(part: Message) -> list[Message]:
    payload = part.get_payload()
    assert isinstance(payload, list)
    return [item for item in payload if isinstance(item, Message)]


def _leaf_hashes(message: Message) -> list[str]:
    hashes = []
    for leaf in message.walk():
        if not leaf.is_multipart():
            payload = leaf.get_payload(decode=True)
            hashes.append(sha256(payload if isinstance(payload, bytes) else b""))
    return hashes


def _has_content(part: Message) -> bool:
    return any(len(inner.keys()) or inner.get_payload() for inner in _inner(part))


def _assert_same_message(content: bytes, part: Message) -> None:
    if part.get_content_type() == "message/delivery-status":
        text = " ".join(content.decode("ascii", "replace").split())
        for block in _inner(part):
            for name, value in block.items():
                assert f"{name}: {str(value)[:30]}" in text
        return
    (embedded,) = _inner(part)
    reparsed = email.message_from_bytes(content, policy=policy.default)
    assert reparsed.items() == embedded.items()
    assert _leaf_hashes(reparsed) == _leaf_hashes(embedded)


# What each message is, read by a person: a guard against the oracle and the converter agreeing on
# something wrong. (text?, html?, attachments, inline ones)
KNOWN = {
    "nodemailer/applequoted.eml": (True, False, ["test.txt"], 0),
    "nodemailer/base64encodedroot.eml": (False, False, ["screenshot.png"], 0),
    "nodemailer/decoderended.eml": (True, True, [], 0),
    "nodemailer/delivery-status.eml": (True, False, ["delivery-status.txt", "Example Subject.eml"], 0),
    "nodemailer/mail.eml": (True, True, ["favourite.gif"], 1),
    "nodemailer/mixed.eml": (True, True, [], 0),
    "nodemailer/nested.eml": (True, True, [], 0),
    "nodemailer/nodemailer.eml": (True, True, ["attachment-1.html", "image.png", "nyan cat ✔.gif", "notes.txt"], 2),
    "nodemailer/spam.eml": (False, True, [], 0),
    "nodemailer/test.eml": (True, True, ["notes.txt", "image.png"], 0),
    "ses-forwarder/message.txt": (True, False, [], 0),
}


@pytest.mark.parametrize(("name", "known"), sorted(KNOWN.items()))
def test_corpus_messages_read_as_a_person_would(name: str, known: tuple[bool, bool, list[str], int]) -> None:
    has_text, has_html, filenames, inline = known

    converted = convert(parse_message((CORPUS / name).read_bytes()))

    assert (converted.text is not None, converted.html is not None) == (has_text, has_html)
    assert [item.filename for item in converted.attachments] == filenames
    assert len(converted.inline_attachments) == inline
