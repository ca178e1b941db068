"""The mailgate use case wired to the embedded stack with settings a deployment may choose, and its
``explain`` answer for the CLI."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from embedded.ses_inbound import Delivered, InboundVerdicts
from embedded.smtp_gateway import invoke_async
from espmail.domain.inbound import Decision, InboundStatus, RecipientDecision
from espmail.domain.people import Role
from espmail.incoming.events import SesReceipt, parse_ses_event
from espmail.incoming.mailgate import ListHeld, Mailgate
from espmail.incoming.settings import MailgateSettings, SpamPolicy
from espmail.incoming.wiring import build_mailgate
from espmail.storage.inbound_log import InboundLogItem
from tests.e2e.mailgate_support import RUTH, SITE, bodies, deliver_to, message, seeded
from tests.integration.cli_support import run

LIST = f"e1234-class@{SITE}"


def _mailgate(stack: Any, **changes: Any) -> Mailgate:
    settings = replace(MailgateSettings.from_env(stack.function_env("MailgateFunction")), **changes)
    return build_mailgate(settings, dynamodb=stack.client("dynamodb"), s3=stack.client("s3"))


def _receive(stack: Any, mailgate: Mailgate, raw: bytes, **options: Any) -> Any:
    delivered = deliver_to(stack, raw, **options)
    (receipt,) = parse_ses_event(delivered.event)
    return mailgate.receive(receipt)


def test_explain_names_the_rule_and_the_recipients(stack: Any) -> None:
    program = seeded(stack)
    mailgate = _mailgate(stack)
    resolution = mailgate.explain("E1234s1-class", RUTH)
    assert resolution.decision is Decision.FORWARDED
    assert resolution.rule is not None
    assert resolution.rule.name == "section-list"
    assert resolution.address == f"e1234s1-class@{SITE}"
    assert resolution.list_id == f"e1234s1-class.{SITE}"
    assert resolution.class_code == "E1234"
    expected = {u.email for u in program.members_of("E1234s1")} | {"splash-directors@mit.example.edu"}
    assert {a.email for a in resolution.recipients} == expected
    assert bodies(stack) == []  # nothing sent


def test_explain_says_why_mail_would_be_refused(stack: Any) -> None:
    program = seeded(stack)
    mailgate = _mailgate(stack)
    ada, ben = program.members_of("E1234s1", Role.STUDENT)[:2]
    student_to_student = mailgate.explain(f"{ben.username}@{SITE}", ada.email)
    assert student_to_student.decision is Decision.REFUSED
    assert "takes mail only from teachers and admins" in student_to_student.reason
    assert [t.split(":")[0] for t in student_to_student.tried] == ["redirect", "user-alias"]
    assert "unknown sender" in mailgate.explain("E1234-class", "nobody@nowhere.example").reason
    assert "not an address of" in mailgate.explain("someone@other.example").reason
    assert mailgate.explain("E1234-class").decision is Decision.HELD  # any registered sender, not on the list


def test_explain_reports_the_rules_it_skipped(stack: Any) -> None:
    seeded(stack)
    stack.client("dynamodb").put_item(
        TableName=stack.name("ListRulesTable"),
        Item={"name": {"S": "broken"}, "seq": {"N": "1"}, "regex": {"S": "(unclosed"}, "handler": {"S": "redirect"}},
    )
    resolution = _mailgate(stack).explain("E1234-class", RUTH)
    assert resolution.decision is Decision.FORWARDED
    assert [p.item for p in resolution.problems] == ["list rule 'broken'"]


def test_a_spam_policy_of_forward_forwards_spam(stack: Any) -> None:
    seeded(stack)
    outcome = _receive(
        stack, _mailgate(stack, spam_policy=SpamPolicy.FORWARD), message(), verdicts=InboundVerdicts(spam="FAIL")
    )
    assert outcome.decision is Decision.FORWARDED


def test_too_large_under_a_lower_limit_is_refused_with_a_notice(stack: Any) -> None:
    seeded(stack)
    outcome = _receive(stack, _mailgate(stack, max_request_bytes=20_000), message(attachment=b"x" * 30_000))
    assert outcome.decision is Decision.REFUSED
    assert "too large" in outcome.reason
    assert "at most 20 kB can be sent" in outcome.reason
    (notice,) = bodies(stack)
    assert notice["personalizations"][0]["to"][0]["email"] == RUTH


def test_notices_can_be_turned_off(stack: Any) -> None:
    seeded(stack)
    outcome = _receive(stack, _mailgate(stack, notices=False), message(to=f"nothing-here@{SITE}"))
    assert outcome.decision is Decision.REFUSED
    assert outcome.notice == "none: notices are turned off"
    assert bodies(stack) == []


def _claimed_by_another_delivery(
    mailgate: Mailgate, delivered: Delivered, *, batches: int = 1, lease_until: int | None = None
) -> tuple[SesReceipt, int]:
    """The delivered message recorded, and its list claimed as a delivery does it just before sending
    (under the lease the mailgate takes for ``batches`` requests, unless ``lease_until`` is given)."""
    (receipt,) = parse_ses_event(delivered.event)
    now = mailgate.clock()
    mailgate.log.begin(
        receipt.message_id,
        received_at=now,
        now=now,
        source="",
        recipients=receipt.recipients,
        s3_key=delivered.key,
        subject="",
        verdicts={},
    )
    lease_until = mailgate._lease_until(batches) if lease_until is None else lease_until
    assert mailgate.log.claim_forward(receipt.message_id, LIST, batches=batches, lease_until=lease_until, now=now)[0]
    return receipt, lease_until


def test_a_list_held_by_a_delivery_that_died_is_retried_and_sent_once_its_lease_runs_out(stack: Any) -> None:
    """The holder died after its claim (out of memory, a timeout): Lambda's retry a minute later must fail
    (so Lambda retries again, then the on-failure queue takes the event), never return as if done."""
    seeded(stack)
    mailgate = _mailgate(stack)
    start = mailgate.clock()
    receipt, lease_until = _claimed_by_another_delivery(mailgate, deliver_to(stack, message()))
    mailgate.clock = lambda: start + timedelta(seconds=60)  # Lambda's first retry

    with pytest.raises(ListHeld) as raised:
        mailgate.receive(receipt)

    assert raised.value.held == ((LIST, lease_until),)
    assert bodies(stack) == []
    record = mailgate.log.get(receipt.message_id)
    assert record is not None
    assert record.status is InboundStatus.FAILED  # on the way to the on-failure queue, visible and alarmed
    assert "held by another delivery" in record.last_error
    assert LIST in record.last_error

    mailgate.clock = lambda: datetime.fromtimestamp(lease_until + 1, UTC)  # a later retry, or the redrive
    outcome = mailgate.receive(receipt)

    assert outcome.decision is Decision.FORWARDED
    (forwarded,) = bodies(stack)
    assert forwarded["custom_args"]["inbound_message_id"] == receipt.message_id
    done = mailgate.log.get(receipt.message_id)
    assert done is not None
    assert done.status is InboundStatus.DONE
    assert not done.last_error


def test_a_list_held_by_a_live_delivery_is_left_to_it_and_the_retry_finds_it_done(stack: Any) -> None:
    seeded(stack)
    mailgate = _mailgate(stack)
    receipt, _ = _claimed_by_another_delivery(mailgate, deliver_to(stack, message()))

    with pytest.raises(ListHeld):
        mailgate.receive(receipt)
    assert bodies(stack) == []

    # the holder sends, records it and finishes the message
    holder = _mailgate(stack)
    holder.log.mark_batch_sent(receipt.message_id, LIST, 0, "sg-1", last=True)
    holder.log.record_decisions(
        receipt.message_id,
        [RecipientDecision(LIST, Decision.FORWARDED, "forwarded to 11 recipients", fan_out=11)],
        done=True,
        now=holder.clock(),
    )
    again = mailgate.receive(receipt)  # Lambda's retry

    assert again.repeated
    assert again.decision is Decision.FORWARDED
    assert bodies(stack) == []  # nothing sent twice


def test_a_held_list_goes_to_the_failure_queue_and_the_redrive_sends_it_once_the_lease_ran_out(stack: Any) -> None:
    """Through Lambda's asynchronous invocation: three tries, the on-failure record, then the redrive."""
    seeded(stack)
    mailgate = _mailgate(stack)
    delivered = deliver_to(stack, message())
    far = int(mailgate.clock().timestamp()) + 3600  # a holder that died with a long lease (a large list)
    receipt, _ = _claimed_by_another_delivery(mailgate, delivered, batches=40, lease_until=far)

    delivery = invoke_async(stack, "MailgateFunction", delivered.event, retry_delay=0)

    assert not delivery.ok
    assert delivery.attempts == 3
    assert delivery.error.startswith("ListHeld: held by another delivery")
    assert delivery.failure_queue_url
    assert bodies(stack) == []
    assert "1 waiting" in run(stack, "inbound", "redrive", "--dry-run").output

    InboundLogItem(receipt.message_id).update(actions=[InboundLogItem.forwards[LIST]["lease_until"].set(far - 7200)])
    redriven = run(stack, "inbound", "redrive")

    assert redriven.exit_code == 0, redriven.output
    assert "replayed 1, failed 0, skipped 0" in redriven.output
    (forwarded,) = bodies(stack)
    assert forwarded["custom_args"]["inbound_message_id"] == receipt.message_id
    record = mailgate.log.get(receipt.message_id)
    assert record is not None
    assert record.status is InboundStatus.DONE


def test_the_lease_of_a_small_list_runs_out_before_lambdas_second_retry(stack: Any) -> None:
    """Lambda retries about 60 s, then about 180 s, after a failure: a list of up to 3 requests whose holder
    died is sent by the second retry at the latest, a larger one by the redrive (module docstring)."""
    deployed = {k: v for k, v in stack.function_env("MailgateFunction").items() if k != "SENDGRID_TIMEOUT_SECONDS"}
    settings = MailgateSettings.from_env(deployed)
    assert settings.sendgrid.timeout_seconds == 10  # the template sets none: the default
    mailgate = build_mailgate(settings, dynamodb=stack.client("dynamodb"), s3=stack.client("s3"))
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    mailgate.clock = lambda: now
    lease = {n: mailgate._lease_until(n) - int(now.timestamp()) for n in (1, 3, 4)}
    assert lease == {1: 90, 3: 150, 4: 180}
    assert lease[1] > 60  # so the first retry after a crash still finds the list held
    assert lease[3] < 180 <= lease[4]


def test_a_raw_message_missing_from_s3_fails_loudly_for_the_retry_and_the_queue(stack: Any) -> None:
    from espmail.errors import NotFound

    seeded(stack)
    mailgate = _mailgate(stack)
    delivered = deliver_to(stack, message())
    stack.client("s3").delete_object(Bucket=stack.name("RawMailBucket"), Key=delivered.key)
    (receipt,) = parse_ses_event(delivered.event)
    with pytest.raises(NotFound):
        mailgate.receive(receipt)
    record = mailgate.log.get(receipt.message_id)
    assert record is not None
    assert record.status is InboundStatus.FAILED
    assert "does not exist" in record.last_error


def test_the_local_stack_holds_the_templates_receipt_rule(stack: Any) -> None:
    """moto takes the rule as declared but for its Lambda action (the stack runs the function in-process)."""
    ses = stack.client("ses")
    rules = ses.describe_receipt_rule_set(RuleSetName=stack.name("InboundReceiptRuleSet"))["Rules"]
    (rule,) = rules
    assert rule["Recipients"] == [SITE]
    assert rule["ScanEnabled"] is True
    assert rule["TlsPolicy"] == "Optional"
    assert rule["Actions"] == [{"S3Action": {"BucketName": stack.name("RawMailBucket"), "ObjectKeyPrefix": "inbound/"}}]
