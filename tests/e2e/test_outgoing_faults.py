"""SendGrid and the runs misbehaving: every row ends sent exactly once or failed with its reason, nothing
stays stuck, and overlapping runs never send a row twice (the SendGrid double's record is the judge)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from embedded.sendgrid_double import Disconnect, Status, Timeout
from espmail.domain.message_requests import RequestStatus
from espmail.domain.outbox import RowStatus
from espmail.domain.people import Role
from espmail.errors import EspMailError
from espmail.outgoing import wiring
from espmail.outgoing.completion import Completion
from espmail.outgoing.send import Sender
from espmail.outgoing.settings import SenderSettings
from espmail.storage.message_requests import MessageRequestRepository
from espmail.storage.outbox import OutboxRepository
from espmail.storage.users import UserRepository
from espmail.transport.sendgrid_mailer import SendGridMailer
from tests.e2e.outgoing_support import (
    CREATOR_EMAIL,
    FAST_RETRIES,
    accepted_to,
    bulk_accepted_to,
    expand,
    put_unchecked,
    request,
    rows,
    seeded,
    send,
    settle,
    statuses,
    twice,
)


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAST_RETRIES.items():
        monkeypatch.setenv(name, value)


def expanded_section(stack: Any, **overrides: Any) -> tuple[Any, list[str]]:
    """E1234s1 (a teacher and 4 students), expanded; personalised: one call, through substitutions."""
    program = seeded(stack)
    created = put_unchecked(stack, **{"recipients": ["E1234s1:class"], **overrides})
    expand(stack)
    return created, sorted(u.email.lower() for u in program.members_of("E1234s1"))


@pytest.mark.parametrize(
    "fault",
    [Status(429, retry_after=1), Status(500), Status(503), Disconnect(), Status(500, count=3)],
    ids=["429-retry-after", "500", "503", "dropped-connection", "three-500s"],
)
def test_transient_answers_are_retried_and_every_row_is_sent_exactly_once(stack: Any, fast: None, fault: Any) -> None:
    created, addresses = expanded_section(stack)
    stack.sendgrid.inject(fault)
    settle(stack, created.request_id)
    assert sorted(accepted_to(stack)) == addresses
    final = request(stack, created.request_id)
    assert final.status is RequestStatus.SENT
    assert (final.counts.sent, final.counts.failed) == (5, 0)
    retried = [r for r in rows(stack, created.request_id) if r.tries > 1]
    assert retried, "the fault must have hit a row"
    if isinstance(fault, Status) and fault.retry_after:
        (answer,) = [r for r in stack.sendgrid.requests_log if r.status == 429]
        for row in retried:  # the five personalised rows share one call (substitutions): all were refused
            assert row.sent_at is not None
            assert row.sent_at.timestamp() >= answer.started_at + answer.duration + 1.0 - 0.05  # Retry-After


def test_a_refused_connection_is_retried_once_sendgrid_listens_again(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEND_BACKOFF_BASE_SECONDS", "0.4")  # long enough that the first run does not retry
    created, addresses = expanded_section(stack)
    stack.sendgrid.refuse_connections()
    try:
        report = send(stack)
    finally:
        stack.sendgrid.accept_connections()
    assert report["sent"] == 0
    assert report["retried"] == 5
    assert all(
        r.status is RowStatus.QUEUED and "could not connect" in r.last_error for r in rows(stack, created.request_id)
    )
    settle(stack, created.request_id)
    assert sorted(accepted_to(stack)) == addresses


def test_a_timeout_is_retried(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEND_BACKOFF_BASE_SECONDS", "0.4")  # long enough that the first run does not retry
    created, _ = expanded_section(stack, recipients=["user:teacher_ruth"])
    stack.sendgrid.inject(Timeout(5.4))  # the stack's SendGrid client gives up after 5 s
    report = send(stack)
    assert report["retried"] == 1
    (row,) = rows(stack, created.request_id)
    assert "timed out" in row.last_error or "no answer" in row.last_error
    settle(stack, created.request_id)
    assert accepted_to(stack) == ["ruth@physics.example.edu"]


def test_a_persistent_server_error_fails_the_row_after_n_tries_with_the_reason(
    stack: Any, fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEND_MAX_TRIES", "3")
    created, _ = expanded_section(stack, recipients=["user:teacher_ruth"])
    stack.sendgrid.inject(Status(503, count=None))
    try:
        settle(stack, created.request_id)
    finally:
        stack.sendgrid.clear_faults()
    (row,) = rows(stack, created.request_id)
    assert row.status is RowStatus.FAILED
    assert row.tries == 3
    assert "gave up after 3 tries" in row.last_error
    assert "503" in row.last_error
    assert request(stack, created.request_id).status is RequestStatus.FAILED
    assert bulk_accepted_to(stack) == []


def test_a_400_for_one_row_fails_it_alone_and_the_creator_gets_one_notice(stack: Any, fast: None) -> None:
    program = seeded(stack)
    bad = program.members_of("E1234s1", Role.STUDENT)[2].email.lower()
    # Identical content for everyone: one call with five personalizations, which the 400 splits.
    created = put_unchecked(stack, recipients=["E1234s1:class"], subject="Room change", body="Room 10-250 now.")
    expand(stack)
    stack.sendgrid.fail_recipient(bad)
    settle(stack, created.request_id)
    final = request(stack, created.request_id)
    assert final.status is RequestStatus.SENT_WITH_FAILURES
    assert (final.counts.total, final.counts.sent, final.counts.failed) == (5, 4, 1)
    assert "1 of 5 recipients failed" in final.last_error
    (failed,) = [r for r in rows(stack, created.request_id) if r.status is RowStatus.FAILED]
    assert failed.to.email.lower() == bad
    assert failed.last_status == 400
    assert "valid address" in failed.last_error
    assert sorted(bulk_accepted_to(stack)) == sorted(
        u.email.lower() for u in program.members_of("E1234s1") if u.email.lower() != bad
    )
    answers = [r.status for r in stack.sendgrid.requests_log if r.path == "/v3/mail/send"]
    assert answers[0] == 400  # the shared call of five, refused for one address...
    assert answers.count(400) == 2  # ... split: each row alone, the bad one refused again
    assert answers.count(202) == 5  # four recipients and the creator's notice

    notices = [m for m in stack.sendgrid.accepted if m.body.get("categories") == ["espmail-notice"]]
    assert len(notices) == 1
    notice = notices[0].body
    assert notice["personalizations"][0]["to"][0]["email"] == CREATOR_EMAIL
    assert "1 of 5 messages not delivered" in notice["subject"]
    assert bad in notice["content"][0]["value"]
    assert "List-Unsubscribe" not in str(notice)
    send(stack)
    send(stack)
    assert len([m for m in stack.sendgrid.accepted if m.body.get("categories") == ["espmail-notice"]]) == 1


def test_retrying_the_failed_rows_sends_them_and_makes_the_counts_final_again(stack: Any, fast: None) -> None:
    program = seeded(stack)
    bad = program.members_of("E1234s1", Role.STUDENT)[0].email.lower()
    created = put_unchecked(stack, recipients=["E1234s1:class"])
    expand(stack)
    stack.sendgrid.fail_recipient(bad)
    settle(stack, created.request_id)
    stack.sendgrid.clear_faults()
    from tests.e2e.outgoing_support import service

    assert service(stack).retry_failed(created.request_id) == 1
    assert request(stack, created.request_id).status is RequestStatus.EXPANDED
    settle(stack, created.request_id)
    final = request(stack, created.request_id)
    assert final.status is RequestStatus.SENT
    assert (final.counts.sent, final.counts.failed) == (5, 0)
    assert sorted(bulk_accepted_to(stack)).count(bad) == 1


def test_a_crash_between_the_202_and_the_status_write_sends_again_after_the_lease(stack: Any) -> None:
    """The one duplicate window of the delivery guarantee: SendGrid took the messages, the run died before
    recording it; the rows come back when their lease runs out and are sent (again). No row is lost."""
    created, addresses = expanded_section(stack)

    class LostDynamoDB(OutboxRepository):
        def put_batch(self, rows: Any) -> None:
            raise EspMailError("DynamoDB went away after SendGrid's 202")

    settings = SenderSettings.from_env(stack.function_env("SenderFunction"))
    requests = MessageRequestRepository()
    outbox = LostDynamoDB()
    completion = Completion(
        requests, outbox, UserRepository(), settings.site, notice_category="n", retention=timedelta(days=1)
    )
    mailer = SendGridMailer("SG.local-double-key", host=stack.sendgrid.host, timeout=5)
    crashing = Sender(settings, outbox, requests, completion, mailer, None)
    with pytest.raises(EspMailError, match="went away"):
        crashing.run(lambda: 300_000)
    assert sorted(accepted_to(stack)) == addresses  # SendGrid has them all
    assert statuses(stack, created.request_id) == {RowStatus.QUEUED: 5}  # but nothing was recorded

    blocked = send(stack)
    assert blocked["claimed"] == 0
    assert blocked["busy_shards"] > 0  # the crashed run's shards are still leased: nobody may touch them

    def after_the_lease() -> datetime:
        return datetime.now(UTC) + settings.lease + timedelta(seconds=1)

    with wiring.sender(settings, run_id="sender-after-the-lease", clock=after_the_lease) as later:
        report = later.run(lambda: 300_000)
    assert (report.claimed, report.sent) == (5, 5)
    assert statuses(stack, created.request_id) == {RowStatus.SENT: 5}
    assert all(r.tries == 1 for r in rows(stack, created.request_id))  # the lost try was never recorded
    assert sorted(accepted_to(stack)) == sorted(addresses * 2)  # the documented duplicate window
    assert request(stack, created.request_id).status is RequestStatus.SENT


def test_a_run_out_of_time_stops_claiming_and_the_next_run_sends_the_rest(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEND_CONCURRENCY", "1")
    monkeypatch.setenv("SEND_BATCH_IDENTICAL", "false")
    created, _ = expanded_section(stack, recipients=["E1234:class"], body="Same for all.")
    total = request(stack, created.request_id).counts.total
    # About ten calls of 0.3 s, one at a time, against 0.9 s of budget: room for the run's start on a
    # loaded machine (0.1 s and 0.25 s failed under `make test`'s two workers), never room for them all.
    stack.sendgrid.set_latency(0.3)
    margin_ms = int(SenderSettings.from_env(stack.function_env("SenderFunction")).time_margin_seconds * 1000)
    first = send(stack, remaining_ms=margin_ms + 900)
    stack.sendgrid.set_latency(0)
    assert first["stopped"] == "time budget"
    assert 0 < first["sent"] < total
    assert statuses(stack, created.request_id)[RowStatus.SENDING] == 0  # every call started was recorded
    second = send(stack)
    assert first["sent"] + second["sent"] == total
    assert twice(accepted_to(stack)) == []
    assert request(stack, created.request_id).status is RequestStatus.SENT


@pytest.mark.parametrize("sharded", [False, True], ids=["same-shards", "one-shard-set-each"])
def test_two_sender_runs_at_once_never_send_a_row_twice(stack: Any, sharded: bool) -> None:
    seeded(stack, students_per_section=8)
    created = put_unchecked(stack, recipients=["E1234:class", "M2345:class", "H3456:class"], sendto="self+guardian")
    expand(stack)
    total = request(stack, created.request_id).counts.total
    assert total > 60
    stack.sendgrid.set_latency(0.01)
    stack.activate("SenderFunction")  # both threads then see the same, complete environment
    events = [{"worker": 0, "workers": 2}, {"worker": 1, "workers": 2}] if sharded else [None, None]
    reports: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def run(event: Any) -> None:
        try:
            reports.append(send(stack, event=event))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    stack.sendgrid.set_latency(0)
    assert errors == []
    assert len(reports) == 2
    delivered = accepted_to(stack)
    assert twice(delivered) == []
    assert len(delivered) == total
    assert sum(r["sent"] for r in reports) == total
    if not sharded:
        assert all(r["sent"] > 0 for r in reports), reports  # they really ran side by side
    assert statuses(stack, created.request_id) == {RowStatus.SENT: total}
    assert request(stack, created.request_id).status is RequestStatus.SENT
