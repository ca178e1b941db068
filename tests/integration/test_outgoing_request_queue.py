"""Message requests waiting for the expander, in DynamoDB: the due ones come highest priority first, then
oldest, however many older requests of lower priority are waiting; none comes before its time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from espmail.storage.message_requests import MessageRequestRepository
from tests.e2e.outgoing_support import put_unchecked

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_a_high_priority_request_is_taken_before_an_older_backlog(stack: Any) -> None:
    backlog = [
        put_unchecked(stack, priority=5, now=NOW - timedelta(hours=2), not_before=NOW - timedelta(minutes=60 - n))
        for n in range(6)
    ]
    urgent = put_unchecked(stack, priority=9, now=NOW - timedelta(minutes=1))
    later = put_unchecked(stack, priority=8, now=NOW - timedelta(minutes=2), not_before=NOW + timedelta(minutes=5))
    low = put_unchecked(stack, priority=0, now=NOW - timedelta(days=1))
    requests = MessageRequestRepository()

    first = [request.request_id for request, _, _ in requests.due_for_expansion(NOW, limit=3)]
    assert first == [urgent.request_id, backlog[0].request_id, backlog[1].request_id]

    every = [request.request_id for request, _, _ in requests.due_for_expansion(NOW, limit=50)]
    assert every == [urgent.request_id, *(r.request_id for r in backlog), low.request_id]
    assert later.request_id not in every  # not before its time
    soon = [request.request_id for request, _, _ in requests.due_for_expansion(NOW + timedelta(minutes=5), 2)]
    assert soon == [urgent.request_id, later.request_id]


def test_a_claimed_request_stays_in_its_priority_and_comes_back_when_its_lease_runs_out(stack: Any) -> None:
    urgent = put_unchecked(stack, priority=9, now=NOW)
    requests = MessageRequestRepository()
    claim = requests.claim_for_expansion(urgent.request_id, "run-a", NOW, NOW + timedelta(minutes=5), crashed=False)
    assert claim is not None
    assert requests.due_for_expansion(NOW + timedelta(minutes=1), 10) == []
    ((back, crashed, started),) = requests.due_for_expansion(NOW + timedelta(minutes=6), 10)
    assert (back.request_id, crashed, started) == (urgent.request_id, True, False)
    retaken = requests.claim_for_expansion(
        urgent.request_id, "run-b", NOW + timedelta(minutes=6), NOW + timedelta(minutes=11), crashed=True
    )
    assert retaken is not None
    assert retaken.request.crashes == 1
