"""Mail to the site's addresses forwarded through the real handler: class and section lists, redirects,
user aliases; the forwarded message's shape as the SendGrid double accepted it."""

from __future__ import annotations

import time
from email import message_from_bytes, policy
from typing import Any

from embedded.seed import DIRECTORS
from espmail.domain.people import Role
from tests.e2e.mailgate_support import (
    OMAR,
    RUTH,
    SITE,
    arrive,
    bodies,
    class_addresses,
    content,
    message,
    recipients,
    record,
    seeded,
)


def test_a_teacher_writes_to_a_class_list_and_its_members_receive_it_under_her_alias(stack: Any) -> None:
    program = seeded(stack)
    raw = message(
        to=f"E1234-class@{SITE}, friend@elsewhere.example",
        headers={"Cc": "cc@elsewhere.example", "Bcc": "hidden@elsewhere.example", "In-Reply-To": "<a@b>"},
    )
    arrival = arrive(stack, raw)
    assert arrival.decision == "forwarded", arrival.reason
    (body,) = bodies(stack)
    assert sorted(recipients(body)) == sorted(class_addresses(program))
    assert all(len(p["to"]) == 1 for p in body["personalizations"])  # each recipient its own envelope
    assert body["from"] == {"email": f"teacher_ruth@{SITE}", "name": "Ruth Feld"}
    assert body["reply_to"]["email"] == f"e1234-class@{SITE}"  # she is on the list: the list only
    assert body["subject"] == "[E1234] Lasers on Saturday"
    assert body["headers"]["List-Id"].endswith(f"<e1234-class.{SITE}>")
    assert body["headers"]["Precedence"] == "list"
    assert body["headers"]["In-Reply-To"] == "<a@b>"
    assert content(body, "text/plain") == "Bring goggles.\r\n"
    for stranger in ("friend@elsewhere.example", "cc@elsewhere.example", "hidden@elsewhere.example"):
        assert stranger not in recipients(body)
    # The double wrote one .eml per recipient, as a person would receive it.
    (accepted,) = stack.sendgrid.accepted
    assert len(accepted.eml_paths) == len(class_addresses(program))
    eml = message_from_bytes(accepted.eml_paths[0].read_bytes(), policy=policy.default)
    assert "teacher_ruth@esp.example.org" in str(eml["From"])
    assert eml["Message-ID"] == "<original-1@physics.example.edu>"  # every copy: the sender's own id
    logged = record(stack, arrival.message_id)
    assert logged.sender_username == "teacher_ruth"
    assert logged.authenticated
    decision = logged.decision_for(f"e1234-class@{SITE}")
    assert decision is not None
    assert (decision.rule, decision.handler, decision.fan_out) == ("class-list", "class_list", 11)
    assert set(decision.forwarded_to) == class_addresses(program)
    assert decision.sendgrid_message_ids == (accepted.message_id,)


def test_a_section_students_list_reaches_directors_and_students_with_the_sender_alias_to_reply(stack: Any) -> None:
    program = seeded(stack)
    arrival = arrive(stack, message(sender=f"Omar <{OMAR}>", to=f"E1234s2-students@{SITE}"))
    assert arrival.decision == "forwarded", arrival.reason
    (body,) = bodies(stack)
    students = {u.email for u in program.members_of("E1234s2", Role.STUDENT)}
    assert set(recipients(body)) == students | {DIRECTORS}
    # Omar teaches the section but is not on its students list: replies may reach him too.
    assert [a["email"] for a in body["reply_to_list"]] == [f"e1234s2-students@{SITE}", f"teacher_omar@{SITE}"]


def test_a_redirect_with_three_comma_separated_destinations_reaches_all_three(stack: Any) -> None:
    seeded(stack)
    stack.client("dynamodb").put_item(
        TableName=stack.name("RedirectsTable"),
        Item={
            "original": {"S": "logistics"},
            "destinations": {"S": "vans@rentals.example, food@catering.example ,rooms@campus.example"},
        },
    )
    arrival = arrive(stack, message(to=f"Logistics@{SITE}"))
    assert arrival.decision == "forwarded", arrival.reason
    (body,) = bodies(stack)
    assert recipients(body) == ["vans@rentals.example", "food@catering.example", "rooms@campus.example"]
    assert len(body["personalizations"]) == 3
    assert body["reply_to"] == {"email": f"teacher_ruth@{SITE}", "name": "Ruth Feld"}  # redirect rule: sender


def test_a_student_reaches_a_teacher_through_the_teachers_alias(stack: Any) -> None:
    program = seeded(stack)
    student = program.members_of("E1234s1", Role.STUDENT)[0]
    arrival = arrive(stack, message(sender=student.email, to=f"teacher_ruth@{SITE}"))
    assert arrival.decision == "forwarded", arrival.reason
    (body,) = bodies(stack)
    assert recipients(body) == [RUTH]
    assert body["from"]["email"] == f"{student.username}@{SITE}"
    assert body["reply_to"]["email"] == f"{student.username}@{SITE}"


def test_a_teacher_reaches_a_student_through_the_students_alias(stack: Any) -> None:
    program = seeded(stack)
    student = program.members_of("E1234s1", Role.STUDENT)[1]
    arrival = arrive(stack, message(to=f"{student.username}@{SITE}"))
    assert arrival.decision == "forwarded", arrival.reason
    assert recipients(bodies(stack)[0]) == [student.email]


def test_a_reply_to_a_list_message_keeps_one_class_tag(stack: Any) -> None:
    seeded(stack)
    raw = message(
        subject="Re: [E1234] Lasers on Saturday",
        headers={"In-Reply-To": "<x@sendgrid.net>", "References": "<first@esp> <x@sendgrid.net>"},
    )
    assert arrive(stack, raw).decision == "forwarded"
    (body,) = bodies(stack)
    assert body["subject"] == "Re: [E1234] Lasers on Saturday"
    assert body["headers"]["References"] == "<first@esp> <x@sendgrid.net>"


def test_a_display_name_cannot_inject_a_header_or_a_recipient(stack: Any) -> None:
    program = seeded(stack)
    hostile = f"=?utf-8?q?Ruth=0D=0ABcc=3A_victim=40evil=2Eexample=0D=0AX-Evil=3A_1?= <{RUTH}>"
    raw = message().replace(f"From: Ruth Feld <{RUTH}>".encode(), f"From: {hostile}".encode())
    assert hostile.encode() in raw
    arrival = arrive(stack, raw)
    assert arrival.decision == "forwarded", arrival.reason
    (body,) = bodies(stack)
    assert body["from"] == {
        "email": f"teacher_ruth@{SITE}",
        "name": "Ruth Feld",
    }  # the account's name, never the header's
    assert "victim@evil.example" not in recipients(body)
    assert set(recipients(body)) == class_addresses(program)
    assert "X-Evil" not in body["headers"]
    eml = stack.sendgrid.accepted[0].eml_paths[0].read_bytes()
    assert b"victim" not in eml
    assert b"X-Evil" not in eml


def test_one_message_to_a_class_and_its_section_reaches_each_person_once(stack: Any) -> None:
    program = seeded(stack)
    arrival = arrive(stack, message(), to=[f"E1234-class@{SITE}", f"E1234s1-class@{SITE}"])
    assert arrival.decision == "forwarded"
    everyone = [address for body in bodies(stack) for address in recipients(body)]
    assert sorted(everyone) == sorted(class_addresses(program))
    logged = record(stack, arrival.message_id)
    section = logged.decision_for(f"e1234s1-class@{SITE}")
    assert section is not None
    assert section.decision.value == "forwarded"
    assert "already received it" in section.reason


def test_a_10000_character_pathological_rule_does_not_hold_the_mail_up(stack: Any) -> None:
    seeded(stack)
    stack.client("dynamodb").put_item(
        TableName=stack.name("ListRulesTable"),
        Item={
            "name": {"S": "typed-in-a-hurry"},
            "seq": {"N": "1"},
            "regex": {"S": "^" + "(e|e1|1|2|3|4|[a-z0-9-])+" * 370 + "$"},
            "handler": {"S": "redirect"},
        },
    )
    raw = message(to=f"E1234-class@{SITE}")
    started = time.perf_counter()
    arrival = arrive(stack, raw, to=f"E1234-class@{SITE}")
    assert time.perf_counter() - started < 5
    assert arrival.decision == "forwarded", arrival.reason
