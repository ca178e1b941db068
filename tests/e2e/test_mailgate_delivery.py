"""Delivery guarantees through the real handler: a redelivered SES event forwards nothing twice, a
transient SendGrid failure raises for Lambda to retry, and the retry sends only what is left."""

from __future__ import annotations

from typing import Any

import pytest

from embedded.sendgrid_double import Status
from espmail.domain.inbound import ForwardState, InboundStatus
from espmail.errors import RetryableSendError
from tests.e2e.mailgate_support import SITE, bodies, deliver_to, invoke, message, record, seeded


def test_the_same_ses_event_delivered_twice_forwards_once(stack: Any) -> None:
    seeded(stack)
    delivered = deliver_to(stack, message())
    first = invoke(stack, delivered)
    second = invoke(stack, delivered)
    assert first.decision == second.decision == "forwarded"
    assert second.result["repeated"] is True
    assert len(stack.sendgrid.accepted) == 1
    logged = record(stack, delivered.message_id)
    assert logged.attempts == 2
    assert logged.status is InboundStatus.DONE


def test_a_sendgrid_503_raises_and_the_retry_forwards_once(stack: Any) -> None:
    seeded(stack)
    delivered = deliver_to(stack, message())
    stack.sendgrid.inject(Status(503))
    with pytest.raises(RetryableSendError):
        invoke(stack, delivered)
    assert stack.sendgrid.accepted == []
    failed = record(stack, delivered.message_id)
    assert failed.status is InboundStatus.FAILED
    assert "503" in failed.last_error
    forward = failed.forward_for(f"e1234-class@{SITE}")
    assert forward is not None
    assert forward.state is ForwardState.FAILED
    retried = invoke(stack, delivered)  # what Lambda's async retry does
    assert retried.decision == "forwarded"
    assert len(stack.sendgrid.accepted) == 1
    done = record(stack, delivered.message_id)
    assert done.status is InboundStatus.DONE
    assert done.last_error == ""


def test_a_retry_skips_the_lists_already_forwarded(stack: Any) -> None:
    seeded(stack)
    lists = [f"E1234-class@{SITE}", f"H3456-teachers@{SITE}"]
    # A director may post to both lists (a teacher of E1234 alone would be held for moderation on H3456's).
    raw = message(sender="Kim Alvarez <kim.director@mit.example.edu>", to=", ".join(lists))
    delivered = deliver_to(stack, raw, lists)
    # The first list goes through; SendGrid then answers 503 for the second list's request.
    stack.sendgrid.fail_recipient("lin.maps@example.net", Status(503))
    with pytest.raises(RetryableSendError):
        invoke(stack, delivered)
    first_round = [b["subject"] for b in bodies(stack)]
    assert len(first_round) == 1
    retried = invoke(stack, delivered)
    assert retried.decision == "forwarded"
    subjects = sorted(b["subject"] for b in bodies(stack))
    assert subjects == ["[E1234] Lasers on Saturday", "[H3456] Lasers on Saturday"]
    logged = record(stack, delivered.message_id)
    assert {f.address: f.state for f in logged.forwards} == {
        f"e1234-class@{SITE}": ForwardState.SENT,
        f"h3456-teachers@{SITE}": ForwardState.SENT,
    }
    assert all(f.attempts == (2 if f.address.startswith("h3456") else 1) for f in logged.forwards)


def test_a_notice_that_cannot_be_sent_is_retried_not_lost(stack: Any) -> None:
    seeded(stack)
    delivered = deliver_to(stack, message(to=f"nobody-here@{SITE}"))
    stack.sendgrid.inject(Status(500))
    with pytest.raises(RetryableSendError):
        invoke(stack, delivered)
    retried = invoke(stack, delivered)
    assert retried.decision == "refused"
    assert len(stack.sendgrid.accepted) == 1  # the notice, once
    assert record(stack, delivered.message_id).notice.startswith("sent to")
