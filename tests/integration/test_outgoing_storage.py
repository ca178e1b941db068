"""Outbox rows in DynamoDB: claims are exclusive and leased, the due index serves priority then age per
shard, and final rows leave the index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from espmail.domain.mail import Address
from espmail.domain.outbox import DUE_SHARDS, OutboxRow, RowStatus, content_hash, recipient_key
from espmail.storage.outbox import OutboxItem, OutboxRepository
from tests.e2e.outgoing_support import tables

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=2)


def row(n: int, *, priority: int = 5, due: datetime = NOW, request_id: str = "01JREQ") -> OutboxRow:
    email = f"kid{n}@example.net"
    sender = Address("splash@esp.example.org")
    return OutboxRow(
        request_id=request_id,
        recipient=recipient_key(request_id, email),
        to=Address(email, f"Kid {n}"),
        sender=sender,
        subject="s",
        text="t",
        created_at=due,
        next_attempt_at=due,
        content_hash=content_hash(
            sender=sender, reply_to=None, headers={}, subject="s", text="t", html=None, category=""
        ),
        priority=priority,
        seq=n,
    )


def all_due(outbox: OutboxRepository, now: datetime) -> list[OutboxRow]:
    return [r for shard in range(DUE_SHARDS) for r in outbox.due(shard, now, limit=100, max_evaluated=400)]


def test_a_claim_is_exclusive_until_its_lease_runs_out(stack: Any) -> None:
    tables(stack)
    outbox = OutboxRepository()
    outbox.put_batch([row(1)])
    (due,) = all_due(outbox, NOW)
    first = outbox.claim(due, "run-a", NOW, NOW + LEASE)
    assert first is not None
    assert (first.status, first.tries, first.lease_owner) == (RowStatus.SENDING, 1, "run-a")
    assert outbox.claim(due, "run-b", NOW + timedelta(seconds=1), NOW + LEASE) is None
    assert all_due(outbox, NOW + timedelta(minutes=1)) == []  # leased: out of the due rows
    after = NOW + LEASE + timedelta(seconds=1)
    (back,) = all_due(outbox, after)  # the lease ran out: due again by itself
    again = outbox.claim(back, "run-b", after, after + LEASE)
    assert again is not None
    assert (again.tries, again.lease_owner) == (2, "run-b")


def test_a_sent_row_leaves_the_due_index_and_cannot_be_claimed(stack: Any) -> None:
    tables(stack)
    outbox = OutboxRepository()
    outbox.put_batch([row(1)])
    claimed = outbox.claim(row(1), "run-a", NOW, NOW + LEASE)
    assert claimed is not None
    outbox.put_batch([claimed.sent("sg-1", NOW, timedelta(days=90))])
    later = NOW + timedelta(days=1)
    assert all_due(outbox, later) == []
    assert outbox.claim(row(1), "run-b", later, later + LEASE) is None
    item = OutboxItem.get("01JREQ", row(1).recipient)
    assert item.due_shard is None
    assert item.due_key is None
    assert item.expires_at == NOW + timedelta(days=90)
    assert item.message_id == "sg-1"


def test_due_rows_come_by_priority_then_age_and_not_before_their_time(stack: Any) -> None:
    tables(stack)
    outbox = OutboxRepository()
    outbox.put_batch(
        [
            row(1, priority=5, due=NOW - timedelta(minutes=3)),
            row(2, priority=9, due=NOW - timedelta(minutes=1)),
            row(3, priority=5, due=NOW - timedelta(minutes=2)),
            row(4, priority=9, due=NOW + timedelta(minutes=5)),  # in back-off: not yet
            row(5, priority=1, due=NOW - timedelta(hours=1)),
        ]
    )
    due = sorted(all_due(outbox, NOW), key=lambda r: (9 - r.priority, r.next_attempt_at))
    assert [r.seq for r in due] == [2, 1, 3, 5]


def test_the_rows_of_a_request_spread_over_every_shard(stack: Any) -> None:
    tables(stack)
    outbox = OutboxRepository()
    outbox.put_batch([row(n) for n in range(200)])
    per_shard = [len(outbox.due(shard, NOW, limit=200, max_evaluated=800)) for shard in range(DUE_SHARDS)]
    assert sum(per_shard) == 200
    assert min(per_shard) > 10


def test_existing_rows_are_found_by_key_with_their_sequence(stack: Any) -> None:
    tables(stack)
    outbox = OutboxRepository()
    outbox.put_batch([row(n) for n in range(30)])
    keys = [row(n).recipient for n in (0, 29)] + [row(99).recipient]
    found = outbox.existing("01JREQ", keys)
    assert {k: v.seq for k, v in found.items()} == {row(0).recipient: 0, row(29).recipient: 29}
