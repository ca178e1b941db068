"""The SendGrid adapter through the real ``sendgrid`` client against the double: accepted messages, the
schema's 400, and every injected fault surfacing as the project's own retryable or permanent error."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from embedded.sendgrid_double import Disconnect, Status, Timeout
from embedded.stack import LOCAL_API_KEY
from espmail.domain.mail import Address, Attachment, MailMessage, Personalization
from espmail.errors import PermanentSendError, RetryableSendError
from espmail.transport.sendgrid_mailer import SendGridMailer

MESSAGE = MailMessage(
    sender=Address("support@esp.example.org", "Splash"),
    subject="Welcome to Splash",
    text="Hello!",
    html="<p>Hello!</p>",
    attachments=(Attachment("map.png", "image/png", b"\x89PNG fake", "inline", "map1"),),
    custom_args={"request_id": "01J0000000000000000000000"},
    categories=("bulk",),
)
TO = (Personalization(to=(Address("ada100@students.example.net", "Ada Park"),), custom_args={"recipient": "r1"}),)


@pytest.fixture
def mailer(stack: Any) -> SendGridMailer:
    return SendGridMailer(LOCAL_API_KEY, host=stack.sendgrid.host, timeout=0.5)


def test_a_message_sent_through_the_real_client_is_accepted(stack: Any, mailer: SendGridMailer) -> None:
    receipt = mailer.send(MESSAGE, TO)
    accepted = stack.sendgrid.accepted
    assert len(accepted) == 1
    assert accepted[0].message_id == receipt.message_id != ""
    body = accepted[0].body
    assert body["personalizations"][0]["to"] == [{"email": "ada100@students.example.net", "name": "Ada Park"}]
    assert base64.b64decode(body["attachments"][0]["content"]) == b"\x89PNG fake"
    assert body["attachments"][0]["content_id"] == "map1"


def test_a_body_that_breaks_the_schema_is_refused_with_a_400_as_a_permanent_error(
    stack: Any, mailer: SendGridMailer
) -> None:
    broken = {"personalizations": [{"to": [{"email": "a@example.org"}]}], "from": {"email": "x@esp.example.org"}}
    broken["content"] = [{"type": "text/plain"}]  # no value
    with pytest.raises(PermanentSendError) as raised:
        mailer.send_payload(broken)
    assert raised.value.status == 400
    assert "content" in str(raised.value)
    assert stack.sendgrid.accepted == []


def test_a_wrong_key_is_permanent(stack: Any) -> None:
    with pytest.raises(PermanentSendError) as raised:
        SendGridMailer("SG.wrong", host=stack.sendgrid.host, timeout=0.5).send(MESSAGE, TO)
    assert raised.value.status == 401


def test_429_is_retryable_and_carries_retry_after(stack: Any, mailer: SendGridMailer) -> None:
    stack.sendgrid.inject(Status(429, retry_after=7))
    with pytest.raises(RetryableSendError) as raised:
        mailer.send(MESSAGE, TO)
    assert raised.value.status == 429
    assert raised.value.retry_after == pytest.approx(7, abs=0.01)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retryable(stack: Any, mailer: SendGridMailer, status: int) -> None:
    stack.sendgrid.inject(Status(status))
    with pytest.raises(RetryableSendError) as raised:
        mailer.send(MESSAGE, TO)
    assert raised.value.status == status


def test_a_400_for_one_message_is_permanent(stack: Any, mailer: SendGridMailer) -> None:
    stack.sendgrid.inject(Status(400, message="The to email does not contain a valid address."))
    with pytest.raises(PermanentSendError, match="valid address"):
        mailer.send(MESSAGE, TO)


def test_a_timeout_is_retryable(stack: Any, mailer: SendGridMailer) -> None:
    stack.sendgrid.inject(Timeout(1.5))
    with pytest.raises(RetryableSendError, match=r"timed out|could not connect"):
        mailer.send(MESSAGE, TO)


def test_a_dropped_connection_is_retryable(stack: Any, mailer: SendGridMailer) -> None:
    stack.sendgrid.inject(Disconnect())
    with pytest.raises(RetryableSendError):
        mailer.send(MESSAGE, TO)


def test_a_refused_connection_is_retryable(stack: Any, mailer: SendGridMailer) -> None:
    stack.sendgrid.refuse_connections()
    try:
        with pytest.raises(RetryableSendError, match="could not connect"):
            mailer.send(MESSAGE, TO)
    finally:
        stack.sendgrid.accept_connections()
    assert mailer.send(MESSAGE, TO).message_id
