"""Outbox rows in DynamoDB: shard leases are exclusive, the due index serves priority then age per shard,
and final rows leave the index."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from espmail.domain.mail import Address
from espmail.domain.outbox import DUE_SHARDS, OutboxRow, recipient_key
from espmail.storage.outbox import OutboxItem, OutboxRepository
from tests.e2e.outgoing_support import tables

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=2)


def row(n: int, *, priority: int = 5, due: datetime = NOW, request_id: str = "01JREQ") -> OutboxRow:
    email = f"kid{n}@example.net"
    return OutboxRow(
        request_id=request_id,
        recipient=recipient_key(request_id, email),
        to=Address(email, f"Kid {n}"),
        sender=Address("splash@esp.example.org"),
        subject="s",
        text="t",
        created_at=due,
        next_attempt_at=due,
        priority=priority,
        seq=n,
    )


def all_due(outbox: OutboxRepository, now: datetime) -> list[OutboxRow]:
    return [r for shard in range(DUE_SHARDS) for r in outbox.due(shard, now, limit=100, max_evaluated=400)]


def test_a_shard_lease_is_exclusive_renewable_by_its_holder_and_taken_over_once_it_runs_out(stack: Any) -> None:
    tables(stack)
    outbox = OutboxRepository()
    assert outbox.take_shard(3, "run-a", NOW, NOW + LEASE)
    assert outbox.shard_lease(3) == ("run-a", NOW + LEASE)
    assert not outbox.take_shard(3, "run-b", NOW + timedelta(seconds=1), NOW + LEASE)  # held
    assert outbox.take_shard(4, "run-b", NOW, NOW + LEASE)  # another shard is free
    assert not outbox.take_shard(3, "run-b", NOW, NOW + LEASE, renew=True)  # only the holder renews
    later = NOW + timedelta(minutes=1)
    assert outbox.take_shard(3, "run-a", later, later + LEASE, renew=True)
    assert outbox.shard_lease(3) == ("run-a", later + LEASE)
    assert not outbox.take_shard(3, "run-b", NOW + LEASE + timedelta(seconds=1), NOW + 2 * LEASE)  # renewed
    after = later + LEASE + timedelta(seconds=1)
    assert outbox.take_shard(3, "run-b", after, after + LEASE)  # ran out: taken over
    assert not outbox.take_shard(3, "run-a", after, after + LEASE, renew=True)  # the old holder lost it
    assert not outbox.release_shard(3, "run-a")
    assert outbox.release_shard(3, "run-b")
    assert outbox.shard_lease(3) == ("", None)
    assert outbox.take_shard(3, "run-c", after, after + LEASE)  # given back: free at once
    assert all_due(outbox, after) == []  # lease items are never rows


def test_a_sent_row_leaves_the_due_index(stack: Any) -> None:
    tables(stack)
    outbox = OutboxRepository()
    outbox.put_batch([row(1)])
    (due,) = all_due(outbox, NOW)
    outbox.put_batch([due.sent("sg-1", NOW, timedelta(days=90))])
    later = NOW + timedelta(days=1)
    assert all_due(outbox, later) == []
    item = OutboxItem.get("01JREQ", row(1).recipient)
    assert item.due_shard is None
    assert item.due_key is None
    assert item.expires_at == NOW + timedelta(days=90)
    assert item.message_id == "sg-1"


def test_a_wave_says_whether_the_shard_may_hold_more(stack: Any) -> None:
    tables(stack)
    outbox = OutboxRepository()
    rows = [row(n) for n in range(40)]
    outbox.put_batch(rows)
    shard = rows[0].shard
    in_shard = [r for r in rows if r.shard == shard]
    assert len(in_shard) >= 2
    found, more = outbox.due_wave(shard, NOW, len(in_shard) - 1, 1000)
    assert (len(found), more) == (len(in_shard) - 1, True)
    found, more = outbox.due_wave(shard, NOW, 1000, 4000)
    assert (len(found), more) == (len(in_shard), False)


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


def test_a_tally_counts_every_status_across_pages_and_lists_the_failed(stack: Any) -> None:
    tables(stack)
    outbox = OutboxRepository()
    bulky = secrets.token_hex(6_000)  # rows of ~6 KB packed: the query takes several 1 MB pages
    rows = [replace(row(n), text=bulky) for n in range(400)]
    retention = timedelta(days=90)
    answered = [r.sent("sg", NOW, retention) for r in rows[:390]]
    answered += [r.failed(f"550 no such user {r.seq}", 400, NOW, retention) for r in rows[390:393]]
    answered += [r.cancelled("request cancelled", NOW, retention) for r in rows[393:395]]
    outbox.put_batch(answered + rows[395:])  # the last five still queued
    outbox.put_batch([replace(row(999), recipient="notice#1")])  # not a recipient: not counted

    tally = outbox.tally("01JREQ")

    assert (tally.sent, tally.failed, tally.cancelled, tally.queued, tally.sending) == (390, 3, 2, 5, 0)
    assert sorted(tally.failures) == [(f"kid{n}@example.net", f"550 no such user {n}") for n in (390, 391, 392)]
    outbox.put_batch([r.sent("sg", NOW, retention) for r in rows[395:]])
    assert (outbox.tally("01JREQ").sent, outbox.tally("01JREQ").open) == (395, 0)
