"""The sender's guards, each driven on the embedded stack so that removing it fails a test: no SendGrid
call without room on the shard lease for the call and its outcome write; rows of a request that was
cancelled, failed or expired while they were queued are left unsent; a 429 pauses the whole run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from embedded.sendgrid_double import Status
from espmail.domain.message_requests import RequestStatus
from espmail.domain.outbox import DUE_SHARDS, RowStatus
from espmail.outgoing import wiring
from espmail.outgoing.send import Sender
from espmail.outgoing.settings import SenderSettings
from espmail.storage.message_requests import MessageRequestItem
from espmail.storage.outbox import OutboxRepository
from tests.e2e.outgoing_support import accepted_to, expand, put_unchecked, seeded, send, statuses


def _settings(stack: Any, **variables: str) -> SenderSettings:
    return SenderSettings.from_env({**stack.function_env("SenderFunction"), **variables})


@contextmanager
def _sender(stack: Any, **variables: str) -> Iterator[Sender]:
    with wiring.sender(_settings(stack, **variables)) as run:
        yield run


class _Stalled:
    """A monotonic clock that can be moved past the lease: the run stalled after it read its rows."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        import time

        return time.monotonic() + self.offset


def test_no_call_goes_out_when_the_lease_has_no_room_left_for_it_and_its_write(stack: Any) -> None:
    seeded(stack)
    created = put_unchecked(stack, recipients=["E1234s1:class"])
    expand(stack)
    settings = _settings(stack)
    stalled = _Stalled()
    thief = OutboxRepository()

    class StallsAfterReading(OutboxRepository):
        """Reads the due rows, then the run stalls past its lease and another run takes every shard."""

        def due_wave(self, *args: Any, **kwargs: Any) -> Any:
            found = super().due_wave(*args, **kwargs)
            stalled.offset = settings.lease.total_seconds() + 1
            later = datetime.now(UTC) + settings.lease + timedelta(seconds=1)
            for shard in range(DUE_SHARDS):
                thief.take_shard(shard, "sender-thief", later, later + settings.lease)
            return found

    with _sender(stack) as run:
        run.outbox = StallsAfterReading()
        run.monotonic = stalled
        report = run.run(lambda: 300_000)

    assert stack.sendgrid.accepted == []  # the lease could not cover a call: none was made
    assert report.stopped == "lease lost"
    assert statuses(stack, created.request_id) == {RowStatus.QUEUED: 5}


@pytest.mark.parametrize("closed", [RequestStatus.CANCELLED, RequestStatus.FAILED, RequestStatus.EXPIRED])
def test_rows_of_a_request_closed_while_they_were_queued_are_not_sent(stack: Any, closed: RequestStatus) -> None:
    seeded(stack)
    created = put_unchecked(stack, recipients=["E1234s1:class"])
    expand(stack)
    assert statuses(stack, created.request_id) == {RowStatus.QUEUED: 5}
    # Closed behind the rows' back (a person in the console, another run finishing it): the rows still queued.
    MessageRequestItem(created.request_id).update(actions=[MessageRequestItem.status.set(closed.value)])

    report = send(stack)

    assert stack.sendgrid.accepted == []
    assert report["sent"] == 0
    assert statuses(stack, created.request_id) == {RowStatus.CANCELLED: 5}


def test_a_429_pauses_every_call_of_the_run_for_its_retry_after(stack: Any) -> None:
    seeded(stack)
    first = put_unchecked(stack, recipients=["E1234s1:class"], subject="first")
    second = put_unchecked(stack, recipients=["M2345s1:class"], subject="second")
    expand(stack)
    stack.sendgrid.inject(Status(429, retry_after=2, count=1))
    slept: list[float] = []

    with _sender(stack, SEND_CONCURRENCY="1") as run:
        run._sleep = slept.append  # the pause is waited out here (and returns at once)
        report = run.run(lambda: 300_000)

    assert [r.status for r in stack.sendgrid.requests_log] == [429, 202]  # one refused, the next after the pause
    assert len(slept) == 1
    assert 1.5 <= slept[0] <= 2.0  # Retry-After, less the moments since the 429
    assert report.sent == 5
    refused, answered = (first, second) if statuses(stack, second.request_id)[RowStatus.SENT] else (second, first)
    assert statuses(stack, refused.request_id) == {RowStatus.QUEUED: 5}  # back in the queue, due after the back-off
    assert statuses(stack, answered.request_id) == {RowStatus.SENT: 5}
    assert len(accepted_to(stack)) == 5
