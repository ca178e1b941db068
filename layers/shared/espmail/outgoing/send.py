"""The sender (scheduled): due outbox rows -> SendGrid ``/v3/mail/send``.

Each run queries the due rows of its shards through the sparse ``due`` index (priority, then age),
groups rows of one request with identical rendered content into one call (one personalization each, up
to 1,000), and hands the calls to a bounded pool of threads over kept-alive connections. Each call claims
its rows first (one conditional UpdateItem per row: status ``sending``, a lease, one more try), then
sends, then the outcome is written:

- 202: ``sent``, with SendGrid's ``X-Message-Id``;
- 429, 5xx, a timeout, a refused or dropped connection: ``queued`` again, due after an exponential
  back-off with jitter, and never sooner than ``Retry-After`` / ``X-RateLimit-Reset``; a 429 also pauses
  this run's further calls for that long; after ``max_tries`` tries the row fails for good;
- any other 4xx: ``failed`` at once with SendGrid's reason. A call of several rows that gets a 4xx is
  split, so one bad address fails alone and the others go out.

The run stops claiming when the Lambda's remaining time falls below a margin (which exceeds the SendGrid
timeout, so every call started can finish and be recorded). Outcomes are written in batches of 25
(BatchWriteItem) while the rows' leases hold; the request's progress counters are bumped per batch, and
when they say every row is done the request is finished (final counts from the rows themselves, and one
failure notice to its creator if any row failed). A sweep over expanded requests catches the rest.

Delivery guarantee
------------------
*At least once.* A row leaves ``queued``/``sending`` only when SendGrid accepted it (202) or when it
failed for good, with the reason on the row. A run that dies leaves its claimed rows ``sending`` with a
lease expiry as their next due time, so they come back by themselves; nothing is lost and nothing stays
stuck.

*Never twice from overlapping or concurrent runs.* A row is sent only by the run whose claim succeeded,
and a claim is a conditional write that succeeds only while the row is due: queued and its time has
come, or sending with an expired lease. Of two runs racing for a row (overlapping schedules, shard
workers, a retried invocation) exactly one claim succeeds. The lease (default 120 s) is far longer than
one call (the SendGrid timeout) plus the outcome write, and an outcome is written while the lease holds
(a row close to the end of its lease is written conditionally on still holding it).

*An error is no crash.* An unexpected error in one call (DynamoDB throttling a claim after the client's
own retries, a request's status that cannot be read) ends that call: its rows already answered keep
their outcome, its other claimed rows are queued again with the error on them (and back-off), and the
run stops claiming. Every outcome already known, from this call and from every other call that finished,
is written before the error leaves ``run`` (so the invocation fails and its alarm sees it).

*The one duplicate window.* If a run crashes (or loses DynamoDB) after SendGrid answered 202 and before
the row's status write, the row is still ``sending``; when its lease runs out it is due again and is
sent a second time. The same holds for a call whose 202 never reached us (a timeout after SendGrid
queued the message): we cannot tell it from a lost request, so it is retried.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from espmail.domain.mail import Address, MailMessage, Personalization, SendReceipt
from espmail.domain.message_requests import RequestStatus
from espmail.domain.outbox import OutboxRow, RowKind, priority_band, shards_for
from espmail.errors import ConditionFailed, PermanentSendError, RetryableSendError
from espmail.observability import logger
from espmail.outgoing.completion import Completion
from espmail.outgoing.render import header_value
from espmail.outgoing.settings import SenderSettings
from espmail.outgoing.unsubscribe import UnsubscribeLinks
from espmail.storage.message_requests import MessageRequestRepository
from espmail.storage.outbox import BATCH_WRITE_LIMIT, OutboxRepository

FLUSH_AFTER_SECONDS = 2.0
REQUEST_STATUS_TTL_SECONDS = 15.0
FINISH_CHECKS_PER_RUN = 25
CLOSED_REQUESTS = {RequestStatus.CANCELLED, RequestStatus.FAILED, RequestStatus.EXPIRED}

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class MailSender(Protocol):
    def send(self, message: MailMessage, personalizations: Sequence[Personalization]) -> SendReceipt: ...


@dataclass(frozen=True, slots=True)
class Worker:
    """Which share of the due index a run takes: worker ``index`` of ``count`` (see ``shards_for``)."""

    index: int = 0
    count: int = 1


@dataclass(frozen=True, slots=True)
class _Outcome:
    row: OutboxRow  # the row's new state
    lease_until: datetime  # the lease under which it may be written
    counted: str  # "sent" | "failed" | "retried" | "cancelled"


@dataclass
class _Delivery:
    """What one call did: rows claimed and lost to other runs, SendGrid calls made, the outcomes known,
    and the unexpected error that ended it early (its claimed rows without an outcome are retries)."""

    claimed: int = 0
    lost: int = 0
    calls: int = 0
    outcomes: list[_Outcome] = field(default_factory=list)
    error: BaseException | None = None


@dataclass
class SendReport:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    calls: int = 0
    lost_claims: int = 0  # rows another run claimed first
    lost_leases: int = 0  # outcomes not written: the lease had run out and another run had the row
    stopped: str = ""  # why the run stopped claiming before the due rows ran out
    finished: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed,
            "sent": self.sent,
            "failed": self.failed,
            "retried": self.retried,
            "cancelled": self.cancelled,
            "calls": self.calls,
            "lost_claims": self.lost_claims,
            "lost_leases": self.lost_leases,
            "stopped": self.stopped,
            "finished": list(self.finished),
        }


def display_name(name: str) -> str:
    """A recipient name SendGrid takes: one line, no ``,`` or ``;``."""
    return header_value(name.replace(",", " ").replace(";", " "), limit=100)


def backoff_seconds(
    tries: int, base: float, maximum: float, retry_after: float | None, max_retry_after: float
) -> float:
    """Exponential back-off with jitter (half to all of ``base * 2**(tries-1)``), never below the
    provider's ``Retry-After`` (capped at ``max_retry_after``)."""
    delay = min(maximum, base * float(2 ** max(0, tries - 1))) * (0.5 + random.random() / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, max_retry_after))
    return delay


def plan_calls(rows: Sequence[OutboxRow], batch_identical: bool, max_personalizations: int) -> list[list[OutboxRow]]:
    """The calls to make, in due order: rows of one request with identical content share a call (one
    personalization each, up to ``max_personalizations``); every other row is a call of its own."""
    if not batch_identical:
        return [[row] for row in rows]
    groups: dict[tuple[str, str, str], list[OutboxRow]] = {}
    for row in rows:
        groups.setdefault((row.request_id, row.content_hash, row.kind.value), []).append(row)
    size = max(1, max_personalizations)
    return [group[i : i + size] for group in groups.values() for i in range(0, len(group), size)]


class Sender:
    def __init__(
        self,
        settings: SenderSettings,
        outbox: OutboxRepository,
        requests: MessageRequestRepository,
        completion: Completion,
        mailer: MailSender,
        unsubscribe: UnsubscribeLinks | None,
        *,
        clock: Clock = utc_now,
        run_id: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._outbox = outbox
        self._requests = requests
        self._completion = completion
        self._mailer = mailer
        self._unsubscribe = unsubscribe
        self._clock = clock
        self._sleep = sleep
        self.run_id = run_id or f"sender-{uuid.uuid4()}"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pause_until = 0.0
        self._statuses: dict[str, tuple[float, RequestStatus | None]] = {}
        self._buffer: list[_Outcome] = []
        self._buffer_since = 0.0
        self._in_flight: set[Future[_Delivery]] = set()
        self._error: BaseException | None = None
        self._remaining: Callable[[], int] = lambda: 0

    # ------------------------------------------------------------------ the run
    def run(self, remaining_ms: Callable[[], int], worker: Worker = Worker()) -> SendReport:
        """One scheduled run: send what is due in this worker's shards until done or out of time.

        Raises the first unexpected error of a call (or of the run itself), after the outcomes of every
        call that finished are written."""
        report = SendReport()
        self._remaining = remaining_ms
        shards = shards_for(worker.index, worker.count)
        pool = ThreadPoolExecutor(max_workers=self._settings.concurrency, thread_name_prefix="sender")
        try:
            for _ in range(2):  # a second pass delivers failure notices the finish sweep just queued
                self._drain(pool, shards, report)
                if report.stopped or not self._time_left() or not self._sweep(report):
                    break
        finally:
            self._stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            self._collect(self._in_flight, report)
            self._flush(report, force=True)
        if self._error is not None:
            raise self._error
        return report

    def _time_left(self) -> bool:
        return self._remaining() / 1000.0 > self._settings.time_margin_seconds

    def _drain(self, pool: ThreadPoolExecutor, shards: Sequence[int], report: SendReport) -> None:
        submitted = 0
        while not report.stopped:
            if not self._time_left():
                report.stopped = "time budget"
                break
            rows = self._due(shards)
            if not rows:
                break
            claimed_before = report.claimed
            for unit in plan_calls(rows, self._settings.batch_identical, self._settings.max_personalizations):
                if report.stopped:
                    break
                if not self._time_left():
                    report.stopped = "time budget"
                    break
                cap = self._settings.max_rows_per_run
                if cap and submitted >= cap:
                    report.stopped = "row limit"
                    break
                if not self._wait_out_pause(report):
                    break
                while len(self._in_flight) >= self._settings.concurrency:
                    done, _ = wait(self._in_flight, return_when=FIRST_COMPLETED)
                    self._collect(done, report)
                self._in_flight.add(pool.submit(self._deliver, unit))
                submitted += len(unit)
            done, _ = wait(self._in_flight)
            self._collect(done, report)
            self._flush(report, force=True)
            if report.claimed == claimed_before:
                break  # every due row went to other runs: let them have it

    def _due(self, shards: Sequence[int]) -> list[OutboxRow]:
        now = self._clock()
        size = self._settings.wave_size
        rows: list[OutboxRow] = []
        for shard in shards:
            rows += self._outbox.due(shard, now, limit=size, max_evaluated=size * 4)
        rows.sort(key=lambda r: (priority_band(r.priority), r.next_attempt_at, r.request_id, r.recipient))
        return rows[:size]

    def _wait_out_pause(self, report: SendReport) -> bool:
        with self._lock:
            pause = self._pause_until - time.monotonic()
        if pause <= 0:
            return True
        if self._remaining() / 1000.0 - pause <= self._settings.time_margin_seconds:
            report.stopped = "rate limited"
            return False
        self._sleep(pause)
        return True

    # ------------------------------------------------------------------ one call (worker threads)
    def _deliver(self, unit: list[OutboxRow]) -> _Delivery:
        """Claims, checks and sends one call's rows. Never raises: an unexpected error ends the call with
        the outcomes known so far, the error as a retry on its other claimed rows, and the error itself."""
        delivery = _Delivery()
        if self._stop.is_set() or not self._time_left():
            return delivery
        now = self._clock()
        lease_until = now + self._settings.lease
        claimed: list[OutboxRow] = []
        try:
            for row in unit:
                mine = self._outbox.claim(row, self.run_id, now, lease_until)
                if mine is None:
                    delivery.lost += 1
                else:
                    claimed.append(mine)
            delivery.claimed = len(claimed)
            self._check_and_send(claimed, now, lease_until, delivery)
        except Exception as exc:  # noqa: BLE001 - recorded on the rows and raised by run() once all is written
            self._end_early(unit, claimed, lease_until, delivery, exc)
        return delivery

    def _check_and_send(
        self, claimed: list[OutboxRow], now: datetime, lease_until: datetime, delivery: _Delivery
    ) -> None:
        live: list[OutboxRow] = []
        retention = self._settings.retention
        for row in claimed:
            closed = self._closed(row.request_id) if row.kind is RowKind.BULK else ""
            if closed:
                delivery.outcomes.append(_Outcome(row.cancelled(closed, now, retention), lease_until, "cancelled"))
            elif row.tries > self._settings.max_tries:
                error = (
                    f"gave up after {row.tries - 1} tries; last: {row.last_error or 'the run ended before an answer'}"
                )
                outcome = _Outcome(row.failed(error, row.last_status, now, retention), lease_until, "failed")
                delivery.outcomes.append(outcome)
            else:
                live.append(row)
        if live:
            self._send(live, lease_until, delivery)

    def _end_early(
        self,
        unit: list[OutboxRow],
        claimed: list[OutboxRow],
        lease_until: datetime,
        delivery: _Delivery,
        exc: Exception,
    ) -> None:
        delivery.claimed = len(claimed)
        delivery.error = exc
        answered = {(o.row.request_id, o.row.recipient) for o in delivery.outcomes}
        unanswered = [row for row in claimed if (row.request_id, row.recipient) not in answered]
        now = self._clock()
        reason = f"unexpected error before sending: {type(exc).__name__}: {exc}"
        delivery.outcomes += [self._retry_or_fail(row, reason, None, None, now, lease_until) for row in unanswered]
        logger().exception(
            "a call of the sender run ended with an unexpected error; its rows without an answer are retried",
            extra={
                "request_ids": sorted({row.request_id for row in unit}),
                "rows": len(unit),
                "claimed": len(claimed),
                "answered": len(answered),
            },
        )

    def _send(self, rows: list[OutboxRow], lease_until: datetime, delivery: _Delivery) -> None:
        """Sends one call and adds its outcomes to ``delivery`` as they become known."""
        first = rows[0]
        message = MailMessage(
            sender=first.sender,
            subject=first.subject,
            text=first.text or None,
            html=first.html,
            reply_to=(first.reply_to,) if first.reply_to else (),
            headers=first.headers,
            categories=(first.category,) if first.category else (),
            custom_args={"request_id": first.request_id, "kind": first.kind.value},
        )
        try:
            receipt = self._mailer.send(message, [self._personalization(row) for row in rows])
        except RetryableSendError as exc:
            delivery.calls += 1
            self._note_pause(exc)
            now = self._clock()
            delivery.outcomes += [
                self._retry_or_fail(row, str(exc), exc.status, exc.retry_after, now, lease_until) for row in rows
            ]
            return
        except PermanentSendError as exc:
            delivery.calls += 1
            if len(rows) > 1:
                for row in rows:  # one bad recipient must not sink the others: send them one by one
                    self._send([row], lease_until, delivery)
                return
            now = self._clock()
            failed = first.failed(str(exc), exc.status, now, self._settings.retention)
            delivery.outcomes.append(_Outcome(failed, lease_until, "failed"))
            return
        except ValueError as exc:  # the payload could not be built: nothing to retry
            now = self._clock()
            delivery.outcomes += [
                _Outcome(r.failed(str(exc), None, now, self._settings.retention), lease_until, "failed") for r in rows
            ]
            return
        delivery.calls += 1
        now = self._clock()
        delivery.outcomes += [
            _Outcome(row.sent(receipt.message_id, now, self._settings.retention), lease_until, "sent") for row in rows
        ]

    def _personalization(self, row: OutboxRow) -> Personalization:
        headers: Mapping[str, str] = {}
        if row.kind is RowKind.BULK and self._unsubscribe is not None:
            headers = self._unsubscribe.headers(row.to.email, row.request_id)
        return Personalization(
            to=(Address(row.to.email, display_name(row.to.name)),),
            headers=headers,
            custom_args={"recipient": row.recipient},
        )

    def _retry_or_fail(
        self,
        row: OutboxRow,
        error: str,
        status: int | None,
        retry_after: float | None,
        now: datetime,
        lease_until: datetime,
    ) -> _Outcome:
        settings = self._settings
        if row.tries >= settings.max_tries:
            reason = f"gave up after {row.tries} tries; last: {error}"
            return _Outcome(row.failed(reason, status, now, settings.retention), lease_until, "failed")
        delay = backoff_seconds(
            row.tries,
            settings.backoff_base_seconds,
            settings.backoff_max_seconds,
            retry_after,
            settings.max_retry_after_seconds,
        )
        return _Outcome(row.retry_at(now + timedelta(seconds=delay), error, status), lease_until, "retried")

    def _note_pause(self, exc: RetryableSendError) -> None:
        if exc.status != 429:
            return
        wait_for = min(exc.retry_after or self._settings.backoff_base_seconds, self._settings.max_retry_after_seconds)
        with self._lock:
            self._pause_until = max(self._pause_until, time.monotonic() + wait_for)
        logger().warning("SendGrid is rate limiting; pausing this run's calls", extra={"seconds": wait_for})

    def _closed(self, request_id: str) -> str:
        """Why rows of this request must not go out any more ("" if they may)."""
        with self._lock:
            cached = self._statuses.get(request_id)
        if cached is None or time.monotonic() - cached[0] > REQUEST_STATUS_TTL_SECONDS:
            status = self._requests.status_of(request_id)
            with self._lock:
                self._statuses[request_id] = (time.monotonic(), status)
        else:
            status = cached[1]
        if status is None:
            return "the message request no longer exists"
        if status in CLOSED_REQUESTS:
            return f"the message request is {status.value}"
        return ""

    # ------------------------------------------------------------------ outcomes (main thread)
    def _collect(self, done: set[Future[_Delivery]], report: SendReport) -> None:
        """Takes in the outcomes of every finished call (all of them before anything can raise) and
        writes them when a batch is full or old enough. The first error of a call stops the run."""
        for future in [f for f in done if f.done()]:
            self._in_flight.discard(future)
            if future.cancelled():
                continue
            failure = future.exception()
            delivery = future.result() if failure is None else _Delivery(error=failure)
            report.claimed += delivery.claimed
            report.lost_claims += delivery.lost
            report.calls += delivery.calls
            if delivery.outcomes and not self._buffer:
                self._buffer_since = time.monotonic()
            self._buffer += delivery.outcomes
            if delivery.error is not None and self._error is None:
                self._error = delivery.error
                report.stopped = "error"
                self._stop.set()
        self._flush(report)

    def _flush(self, report: SendReport, *, force: bool = False) -> None:
        if not self._buffer:
            return
        if (
            not force
            and len(self._buffer) < BATCH_WRITE_LIMIT
            and time.monotonic() - self._buffer_since < FLUSH_AFTER_SECONDS
        ):
            return
        outcomes, self._buffer = self._buffer, []
        now = self._clock()
        guard = timedelta(seconds=max(10.0, self._settings.sendgrid.timeout_seconds))
        safe = [o for o in outcomes if o.lease_until - now > guard]
        tight = [o for o in outcomes if o.lease_until - now <= guard]
        self._outbox.put_batch([o.row for o in safe])
        written = list(safe)
        for outcome in tight:
            try:
                self._outbox.record_guarded(outcome.row, self.run_id)
            except ConditionFailed:
                report.lost_leases += 1
                logger().error(
                    "an outcome came after the row's lease ran out and another run took the row",
                    extra={"request_id": outcome.row.request_id, "recipient": outcome.row.recipient},
                )
                continue
            written.append(outcome)
        progress: dict[str, list[int]] = {}
        for outcome in written:
            setattr(report, outcome.counted, getattr(report, outcome.counted) + 1)
            if outcome.row.kind is RowKind.BULK and outcome.counted in ("sent", "failed"):
                counts = progress.setdefault(outcome.row.request_id, [0, 0])
                counts[0 if outcome.counted == "sent" else 1] += 1
        for request_id, (sent, failed) in progress.items():
            state = self._requests.add_progress(request_id, sent, failed, now)
            if state.looks_done:
                finished = self._completion.try_finish(request_id, now)
                if finished is not None:
                    report.finished.append(request_id)

    # ------------------------------------------------------------------ completion sweep
    def _sweep(self, report: SendReport) -> bool:
        """Finishes expanded requests whose rows are all done (their counters may have missed a batch if a
        run died); True if a failure notice was queued."""
        now = self._clock()
        queued_notice = False
        stale = timedelta(seconds=self._settings.stale_progress_seconds)
        for check in self._requests.due_for_finish(now, FINISH_CHECKS_PER_RUN):
            if not self._time_left():
                break
            idle = now - (check.last_progress_at or now)
            if check.progress.looks_done or idle >= stale:
                status = self._completion.try_finish(check.request_id, now)
                if status is not None:
                    report.finished.append(check.request_id)
                    queued_notice = queued_notice or status is not RequestStatus.SENT
                    continue
            self._requests.postpone_check(
                check.request_id, now + timedelta(seconds=self._settings.finish_check_seconds)
            )
        return queued_notice
