"""The sender's shard leases and call economy, on the embedded stack: a run that lost its lease writes
nothing (the next holder sends those rows); personalised rows share one SendGrid call through
substitutions, a row over SendGrid's substitution limit goes alone; and 1,000 personalised rows cost a few
dozen DynamoDB requests and two SendGrid calls (counted with botocore event hooks, as the bench does)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session
import pytest

from bench.counters import DynamoDBCounter
from espmail.domain.message_requests import RequestStatus
from espmail.domain.outbox import DUE_SHARDS, RowStatus
from espmail.outgoing import wiring
from espmail.outgoing.send import Sender, Worker
from espmail.outgoing.settings import SenderSettings
from espmail.storage.outbox import OutboxRepository
from espmail.storage.tables import forget_connections
from espmail.transport.sendgrid_mailer import MAX_SUBSTITUTION_BYTES
from tests.e2e.outgoing_support import (
    accepted_to,
    body_text,
    expand,
    put_unchecked,
    request,
    rows,
    seeded,
    seen_by,
    send,
    statuses,
    twice,
)


class Stalled:
    """A monotonic clock that jumps past the lease when told to: the run stalled (a long GC pause, a
    frozen Lambda) and its shard leases ran out while it was sending."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        import time

        return time.monotonic() + self.offset


@contextmanager
def sender(stack: Any, **kwargs: Any) -> Iterator[Sender]:
    settings = SenderSettings.from_env(stack.function_env("SenderFunction"))
    with wiring.sender(settings, **kwargs) as run:
        yield run


def test_a_run_that_lost_its_shard_lease_writes_nothing_and_the_next_holder_sends_the_rows(stack: Any) -> None:
    seeded(stack)
    created = put_unchecked(stack, recipients=["E1234s1:class"])
    expand(stack)
    settings = SenderSettings.from_env(stack.function_env("SenderFunction"))
    stalled = Stalled()
    thief = OutboxRepository()

    class StallingMailer:
        """Sends, then the run stalls past its lease and another run takes every shard over."""

        def __init__(self, real: Any) -> None:
            self.real = real

        def send(self, message: Any, personalizations: Any) -> Any:
            receipt = self.real.send(message, personalizations)
            stalled.offset = settings.lease.total_seconds() + 1
            later = datetime.now(UTC) + settings.lease + timedelta(seconds=1)
            for shard in range(DUE_SHARDS):
                thief.take_shard(shard, "sender-thief", later, later + settings.lease)
            return receipt

    with sender(stack, run_id="sender-stalled") as run:
        run._mailer = StallingMailer(run._mailer)
        run.monotonic = stalled
        report = run.run(lambda: 300_000)
    assert report.sent == 0
    assert report.lost_leases == 5
    assert report.stopped == "lease lost"
    assert len(accepted_to(stack)) == 5  # SendGrid took them...
    assert statuses(stack, created.request_id) == {RowStatus.QUEUED: 5}  # ...but the stalled run wrote nothing
    assert all(r.tries == 0 and not r.last_error for r in rows(stack, created.request_id))

    def after_the_lease() -> datetime:
        return datetime.now(UTC) + 2 * settings.lease + timedelta(seconds=2)

    with sender(stack, run_id="sender-next", clock=after_the_lease) as later:  # the thief's lease ran out too
        assert later.run(lambda: 300_000).sent == 5
    assert statuses(stack, created.request_id) == {RowStatus.SENT: 5}
    assert sorted(twice(accepted_to(stack))) == sorted(set(accepted_to(stack)))  # the documented window, once


def test_a_shard_held_by_another_run_is_left_alone_and_renewed_leases_keep_it(stack: Any) -> None:
    seeded(stack)
    created = put_unchecked(stack, recipients=["E1234:class"])
    expand(stack)
    holder = OutboxRepository()
    now = datetime.now(UTC)
    held = {r.shard for r in rows(stack, created.request_id)}
    for shard in held:
        assert holder.take_shard(shard, "sender-other", now, now + timedelta(minutes=2))
    report = send(stack)
    assert (report["claimed"], report["sent"], report["busy_shards"]) == (0, 0, len(held))
    assert stack.sendgrid.accepted == []
    for shard in held:
        assert holder.release_shard(shard, "sender-other")
    report = send(stack)
    assert report["sent"] == request(stack, created.request_id).counts.total
    assert all(OutboxRepository().shard_lease(s) == ("", None) for s in range(DUE_SHARDS))  # given back


def test_personalised_rows_share_one_call_and_a_row_over_the_substitution_limit_goes_alone(stack: Any) -> None:
    seeded(stack, students_per_section=6)
    long_text = "Lasers, lenses and light. " * (MAX_SUBSTITUTION_BYTES // 20)
    created = put_unchecked(
        stack,
        recipients=["E1234:class"],
        subject="Lasers, {{ user.first_name }}",
        body='Hello {{ user.first_name }} ({{ user.username }}).{% if user.username == "teacher_ruth" %} {{ program.notes }}{% endif %}',
        vars={"program": {"notes": long_text}},
    )
    expand(stack)
    total = request(stack, created.request_id).counts.total
    assert total > 10
    report = send(stack)
    assert report["sent"] == total
    calls = stack.sendgrid.accepted
    assert len(calls) == 2
    alone, shared = sorted(calls, key=lambda m: len(m.body["personalizations"]))
    assert [p["to"][0]["email"] for p in alone.body["personalizations"]] == ["ruth@physics.example.edu"]
    assert "substitutions" not in alone.body["personalizations"][0]
    assert len(shared.body["personalizations"]) == total - 1
    assert all(len(str(p["substitutions"])) < MAX_SUBSTITUTION_BYTES for p in shared.body["personalizations"])
    by_address = {r.to.email.lower(): r for r in rows(stack, created.request_id)}
    for address, (message,) in seen_by(stack).items():
        row = by_address[address]
        assert message["Subject"] == row.subject == f"Lasers, {row.to.name.split()[0]}"
        assert body_text(message, "plain") == row.text.rstrip("\n") + "\n"
    assert twice(accepted_to(stack)) == []


@pytest.fixture
def dynamodb_requests(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoDBCounter]:
    """Counts the DynamoDB requests of clients made from here on (connections are dropped so PynamoDB
    makes new ones); the hook on botocore is taken off afterwards."""
    monkeypatch.setattr(botocore.session.Session, "create_client", botocore.session.Session.create_client)
    counter = DynamoDBCounter().install()
    forget_connections()
    yield counter
    forget_connections()


def test_sending_1000_personalised_rows_takes_a_few_dozen_dynamodb_requests_and_two_sendgrid_calls(
    stack: Any, dynamodb_requests: DynamoDBCounter
) -> None:
    seeded(stack, students_per_section=200)
    created = put_unchecked(
        stack,
        recipients=["E1234:class", "M2345:class", "H3456:class"],
        subject="Lasers, {{ user.first_name }}",
        body="Hello {{ user.name }}, your username is {{ user.username }}.",  # every copy its own
    )
    expand(stack)
    total = request(stack, created.request_id).counts.total
    assert 1000 <= total <= 1010
    before = dynamodb_requests.snapshot()
    with sender(stack) as run:
        report = run.run(lambda: 300_000, Worker())
    used = dynamodb_requests.snapshot() - before
    assert report.sent == total
    assert request(stack, created.request_id).status is RequestStatus.SENT
    assert len(stack.sendgrid.accepted) == 2  # 1,000 personalizations a call at most
    # 41 BatchWriteItem (25 outcomes each), 8 Query (one per shard), 16 lease writes (take and give back 8
    # shards), and the request's bookkeeping (status, progress, final counts, the finish sweep).
    assert used.calls.get("BatchWriteItem", 0) == -(-total // 25)
    assert used.calls.get("Query", 0) <= DUE_SHARDS + 3
    assert used.total_requests <= 75, used.as_json()
    assert twice(accepted_to(stack)) == []
