"""``SendGridMailer.send_json`` (the mailgate's way to send a request it serialised once): the same
endpoint, key and headers as the client's own post, and the same errors, through the double."""

from __future__ import annotations

import json
from typing import Any

import pytest

from embedded.sendgrid_double import Disconnect, Status, Timeout
from embedded.stack import LOCAL_API_KEY
from espmail.domain.mail import Address, Attachment, MailMessage, Personalization
from espmail.errors import PermanentSendError, RetryableSendError
from espmail.transport.sendgrid_mailer import SendGridMailer, build_payload

MESSAGE = MailMessage(
    sender=Address("e1234-class@esp.example.org", "E1234 «class»"),
    subject="[E1234] Lasers ✔",
    text="Bring goggles.",
    attachments=(Attachment("slides.pdf", "application/pdf", b"%PDF-1.4 slides"),),
)
TO = [Personalization(to=(Address("ada100@students.example.net", "Ada Park"),))]


@pytest.fixture
def mailer(stack: Any) -> SendGridMailer:
    return SendGridMailer(LOCAL_API_KEY, host=stack.sendgrid.host, timeout=0.5)


def test_a_serialised_request_is_accepted_as_the_payload_would_be(stack: Any, mailer: SendGridMailer) -> None:
    payload = build_payload(MESSAGE, TO)
    receipt = mailer.send_json(json.dumps(payload).encode("utf-8"))
    (accepted,) = stack.sendgrid.accepted
    assert accepted.message_id == receipt.message_id != ""
    assert accepted.body == payload


def test_a_wrong_key_and_a_broken_body_are_permanent(stack: Any, mailer: SendGridMailer) -> None:
    body = json.dumps(build_payload(MESSAGE, TO)).encode("utf-8")
    with pytest.raises(PermanentSendError) as raised:
        SendGridMailer("SG.wrong", host=stack.sendgrid.host, timeout=0.5).send_json(body)
    assert raised.value.status == 401
    with pytest.raises(PermanentSendError) as raised:
        mailer.send_json(b'{"personalizations": []}')
    assert raised.value.status == 400
    assert stack.sendgrid.accepted == []


@pytest.mark.parametrize("fault", [Status(429, retry_after=7), Status(500), Timeout(2.0), Disconnect()])
def test_transient_faults_are_retryable(stack: Any, mailer: SendGridMailer, fault: Any) -> None:
    stack.sendgrid.inject(fault)
    with pytest.raises(RetryableSendError) as raised:
        mailer.send_json(json.dumps(build_payload(MESSAGE, TO)).encode("utf-8"))
    if isinstance(fault, Status) and fault.status == 429:
        assert raised.value.retry_after == pytest.approx(7, abs=1)
