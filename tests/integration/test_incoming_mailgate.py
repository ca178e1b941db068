"""The mailgate use case wired to the embedded stack with settings a deployment may choose, and its
``explain`` answer for the CLI."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from embedded.ses_inbound import InboundVerdicts
from espmail.domain.inbound import Decision, InboundStatus
from espmail.domain.people import Role
from espmail.incoming.events import parse_ses_event
from espmail.incoming.mailgate import Mailgate
from espmail.incoming.settings import MailgateSettings, SpamPolicy
from espmail.incoming.wiring import build_mailgate
from tests.e2e.mailgate_support import RUTH, SITE, bodies, deliver_to, message, seeded


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
    assert mailgate.explain("E1234-class").decision is Decision.FORWARDED  # any registered sender


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


def test_a_list_held_by_a_concurrent_delivery_is_left_to_it(stack: Any) -> None:
    seeded(stack)
    mailgate = _mailgate(stack)
    delivered = deliver_to(stack, message())
    (receipt,) = parse_ses_event(delivered.event)
    mailgate.log.begin(
        receipt.message_id,
        received_at=mailgate.clock(),
        now=mailgate.clock(),
        source="",
        recipients=receipt.recipients,
        s3_key=delivered.key,
        subject="",
        verdicts={},
    )
    far = int(mailgate.clock().timestamp()) + 3600
    assert mailgate.log.claim_forward(
        receipt.message_id, f"e1234-class@{SITE}", batches=1, lease_until=far, now=mailgate.clock()
    )[0]
    outcome = mailgate.receive(receipt)
    assert outcome.decisions == ()
    assert bodies(stack) == []
    record = mailgate.log.get(receipt.message_id)
    assert record is not None
    assert record.status is InboundStatus.RECEIVED  # the holder finishes it


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
