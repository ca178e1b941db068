"""``espmail inbound show|list|redrive`` over mail received the way SES receives it (``SmtpGateway.receive``:
stored in the bucket, SES event built, the real mailgate run as an asynchronous Lambda invocation)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from embedded.aws import queue_url
from embedded.smtp_gateway import SmtpGateway
from embedded.stack import SITE_DOMAIN
from tests.integration.cli_support import RUTH, assert_one_line_error, message, run, seeded


@pytest.fixture
def gateway(stack: Any) -> Iterator[SmtpGateway]:
    seeded(stack)
    yield SmtpGateway(stack, domains=(SITE_DOMAIN,))
    stack.sendgrid.accept_connections()


def _queue(stack: Any) -> str:
    return queue_url(stack.endpoint, stack.name("MailgateFailureQueue"))


def _queued(stack: Any) -> list[str]:
    """The bodies of the messages in the on-failure queue (left visible)."""
    sqs = stack.client("sqs")
    answer = sqs.receive_message(QueueUrl=_queue(stack), MaxNumberOfMessages=10, VisibilityTimeout=0)
    return [m["Body"] for m in answer.get("Messages", [])]


def test_inbound_show_gives_the_decision_per_recipient(stack: Any, gateway: SmtpGateway) -> None:
    received = gateway.receive(
        message(f"Ruth Feld <{RUTH}>", "E1234-class@esp.example.org", "Lab safety"),
        mail_from=RUTH,
        recipients=["E1234-class@esp.example.org", "nobody-here@esp.example.org"],
    )

    result = run(stack, "inbound", "show", received.message_id)

    assert result.exit_code == 0, result.output
    out = result.output
    assert received.message_id in out
    assert "teacher_ruth (authenticated)" in out
    assert "Lab safety" in out
    assert "e1234-class@esp.example.org" in out
    assert "forwarded" in out
    assert "class-list" in out
    assert "nobody-here@esp.example.org" in out
    assert "refused" in out
    assert "Forwarding progress per list" in out


def test_inbound_list_filters_by_decision_and_time(stack: Any, gateway: SmtpGateway) -> None:
    forwarded = gateway.receive(
        message(RUTH, "E1234s1-students@esp.example.org", "Homework"),
        mail_from=RUTH,
        recipients=["E1234s1-students@esp.example.org"],
    )
    refused = gateway.receive(
        message("Mallory <mallory@elsewhere.example>", "E1234-class@esp.example.org", "Cheap pills"),
        mail_from="mallory@elsewhere.example",
        recipients=["E1234-class@esp.example.org"],
    )

    everything = run(stack, "inbound", "list", "--since", "1h")
    only_refused = run(stack, "inbound", "list", "--since", "30m", "--decision", "refused")
    future = run(stack, "inbound", "list", "--since", "2999-01-01")

    assert everything.exit_code == 0, everything.output
    assert forwarded.message_id in everything.output
    assert refused.message_id in everything.output
    assert "2 messages" in everything.output
    assert refused.message_id in only_refused.output
    assert forwarded.message_id not in only_refused.output
    assert "0 messages" in future.output


def test_inbound_input_a_person_gets_wrong(stack: Any) -> None:
    unknown = run(stack, "inbound", "show", "no-such-message")
    since = run(stack, "inbound", "list", "--since", "yesterday")

    assert_one_line_error(unknown, 1, "error: no inbound message 'no-such-message' in the InboundLog")
    assert_one_line_error(since, 1, "--since 'yesterday' is neither a span")


def test_redrive_replays_what_failed_and_deletes_it_only_after_success(
    stack: Any, gateway: SmtpGateway, capfd: pytest.CaptureFixture[str]
) -> None:
    """SendGrid unreachable: the mailgate fails its three tries, Lambda's on-failure record lands in the
    queue; once SendGrid is back, the redrive forwards the message and empties the queue."""
    stack.sendgrid.refuse_connections()
    received = gateway.receive(
        message(RUTH, "E1234-teachers@esp.example.org", "Room change"),
        mail_from=RUTH,
        recipients=["E1234-teachers@esp.example.org"],
    )
    records = [json.loads(body) for body in _queued(stack)]
    assert len(records) == 1
    assert records[0]["requestPayload"]["Records"][0]["ses"]["mail"]["messageId"] == received.message_id
    assert records[0]["requestContext"]["condition"] == "RetriesExhausted"

    capfd.readouterr()
    still_down = run(stack, "inbound", "redrive")
    assert_one_line_error(still_down, 1, "1 queue message left in the queue")
    assert "failed again" in still_down.output
    printed = capfd.readouterr()
    assert "Traceback" not in printed.out + printed.err  # the mailgate's log went to .espmail/functions.log
    assert len(_queued(stack)) == 1

    listed = run(stack, "inbound", "redrive", "--dry-run")
    assert listed.exit_code == 0
    assert received.message_id in listed.output
    assert "Room change" in listed.output
    assert "1 waiting" in listed.output

    stack.sendgrid.accept_connections()
    replayed = run(stack, "inbound", "redrive")

    assert replayed.exit_code == 0, replayed.output
    assert "replayed 1, failed 0, skipped 0" in replayed.output
    assert _queued(stack) == []
    assert len(stack.sendgrid.accepted) == 1
    shown = run(stack, "inbound", "show", received.message_id)
    assert "done" in shown.output
    assert "forwarded" in shown.output


def test_a_replay_of_a_message_already_forwarded_sends_nothing_again(stack: Any, gateway: SmtpGateway) -> None:
    received = gateway.receive(
        message(RUTH, "E1234s2-class@esp.example.org", "Field trip"),
        mail_from=RUTH,
        recipients=["E1234s2-class@esp.example.org"],
    )
    sent = len(stack.sendgrid.accepted)
    assert sent == 1
    stack.client("sqs").send_message(
        QueueUrl=_queue(stack),
        MessageBody=json.dumps({"requestPayload": received.event, "responsePayload": {"errorMessage": "timeout"}}),
    )
    stack.client("sqs").send_message(QueueUrl=_queue(stack), MessageBody="not json at all")

    result = run(stack, "inbound", "redrive")

    assert result.exit_code == 1
    assert "replayed 1, failed 0, skipped 1" in result.output
    assert "not a Lambda on-failure record" in result.output
    assert len(stack.sendgrid.accepted) == sent
    assert _queued(stack) == ["not json at all"]  # not a record: it stays for a person to look at


def test_inbound_approve_forwards_a_held_post_once_and_show_says_so(stack: Any, gateway: SmtpGateway) -> None:
    outsider = "ivan108@students.example.net"  # a student of M2345 writing to E1234's list: held
    received = gateway.receive(
        message(outsider, "E1234-class@esp.example.org", "May I visit?"),
        mail_from=outsider,
        recipients=["E1234-class@esp.example.org"],
    )
    held = run(stack, "inbound", "list", "--decision", "held")
    assert held.exit_code == 0, held.output
    assert received.message_id in held.output
    shown = run(stack, "inbound", "show", received.message_id)
    assert "Held for moderation" in shown.output
    assert "notice to moderators: sent to 3 moderators" in shown.output
    before = len(stack.sendgrid.accepted)

    approved = run(stack, "inbound", "approve", received.message_id, "--by", "kim")

    assert approved.exit_code == 0, approved.output
    assert "approved: forwarded to 11 recipients" in approved.output
    assert len(stack.sendgrid.accepted) == before + 1
    again = run(stack, "inbound", "approve", received.message_id)
    assert again.exit_code == 0, again.output
    assert "already approved and forwarded: nothing done" in again.output
    assert len(stack.sendgrid.accepted) == before + 1
    assert "approved" in run(stack, "inbound", "show", received.message_id).output


def test_inbound_reject_tells_the_sender_and_a_wrong_id_is_one_line(stack: Any, gateway: SmtpGateway) -> None:
    outsider = "ivan108@students.example.net"
    received = gateway.receive(
        message(outsider, "E1234-class@esp.example.org", "Party?"),
        mail_from=outsider,
        recipients=["E1234-class@esp.example.org"],
    )
    rejected = run(stack, "inbound", "reject", received.message_id, "--reason", "Not for this list.")
    assert rejected.exit_code == 0, rejected.output
    assert f"rejected; notice sent to {outsider}" in rejected.output
    assert_one_line_error(run(stack, "inbound", "approve", "no-such-id"), 1, "no inbound message 'no-such-id'")
    forwarded = gateway.receive(
        message(RUTH, "E1234-class@esp.example.org", "Ok"), mail_from=RUTH, recipients=["E1234-class@esp.example.org"]
    )
    assert_one_line_error(run(stack, "inbound", "approve", forwarded.message_id), 1, "has no post held for moderation")


def test_a_redrive_record_whose_raw_mail_expired_is_named_and_can_be_discarded(
    stack: Any, gateway: SmtpGateway, capfd: pytest.CaptureFixture[str]
) -> None:
    stack.sendgrid.refuse_connections()
    received = gateway.receive(
        message(RUTH, "E1234-teachers@esp.example.org", "Old news"),
        mail_from=RUTH,
        recipients=["E1234-teachers@esp.example.org"],
    )
    stack.sendgrid.accept_connections()
    stack.client("s3").delete_object(Bucket=stack.name("RawMailBucket"), Key=f"inbound/{received.message_id}")
    capfd.readouterr()  # what the failing deliveries logged before any command ran

    kept = run(stack, "inbound", "redrive")
    assert_one_line_error(kept, 1, "1 queue message left in the queue", "--discard-expired")
    assert "discarded 0, expired 1" in kept.output
    assert len(_queued(stack)) == 1

    discarded = run(stack, "inbound", "redrive", "--discard-expired")
    assert discarded.exit_code == 0, discarded.output
    assert "discarded 1" in discarded.output
    assert _queued(stack) == []
    shown = " ".join(run(stack, "inbound", "show", received.message_id).output.split())
    assert "discarded from the redrive queue" in shown
    # The functions' own logs (JSON, with tracebacks) went to .espmail/functions.log, not to the terminal.
    printed = capfd.readouterr()
    assert "Traceback" not in printed.out + printed.err
