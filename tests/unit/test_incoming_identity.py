"""Sender identification: DMARC, or aligned SPF/DKIM where the domain has no DMARC; account precedence."""

from __future__ import annotations

import pytest

from espmail.domain.people import Role, User
from espmail.incoming.events import Verdict, Verdicts
from espmail.incoming.identity import (
    aligned,
    authenticate_from,
    choose_account,
    dkim_signing_domains,
    from_ambiguity,
    identify_sender,
    organizational_domain,
)

P, F, G = Verdict.PASS, Verdict.FAIL, Verdict.GRAY


@pytest.mark.parametrize(
    ("domain", "organization"),
    [
        ("example.org", "example.org"),
        ("mail.physics.example.edu", "example.edu"),
        ("school.ac.uk", "school.ac.uk"),
        ("mx.school.ac.uk", "school.ac.uk"),
        ("Mail.Example.COM.", "example.com"),
        ("localhost", "localhost"),
    ],
)
def test_organizational_domain(domain: str, organization: str) -> None:
    assert organizational_domain(domain) == organization


def test_alignment_is_relaxed_but_not_across_organizations() -> None:
    assert aligned("bounce.physics.example.edu", "example.edu")
    assert not aligned("example.com", "example.edu")
    assert not aligned("a.co.uk", "b.co.uk")
    assert not aligned("", "example.edu")


def test_dkim_signing_domains_read_the_d_tag() -> None:
    signatures = [
        "v=1; a=rsa-sha256; c=relaxed/relaxed; d=Example.COM; s=sel; h=from:to; bh=x; b=y",
        "v=1; a=rsa-sha256;\r\n\td=amazonses.com; s=abc",
        "v=1; broken",
    ]
    assert dkim_signing_domains(signatures) == ("example.com", "amazonses.com", "")


@pytest.mark.parametrize(
    ("verdicts", "envelope", "dkim", "authenticated"),
    [
        (Verdicts(dmarc=P), "anyone@elsewhere.net", (), True),
        (Verdicts(dmarc=F, spf=P, dkim=P), "ruth@example.edu", ("example.edu",), False),  # forged or unaligned
        (Verdicts(dmarc=G, spf=P), "bounces@mail.example.edu", (), True),  # aligned SPF
        (Verdicts(dmarc=G, spf=P), "bounces@sendgrid.net", (), False),  # SPF for another domain proves nothing
        (Verdicts(dmarc=G, dkim=P), "x@sendgrid.net", ("example.edu",), True),  # aligned DKIM
        (Verdicts(dmarc=G, dkim=P), "x@sendgrid.net", ("sendgrid.net",), False),
        (Verdicts(dmarc=G, dkim=P), "x@sendgrid.net", ("example.edu", "sendgrid.net"), False),  # which one passed?
        (Verdicts(dmarc=G, dkim=F, spf=F), "ruth@example.edu", ("example.edu",), False),
        (Verdicts(spf=P), "ruth@example.edu", (), True),  # no DMARC verdict in the event: as GRAY
        (Verdicts(dmarc=Verdict.PROCESSING_FAILED, spf=P), "ruth@example.edu", (), False),
    ],
)
def test_authentication_rule(verdicts: Verdicts, envelope: str, dkim: tuple[str, ...], authenticated: bool) -> None:
    result = authenticate_from("example.edu", verdicts, envelope_sender=envelope, dkim_domains=dkim)
    assert result.authenticated is authenticated, result.reason
    assert result.reason


def test_no_from_is_never_authenticated() -> None:
    assert not authenticate_from("", Verdicts(dmarc=P), envelope_sender="", dkim_domains=()).authenticated


def _user(username: str, user_id: int, *roles: Role, active: bool = True) -> User:
    return User(username, user_id, "shared@example.edu", roles=frozenset(roles), is_active=active)


def test_several_accounts_admin_then_teacher_then_lowest_id() -> None:
    student_low = _user("s1", 1, Role.STUDENT)
    student_high = _user("s2", 9, Role.STUDENT)
    teacher = _user("t", 50, Role.TEACHER)
    admin = _user("a", 99, Role.ADMIN)
    assert choose_account([student_high, teacher, admin, student_low]) == admin
    assert choose_account([student_high, teacher, student_low]) == teacher
    assert choose_account([student_high, student_low]) == student_low
    assert choose_account([_user("gone", 1, Role.ADMIN, active=False), student_high]) == student_high
    assert choose_account([]) is None


class Directory:
    def __init__(self, *users: User) -> None:
        self.users = users
        self.asked: list[str] = []

    def find_by_email(self, email: str) -> list[User]:
        self.asked.append(email)
        return [u for u in self.users if u.email.lower() == email.strip().lower()]


def test_identify_sender_looks_up_case_insensitively_and_needs_authentication() -> None:
    ruth = User("teacher_ruth", 2, "ruth@physics.example.edu", "Ruth", "Feld", frozenset({Role.TEACHER}))
    directory = Directory(ruth)
    ok = identify_sender(
        "Ruth@Physics.Example.EDU", "R", Verdicts(dmarc=P), envelope_sender="", dkim_signatures=(), users=directory
    )
    assert ok.account == ruth
    assert ok.known
    assert ok.is_staff
    forged = identify_sender(
        "ruth@physics.example.edu", "R", Verdicts(dmarc=F), envelope_sender="", dkim_signatures=(), users=directory
    )
    assert forged.account is None
    assert forged.registered
    assert not forged.authenticated
    assert "DMARC fail" in forged.reason
    stranger = identify_sender(
        "who@else.org", "", Verdicts(dmarc=P), envelope_sender="", dkim_signatures=(), users=directory
    )
    assert stranger.account is None
    assert not stranger.registered
    assert "not a registered account" in stranger.reason


@pytest.mark.parametrize(
    ("from_headers", "problem"),
    [
        (["Ruth Feld <ruth@physics.example.edu>"], ""),
        (['"Feld, Ruth" <ruth@physics.example.edu>'], ""),  # a comma inside a quoted name
        (["ruth@physics.example.edu <Ruth@Physics.Example.EDU>"], ""),  # the same address twice is one sender
        (["Ruth,\r\n Feld <ruth@physics.example.edu>"], ""),  # a stray comma before the only address
        ([], ""),  # no From: "no usable From address" says so elsewhere
        (["ruth@physics.example.edu, mallory@evil.example"], "the From names 2 addresses"),
        (["Ruth <ruth@physics.example.edu>,\r\n Mallory <mallory@evil.example>"], "the From names 2 addresses"),
        (["g: ruth@physics.example.edu, mallory@evil.example;"], "the From names 2 addresses"),
        (["mallory@evil.example", "ruth@physics.example.edu"], "the message has 2 From headers"),
        (["ruth@physics.example.edu", "ruth@physics.example.edu"], "the message has 2 From headers"),
    ],
)
def test_a_from_must_name_exactly_one_sender(from_headers: list[str], problem: str) -> None:
    assert from_ambiguity(from_headers).startswith(problem) if problem else from_ambiguity(from_headers) == ""


def test_an_ambiguous_from_is_an_unknown_sender_even_with_a_dmarc_pass() -> None:
    ruth = User("teacher_ruth", 2, "ruth@physics.example.edu", "Ruth", "Feld", frozenset({Role.TEACHER}))
    for headers in (
        ["mallory@evil.example, ruth@physics.example.edu"],
        ["ruth@physics.example.edu", "mallory@evil.example"],
    ):
        sender = identify_sender(
            "ruth@physics.example.edu",
            "Ruth",
            Verdicts(dmarc=P),  # SES's verdict: for which of the From domains?
            envelope_sender="mallory@evil.example",
            dkim_signatures=(),
            users=Directory(ruth),
            from_headers=headers,
        )
        assert sender.account is None
        assert not sender.known
        assert not sender.authenticated
        assert sender.reason.startswith("the From is not one sender: ")
    single = identify_sender(
        "ruth@physics.example.edu",
        "Ruth",
        Verdicts(dmarc=P),
        envelope_sender="",
        dkim_signatures=(),
        users=Directory(ruth),
        from_headers=["Ruth Feld <ruth@physics.example.edu>"],
    )
    assert single.account == ruth
