"""The expander against the embedded stack: DynamoDB write requests per 1,000 recipients, a run that dies
mid-way and is resumed (no row written twice, no sent row reset, exact totals), overlapping runs, and a
template that fails half-way."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from embedded.seed import sample_program, seed
from espmail.domain.message_requests import RequestStatus
from espmail.domain.outbox import OutboxRow, RowStatus
from espmail.domain.people import Group, GroupKind, Role, User
from espmail.domain.recipients import Part, UserPage
from espmail.outgoing.expand import Expander
from espmail.outgoing.recipients import plan_parts
from espmail.outgoing.settings import ExpanderSettings
from espmail.storage.groups import META, GroupItem, GroupRepository
from espmail.storage.message_requests import MessageRequestItem, MessageRequestRepository
from espmail.storage.outbox import OutboxItem, OutboxRepository
from espmail.storage.recipient_pages import DirectoryPages
from tests.e2e.outgoing_support import put_unchecked, rows, tables

WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


def settings(stack: Any, **env: str) -> ExpanderSettings:
    return ExpanderSettings.from_env({**stack.function_env("ExpanderFunction"), **env})


def expander(stack: Any, outbox: OutboxRepository | None = None, **env: str) -> Expander:
    tables(stack)
    return Expander(settings(stack, **env), MessageRequestRepository(), outbox or OutboxRepository(), DirectoryPages())


class DynamoDBCalls:
    """Counts the DynamoDB requests the PynamoDB models make, at botocore's level."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __call__(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def watch(self, *models: Any) -> DynamoDBCalls:
        for model in models:
            model._get_connection().connection.client.meta.events.register("before-call.dynamodb", self)
        return self

    def stop(self, *models: Any) -> None:
        for model in models:
            model._get_connection().connection.client.meta.events.unregister("before-call.dynamodb", self)

    @property
    def writes(self) -> int:
        return sum(n for name, n in self.calls.items() if name in WRITES)


@dataclass
class ThousandStudents:
    """A directory of one group of 1,000 students, in memory: this test counts writes, not reads."""

    def groups(self, codes: Iterable[str]) -> dict[str, Group]:
        return {code: Group(code, GroupKind.SECTION) for code in codes if code == "BIG1"}

    def page(self, part: Part, position: str | None, size: int) -> UserPage:
        start = int(position or 0)
        users = [
            User(
                f"student{n:04d}",
                n,
                f"student{n:04d}@students.example.net",
                f"Kid{n}",
                "Doe",
                frozenset({Role.STUDENT}),
            )
            for n in range(start, min(1000, start + size))
        ]
        following = start + size
        return UserPage(users, [], str(following) if following < 1000 else None)


def test_expanding_1000_recipients_takes_at_most_50_write_requests(stack: Any) -> None:
    created = put_unchecked(stack, recipients=["BIG1:students"], body="Hello {{ user.first_name }}")
    run = Expander(settings(stack), MessageRequestRepository(), OutboxRepository(), ThousandStudents())
    models = (MessageRequestItem, OutboxItem)
    counter = DynamoDBCalls().watch(*models)
    try:
        report = run.run(lambda: 300_000)
    finally:
        counter.stop(*models)
    assert report.expanded == [created.request_id]
    assert report.rows_written == 1000
    assert len(rows(stack, created.request_id)) == 1000
    assert counter.calls["BatchWriteItem"] == 40
    assert counter.writes <= 50, counter.calls
    assert counter.writes == report.write_requests  # the use case's own count agrees with botocore's
    print(f"\nDynamoDB write requests for 1,000 recipients: {counter.writes} ({dict(counter.calls)})")


def resumed_after_the_lease(stack: Any, request_id: str, now: datetime | None = None, **env: str) -> list[OutboxRow]:
    """The next expander run, once the crashed run's lease ran out (its clock ten minutes ahead of ``now``):
    it must finish the request. Returns the request's rows."""
    later = (now or datetime.now(UTC)) + timedelta(minutes=10)
    second = expander(stack, None, **env)
    second._clock = lambda: later  # type: ignore[method-assign]
    assert second.run(lambda: 300_000).expanded == [request_id]
    return rows(stack, request_id)


class HardCrash(BaseException):
    """The Lambda dies (out of memory, timeout): nothing is released, nothing is recorded."""


class CrashingOutbox(OutboxRepository):
    def __init__(self, after_batches: int) -> None:
        super().__init__()
        self.batches_left = after_batches

    def put_batch(self, rows: Any) -> None:
        if self.batches_left == 0:
            raise HardCrash
        self.batches_left -= 1
        super().put_batch(rows)


@pytest.mark.parametrize("checkpoint", ["with its plan", "from before plans were kept"])
def test_a_run_that_dies_mid_way_is_resumed_without_writing_a_row_twice_or_resetting_a_sent_row(
    stack: Any, checkpoint: str
) -> None:
    program = seed(tables(stack), stack.client("dynamodb"), sample_program(students_per_section=20))
    created = put_unchecked(stack, recipients=["E1234:class", "M2345:class"], sendto="self+guardian")
    everyone = {u for section in ("E1234s1", "E1234s2", "M2345s1") for u in program.members_of(section)}
    expected = {u.email.lower() for u in everyone} | {u.guardian_email.lower() for u in everyone if u.guardian_email}

    older = checkpoint == "from before plans were kept"
    if older:  # groups written before the class index: the first run reads the class and each section apart
        for group in program.groups:
            GroupItem(code=group.code, member=META).update(actions=[GroupItem.members_class.remove()])

    # Checkpoint every 30 rows, batches of 25: the crash after 3 batches leaves rows past the checkpoint.
    first = expander(stack, CrashingOutbox(after_batches=3), EXPAND_PAGE_SIZE="7", EXPAND_CHECKPOINT_ROWS="30")
    with pytest.raises(HardCrash):
        first.run(lambda: 300_000)
    written = rows(stack, created.request_id)
    stored = MessageRequestRepository().get(created.request_id)
    assert stored is not None
    assert stored.status is RequestStatus.EXPANDING
    item = MessageRequestItem.get(created.request_id)
    assert 0 < item.checkpoint["seq"] < len(written) < len(expected)  # rows written past the last checkpoint
    if not older:  # the plan: each class and its sections through the class index, one part each
        assert item.checkpoint["plan"] == [
            ["class", "E1234", ["student", "teacher"], ["E1234", "E1234s1", "E1234s2"]],
            ["class", "M2345", ["student", "teacher"], ["M2345", "M2345s1"]],
        ]
    else:  # a checkpoint without its plan; the groups are indexed meanwhile (imported again)
        kept = {key: value for key, value in item.checkpoint.items() if key != "plan"}
        item.update(actions=[MessageRequestItem.checkpoint.set(kept)])
        for group in program.groups:
            GroupRepository().put_group(group)
        assert GroupRepository().get("E1234s1").members_class == "E1234"  # type: ignore[union-attr]

    # Meanwhile the sender sends some of them (simulated: marked sent as the sender would).
    now = datetime.now(UTC)
    sent = [row.sent("sg-early", now, timedelta(days=1)) for row in written[:10]]
    OutboxRepository().put_batch(sent)

    # The next run comes after the lease ran out (its clock is ahead), and resumes from the checkpoint.
    final = resumed_after_the_lease(stack, created.request_id, now, EXPAND_PAGE_SIZE="7", EXPAND_CHECKPOINT_ROWS="30")
    assert {r.to.email.lower() for r in final} == expected
    assert len(final) == len(expected)  # one row per address: nothing written twice
    for before in sent:
        after = next(r for r in final if r.recipient == before.recipient)
        assert after.status is RowStatus.SENT
        assert after.message_id == "sg-early"  # not reset to queued
    request = MessageRequestRepository().require(created.request_id)
    assert request.status is RequestStatus.EXPANDED
    assert request.counts.total == len(expected)  # exact, across the crash
    assert request.counts.duplicates == 1  # teacher_ruth teaches E1234s1 and M2345s1: one row
    assert request.crashes == 1
    assert sorted(r.seq for r in final) == list(range(len(expected)))


def test_two_overlapping_expander_runs_never_expand_the_same_request(stack: Any) -> None:
    seed(tables(stack), stack.client("dynamodb"), sample_program(students_per_section=30))
    created = put_unchecked(stack, recipients=["E1234:class", "M2345:class", "H3456:class"])
    runs = [expander(stack), expander(stack)]
    reports: list[Any] = []
    threads = [threading.Thread(target=lambda r=run: reports.append(r.run(lambda: 300_000))) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(len(r.expanded) for r in reports) == [0, 1]
    written = rows(stack, created.request_id)
    assert (
        len(written)
        == len({r.recipient for r in written})
        == MessageRequestRepository().require(created.request_id).counts.total
    )
    assert sum(r.rows_written for r in reports) == len(written)


def test_a_template_that_fails_half_way_fails_the_request_and_cancels_its_queued_rows(stack: Any) -> None:
    seed(tables(stack), stack.client("dynamodb"), sample_program(students_per_section=6))
    # Divides by zero for teacher_ruth only, who comes after the students (members sort by username).
    created = put_unchecked(
        stack, recipients=["E1234s1:class"], body="{{ 1 // (0 if user.username == 'teacher_ruth' else 1) }}"
    )
    report = expander(stack, EXPAND_PAGE_SIZE="1", EXPAND_CHECKPOINT_ROWS="1").run(lambda: 300_000)
    ((request_id, error),) = report.failed
    assert request_id == created.request_id
    assert "by zero" in error
    request = MessageRequestRepository().require(created.request_id)
    assert request.status is RequestStatus.FAILED
    assert "body template" in request.last_error
    written = rows(stack, created.request_id)
    assert written, "rows were written before the failing recipient"
    assert {r.status for r in written} == {RowStatus.CANCELLED}


def test_a_cancelled_request_stops_expanding_at_its_next_checkpoint(stack: Any) -> None:
    seed(tables(stack), stack.client("dynamodb"), sample_program(students_per_section=10))
    created = put_unchecked(stack, recipients=["E1234:class"])

    class CancelMidway(OutboxRepository):
        def put_batch(self, rows: Any) -> None:
            super().put_batch(rows)
            MessageRequestRepository().end(created.request_id, RequestStatus.CANCELLED, "cancelled", datetime.now(UTC))

    report = expander(stack, CancelMidway(), EXPAND_PAGE_SIZE="2", EXPAND_CHECKPOINT_ROWS="2").run(lambda: 300_000)
    assert report.expanded == []
    assert MessageRequestRepository().require(created.request_id).status is RequestStatus.CANCELLED
    assert {r.status for r in rows(stack, created.request_id)} == {RowStatus.CANCELLED}


def test_a_resumed_expansion_reads_the_plan_its_checkpoint_kept_whatever_the_groups_say_by_then(stack: Any) -> None:
    program = seed(tables(stack), stack.client("dynamodb"), sample_program(students_per_section=20))
    created = put_unchecked(stack, recipients=["E1234:class", "M2345:class"], sendto="self+guardian")
    everyone = {u for section in ("E1234s1", "E1234s2", "M2345s1") for u in program.members_of(section)}
    expected = {u.email.lower() for u in everyone} | {u.guardian_email.lower() for u in everyone if u.guardian_email}
    first = expander(stack, CrashingOutbox(after_batches=7), EXPAND_PAGE_SIZE="7", EXPAND_CHECKPOINT_ROWS="10")
    with pytest.raises(HardCrash):
        first.run(lambda: 300_000)
    checkpoint = MessageRequestItem.get(created.request_id).checkpoint
    assert checkpoint["part"] == 1  # it stopped inside M2345's part, E1234 (part 0) done

    # Meanwhile E1234's groups stop saying they are indexed: planned now, E1234 would be three parts and
    # part 1 would be E1234s1. The resumed run must read the parts the checkpoint kept.
    for code in ("E1234", "E1234s1", "E1234s2"):
        GroupItem(code=code, member=META).update(actions=[GroupItem.members_class.remove()])
    spec = MessageRequestRepository().require(created.request_id).recipients
    assert [(p.kind, p.code) for p in plan_parts(spec, DirectoryPages())][:2] == [
        ("group", "E1234"),
        ("group", "E1234s1"),
    ]

    final = resumed_after_the_lease(stack, created.request_id, EXPAND_PAGE_SIZE="7", EXPAND_CHECKPOINT_ROWS="10")
    assert {r.to.email.lower() for r in final} == expected
    assert len(final) == len(expected)
    request = MessageRequestRepository().require(created.request_id)
    assert (request.counts.total, request.counts.duplicates) == (len(expected), 1)


class MovingDirectory(DirectoryPages):
    """An import moves E1234s2 to class M2345 (E1234 still lists it) after the expansion's second page."""

    def __init__(self, section: Group) -> None:
        super().__init__()
        self.section = section
        self.read = 0

    def page(self, part: Part, position: str | None, size: int) -> UserPage:
        page = super().page(part, position, size)
        self.read += 1
        if self.read == 2:
            GroupRepository().put_group(replace(self.section, class_code="M2345"))
        return page


def test_a_section_moved_during_an_expansion_is_read_on_its_own_and_a_resumed_run_keeps_that_plan(
    stack: Any,
) -> None:
    program = seed(tables(stack), stack.client("dynamodb"), sample_program(students_per_section=20))
    created = put_unchecked(stack, recipients=["E1234:class", "M2345:class"])
    expected = {u.email.lower() for s in ("E1234s1", "E1234s2", "M2345s1") for u in program.members_of(s)}
    moved = next(g for g in program.groups if g.code == "E1234s2")
    env = {"EXPAND_PAGE_SIZE": "7", "EXPAND_CHECKPOINT_ROWS": "10"}
    first = Expander(settings(stack, **env), MessageRequestRepository(), CrashingOutbox(4), MovingDirectory(moved))
    with pytest.raises(HardCrash):
        first.run(lambda: 300_000)
    assert GroupRepository().get("E1234s2").members_class == "M2345"  # type: ignore[union-attr]
    checkpoint = MessageRequestItem.get(created.request_id).checkpoint
    assert checkpoint["plan"] == [
        ["class", "E1234", ["student", "teacher"], ["E1234", "E1234s1"]],
        ["class", "M2345", ["student", "teacher"], ["M2345", "M2345s1"]],
        ["group", "E1234s2", ["student", "teacher"], []],
    ]
    assert checkpoint["part"] >= 1

    final = resumed_after_the_lease(stack, created.request_id, EXPAND_PAGE_SIZE="7", EXPAND_CHECKPOINT_ROWS="10")
    assert {r.to.email.lower() for r in final} == expected
    assert len(final) == len(expected)  # E1234s2's members read twice, written once
    assert MessageRequestRepository().require(created.request_id).counts.total == len(expected)
