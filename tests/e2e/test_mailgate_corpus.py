"""Every raw message of the corpus through the full path (stored in S3 as SES would, the real handler,
the SES event) to a class list, from a teacher's authenticated address: forwarded with its text and HTML
equal after decoding, every attachment's bytes equal (by hash) and inline content ids kept, as the
SendGrid double accepted it; or refused or dropped with a reason. No exception escapes.

The expected values come from the standard library's own reading of each message, independently of the
mailgate's converter.
"""

from __future__ import annotations

import base64
import hashlib
import html as html_lib
import re
from collections import Counter
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from embedded.seed import SeededProgram
from embedded.ses_inbound import with_sender
from tests.e2e.mailgate_support import RUTH, SITE, arrive, class_addresses, content, recipients, seeded

CORPUS = Path(__file__).parents[1] / "corpus"
MESSAGES = sorted((CORPUS / "nodemailer").glob("*.eml")) + sorted((CORPUS / "ses-forwarder").glob("message*.txt"))
CLASS_LIST = f"E1234-class@{SITE}"


@pytest.fixture
def session_stack(_session_stack: Any) -> Any:
    """The session's stack as it is: not emptied before each message (see ``program``)."""
    return _session_stack


@pytest.fixture
def program(session_stack: Any) -> SeededProgram:
    """One seeded program for the module's messages: seeded again only after another test emptied the
    stack (tests of several modules interleave under xdist); the double's records are cleared each time."""
    stack = session_stack
    users = stack.client("dynamodb").get_item(
        TableName=stack.name("UsersTable"), Key={"username": {"S": "teacher_ruth"}}
    )
    if "Item" not in users or "program" not in _SEEDED:
        stack.reset()
        _SEEDED["program"] = seeded(stack)
    stack.sendgrid.reset()
    return _SEEDED["program"]


_SEEDED: dict[str, SeededProgram] = {}


def _normal(text: str) -> str:
    return re.sub(r"\r\n?", "\n", text).strip()


def _inside_message_part(message: EmailMessage) -> set[int]:
    """Ids of the parts nested in a message/* part (they travel inside that part's .eml, not alone)."""
    nested: set[int] = set()
    for part in message.walk():
        if part.get_content_maintype() == "message" and part is not message:
            for inner in part.walk():
                if inner is not part:
                    nested.add(id(inner))
    return nested


def _is_body(part: EmailMessage) -> bool:
    return (
        part.get_content_type() in ("text/plain", "text/html")
        and part.get_content_disposition() in (None, "inline")
        and part.get_filename() is None
    )


def _expectations(raw: bytes) -> tuple[list[str], list[str], list[EmailMessage], list[EmailMessage]]:
    """(plain bodies, HTML bodies, attachment leaves, message/* parts) as the standard library reads them."""
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    nested = _inside_message_part(message)
    plain: list[str] = []
    html: list[str] = []
    leaves: list[EmailMessage] = []
    wrapped: list[EmailMessage] = []
    for part in message.walk():
        if id(part) in nested:
            continue
        if part.get_content_maintype() == "message" and part is not message:
            if part.as_bytes().split(b"\n\n", 1)[-1].strip():  # an empty one cannot travel (and is noted)
                wrapped.append(part)
            continue
        if part.is_multipart():
            continue
        if _is_body(part):
            text = part.get_content()
            if text.strip():
                (plain if part.get_content_type() == "text/plain" else html).append(text)
        else:
            leaves.append(part)
    return plain, html, leaves, wrapped


@pytest.mark.parametrize("path", MESSAGES, ids=[p.name for p in MESSAGES])
def test_a_corpus_message_is_forwarded_intact_or_refused_with_a_reason(
    session_stack: Any, program: SeededProgram, path: Path
) -> None:
    stack = session_stack
    original = path.read_bytes()
    raw = with_sender(original, RUTH, "Ruth Feld")
    arrival = arrive(stack, raw, CLASS_LIST)
    assert arrival.decision in ("forwarded", "refused", "dropped")
    assert arrival.reason
    if arrival.decision != "forwarded":
        assert stack.sendgrid.accepted == []
        return
    (accepted,) = stack.sendgrid.accepted
    body = accepted.body
    assert sorted(recipients(body)) == sorted(class_addresses(program))
    assert body["from"]["email"] == f"teacher_ruth@{SITE}"

    plain, html, leaves, wrapped = _expectations(original)
    sent_text = content(body, "text/plain")
    sent_html = content(body, "text/html")
    if len(plain) == 1 and not html:
        assert sent_text is not None
        assert _normal(sent_text) == _normal(plain[0])
    if len(html) == 1 and not plain:
        assert sent_html is not None
        assert _normal(sent_html) == _normal(html[0])
    for text in plain:  # several bodies: each one whole, in the text (or, beside HTML, escaped in the HTML)
        if _normal(text) not in _normal(sent_text or ""):
            assert _normal(html_lib.escape(text)) in _normal(sent_html or ""), "a plain body went missing"
    for markup in html:
        assert sent_html is not None
        assert _normal(markup) in _normal(sent_html)

    attachments = body.get("attachments", [])
    sent = Counter(hashlib.sha256(base64.b64decode(a["content"])).hexdigest() for a in attachments)
    expected = Counter(
        hashlib.sha256(payload).hexdigest()
        for part in leaves
        if (payload := part.get_payload(decode=True)) and isinstance(payload, bytes)
    )
    assert expected - sent == Counter(), "an attachment's bytes changed or went missing"
    html_text = sent_html or ""
    for part in leaves:
        content_id = (part.get("content-id") or "").strip().strip("<>")
        if content_id and (part.get_content_disposition() == "inline" or f"cid:{content_id}" in html_text):
            match = [a for a in attachments if a.get("content_id") == content_id]
            assert match, f"inline part {content_id} lost its content id"
            assert match[0]["disposition"] == "inline"
    normal_source = original.replace(b"\r\n", b"\n")
    for part in wrapped:  # forwarded mail and reports travel as they came
        kind = part.get_content_type()
        carried = [a for a in attachments if a["type"] == kind]
        assert carried, f"{kind} part went missing"
        assert any(base64.b64decode(a["content"]).replace(b"\r\n", b"\n").strip() in normal_source for a in carried)
    assert len(accepted.eml_paths) == len(class_addresses(program))
