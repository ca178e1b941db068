"""List mail as people expect it, through the real mailgate on the embedded stack: one Message-ID on every
copy of a list message, a reply that threads for every member, header grammar a strict parser accepts,
and no list headers on a one-to-one alias forward."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from tests.e2e.mailgate_support import RUTH, SITE, arrive, class_addresses, message, seeded


def _copies(stack: Any, start: int = 0) -> list[EmailMessage]:
    """Every copy the SendGrid double wrote out since ``start``, read with the strict policy (a header
    defect raises instead of being noted)."""
    copies = []
    for accepted in stack.sendgrid.accepted[start:]:
        for path in accepted.eml_paths:
            parsed = message_from_bytes(path.read_bytes(), policy=policy.strict)
            assert isinstance(parsed, EmailMessage)
            copies.append(parsed)
    return copies


def test_every_copy_of_a_list_message_carries_one_message_id_and_a_reply_threads_for_every_member(
    stack: Any,
) -> None:
    program = seeded(stack)
    first = arrive(stack, message(subject="Lab safety"))
    assert first.decision == "forwarded", first.reason
    copies = _copies(stack)
    assert len(copies) == len(class_addresses(program))
    assert {str(c["Message-ID"]) for c in copies} == {"<original-1@physics.example.edu>"}

    # A student of the class answers her own copy: In-Reply-To the id every member's copy carries.
    student = program.members_of("E1234s1")[1]
    already = len(stack.sendgrid.accepted)
    reply = message(
        sender=f"{student.first_name} <{student.email}>",
        subject="Re: [E1234] Lab safety",
        text="Do we bring our own?\n",
        headers={"In-Reply-To": "<original-1@physics.example.edu>", "References": "<original-1@physics.example.edu>"},
    ).replace(b"<original-1@physics.example.edu>\r\n", b"<reply-1@students.example.net>\r\n", 1)
    second = arrive(stack, reply)
    assert second.decision == "forwarded", second.reason
    replies = _copies(stack, already)
    assert len(replies) == len(class_addresses(program))  # the sender gets her copy too, as on any list
    by_recipient = {str(c["To"]): c for c in copies}
    for copy in replies:
        assert str(copy["Message-ID"]) == "<reply-1@students.example.net>"
        assert str(copy["Subject"]) == "Re: [E1234] Lab safety"  # the tag once
        original = by_recipient[str(copy["To"])]  # the same person's copy of the first message
        assert str(copy["In-Reply-To"]) == str(original["Message-ID"])
        assert str(original["Message-ID"]) in str(copy["References"]).split()


def test_list_headers_follow_rfc_2919_grammar_on_every_copy(stack: Any) -> None:
    from email import _header_value_parser as grammar

    seeded(stack)
    arrival = arrive(stack, message())
    assert arrival.decision == "forwarded", arrival.reason
    for copy in _copies(stack):
        value = str(copy["List-Id"])
        phrase, rest = grammar.get_phrase(value)
        assert phrase.all_defects == [], value
        assert rest == f"<e1234-class.{SITE}>", value
        assert phrase.value.strip() == "E1234 class: The Physics of Lasers"
        assert str(copy["List-Post"]) == f"<mailto:e1234-class@{SITE}>"
        assert str(copy["Precedence"]) == "list"


def test_a_message_without_a_usable_id_gets_one_id_shared_by_every_copy(stack: Any) -> None:
    seeded(stack)
    raw = message().replace(b"<original-1@physics.example.edu>", b"<not an id>")
    arrival = arrive(stack, raw)
    assert arrival.decision == "forwarded", arrival.reason
    ids = {str(c["Message-ID"]) for c in _copies(stack)}
    assert ids == {f"<{arrival.message_id}@{SITE}>"}


def test_an_alias_forward_carries_no_list_headers(stack: Any) -> None:
    seeded(stack)
    arrival = arrive(stack, message(sender="Kim <kim.director@mit.example.edu>", to=f"teacher_ruth@{SITE}"))
    assert arrival.decision == "forwarded", arrival.reason
    (copy,) = _copies(stack)
    assert str(copy["To"]).endswith(f"<{RUTH}>") or str(copy["To"]) == RUTH
    assert [copy[name] for name in ("List-Id", "List-Post", "Precedence")] == [None, None, None]
    assert str(copy["Message-ID"]) == "<original-1@physics.example.edu>"
