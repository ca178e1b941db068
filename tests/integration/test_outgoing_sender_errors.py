"""An unexpected error in a sender run (DynamoDB throttling a shard's query, a request's status that cannot
be read) fails the run, but only after every outcome already known is written: a row SendGrid accepted is
recorded ``sent``, so no later run sends it again. Personalised rows go one call each here
(``SEND_BATCH_PERSONALIZED=false``), so a failing call has other calls beside it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest

from espmail.domain.message_requests import RequestStatus
from espmail.domain.outbox import OutboxRow, RowStatus
from espmail.outgoing.completion import Completion
from espmail.outgoing.send import Sender, Worker
from espmail.outgoing.settings import SenderSettings
from espmail.storage.message_requests import MessageRequestRepository
from espmail.storage.outbox import OutboxRepository
from espmail.storage.users import UserRepository
from espmail.transport.sendgrid_mailer import SendGridMailer
from tests.e2e.outgoing_support import (
    FAST_RETRIES,
    accepted_to,
    expand,
    put_unchecked,
    request,
    rows,
    seeded,
    statuses,
    twice,
)


class Throttled(Exception):
    """Stands for a DynamoDB error that outlasted the client's own retries."""


class OnceAt:
    """True on the ``n``th call only (calls come from the sender's worker threads)."""

    def __init__(self, n: int) -> None:
        self._n = n
        self._calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        with self._lock:
            self._calls += 1
            return self._calls == self._n


class ThrottledQueries(OutboxRepository):
    def __init__(self, fail: OnceAt) -> None:
        super().__init__()
        self._fail = fail

    def due_wave(self, shard: int, now: datetime, limit: int, max_evaluated: int) -> tuple[list[OutboxRow], bool]:
        if self._fail():
            raise Throttled("ProvisionedThroughputExceededException on Query")
        rows, _ = super().due_wave(shard, now, 1, max_evaluated)
        return rows, True  # one row a wave, so the run is mid-way when the throttle comes


class ThrottledStatus(MessageRequestRepository):
    def __init__(self, fail: OnceAt) -> None:
        super().__init__()
        self._fail = fail

    def status_of(self, request_id: str) -> RequestStatus | None:
        if self._fail():
            raise Throttled("ProvisionedThroughputExceededException on GetItem")
        return super().status_of(request_id)


@contextmanager
def sender(
    stack: Any, outbox: OutboxRepository | None = None, requests: MessageRequestRepository | None = None
) -> Iterator[Sender]:
    env = {
        **stack.function_env("SenderFunction"),
        **FAST_RETRIES,
        "SEND_CONCURRENCY": "4",
        "SEND_BATCH_PERSONALIZED": "false",
    }
    settings = SenderSettings.from_env(env)
    outbox = outbox or OutboxRepository()
    requests = requests or MessageRequestRepository()
    completion = Completion(
        requests, outbox, UserRepository(), settings.site, notice_category="n", retention=timedelta(days=1)
    )
    mailer = SendGridMailer("SG.local-double-key", host=stack.sendgrid.host, timeout=5)
    yield Sender(settings, outbox, requests, completion, mailer, None)


def personalised_rows(stack: Any) -> tuple[str, int]:
    """E1234 (two sections of a teacher and 6 students), one call per row."""
    seeded(stack, students_per_section=6)
    created = put_unchecked(stack, recipients=["E1234:class"])
    expand(stack)
    return created.request_id, len(rows(stack, created.request_id))


def sent_addresses(stack: Any, request_id: str) -> list[str]:
    return sorted(r.to.email.lower() for r in rows(stack, request_id) if r.status is RowStatus.SENT)


def test_a_throttled_query_fails_the_run_after_every_accepted_row_is_recorded_sent(stack: Any) -> None:
    request_id, total = personalised_rows(stack)
    with sender(stack, outbox=ThrottledQueries(OnceAt(20))) as run, pytest.raises(Throttled):
        run.run(lambda: 300_000, Worker())
    accepted = accepted_to(stack)
    assert accepted, "some calls went out before the throttle"
    assert sent_addresses(stack, request_id) == sorted(accepted)  # every 202 is on its row
    assert statuses(stack, request_id)[RowStatus.SENDING] == 0

    with sender(stack) as run:
        report = run.run(lambda: 300_000, Worker())
    assert twice(accepted_to(stack)) == []
    assert len(accepted_to(stack)) == total
    assert report.sent == total - len(accepted)
    assert statuses(stack, request_id) == {RowStatus.SENT: total}
    assert request(stack, request_id).status is RequestStatus.SENT


def test_a_request_status_that_cannot_be_read_is_recorded_on_its_rows_as_a_retry(stack: Any) -> None:
    request_id, total = personalised_rows(stack)
    with sender(stack, requests=ThrottledStatus(OnceAt(1))) as run, pytest.raises(Throttled):
        run.run(lambda: 300_000, Worker())
    accepted = accepted_to(stack)
    assert sent_addresses(stack, request_id) == sorted(accepted)
    (retried,) = [r for r in rows(stack, request_id) if r.last_error]
    assert (retried.status, retried.tries) == (RowStatus.QUEUED, 1)
    assert "ProvisionedThroughputExceededException on GetItem" in retried.last_error
    assert retried.to.email.lower() not in accepted
    assert statuses(stack, request_id)[RowStatus.SENDING] == 0

    with sender(stack) as run:
        run.run(lambda: 300_000, Worker())
    assert twice(accepted_to(stack)) == []
    assert statuses(stack, request_id) == {RowStatus.SENT: total}
