"""The API the CLI uses: create (validated, every problem named), get, list, preview, cancel, retry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from espmail.domain.message_requests import BodyFormat, RequestStatus, SendTo
from espmail.domain.outbox import RowStatus
from espmail.errors import InvalidInput, NotFound
from tests.e2e.outgoing_support import create, expand, rows, seeded, send, service


def test_a_disallowed_from_is_refused_with_a_clear_reason(stack: Any) -> None:
    seeded(stack)
    with pytest.raises(InvalidInput) as refused:
        create(stack, sender="Splash <splash@gmail.example.com>")
    assert "From splash@gmail.example.com is not on an allowed sender domain (esp.example.org)" in str(refused.value)
    assert service(stack).list_requests() == []


def test_every_problem_of_a_request_is_named_at_once(stack: Any) -> None:
    seeded(stack)
    with pytest.raises(InvalidInput) as refused:
        create(
            stack,
            subject="Hi {{ user.first_name",
            body="ok",
            recipients=["Z9999:students", "E1234:class"],
            creator="nobody",
            headers={"Reply-To": "x@esp.example.org"},
            priority=12,
        )
    message = str(refused.value)
    for problem in (
        "subject template",
        "unknown group: Z9999",
        "creator 'nobody' is not a user",
        "Reply-To",
        "priority 12",
    ):
        assert problem in message, message


def test_unreadable_fields_are_refused_before_anything_else(stack: Any) -> None:
    seeded(stack)
    with pytest.raises(InvalidInput, match="not an email address"):
        create(stack, sender="splash at esp")
    with pytest.raises(InvalidInput, match="sendto"):
        create(stack, sendto="cousins")
    with pytest.raises(InvalidInput, match="not CODE:students"):
        create(stack, recipients=["E1234"])


def test_a_created_request_is_pending_and_can_be_read_back_and_listed(stack: Any) -> None:
    seeded(stack)
    later = datetime.now(UTC) + timedelta(hours=2)
    first = create(stack, not_before=later, priority=7, sendto="self+guardian", public=True)
    second = create(stack, body="<p>Hi</p>")
    api = service(stack)
    stored = api.get_request(first.request_id)
    assert stored.status is RequestStatus.PENDING
    assert stored.not_before == later
    assert stored.priority == 7
    assert stored.sendto == {SendTo.SELF, SendTo.GUARDIAN}
    assert stored.public
    assert stored.vars == {"program": {"class": "E1234"}}
    assert api.get_request(second.request_id).body_format is BodyFormat.HTML
    assert [r.request_id for r in api.list_requests()] == [second.request_id, first.request_id]
    assert [r.request_id for r in api.list_requests(status=RequestStatus.PENDING, limit=1)] == [second.request_id]
    with pytest.raises(NotFound):
        api.get_request("01NOSUCHREQUEST00000000000")


def test_a_preview_renders_the_first_copies_without_writing_anything(stack: Any) -> None:
    seeded(stack)
    created = create(stack, sendto="self+guardian")
    previews = service(stack).preview(created.request_id, limit=3)
    assert len(previews) == 3
    assert all(p.subject.startswith("Lasers on Saturday, ") for p in previews)
    assert previews[0].text.startswith(f"Hello {previews[0].subject.rsplit(', ', 1)[1]},")
    assert {p.kind for p in previews} <= {SendTo.SELF, SendTo.GUARDIAN}
    assert rows(stack, created.request_id) == []
    assert service(stack).get_request(created.request_id).status is RequestStatus.PENDING


def test_cancelling_a_pending_request_means_nothing_is_ever_sent(stack: Any) -> None:
    seeded(stack)
    created = create(stack)
    cancelled = service(stack).cancel(created.request_id)
    assert cancelled.status is RequestStatus.CANCELLED
    expand(stack)
    send(stack)
    assert rows(stack, created.request_id) == []
    assert stack.sendgrid.accepted == []
    with pytest.raises(InvalidInput, match="already cancelled"):
        service(stack).cancel(created.request_id)


def test_cancelling_an_expanded_request_cancels_its_queued_rows(stack: Any) -> None:
    seeded(stack)
    created = create(stack)
    expand(stack)
    service(stack).cancel(created.request_id)
    send(stack)
    assert stack.sendgrid.accepted == []
    assert {r.status for r in rows(stack, created.request_id)} == {RowStatus.CANCELLED}


def test_only_a_finished_request_with_failed_rows_can_be_retried(stack: Any) -> None:
    seeded(stack)
    created = create(stack)
    with pytest.raises(InvalidInput, match="only an expanded request that finished"):
        service(stack).retry_failed(created.request_id)
    expand(stack)
    send(stack)
    assert service(stack).get_request(created.request_id).status is RequestStatus.SENT
    with pytest.raises(InvalidInput):
        service(stack).retry_failed(created.request_id)
