"""A message request through the real expander and sender handlers, started by the real EventBridge event
shapes, judged by what the SendGrid double accepted: the happy path and every kind of bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from embedded.stack import LOCAL_API_KEY
from espmail.domain.mail import Address
from espmail.domain.message_requests import BodyFormat, RequestStatus
from espmail.domain.outbox import RowStatus
from espmail.domain.people import Role, User
from espmail.outgoing.unsubscribe import ONE_CLICK, UnsubscribeLinks, signing_key
from espmail.storage.users import UserRepository
from tests.e2e.outgoing_support import (
    CREATOR_EMAIL,
    accepted_to,
    body_text,
    create,
    expand,
    put_unchecked,
    request,
    rows,
    seeded,
    seen_by,
    send,
    statuses,
    tables,
    twice,
)


def test_a_request_to_a_class_goes_from_pending_to_expanded_to_sent(stack: Any) -> None:
    program = seeded(stack)
    created = create(
        stack,
        subject="{{ program.name }}: see you Saturday, {{ user.first_name }}",
        body="<p>Dear {{ user.name }},</p><p>Room {{ program.room }}. {{ request.public_url }}</p>",
        template_vars={"program": {"name": "Splash", "room": "10-250"}},
        sendto="self+guardian",
        public=True,
    )
    assert created.status is RequestStatus.PENDING
    assert created.body_format is BodyFormat.HTML

    expanded = expand(stack)
    assert expanded["expanded"] == [created.request_id]
    after_expansion = request(stack, created.request_id)
    assert after_expansion.status is RequestStatus.EXPANDED
    members = {u for section in ("E1234s1", "E1234s2") for u in program.members_of(section)}
    wanted = {u.email.lower() for u in members} | {u.guardian_email.lower() for u in members if u.guardian_email}
    assert after_expansion.counts.total == len(wanted)
    assert after_expansion.counts.skipped_reasons == {"no guardian address": 6}  # 2 teachers, 4 odd students

    report = send(stack)
    assert report["sent"] == len(wanted)
    final = request(stack, created.request_id)
    assert final.status is RequestStatus.SENT
    assert (final.counts.total, final.counts.sent, final.counts.failed) == (len(wanted), len(wanted), 0)

    delivered = accepted_to(stack)
    assert sorted(delivered) == sorted(wanted)
    assert twice(delivered) == []
    links = UnsubscribeLinks("https://esp.example.org/unsubscribe", signing_key(LOCAL_API_KEY))
    by_address = {r.to.email.lower(): r for r in rows(stack, created.request_id)}
    for mail in stack.sendgrid.accepted:
        body = mail.body
        assert body["categories"] == ["espmail-bulk"]
        assert body["custom_args"] == {"request_id": created.request_id, "kind": "bulk"}
        assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
        for personalization in body["personalizations"]:
            address = personalization["to"][0]["email"].lower()
            assert personalization["custom_args"] == {"recipient": by_address[address].recipient}
            assert "@" not in str(personalization["custom_args"])
            headers = personalization["headers"]
            assert headers["List-Unsubscribe-Post"] == ONE_CLICK
            query = dict(parse_qsl(urlsplit(headers["List-Unsubscribe"].strip("<>")).query))
            assert links.verify(query) == address
    # Personalised rows share calls through substitutions: what each recipient sees is its own rendering.
    assert len(stack.sendgrid.accepted) < len(wanted)
    seen = seen_by(stack)
    assert sorted(seen) == sorted(wanted)
    for address, (message,) in seen.items():
        row = by_address[address]
        assert message["Subject"] == row.subject
        assert body_text(message, "plain") == row.text.rstrip("\n") + "\n"
        assert body_text(message, "html") == (row.html or "").rstrip("\n") + "\n"
        assert "Room 10-250" in (body_text(message, "plain") or "")
        assert f"/email/{created.request_id}" in (body_text(message, "html") or "")
        assert "-espmail-" not in message.as_string()
    (ruth,) = seen["ruth@physics.example.edu"]
    assert ruth["Subject"] == "Splash: see you Saturday, Ruth"
    assert "Dear Ruth" in (body_text(ruth, "plain") or "")
    eml_files = [
        message_from_bytes(p.read_bytes(), policy=policy.default) for m in stack.sendgrid.accepted for p in m.eml_paths
    ]
    assert sorted(str(e["Subject"]) for e in eml_files) == sorted(r.subject for r in by_address.values())
    assert all(r.status is RowStatus.SENT and r.message_id for r in rows(stack, created.request_id))


def test_unknown_variables_render_empty_and_a_subject_never_carries_a_line_break(stack: Any) -> None:
    seeded(stack)
    created = put_unchecked(
        stack,
        subject="Hello\n{{ user.first_name }} {{ program.title }}",
        body="[{{ user.nickname }}][{{ nothing.at.all }}] {{ user.username }}",
        recipients=["user:teacher_ruth"],
        vars={"program": {"title": "Splash\r\nBcc: victim@example.com"}},
    )
    expand(stack)
    send(stack)
    (mail,) = stack.sendgrid.accepted
    assert mail.body["subject"] == "Hello Ruth Splash Bcc: victim@example.com"
    assert mail.body["content"][0]["value"] == "[][] teacher_ruth"
    assert request(stack, created.request_id).status is RequestStatus.SENT


def test_a_bad_request_fails_alone_with_its_reason_and_the_others_go_on(stack: Any) -> None:
    seeded(stack)
    syntax = put_unchecked(stack, body="Hello {{ user.first_name ")
    group = put_unchecked(stack, recipients=["E1234s1:class", "Z9999:students"])
    sender = put_unchecked(stack, sender=Address("splash@evil.example.com"))
    escape = put_unchecked(stack, body="{{ ''.__class__.__mro__ }}")
    good = put_unchecked(stack, recipients=["user:teacher_omar"])

    report = expand(stack)
    assert report["expanded"] == [good.request_id]
    failures = {f["request_id"]: f["error"] for f in report["failed"]}
    expected = {
        syntax.request_id: "body template line 1",
        group.request_id: "unknown group: Z9999",
        sender.request_id: "not on an allowed sender domain",
        escape.request_id: "may not use the attribute",
    }
    for request_id, reason in expected.items():
        assert reason in failures[request_id]
        stored = request(stack, request_id)
        assert stored.status is RequestStatus.FAILED
        assert reason in stored.last_error
        assert rows(stack, request_id) == []
    send(stack)
    assert accepted_to(stack) == ["omar.h@example.com"]


def test_users_without_a_usable_address_are_skipped_and_counted_with_the_reason(stack: Any) -> None:
    program = seeded(stack)
    students = program.members_of("E1234s1", Role.STUDENT)
    # An account without an address, as the website may hold it (no e-mail, so not in the by-email index).
    stack.client("dynamodb").put_item(
        TableName=stack.name("UsersTable"),
        Item={
            "username": {"S": students[0].username},
            "user_id": {"N": str(students[0].user_id)},
            "email": {"S": ""},
            "roles": {"SS": ["student"]},
            "is_active": {"BOOL": True},
        },
    )
    broken = [
        User(
            students[1].username, students[1].user_id, "ben@", students[1].first_name, roles=frozenset({Role.STUDENT})
        ),
        User(
            students[2].username,
            students[2].user_id,
            students[2].email,
            roles=frozenset({Role.STUDENT}),
            is_active=False,
        ),
        User(
            students[3].username,
            students[3].user_id,
            students[3].email,
            roles=frozenset({Role.STUDENT}),
            opted_out=True,
        ),
    ]
    tables(stack)
    UserRepository().put_many(broken)
    created = put_unchecked(stack, recipients=["E1234s1:class", "user:nobody_here"])

    expand(stack)
    send(stack)
    final = request(stack, created.request_id)
    assert final.counts.total == 1  # the teacher
    assert final.counts.skipped == 5
    assert final.counts.skipped_reasons == {
        "no address": 1,
        "malformed address": 1,
        "inactive account": 1,
        "opted out of bulk mail": 1,
        "no such user": 1,
    }
    assert f"{students[1].username}: malformed address" in final.skipped_sample
    assert "nobody_here: no such user" in final.skipped_sample
    assert accepted_to(stack) == ["ruth@physics.example.edu"]
    assert final.status is RequestStatus.SENT


def test_an_address_shared_by_two_accounts_is_sent_once(stack: Any) -> None:
    program = seeded(stack)
    ada, ben = program.members_of("E1234s1", Role.STUDENT)[:2]
    tables(stack)
    UserRepository().put_many([User(ben.username, ben.user_id, ada.email.upper(), ben.first_name, roles=ben.roles)])
    created = put_unchecked(stack, recipients=["E1234s1:students"], sendto="self+guardian")
    expand(stack)
    send(stack)
    final = request(stack, created.request_id)
    assert twice(accepted_to(stack)) == []
    assert final.counts.duplicates == 1
    assert final.counts.total == len(set(accepted_to(stack)))


def test_a_request_older_than_the_maximum_age_is_expired_not_skipped(stack: Any) -> None:
    seeded(stack)
    old = put_unchecked(stack, now=datetime.now(UTC) - timedelta(days=8))
    fresh = put_unchecked(stack, recipients=["user:teacher_ruth"], now=datetime.now(UTC) - timedelta(days=1))
    later = put_unchecked(stack, not_before=datetime.now(UTC) + timedelta(hours=1))
    report = expand(stack)
    assert report["expired"] == [old.request_id]
    assert report["expanded"] == [fresh.request_id]
    expired = request(stack, old.request_id)
    assert expired.status is RequestStatus.EXPIRED
    assert "not expanded within 7 days" in expired.last_error
    assert rows(stack, old.request_id) == []
    assert request(stack, later.request_id).status is RequestStatus.PENDING  # not due yet: untouched


def test_higher_priority_requests_are_expanded_and_sent_first(stack: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("SEND_CONCURRENCY", "1")  # one call at a time: arrival order is send order
    seeded(stack)
    low = put_unchecked(stack, recipients=["user:teacher_ruth"], priority=1, subject="low")
    high = put_unchecked(stack, recipients=["user:teacher_omar"], priority=9, subject="high")
    report = expand(stack)
    assert report["expanded"] == [high.request_id, low.request_id]
    send(stack)
    first = min(stack.sendgrid.accepted, key=lambda m: m.received_at)
    assert first.body["subject"] == "high"


def test_a_backlog_larger_than_one_run_still_expands_the_highest_priority_first(stack: Any, monkeypatch: Any) -> None:
    """More requests due than a run takes: the expander ranks the whole backlog and reads the chosen ones
    it has not read yet in one BatchGetItem on MessageRequests (a call its role must allow)."""
    monkeypatch.setenv("EXPAND_MAX_REQUESTS_PER_RUN", "2")
    seeded(stack)
    start = datetime.now(UTC) - timedelta(minutes=10)
    older = [
        put_unchecked(
            stack, recipients=["user:teacher_ruth"], priority=1, subject=f"low {n}", now=start + timedelta(seconds=n)
        )
        for n in range(3)
    ]
    urgent = put_unchecked(stack, recipients=["user:teacher_omar"], priority=9, subject="urgent")

    report = expand(stack)

    assert report["expanded"] == [urgent.request_id, older[0].request_id]
    assert request(stack, older[1].request_id).status is RequestStatus.PENDING  # the next run's


def test_the_real_scheduler_event_and_a_worker_input_both_run_the_sender(stack: Any) -> None:
    seeded(stack)
    created = put_unchecked(stack, recipients=["E1234:class"])
    expand(stack)
    first = send(stack, event={"worker": 0, "workers": 2})
    second = send(stack, event={"worker": 1, "workers": 2})
    assert first["sent"] > 0
    assert second["sent"] > 0
    assert first["sent"] + second["sent"] == request(stack, created.request_id).counts.total
    assert statuses(stack, created.request_id) == {RowStatus.SENT: first["sent"] + second["sent"]}
    assert twice(accepted_to(stack)) == []
    assert CREATOR_EMAIL not in accepted_to(stack)
