"""Message requests as data: recipient specs, sendto, the From domain rule, request validation, ids."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from espmail.domain.mail import Address
from espmail.domain.message_requests import (
    BodyFormat,
    GroupScope,
    GroupSelector,
    MessageRequest,
    SendTo,
    looks_like_html,
    new_request_id,
    parse_address,
    parse_recipient_spec,
    parse_sendto,
    request_problems,
    sender_problem,
    sendto_text,
)
from espmail.domain.people import Role
from espmail.errors import InvalidInput

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
ALLOWED = ("esp.example.org",)


def a_request(**changes: object) -> MessageRequest:
    base = MessageRequest(
        request_id=new_request_id(),
        subject="Hello {{ user.first_name }}",
        body="Dear {{ user.name }}",
        body_format=BodyFormat.TEXT,
        sender=Address("splash@esp.example.org", "Splash"),
        recipients=parse_recipient_spec(["E1234:class"]),
        creator="admin_kim",
        created_at=NOW,
        not_before=NOW,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_recipient_specs_read_groups_with_roles_usernames_and_roles() -> None:
    spec = parse_recipient_spec(["E1234:students", "E1234s1:teachers", "E1234:class", "user:alice", "role:teacher"])
    assert spec.groups == (
        GroupSelector("E1234", GroupScope.STUDENTS),
        GroupSelector("E1234s1", GroupScope.TEACHERS),
        GroupSelector("E1234", GroupScope.CLASS),
    )
    assert spec.usernames == ("alice",)
    assert spec.roles == (Role.TEACHER,)
    assert GroupScope.CLASS.roles == {Role.STUDENT, Role.TEACHER}
    assert parse_recipient_spec(spec.as_strings()) == spec


def test_a_comma_separated_spec_and_repeats_are_read_once() -> None:
    spec = parse_recipient_spec("E1234:class, user:bob user:bob")
    assert spec.usernames == ("bob",)
    assert len(spec.groups) == 1


def test_every_unreadable_recipient_is_named_at_once() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_recipient_spec(["E1234", "E1234:parents", "role:wizard", "user:"])
    message = str(caught.value)
    for item in ("'E1234'", "parents", "wizard", "'user:'"):
        assert item in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("self", {SendTo.SELF}),
        ("guardian", {SendTo.GUARDIAN}),
        ("self+guardian", {SendTo.SELF, SendTo.GUARDIAN}),
        ("self, emergency", {SendTo.SELF, SendTo.EMERGENCY}),
        ("send_to_self_and_guardian_and_emergency", {SendTo.SELF, SendTo.GUARDIAN, SendTo.EMERGENCY}),
        ("", {SendTo.SELF}),  # ESP's default: the user
    ],
)
def test_sendto_reads_esp_names_and_combinations(text: str, expected: set[SendTo]) -> None:
    assert parse_sendto(text) == expected


def test_sendto_refuses_what_it_does_not_know_and_prints_in_a_fixed_order() -> None:
    with pytest.raises(InvalidInput, match="sendto"):
        parse_sendto("self+cousin")
    assert sendto_text({SendTo.EMERGENCY, SendTo.SELF}) == "self+emergency"


def test_the_from_domain_must_be_allowed_exactly() -> None:
    assert sender_problem(Address("splash@esp.example.org"), ALLOWED) is None
    assert sender_problem(Address("Splash@ESP.example.org"), ALLOWED) is None
    for address in ("x@evil.example.com", "x@sub.esp.example.org", "x@example.org"):
        problem = sender_problem(Address(address), ALLOWED)
        assert problem is not None
        assert "not on an allowed sender domain" in problem
        assert address in problem


def test_addresses_are_read_with_names_and_refused_with_line_breaks() -> None:
    assert parse_address("Splash Team <splash@esp.example.org>") == Address("splash@esp.example.org", "Splash Team")
    with pytest.raises(InvalidInput, match="line break"):
        parse_address("x@esp.example.org\r\nBcc: victim@example.com")
    with pytest.raises(InvalidInput, match="not an email address"):
        parse_address("not an address")


def test_a_good_request_has_no_problems() -> None:
    assert request_problems(a_request(), ALLOWED) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"sender": Address("a@evil.example.com")}, "allowed sender domain"),
        ({"subject": "Two\nlines"}, "one line"),
        ({"subject": "  "}, "subject is empty"),
        ({"body": ""}, "body is empty"),
        ({"priority": 11}, "priority 11"),
        ({"recipients": parse_recipient_spec([])}, "no recipients"),
        ({"headers": {"Bcc": "x@example.com"}}, "set by the system"),
        ({"headers": {"X-Tag": "a\r\nBcc: b@example.com"}}, "line break"),
        ({"headers": {"Bad Name": "x"}}, "not a valid field name"),
        ({"vars": {"user": {"first_name": "Mallory"}}}, "would hide the built-in"),
        ({"vars": {"1st": "x"}}, "is not a name"),
        ({"creator": ""}, "creator"),
    ],
)
def test_each_problem_is_named(changes: dict[str, object], expected: str) -> None:
    problems = request_problems(a_request(**changes), ALLOWED)
    assert any(expected in p for p in problems), problems


def test_html_is_recognised_as_esp_did_and_by_common_tags() -> None:
    assert looks_like_html("<html><body>Hi</body></html>")
    assert looks_like_html("Hello<br>there")
    assert looks_like_html("<p>Dear {{ user.name }}</p>")
    assert not looks_like_html("Hi {{ user.first_name }}, 3 < 4 and 5 > 2.")


@given(st.floats(min_value=1e9, max_value=2.8e11), st.floats(min_value=0.002, max_value=1e6))
def test_request_ids_are_ulids_that_sort_by_time(earlier: float, gap: float) -> None:
    first, second = new_request_id(earlier), new_request_id(earlier + gap)
    assert len(first) == len(second) == 26
    assert set(first) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    assert first < second


@pytest.mark.parametrize("value", ["From", "splash at esp", "Reply-To desk"])
def test_an_unreadable_address_is_named_by_its_field_whatever_the_value_says(value: str) -> None:
    from espmail.outgoing.requests_service import MessageRequestService
    from espmail.settings import SiteSettings
    from espmail.storage.message_requests import MessageRequestRepository
    from espmail.storage.outbox import OutboxRepository
    from espmail.storage.recipient_pages import DirectoryPages
    from espmail.storage.users import UserRepository

    site = SiteSettings("esp.example.org", "Splash", "", ALLOWED, "support@esp.example.org", "b@esp.example.org", "")
    service = MessageRequestService(
        site, MessageRequestRepository(), OutboxRepository(), DirectoryPages(), UserRepository()
    )
    with pytest.raises(InvalidInput) as refused:  # refused before any table is read
        service.create_request(
            subject="s", body="b", sender=value, reply_to=value, recipients=["E1234:class"], creator="admin_kim"
        )
    problems = str(refused.value).split("; ")
    assert [p.split(": ", 1)[0] for p in problems] == ["From", "Reply-To"], problems
