"""The sender (scheduled): due outbox rows -> SendGrid ``/v3/mail/send``.

A run works shard by shard through the sparse ``due`` index (8 shards; a worker of ``SenderWorkers``
takes its own share, in an order of its own, several shards at once). Before it reads a shard's rows it
takes the shard's *lease*: one conditional write on a lease item (``storage.outbox``: succeeds only if
nobody holds the shard or its lease ran out). While it holds the lease, the due rows of that shard are its
own, with no per-row claim. It then sends the shard in waves of up to 1,000 rows (one Query each, priority
then age), renewing the lease before each wave, and gives the shard back when it is done.

A wave's rows go out in as few calls as SendGrid allows, on a bounded pool of threads over kept-alive
connections: rows of one request with identical content share a call (one personalization each, up to
1,000); rows whose subject and content differ share one too, through ``personalizations[].substitutions``
(the call's content is a pair of tags chosen for that call, each personalization carries its own subject
and its rendered text and HTML as the tags' values); a row whose substitutions would pass SendGrid's
10,000 bytes goes alone. Then the outcomes are written with BatchWriteItem (25 a request):

- 202: ``sent``, with SendGrid's ``X-Message-Id``;
- 429, 5xx, a timeout, a refused or dropped connection: ``queued`` again, due after an exponential
  back-off with jitter, and never sooner than ``Retry-After`` / ``X-RateLimit-Reset``; a 429 also pauses
  this run's further calls for that long; after ``max_tries`` tries the row fails for good;
- any other 4xx: ``failed`` at once with SendGrid's reason. A call of several rows that gets a 4xx is
  split (row by row when small, else in halves) so one bad address fails alone and the others go out.

No call starts unless the run has more than its time margin left and the shard lease has more than the
SendGrid timeout plus the time to write the outcomes left (it is renewed when it has not); rows left
unsent stay due. The request's progress counters are bumped every few seconds, and when they say every
row is done the request is finished (final counts from the rows themselves, and one failure notice to
its creator if any row failed). A sweep over expanded requests catches the rest.

Delivery guarantee
------------------
*At least once.* A row leaves ``queued`` only when SendGrid accepted it (202) or when it failed for
good, with the reason on the row. A run that dies leaves its rows as they were (due) and its shard leases
run out (default 120 s), so another run takes the shards and sends them; nothing is lost and nothing stays
stuck.

*Never twice from overlapping or concurrent runs.* A row is sent only by the run holding its shard's
lease, and the lease is exclusive: taking it is a conditional write that succeeds only if nobody holds it
or its holder's lease ran out; renewing it is conditional on still holding it. A run starts a call only
while its lease has more than the call's timeout plus the outcome write left, and writes the outcomes
only while it still holds the lease (renewing it first if it is short); a run that lost its lease writes
nothing and stops. So of two runs racing for a shard (overlapping schedules, shard workers, a retried
invocation) one sends its rows, and the other sends them only after the first has recorded them or has
lost the lease without recording them (below).

*An error is no crash.* An unexpected error in one call (a request's status that cannot be read) ends
that call: its rows already answered keep their outcome, its other rows are queued again with the error on
them (and back-off), and the run stops. An error in a shard's own work (a query or a lease renewal that
DynamoDB refuses) stops that shard and the run. Every outcome already known is written before the error
leaves ``run`` (so the invocation fails and its alarm sees it).

*The one duplicate window.* If a run crashes (or loses DynamoDB, or its lease) after SendGrid answered
202 and before the outcome write, the rows are still ``queued`` and due; when the shard's lease runs out,
the next holder sends them a second time. The same holds for a call whose 202 never reached us (a timeout
after SendGrid queued the message): we cannot tell it from a lost request, so it is retried.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from espmail.domain.mail import Address, MailMessage, Personalization, SendReceipt
from espmail.domain.message_requests import RequestStatus
from espmail.domain.outbox import OutboxRow, RowKind, priority_band, shards_for
from espmail.errors import PermanentSendError, RetryableSendError
from espmail.observability import logger
from espmail.outgoing.completion import Completion
from espmail.outgoing.render import header_value
from espmail.outgoing.settings import SenderSettings
from espmail.outgoing.unsubscribe import UnsubscribeLinks
from espmail.storage.message_requests import MessageRequestRepository
from espmail.storage.outbox import OutboxRepository
from espmail.transport.sendgrid_mailer import MAX_PERSONALIZATIONS, MAX_SUBSTITUTION_BYTES, substitutions_size

FLUSH_AFTER_SECONDS = 2.0  # request progress counters are bumped at most this often (and at the end)
REQUEST_STATUS_TTL_SECONDS = 15.0
FINISH_CHECKS_PER_RUN = 25
CLOSED_REQUESTS = {RequestStatus.CANCELLED, RequestStatus.FAILED, RequestStatus.EXPIRED}
WRITE_SECONDS = 10.0  # a wave's outcomes are written only with at least this much of the shard lease left
CLOCK_SKEW_SECONDS = 2.0  # a lease is taken as ending this much before the time written on it
SPLIT_ONE_BY_ONE = 10  # a refused call of up to this many rows is sent again row by row, larger ones in halves
IDENTICAL_CALL_MIN = 50  # rows alike in at least this number share content; fewer go in a substituted call
MAX_CALL_BYTES = 20_000_000  # rendered content per call: well under SendGrid's 30 MB once in JSON
TEXT_TAG = "-espmail-text-{}-"
HTML_TAG = "-espmail-html-{}-"
_PROBE_TOKEN = "0" * 16  # tags are sized with this; real ones carry 16 random hex digits

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
    counted: str  # "sent" | "failed" | "retried" | "cancelled"


@dataclass
class _Delivery:
    """What one planned call did: SendGrid calls made, the outcomes known, rows left unsent (the run or
    the lease was running out), why, and the unexpected error that ended it early."""

    calls: int = 0
    outcomes: list[_Outcome] = field(default_factory=list)
    unsent: int = 0
    stopped: str = ""
    error: BaseException | None = None


@dataclass
class SendReport:
    claimed: int = 0  # rows read under a shard lease to be sent
    sent: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    calls: int = 0
    shards: int = 0  # shard leases taken
    busy_shards: int = 0  # shards another run held
    lost_leases: int = 0  # outcomes not written: the shard lease was lost (another run may send them again)
    stopped: str = ""  # why the run stopped before the due rows ran out
    finished: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def _substitutable(row: OutboxRow) -> bool:
    if not (row.text or row.html):
        return False
    # Each character is at least one byte of the substitutions: a row over the limit in characters alone
    # is not serialised to be measured.
    if len(row.text) + len(row.html or "") > MAX_SUBSTITUTION_BYTES:
        return False
    return substitution_bytes(row) <= MAX_SUBSTITUTION_BYTES


def substitution_bytes(row: OutboxRow) -> int:
    """The size of the row's substitutions (its text and HTML under their tags) as SendGrid counts them."""
    return substitutions_size(_substitutions(row, TEXT_TAG.format(_PROBE_TOKEN), HTML_TAG.format(_PROBE_TOKEN)))


def _substitutions(row: OutboxRow, text_tag: str, html_tag: str) -> dict[str, str]:
    values = {}
    if row.text:
        values[text_tag] = row.text
    if row.html:
        values[html_tag] = row.html
    return values


def _envelope(row: OutboxRow) -> tuple[Any, ...]:
    """What every personalization of one call shares when subject and content come per personalization."""
    return (
        row.request_id,
        row.kind.value,
        row.sender,
        row.reply_to,
        tuple(sorted(row.headers.items())),
        row.category,
        bool(row.text),
        bool(row.html),
    )


def _call_bytes(row: OutboxRow) -> int:
    return len(row.subject) + len(row.text) + len(row.html or "") + 1_000  # + addresses, headers, links


def plan_calls(
    rows: Sequence[OutboxRow],
    batch_identical: bool,
    max_personalizations: int,
    *,
    batch_personalized: bool = False,
    max_call_bytes: int = MAX_CALL_BYTES,
) -> list[list[OutboxRow]]:
    """The calls to make, in due order of their first row. Rows of one request with identical content share
    a call (one personalization each, up to ``max_personalizations``). With ``batch_personalized``, the
    other rows of one request that share sender, reply-to, headers and category share a call too, their
    subject and content per personalization (substitutions), as long as each row's substitutions stay within
    SendGrid's limit and the call within ``max_call_bytes``; every other row is a call of its own. Rows alike
    in groups smaller than ``IDENTICAL_CALL_MIN`` go with the substituted ones (a class where first names
    repeat would otherwise be a call per name). A call's rows have one content hash exactly when they are
    identical."""
    if not batch_identical:
        return [[row] for row in rows]
    size = max(1, min(max_personalizations, MAX_PERSONALIZATIONS))
    groups: dict[tuple[str, str, str], list[OutboxRow]] = {}
    for row in rows:
        groups.setdefault((row.request_id, row.content_hash, row.kind.value), []).append(row)
    calls: list[list[OutboxRow]] = []
    open_calls: dict[tuple[Any, ...], tuple[list[OutboxRow], int]] = {}  # per envelope: its last call, its bytes
    for group in groups.values():
        if not batch_personalized or len(group) >= IDENTICAL_CALL_MIN or not _substitutable(group[0]):
            calls += [group[i : i + size] for i in range(0, len(group), size)]
            continue
        for row in group:  # a few rows alike go with the others of their request, each with its substitutions
            envelope = _envelope(row)
            row_bytes = _call_bytes(row)
            chunk, chunk_bytes = open_calls.get(envelope, ([], 0))
            if not chunk or len(chunk) >= size or chunk_bytes + row_bytes > max_call_bytes:
                chunk, chunk_bytes = [], 0
                calls.append(chunk)
            chunk.append(row)
            open_calls[envelope] = (chunk, chunk_bytes + row_bytes)
    return calls


class _ShardLease:
    """This run's lease on one shard of the due index. ``ensure`` renews it when less than the asked time
    is left; once a renewal fails (another run took the shard) it stays lost."""

    def __init__(self, sender: Sender, shard: int) -> None:
        self.shard = shard
        self._sender = sender
        self._deadline = 0.0  # time.monotonic() before which the lease is surely ours
        self._lock = threading.Lock()
        self.lost = False

    def take(self, *, renew: bool) -> bool:
        started = self._sender.monotonic()
        seconds = self._sender.lease_seconds
        now = self._sender.now()
        held = self._sender.outbox.take_shard(
            self.shard, self._sender.run_id, now, now + timedelta(seconds=seconds), renew=renew
        )
        if held:
            self._deadline = started + seconds - CLOCK_SKEW_SECONDS
        else:
            self.lost = self.lost or renew
        return held

    def remaining(self) -> float:
        return self._deadline - self._sender.monotonic()

    def ensure(self, seconds: float) -> bool:
        with self._lock:
            if self.lost:
                return False
            if self.remaining() >= seconds:
                return True
            return self.take(renew=True) and self.remaining() >= seconds


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
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self.monotonic = monotonic  # how long a shard lease still holds is measured on this
        self.outbox = outbox
        self._requests = requests
        self._completion = completion
        self._mailer = mailer
        self._unsubscribe = unsubscribe
        self._clock = clock
        self._sleep = sleep
        self.run_id = run_id or f"sender-{uuid.uuid4()}"
        self.lease_seconds = settings.lease.total_seconds()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pause_until = 0.0
        self._statuses: dict[str, tuple[float, RequestStatus | None]] = {}
        self._progress: dict[str, list[int]] = {}
        self._progress_since = 0.0
        self._notice_queued = False
        self._taken_rows = 0
        self._error: BaseException | None = None
        self._remaining: Callable[[], int] = lambda: 0

    def now(self) -> datetime:
        return self._clock()

    # ------------------------------------------------------------------ the run
    def run(self, remaining_ms: Callable[[], int], worker: Worker = Worker()) -> SendReport:
        """One scheduled run: send what is due in this worker's shards until done or out of time.

        Raises the first unexpected error (of a call or of the run itself), after the outcomes of every
        call that finished are written."""
        report = SendReport()
        self._remaining = remaining_ms
        shards = list(shards_for(worker.index, worker.count))
        random.shuffle(shards)  # concurrent runs on the same shards start on different ones
        leases: dict[int, _ShardLease] = {}
        unwritten: set[int] = set()  # shards with outcomes not written: their lease is left to run out
        calls = ThreadPoolExecutor(max_workers=self._settings.concurrency, thread_name_prefix="sender")
        lanes = ThreadPoolExecutor(max_workers=self._settings.shard_parallelism, thread_name_prefix="shard")
        try:
            for _ in range(2):  # a second pass delivers failure notices this pass queued
                self._notice_queued = False
                self._send_shards(shards, leases, unwritten, calls, lanes, report)
                self._flush_progress(report, force=True)
                if report.stopped or not self._time_left():
                    break
                if not (self._sweep(report) or self._notice_queued):
                    break
        except Exception as exc:  # noqa: BLE001 - raised below, once what is known is written
            logger().exception("the sender run ended with an unexpected error")
            self._fail(exc, report)
        finally:
            self._stop.set()
            lanes.shutdown(wait=True, cancel_futures=True)
            calls.shutdown(wait=True, cancel_futures=True)
            for shard, lease in leases.items():
                if shard not in unwritten and not lease.lost:
                    self._release(lease)
            self._flush_progress(report, force=True)
        if self._error is not None:
            raise self._error
        return report

    def _time_left(self) -> bool:
        return self._remaining() / 1000.0 > self._settings.time_margin_seconds

    def _fail(self, error: BaseException, report: SendReport) -> None:
        with self._lock:
            if self._error is None:
                self._error = error
                report.stopped = "error"
        self._stop.set()

    def _stopped(self, report: SendReport, why: str) -> None:
        with self._lock:
            report.stopped = report.stopped or why

    def _take_leases(self, shards: Sequence[int], leases: dict[int, _ShardLease], report: SendReport) -> None:
        for shard in shards:
            if shard in leases:
                continue
            if not self._time_left():
                self._stopped(report, "time budget")
                return
            lease = _ShardLease(self, shard)
            if lease.take(renew=False):
                leases[shard] = lease
                report.shards += 1
            else:
                report.busy_shards += 1

    def _send_shards(
        self,
        shards: Sequence[int],
        leases: dict[int, _ShardLease],
        unwritten: set[int],
        calls: ThreadPoolExecutor,
        lanes: ThreadPoolExecutor,
        report: SendReport,
    ) -> None:
        """Waves over the shards this run holds: each wave reads up to ``wave_size`` due rows of every held
        shard that may have more (one Query each, side by side), sends them all, and writes the outcomes."""
        self._take_leases(shards, leases, report)
        active = [s for s in shards if s in leases and not leases[s].lost]
        while active and not self._stop.is_set():
            if not self._time_left():
                self._stopped(report, "time budget")
                return
            active = [s for s in active if leases[s].ensure(self.lease_seconds / 2)]  # renewed when half gone
            size = self._wave_size()
            if size == 0:
                self._stopped(report, "row limit")
                return
            now = self._clock()
            waves = list(lanes.map(self._due, active, [now] * len(active), [size] * len(active)))
            rows = sorted(
                (row for _, found, _ in waves for row in found),
                key=lambda r: (priority_band(r.priority), r.next_attempt_at, r.request_id, r.recipient),
            )
            if self._settings.max_rows_per_run:
                rows = rows[: self._rows_allowed(len(rows))]
            report.claimed += len(rows)
            active = [s for s, _, more in waves if more]
            if not rows:
                return
            deliveries = self._wave(rows, leases, calls)
            self._write(deliveries, leases, unwritten, report)
            error = next((d.error for d in deliveries if d.error is not None), None)
            if error is not None:
                self._fail(error, report)
                return
            stopped = next((d.stopped for d in deliveries if d.stopped), "")
            if stopped:
                self._stopped(report, stopped)
                return

    def _due(self, shard: int, now: datetime, size: int) -> tuple[int, list[OutboxRow], bool]:
        rows, more = self.outbox.due_wave(shard, now, size, size * 4)
        return shard, rows, more

    def _write(
        self,
        deliveries: list[_Delivery],
        leases: dict[int, _ShardLease],
        unwritten: set[int],
        report: SendReport,
    ) -> None:
        """Writes the wave's outcomes of every shard whose lease still holds (renewed if it is short); a
        shard whose lease was lost gets nothing written (its next holder sends those rows again)."""
        by_shard: dict[int, list[_Outcome]] = {}
        for delivery in deliveries:
            for outcome in delivery.outcomes:
                by_shard.setdefault(outcome.row.shard, []).append(outcome)
        writable: list[_Outcome] = []
        for shard, outcomes in by_shard.items():
            if leases[shard].ensure(WRITE_SECONDS):
                writable += outcomes
                unwritten.add(shard)
                continue
            report.lost_leases += len(outcomes)
            self._stopped(report, "lease lost")
            logger().error(
                "the shard lease was lost before the outcomes were written; the next holder sends these rows again",
                extra={"shard": shard, "rows": len(outcomes)},
            )
        self.outbox.put_batch([o.row for o in writable])
        unwritten.difference_update(by_shard)
        self._count(writable, deliveries, report)
        self._flush_progress(report)

    def _release(self, lease: _ShardLease) -> None:
        try:
            self.outbox.release_shard(lease.shard, self.run_id)
        except Exception:  # noqa: BLE001 - the lease runs out by itself; nothing is lost
            logger().warning(
                "could not give a shard lease back; it frees itself when it runs out",
                extra={"shard": lease.shard, "lease_seconds": self.lease_seconds},
                exc_info=True,
            )

    def _rows_allowed(self, wanted: int) -> int:
        with self._lock:
            allowed = max(0, min(wanted, self._settings.max_rows_per_run - self._taken_rows))
            self._taken_rows += allowed
        return allowed

    def _wave_size(self) -> int:
        cap = self._settings.max_rows_per_run
        if cap and self._taken_rows >= cap:
            return 0
        return self._settings.wave_size

    def _wave(
        self, rows: list[OutboxRow], leases: dict[int, _ShardLease], calls: ThreadPoolExecutor
    ) -> list[_Delivery]:
        plan = plan_calls(
            rows,
            self._settings.batch_identical,
            self._settings.max_personalizations,
            batch_personalized=self._settings.batch_personalized,
        )
        futures: list[Future[_Delivery]] = [calls.submit(self._deliver, unit, leases) for unit in plan]
        wait(futures)
        deliveries = []
        for future, unit in zip(futures, plan, strict=True):
            if future.cancelled():
                deliveries.append(_Delivery(unsent=len(unit), stopped="run ended"))
            else:
                deliveries.append(future.result())  # _deliver never raises
        return deliveries

    def _count(self, outcomes: list[_Outcome], deliveries: list[_Delivery], report: SendReport) -> None:
        with self._lock:
            report.calls += sum(d.calls for d in deliveries)
            for outcome in outcomes:
                setattr(report, outcome.counted, getattr(report, outcome.counted) + 1)
                if outcome.row.kind is RowKind.BULK and outcome.counted in ("sent", "failed"):
                    if not self._progress:
                        self._progress_since = time.monotonic()
                    counts = self._progress.setdefault(outcome.row.request_id, [0, 0])
                    counts[0 if outcome.counted == "sent" else 1] += 1

    # ------------------------------------------------------------------ one call (sender threads)
    def _deliver(self, unit: list[OutboxRow], leases: Mapping[int, _ShardLease]) -> _Delivery:
        """Checks and sends one planned call's rows. Never raises: an unexpected error ends the call with
        the outcomes known so far, the error as a retry on its other rows, and the error itself."""
        delivery = _Delivery()
        attempts: list[OutboxRow] = []
        try:
            now = self._clock()
            retention = self._settings.retention
            for row in unit:
                closed = self._closed(row.request_id) if row.kind is RowKind.BULK else ""
                if closed:
                    delivery.outcomes.append(_Outcome(row.cancelled(closed, now, retention), "cancelled"))
                elif row.tries >= self._settings.max_tries:  # a row of a run that died mid-call, too often
                    error = (
                        f"gave up after {row.tries} tries; last: {row.last_error or 'the run ended before an answer'}"
                    )
                    delivery.outcomes.append(_Outcome(row.failed(error, row.last_status, now, retention), "failed"))
                else:
                    attempts.append(replace(row, tries=row.tries + 1))
            if attempts:
                self._send(attempts, leases, delivery)
        except Exception as exc:  # noqa: BLE001 - recorded on the rows and raised by run() once all is written
            self._end_early(unit, attempts, delivery, exc)
        return delivery

    def _may_call(self, rows: list[OutboxRow], leases: Mapping[int, _ShardLease], delivery: _Delivery) -> bool:
        """Whether a call may start now; if not, its rows stay as they are (due) and the shard stops."""
        why = ""
        if self._stop.is_set():
            why = "run ended"
        elif not self._time_left():
            why = "time budget"
        elif not self._wait_out_pause():
            why = "rate limited"
        elif not all(
            leases[shard].ensure(self._settings.sendgrid.timeout_seconds + WRITE_SECONDS)
            for shard in {row.shard for row in rows}
        ):
            why = "lease lost"
        if why:
            delivery.unsent += len(rows)
            delivery.stopped = delivery.stopped or why
        return not why

    def _end_early(self, unit: list[OutboxRow], attempts: list[OutboxRow], delivery: _Delivery, exc: Exception) -> None:
        delivery.error = exc
        answered = {(o.row.request_id, o.row.recipient) for o in delivery.outcomes}
        tried = {(row.request_id, row.recipient): row for row in attempts}
        unanswered = [  # a row the error came before counts the try all the same
            tried.get((row.request_id, row.recipient)) or replace(row, tries=row.tries + 1)
            for row in unit
            if (row.request_id, row.recipient) not in answered
        ]
        now = self._clock()
        reason = f"unexpected error before sending: {type(exc).__name__}: {exc}"
        delivery.outcomes += [self._retry_or_fail(row, reason, None, None, now) for row in unanswered]
        logger().exception(
            "a call of the sender run ended with an unexpected error; its rows without an answer are retried",
            extra={
                "request_ids": sorted({row.request_id for row in unit}),
                "rows": len(unit),
                "answered": len(answered),
            },
        )

    def _send(self, rows: list[OutboxRow], leases: Mapping[int, _ShardLease], delivery: _Delivery) -> None:
        """Sends one call and adds its outcomes to ``delivery`` as they become known."""
        if not self._may_call(rows, leases, delivery):
            return
        first = rows[0]
        try:
            message, personalizations = self._compose(rows)
            receipt = self._mailer.send(message, personalizations)
        except RetryableSendError as exc:
            delivery.calls += 1
            self._note_pause(exc)
            now = self._clock()
            delivery.outcomes += [self._retry_or_fail(row, str(exc), exc.status, exc.retry_after, now) for row in rows]
            return
        except PermanentSendError as exc:
            delivery.calls += 1
            if len(rows) > 1:  # one bad recipient must not sink the others
                half = (len(rows) + 1) // 2
                parts = [[row] for row in rows] if len(rows) <= SPLIT_ONE_BY_ONE else [rows[:half], rows[half:]]
                for part in parts:
                    self._send(part, leases, delivery)
                return
            now = self._clock()
            delivery.outcomes.append(
                _Outcome(first.failed(str(exc), exc.status, now, self._settings.retention), "failed")
            )
            return
        except ValueError as exc:  # the payload could not be built: nothing to retry
            now = self._clock()
            delivery.outcomes += [
                _Outcome(r.failed(str(exc), None, now, self._settings.retention), "failed") for r in rows
            ]
            return
        delivery.calls += 1
        now = self._clock()
        delivery.outcomes += [
            _Outcome(row.sent(receipt.message_id, now, self._settings.retention), "sent") for row in rows
        ]

    def _compose(self, rows: list[OutboxRow]) -> tuple[MailMessage, list[Personalization]]:
        """One call's message and personalizations: shared content when the rows are identical, else
        content tags the personalizations fill in with their own subject, text and HTML."""
        first = rows[0]
        common: dict[str, Any] = {
            "sender": first.sender,
            "subject": first.subject,
            "reply_to": (first.reply_to,) if first.reply_to else (),
            "headers": first.headers,
            "categories": (first.category,) if first.category else (),
            "custom_args": {"request_id": first.request_id, "kind": first.kind.value},
        }
        if len({row.content_hash for row in rows}) == 1:
            message = MailMessage(text=first.text or None, html=first.html, **common)
            return message, [self._personalization(row) for row in rows]
        text_tag, html_tag = _tags(rows)
        message = MailMessage(text=text_tag if first.text else None, html=html_tag if first.html else None, **common)
        return message, [
            self._personalization(row, subject=row.subject, substitutions=_substitutions(row, text_tag, html_tag))
            for row in rows
        ]

    def _personalization(
        self, row: OutboxRow, *, subject: str | None = None, substitutions: Mapping[str, str] | None = None
    ) -> Personalization:
        headers: Mapping[str, str] = {}
        if row.kind is RowKind.BULK and self._unsubscribe is not None:
            headers = self._unsubscribe.headers(row.to.email, row.request_id)
        return Personalization(
            to=(Address(row.to.email, display_name(row.to.name)),),
            headers=headers,
            custom_args={"recipient": row.recipient},
            subject=subject,
            substitutions=substitutions or {},
        )

    def _retry_or_fail(
        self, row: OutboxRow, error: str, status: int | None, retry_after: float | None, now: datetime
    ) -> _Outcome:
        settings = self._settings
        if row.tries >= settings.max_tries:
            reason = f"gave up after {row.tries} tries; last: {error}"
            return _Outcome(row.failed(reason, status, now, settings.retention), "failed")
        delay = backoff_seconds(
            row.tries,
            settings.backoff_base_seconds,
            settings.backoff_max_seconds,
            retry_after,
            settings.max_retry_after_seconds,
        )
        return _Outcome(row.retry_at(now + timedelta(seconds=delay), error, status), "retried")

    def _wait_out_pause(self) -> bool:
        with self._lock:
            pause = self._pause_until - time.monotonic()
        if pause <= 0:
            return True
        if self._remaining() / 1000.0 - pause <= self._settings.time_margin_seconds:
            return False
        self._sleep(pause)
        return True

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

    # ------------------------------------------------------------------ request progress
    def _flush_progress(self, report: SendReport, *, force: bool = False) -> None:
        """Bumps the requests' progress counters (one write per request) and finishes those that look done."""
        with self._lock:
            if not self._progress or (not force and time.monotonic() - self._progress_since < FLUSH_AFTER_SECONDS):
                return
            progress, self._progress = self._progress, {}
        now = self._clock()
        for request_id, (sent, failed) in progress.items():
            state = self._requests.add_progress(request_id, sent, failed, now)
            if state.looks_done:
                finished = self._completion.try_finish(request_id, now)
                if finished is not None:
                    with self._lock:
                        report.finished.append(request_id)
                        self._notice_queued = self._notice_queued or finished is not RequestStatus.SENT

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


def _tags(rows: Sequence[OutboxRow]) -> tuple[str, str]:
    """A text tag and an HTML tag for one call, found in none of its rows' subject or content: both carry
    the call's token, so a token found in none of them (one pass over each) makes both tags safe."""
    while True:
        token = secrets.token_hex(8)
        if not any(token in part for row in rows for part in (row.subject, row.text, row.html or "")):
            return TEXT_TAG.format(token), HTML_TAG.format(token)
