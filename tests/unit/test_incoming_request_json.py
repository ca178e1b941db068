"""The forwarded request measured without serialising it and serialised once, as bytes (issue 6: the
mailgate serialised a request with a 5 MB attachment once to measure it and twice more to send it)."""

from __future__ import annotations

import json
import random
import tracemalloc
from email.message import EmailMessage
from typing import Any

import pytest

from espmail.domain.mail import Address
from espmail.incoming.forward import (
    ForwardPlan,
    forwarded_message,
    request_bodies,
    request_json,
    request_part,
    request_size,
)
from espmail.mime import convert, estimate_sendgrid_size, parse_message
from tests.unit.incoming_support import CLASS_RULE, SITE

_RANDOM = random.Random(6)


def _raw(attachments: list[tuple[bytes, str, str | None]], subject: str = "Lasers ✔ «Saturday»") -> bytes:
    message = EmailMessage()
    message["From"] = "Ruth Feld <ruth@physics.example.edu>"
    message["To"] = "e1234-class@esp.example.org"
    message["Subject"] = subject
    message.set_content('Bring goggles — and "quotes", \\ backslashes, \t tabs.\n')
    message.add_alternative('<p>Bring goggles <img src="cid:dot@x"></p>', subtype="html")
    for data, filename, cid in attachments:
        message.add_attachment(data, maintype="application", subtype="octet-stream", filename=filename, cid=cid)
    return message.as_bytes()


def _bodies(raw: bytes, recipients: int) -> list[dict[str, Any]]:
    converted = convert(parse_message(raw))
    people = tuple(Address(f"s{i}@students.example.net", f"Student «{i}»") for i in range(recipients))
    plan = ForwardPlan("e1234-class@esp.example.org", CLASS_RULE, people, "E1234", "E1234 class", True)
    message = forwarded_message(
        converted, plan, sender_username="teacher_ruth", sender_name="Ruth", site=SITE, ses_message_id="x", text=None
    )
    return request_bodies(message, converted, plan)


CASES: dict[str, list[tuple[bytes, str, str | None]]] = {
    "no attachment": [],
    "one": [(b"%PDF-1.4 slides", "slides.pdf", None)],
    "several, one inline, names to escape": [
        (_RANDOM.randbytes(1000), 'sl"ides\\«2».pdf', None),
        (b"GIF89a-bytes", "dot.gif", "<dot@x>"),
        (_RANDOM.randbytes(2), "two.bin", None),
    ],
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("recipients", [1, 7])
def test_the_size_and_the_bytes_are_what_the_client_would_send(case: str, recipients: int) -> None:
    for body in _bodies(_raw(CASES[case]), recipients):
        sent = json.dumps(body).encode("utf-8")  # what python_http_client's post sends
        serialised = request_json(body)
        assert json.loads(serialised) == body
        assert serialised == sent
        assert request_size(body) == len(sent)
        part = request_part(body, 0, 1)
        assert request_json(part) == json.dumps(part).encode("utf-8")
        assert request_size(part) == len(request_json(part))


def test_content_that_is_not_base64_is_escaped_as_json_does() -> None:
    body = {"subject": "x", "attachments": [{"content": 'not "base64"\n', "filename": "a"}, {"filename": "b"}]}
    assert request_json(body) == json.dumps(body).encode("utf-8")
    assert request_size(body) == len(json.dumps(body).encode("utf-8"))


def test_the_estimate_before_the_envelope_is_close_to_the_request() -> None:
    raw = _raw([(_RANDOM.randbytes(300_000), "slides.pdf", None)])
    (body,) = _bodies(raw, 1)
    least = estimate_sendgrid_size(convert(parse_message(raw)))
    assert 0 <= least - (request_size(body) - len(json.dumps(body["personalizations"]))) < 8_192


def test_a_large_request_is_measured_without_a_copy_and_serialised_with_one() -> None:
    (body,) = _bodies(_raw([(_RANDOM.randbytes(2 * 1024 * 1024), "slides.pdf", None)]), 1000)
    content = len(body["attachments"][0]["content"])
    tracemalloc.start()
    try:
        size = request_size(body)
        measured = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        serialised = request_json(body)
        built = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    assert size == len(serialised)
    # Serialising to measure took twice the content (the JSON text, then its bytes); what is left is the
    # envelope of 1,000 personalizations.
    assert measured < 0.5 * content, f"measuring took {measured / content:.2f}x the attachment"
    assert built < 2.2 * content, f"serialising took {built / content:.2f}x the attachment"
    assert json.loads(serialised)["attachments"][0]["content"] == body["attachments"][0]["content"]
