"""Every refusal and drop through the real handler, each with its reason in InboundLog, notices only
to registered, authenticated senders (at most one a day), never to a forged From or to ourselves."""

from __future__ import annotations

from typing import Any

import pytest

from embedded.ses_inbound import InboundVerdicts
from espmail.domain.people import Role
from tests.conftest import corpus_event
from tests.e2e.mailgate_support import RUTH, SITE, arrive, bodies, message, recipients, record, seeded


def _notices(stack: Any) -> list[dict[str, Any]]:
    return [b for b in bodies(stack) if b["from"]["email"] == f"support@{SITE}"]


def test_an_unknown_sender_is_refused_and_gets_no_notice(stack: Any) -> None:
    seeded(stack)
    arrival = arrive(stack, message(sender="Someone <someone@elsewhere.example>"))
    assert arrival.decision == "refused"
    assert "unknown sender" in arrival.reason
    assert "not a registered account" in arrival.reason
    assert bodies(stack) == []
    logged = record(stack, arrival.message_id)
    assert logged.reason == arrival.reason
    assert not logged.sender_username
    assert logged.notice.startswith("none")


def test_a_forged_from_with_dmarc_fail_is_an_unknown_sender_and_gets_no_backscatter(stack: Any) -> None:
    seeded(stack)
    arrival = arrive(stack, message(), verdicts=InboundVerdicts(dmarc="FAIL", spf="FAIL", dkim="FAIL"))
    assert arrival.decision == "refused"
    assert "DMARC fail" in arrival.reason
    assert bodies(stack) == []  # nothing forwarded, no notice to the address the forger used
    logged = record(stack, arrival.message_id)
    assert logged.from_address == RUTH
    assert not logged.authenticated


@pytest.mark.parametrize(
    "from_lines",
    [
        [f"From: Ruth Feld <{RUTH}>, Mallory <mallory@evil.example>"],
        [f"From: Ruth Feld <{RUTH}>", "From: Mallory <mallory@evil.example>"],
        ["From: Mallory <mallory@evil.example>", f"From: Ruth Feld <{RUTH}>"],
    ],
)
def test_a_from_naming_several_senders_is_an_unknown_sender_despite_a_dmarc_pass(
    stack: Any, from_lines: list[str]
) -> None:
    """SES's one DMARC verdict may concern the other address: no account, no forward, no notice."""
    seeded(stack)
    original = message()
    head, sep, rest = original.partition(b"\r\n")
    assert head.startswith(b"From: ")
    raw = "\r\n".join(from_lines).encode() + sep + rest
    arrival = arrive(stack, raw, verdicts=InboundVerdicts(dmarc="PASS"))
    assert arrival.decision == "refused"
    assert "unknown sender: the From is not one sender" in arrival.reason
    assert bodies(stack) == []
    logged = record(stack, arrival.message_id)
    assert not logged.authenticated
    assert not logged.sender_username
    assert logged.notice.startswith("none")


def test_no_dmarc_and_spf_for_an_aligned_envelope_authenticates(stack: Any) -> None:
    seeded(stack)
    gray = InboundVerdicts(dmarc="GRAY", spf="PASS", dkim="GRAY")
    arrival = arrive(stack, message(), verdicts=gray, source="bounces@mail.physics.example.edu")
    assert arrival.decision == "forwarded", arrival.reason


def test_no_dmarc_and_spf_for_an_unrelated_envelope_proves_nothing(stack: Any) -> None:
    seeded(stack)
    gray = InboundVerdicts(dmarc="GRAY", spf="PASS", dkim="GRAY")
    arrival = arrive(stack, message(), verdicts=gray, source="bounce@mailer.unrelated.example")
    assert arrival.decision == "refused"
    assert "unaligned envelope domain" in arrival.reason


def test_no_dmarc_and_a_dkim_signature_of_the_from_domain_authenticates(stack: Any) -> None:
    seeded(stack)
    signed = message(headers={"DKIM-Signature": "v=1; a=rsa-sha256; d=physics.example.edu; s=s1; bh=x; b=y"})
    gray = InboundVerdicts(dmarc="GRAY", spf="FAIL", dkim="PASS")
    arrival = arrive(stack, signed, verdicts=gray, source="x@sendgrid.example")
    assert arrival.decision == "forwarded", arrival.reason


def test_no_matching_rule_is_refused_with_one_notice_a_day(stack: Any) -> None:
    seeded(stack)
    first = arrive(stack, message(to=f"no-such-list@{SITE}", subject="First"))
    assert first.decision == "refused"
    assert "no list rule takes mail for no-such-list" in first.reason
    (notice,) = _notices(stack)
    assert recipients(notice) == [RUTH]
    assert notice["subject"] == "Not delivered: First"
    text = notice["content"][0]["value"]
    assert f"no-such-list@{SITE}" in text
    assert "no list rule takes mail" in text
    assert notice["headers"]["Auto-Submitted"] == "auto-replied"
    assert record(stack, first.message_id).notice == f"sent to {RUTH}"
    second = arrive(stack, message(to=f"another-missing@{SITE}", subject="Second"))
    assert second.decision == "refused"
    assert len(_notices(stack)) == 1
    assert "already had a notice" in record(stack, second.message_id).notice


def test_a_students_alias_refuses_another_student_who_is_told_why(stack: Any) -> None:
    program = seeded(stack)
    ada, ben = program.members_of("E1234s1", Role.STUDENT)[:2]
    arrival = arrive(stack, message(sender=ada.email, to=f"{ben.username}@{SITE}"))
    assert arrival.decision == "refused"
    assert "takes mail only from teachers and admins" in arrival.reason
    (notice,) = bodies(stack)
    assert recipients(notice) == [ada.email]
    assert ben.email not in str(notice)


def test_a_message_too_large_for_sendgrid_is_refused_with_a_clear_notice(stack: Any) -> None:
    seeded(stack)
    big = message(attachment=b"\x00\x01" * 11_300_000)  # 22.6 MB: over 30 MB once base64 goes into JSON
    arrival = arrive(stack, big)
    assert arrival.decision == "refused"
    assert "too large" in arrival.reason
    (notice,) = bodies(stack)
    assert recipients(notice) == [RUTH]
    assert "was too large to deliver" in notice["content"][0]["value"]
    assert "MB" in notice["content"][0]["value"]


@pytest.mark.parametrize(
    ("verdicts", "reason"),
    [
        (InboundVerdicts(virus="FAIL"), "virus verdict FAIL"),
        (InboundVerdicts(spam="FAIL"), "spam verdict FAIL"),
    ],
)
def test_virus_and_spam_are_dropped_without_reading_the_message(
    stack: Any, verdicts: InboundVerdicts, reason: str
) -> None:
    seeded(stack)
    arrival = arrive(stack, message(), verdicts=verdicts)
    assert arrival.decision == "dropped"
    assert reason in arrival.reason
    assert bodies(stack) == []
    logged = record(stack, arrival.message_id)
    assert logged.verdicts["virus" if "virus" in reason else "spam"] == "FAIL"
    assert logged.from_address == ""  # dropped before the body was read


@pytest.mark.parametrize(
    ("headers", "sender", "source", "reason"),
    [
        ({"Delivered-To": f"e1234-class@{SITE}"}, None, None, f"already delivered to e1234-class@{SITE}"),
        ({"List-Id": f"E1234 class <e1234-class.{SITE}>"}, None, None, "this site's List-Id"),
        ({}, f"support@{SITE}", None, "this system's own address"),
        ({}, f"teacher_ruth@{SITE}", None, "this system's own address"),
        ({}, None, f"bounces+123@em42.{SITE}", "envelope sender"),
    ],
)
def test_loops_are_dropped(
    stack: Any, headers: dict[str, str], sender: str | None, source: str | None, reason: str
) -> None:
    seeded(stack)
    raw = message(headers=headers, sender=sender) if sender else message(headers=headers)
    arrival = arrive(stack, raw, source=source)
    assert arrival.decision == "dropped"
    assert "loop" in arrival.reason
    assert reason in arrival.reason
    assert bodies(stack) == []


def test_a_delivered_to_for_another_list_does_not_stop_this_one(stack: Any) -> None:
    seeded(stack)
    arrival = arrive(stack, message(headers={"Delivered-To": f"m2345-class@{SITE}"}))
    assert arrival.decision == "forwarded", arrival.reason


def test_an_address_of_another_domain_in_the_event_is_dropped(stack: Any) -> None:
    """The corpus's own SES event (to johndoe@example.com) goes through the real handler unharmed."""
    seeded(stack)
    result = stack.invoke("MailgateFunction", corpus_event("ses-receipt-lambda.json"))
    (only,) = result["results"]
    assert only["decision"] == "dropped"
    assert "not an address of esp.example.org" in only["reason"]
    assert bodies(stack) == []


def test_an_absurdly_long_local_part_is_refused_not_crashed_on(stack: Any) -> None:
    seeded(stack)
    address = "x" * 3000 + f"@{SITE}"
    arrival = arrive(stack, message(to=address), to=address)
    assert arrival.decision == "refused"
    assert "no list rule takes mail" in arrival.reason
