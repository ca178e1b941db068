"""Helpers for the outgoing-mail tests: seed the sample program, create requests, run the real handlers
with the real EventBridge event shapes, and read what the SendGrid double accepted."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from embedded.seed import SeededProgram, seed
from embedded.sendgrid_double import render_eml
from espmail.domain.mail import Address
from espmail.domain.message_requests import (
    BodyFormat,
    MessageRequest,
    new_request_id,
    parse_recipient_spec,
    parse_sendto,
)
from espmail.domain.outbox import OutboxRow, RowStatus
from espmail.outgoing.requests_service import MessageRequestService
from espmail.outgoing.wiring import request_service
from espmail.settings import SiteSettings, TableNames
from espmail.storage.message_requests import MessageRequestRepository
from espmail.storage.outbox import OutboxRepository
from espmail.storage.tables import bind_tables
from tests.conftest import corpus_event

RULE_EVENT = corpus_event("eventbridge-scheduled-rule.json")
SCHEDULER_EVENT = corpus_event("eventbridge-scheduler.json")
SITE = "esp.example.org"
FROM = f"Splash <splash@{SITE}>"
CREATOR = "admin_kim"
CREATOR_EMAIL = "kim.director@mit.example.edu"
FAST_RETRIES = {"SEND_BACKOFF_BASE_SECONDS": "0.01", "SEND_BACKOFF_MAX_SECONDS": "0.05"}


def tables(stack: Any) -> TableNames:
    names = TableNames.from_env(stack.function_env())
    bind_tables(names)
    return names


def seeded(stack: Any, students_per_section: int = 4) -> SeededProgram:
    from embedded.seed import sample_program

    return seed(tables(stack), stack.client("dynamodb"), sample_program(students_per_section))


def service(stack: Any) -> MessageRequestService:
    env = stack.function_env()
    return request_service(SiteSettings.from_env(env), TableNames.from_env(env))


def create(stack: Any, **overrides: Any) -> MessageRequest:
    fields: dict[str, Any] = {
        "subject": "Lasers on Saturday, {{ user.first_name }}",
        "body": "Hello {{ user.first_name }},\n\nClass {{ program.class }} meets at 10.\n",
        "sender": FROM,
        "recipients": ["E1234:class"],
        "creator": CREATOR,
        "template_vars": {"program": {"class": "E1234"}},
    }
    fields.update(overrides)
    return service(stack).create_request(**fields)


def put_unchecked(stack: Any, **overrides: Any) -> MessageRequest:
    """A request stored as the website might write it, without the service's validation."""
    tables(stack)
    now = overrides.pop("now", None) or datetime.now(UTC)
    request = MessageRequest(
        request_id=new_request_id(now.timestamp()),
        subject=overrides.pop("subject", "Hi {{ user.first_name }}"),
        body=overrides.pop("body", "Hello"),
        body_format=overrides.pop("body_format", BodyFormat.TEXT),
        sender=overrides.pop("sender", Address(f"splash@{SITE}", "Splash")),
        recipients=parse_recipient_spec(overrides.pop("recipients", ["E1234s1:class"])),
        sendto=parse_sendto(overrides.pop("sendto", "self")),
        creator=overrides.pop("creator", CREATOR),
        created_at=now,
        not_before=overrides.pop("not_before", now),
        **overrides,
    )
    MessageRequestRepository().add(request)
    return request


def expand(stack: Any, *, event: dict[str, Any] | None = None, remaining_ms: int = 300_000) -> dict[str, Any]:
    result: dict[str, Any] = stack.invoke("ExpanderFunction", event or RULE_EVENT, remaining_ms=remaining_ms)
    return result


def send(stack: Any, *, event: dict[str, Any] | None = None, remaining_ms: int = 300_000) -> dict[str, Any]:
    result: dict[str, Any] = stack.invoke("SenderFunction", event or SCHEDULER_EVENT, remaining_ms=remaining_ms)
    return result


def rows(stack: Any, request_id: str, prefix: str | None = "to#") -> list[OutboxRow]:
    tables(stack)
    return list(OutboxRepository().rows_of(request_id, prefix=prefix))


def request(stack: Any, request_id: str) -> MessageRequest:
    tables(stack)
    return MessageRequestRepository().require(request_id)


def settle(stack: Any, request_id: str, *, runs: int = 20, pause: float = 0.2) -> list[dict[str, Any]]:
    """Runs the sender until no row of the request is open (queued or sending)."""
    reports = []
    for _ in range(runs):
        reports.append(send(stack))
        if not any(r.is_open for r in rows(stack, request_id, prefix=None)):
            return reports
        time.sleep(pause)
    raise AssertionError(
        f"rows still open after {runs} sender runs: {[r for r in rows(stack, request_id) if r.is_open]}"
    )


def accepted_to(stack: Any) -> list[str]:
    """Every address the double accepted a message for, once per personalization."""
    return [
        to["email"].lower()
        for mail in stack.sendgrid.accepted
        for personalization in mail.body["personalizations"]
        for to in personalization["to"]
    ]


def bulk_accepted_to(stack: Any) -> list[str]:
    return [
        to["email"].lower()
        for mail in stack.sendgrid.accepted
        if "espmail-bulk" in mail.body.get("categories", [])
        for personalization in mail.body["personalizations"]
        for to in personalization["to"]
    ]


def twice(addresses: list[str]) -> list[str]:
    return [address for address, n in Counter(addresses).items() if n > 1]


def statuses(stack: Any, request_id: str) -> Counter[RowStatus]:
    return Counter(r.status for r in rows(stack, request_id))


def seen_by(stack: Any) -> dict[str, list[EmailMessage]]:
    """What each recipient sees: every personalization the double accepted, rendered as the message
    SendGrid would deliver (substitutions applied), by address."""
    seen: dict[str, list[EmailMessage]] = {}
    for mail in stack.sendgrid.accepted:
        for index, personalization in enumerate(mail.body["personalizations"]):
            message = message_from_bytes(render_eml(mail.body, index), policy=policy.default)
            assert isinstance(message, EmailMessage)
            seen.setdefault(personalization["to"][0]["email"].lower(), []).append(message)
    return seen


def body_text(message: EmailMessage, subtype: str) -> str | None:
    """The message's text/<subtype> part as the recipient reads it (line ends as sent: CRLF -> LF)."""
    part = message.get_body((subtype,))
    if part is None:
        return None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")
