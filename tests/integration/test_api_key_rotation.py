"""Rotating the SendGrid API key (README: "Rotating the SendGrid API key"): a container reads the secret
again once its copy is a few minutes old, and at once when SendGrid answers 401 with the key it holds;
the call is then made again with the new key. Against moto's Secrets Manager and the SendGrid double,
which accepts only the key it is given."""

from __future__ import annotations

from typing import Any

import pytest

from espmail.bootstrap import mailer
from espmail.domain.outbox import RowStatus
from espmail.errors import PermanentSendError
from espmail.settings import SendGridSettings
from espmail.transport.secrets import KEY_MAX_AGE_SECONDS, read_api_key
from tests.e2e.outgoing_support import expand, put_unchecked, seeded, send, statuses

NEW_KEY = "SG.rotated-key"
PAYLOAD = {
    "personalizations": [{"to": [{"email": "ruth@physics.example.edu"}]}],
    "from": {"email": "splash@esp.example.org"},
    "subject": "Hello",
    "content": [{"type": "text/plain", "value": "Hello."}],
}


def _rotate(stack: Any, *, in_sendgrid: bool = True, in_the_secret: bool = True) -> None:
    """What the procedure does: a new key in SendGrid, then in the secret (the old key deleted later)."""
    if in_sendgrid:
        stack.sendgrid.api_key = NEW_KEY
    if in_the_secret:
        stack.client("secretsmanager").put_secret_value(SecretId=stack.secret_arn, SecretString=NEW_KEY)


def test_a_copy_of_the_key_older_than_its_maximum_age_is_read_again(stack: Any) -> None:
    now = [1000.0]
    client = stack.client("secretsmanager")
    old = read_api_key(stack.secret_arn, client, clock=lambda: now[0])
    _rotate(stack)
    now[0] += KEY_MAX_AGE_SECONDS - 1
    assert read_api_key(stack.secret_arn, client, clock=lambda: now[0]) == old  # still the kept copy
    now[0] += 2
    assert read_api_key(stack.secret_arn, client, clock=lambda: now[0]) == NEW_KEY
    assert KEY_MAX_AGE_SECONDS <= 300


def test_a_401_reads_the_secret_again_and_sends_with_the_new_key(stack: Any) -> None:
    sending = mailer(SendGridSettings.from_env(stack.function_env("MailgateFunction")), stack.client("secretsmanager"))
    _rotate(stack)

    receipt = sending.send_payload(PAYLOAD)

    assert receipt.message_id
    assert [r.status for r in stack.sendgrid.requests_log] == [401, 202]
    assert sending.key == NEW_KEY


def test_a_401_with_the_key_unchanged_in_the_secret_is_raised_after_one_call(stack: Any) -> None:
    sending = mailer(SendGridSettings.from_env(stack.function_env("MailgateFunction")), stack.client("secretsmanager"))
    _rotate(stack, in_the_secret=False)  # SendGrid revoked the key, the secret not yet updated

    with pytest.raises(PermanentSendError) as refused:
        sending.send_payload(PAYLOAD)

    assert refused.value.status == 401
    assert [r.status for r in stack.sendgrid.requests_log] == [401]


def test_the_sender_goes_on_with_the_new_key_in_the_middle_of_its_container(stack: Any) -> None:
    seeded(stack)
    first = put_unchecked(stack, recipients=["E1234s1:class"])
    expand(stack)
    assert send(stack)["sent"] == 5  # the container has read the old key
    second = put_unchecked(stack, recipients=["M2345s1:class"])
    expand(stack)
    _rotate(stack)

    report = send(stack)

    assert report["sent"] == 5
    assert statuses(stack, second.request_id) == {RowStatus.SENT: 5}
    assert statuses(stack, first.request_id) == {RowStatus.SENT: 5}
    assert [r.status for r in stack.sendgrid.requests_log if r.path == "/v3/mail/send"][-2:] == [401, 202]
