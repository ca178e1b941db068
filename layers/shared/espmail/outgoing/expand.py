"""The expander (scheduled): due message requests -> one outbox row per recipient address.

For each due request (through the ``pending-by-time`` index, never a scan; highest priority first):

1. **Claim** it with a conditional write and a lease that outlasts this run (the run's remaining time plus
   a margin), so two overlapping runs never expand the same request; if a run dies, the lease runs out
   and the request is due again.
2. **Check** it again: the From domain, the templates (compiled, then rendered once for a sample user),
   every group named. A problem fails this request alone, with the reason stored on it.
3. **Resolve** recipients page by page, render each copy, and write rows with BatchWriteItem (25 a
   request). Addresses are de-duplicated within a user and across users. A class whose sections are
   indexed under it is read through the class index, one Query a page for all its sections.
4. **Checkpoint** every ``checkpoint_rows`` rows (or ``checkpoint_seconds``), at a page boundary, after
   flushing every row of the pages before it. The checkpoint keeps the plan (the parts, in order), so a
   resumed run reads the parts the first one planned, whatever the groups say by then (a section moved
   out of its class meanwhile is added to the plan, to be read on its own). When the
   Lambda's time runs low it checkpoints, releases the lease and stops; the next run resumes at the
   checkpoint.
5. **Finish**: status ``expanded`` with the total; the sender takes it from there.

Why a resumed expansion never writes a row twice nor resets a row already sent, while writing blindly
with BatchWriteItem (which has no conditions):

- the recipient key is a function of the request and the address (``outbox.recipient_key``), so the
  same address always maps to the same row;
- a first attempt of a request (no checkpoint, never claimed before) writes only rows that cannot
  exist yet: the request is new, its lease excludes every other writer (it outlasts the run), and the
  in-memory set of addresses seen this run removes duplicates;
- every later attempt (a resumption, or a retake after a crash) reads, before each batch, which of its
  keys exist (BatchGetItem, consistent; reads cost no write requests) and writes only the others. A row
  that exists is never rewritten, whatever its status (the sender may already have sent it);
- rows are numbered (``seq``) in resolution order, and the checkpoint stores the next number. An
  existing row whose ``seq`` is at or above the checkpoint's was written by the interrupted run after
  its last checkpoint: it is counted as written; one below it is an address an earlier page already
  took: it is counted as a duplicate. So the totals are exact too.

Write requests per 1,000 recipients: 40 BatchWriteItem + one checkpoint per ``checkpoint_rows`` (4 at
the default 250) + the claim and the finish: 46.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from espmail.domain.mail import Address
from espmail.domain.message_requests import MessageRequest, RequestCounts, RequestStatus, SendTo, sender_problem
from espmail.domain.outbox import OutboxRow, RowKind, recipient_key
from espmail.domain.people import Role, User
from espmail.domain.recipients import Directory
from espmail.errors import ConditionFailed, InvalidInput
from espmail.observability import logger
from espmail.outgoing.recipients import Position, addresses_of, pages, plan_from_json, plan_parts, plan_to_json
from espmail.outgoing.render import MessageTemplates, TemplateProblem, template_context
from espmail.outgoing.settings import ExpanderSettings
from espmail.storage.message_requests import ExpansionClaim, MessageRequestRepository
from espmail.storage.outbox import BATCH_WRITE_LIMIT, OutboxRepository

MAX_SKIPPED_SAMPLE = 50
RETRY_AFTER_ERROR = timedelta(minutes=1)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ExpansionState:
    """What the checkpoint stores: where to resume and the counts so far."""

    position: Position = field(default_factory=Position)
    seq: int = 0
    written: int = 0
    skipped: int = 0
    duplicates: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    sample: list[str] = field(default_factory=list)
    plan: list[list[Any]] | None = None  # the parts, as planned by the first run (None: an older checkpoint)

    def skip(self, username: str, reason: str) -> None:
        self.skipped += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if len(self.sample) < MAX_SKIPPED_SAMPLE:
            self.sample.append(f"{username}: {reason}")

    def to_json(self) -> dict[str, Any]:
        return {
            "part": self.position.part,
            "inside": self.position.inside,
            "seq": self.seq,
            "written": self.written,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "reasons": dict(self.reasons),
            "sample": list(self.sample),
            **({"plan": self.plan} if self.plan is not None else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExpansionState:
        return cls(
            position=Position(int(data.get("part", 0)), data.get("inside")),
            seq=int(data.get("seq", 0)),
            written=int(data.get("written", 0)),
            skipped=int(data.get("skipped", 0)),
            duplicates=int(data.get("duplicates", 0)),
            reasons={str(k): int(v) for k, v in dict(data.get("reasons") or {}).items()},
            sample=[str(s) for s in data.get("sample") or []],
            plan=list(data["plan"]) if data.get("plan") is not None else None,
        )

    def counts(self) -> RequestCounts:
        return RequestCounts(
            total=self.written,
            skipped=self.skipped,
            duplicates=self.duplicates,
            skipped_reasons=dict(self.reasons),
        )


@dataclass
class ExpansionReport:
    expanded: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    rows_written: int = 0
    write_requests: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "expanded": self.expanded,
            "paused": self.paused,
            "failed": [{"request_id": r, "error": e} for r, e in self.failed],
            "expired": self.expired,
            "errors": [{"request_id": r, "error": e} for r, e in self.errors],
            "rows_written": self.rows_written,
            "write_requests": self.write_requests,
        }


class _Stop(Exception):
    """This request's expansion ends here (paused, failed or lost); already recorded."""


SAMPLE_USER = User(
    username="sample.user",
    user_id=0,
    email="sample.user@example.org",
    first_name="Sample",
    last_name="User",
    roles=frozenset({Role.STUDENT}),
)


class Expander:
    def __init__(
        self,
        settings: ExpanderSettings,
        requests: MessageRequestRepository,
        outbox: OutboxRepository,
        directory: Directory,
        *,
        clock: Clock = utc_now,
        run_id: str | None = None,
    ) -> None:
        self._settings = settings
        self._requests = requests
        self._outbox = outbox
        self._directory = directory
        self._clock = clock
        self.run_id = run_id or f"expander-{uuid.uuid4()}"

    def run(self, remaining_ms: Callable[[], int]) -> ExpansionReport:
        report = ExpansionReport()
        before = self._requests.write_requests + self._outbox.write_requests

        def time_left() -> float:
            return remaining_ms() / 1000.0 - self._settings.time_margin_seconds

        now = self._clock()
        for request, crashed, started in self._requests.due_for_expansion(now, self._settings.max_requests_per_run):
            if time_left() <= 0:
                break
            now = self._clock()
            overdue = now - request.due_since() > self._settings.max_age
            if overdue and not started and request.status is RequestStatus.PENDING:
                self._expire(request, now, report)
                continue
            lease_until = now + timedelta(seconds=remaining_ms() / 1000.0 + self._settings.lease_margin_seconds)
            claim = self._requests.claim_for_expansion(
                request.request_id, self.run_id, now, lease_until, crashed=crashed
            )
            if claim is None:
                continue  # another run took it
            try:
                self._expand(claim, time_left, report)
            except _Stop:
                pass
            except Exception as exc:  # noqa: BLE001 - one request's trouble must not stop the others
                self._record_error(claim, exc, report)
        report.write_requests = self._requests.write_requests + self._outbox.write_requests - before
        return report

    # ------------------------------------------------------------------ one request
    def _expand(self, claim: ExpansionClaim, time_left: Callable[[], float], report: ExpansionReport) -> None:
        request = claim.request
        if request.crashes >= self._settings.max_crashes:
            self._fail(
                claim,
                f"expansion stopped unexpectedly {request.crashes} times; last error: {request.last_error or 'none recorded'}",
                report,
            )
        problem = sender_problem(request.sender, self._settings.site.allowed_sender_domains)
        if problem:
            self._fail(claim, problem, report)
        state = ExpansionState.from_json(claim.checkpoint) if claim.checkpoint else ExpansionState()
        try:
            templates = MessageTemplates.of(request)
            if state.plan is not None:
                parts = plan_from_json(state.plan, request.recipients)
            else:  # a checkpoint from before plans were kept was planned without the class index
                parts = plan_parts(request.recipients, self._directory, by_class=claim.checkpoint is None)
                state.plan = plan_to_json(parts)
            if claim.checkpoint is None:
                templates.render(self._context(request, SAMPLE_USER, SAMPLE_USER.email, SAMPLE_USER.name, SendTo.SELF))
        except InvalidInput as exc:
            self._fail(claim, str(exc), report)

        check_existing = claim.checkpoint is not None or request.attempts > 1
        resume_seq = state.seq
        seen: set[str] = set()
        buffer: list[OutboxRow] = []
        since_checkpoint = 0
        checkpoint_clock = time.monotonic()

        def flush() -> None:
            nonlocal buffer
            if buffer:
                self._write(request, buffer, state, check_existing, resume_seq)
                report.rows_written += len(buffer)
                buffer = []

        try:
            for page in pages(parts, self._directory, state.position, self._settings.page_size):
                now = self._clock()
                for username in page.missing:
                    state.skip(username, "no such user")
                for user in page.users:
                    recipients, skips, repeated = addresses_of(user, request.sendto)
                    state.duplicates += repeated
                    for skip in skips:
                        state.skip(skip.username, skip.reason)
                    for recipient in recipients:
                        if recipient.address_key in seen:
                            state.duplicates += 1
                            continue
                        seen.add(recipient.address_key)
                        context = self._context(request, user, recipient.email, recipient.name, recipient.kind)
                        buffer.append(
                            self._row(
                                request,
                                templates,
                                context,
                                recipient.email,
                                recipient.name,
                                user,
                                recipient.kind,
                                state.seq,
                                now,
                            )
                        )
                        state.seq += 1
                        since_checkpoint += 1
                        if len(buffer) >= BATCH_WRITE_LIMIT:
                            flush()
                state.position = page.after
                if page.moved:
                    state.plan = plan_to_json(parts)
                    logger().warning(
                        "a group was moved out of its class while the request was expanded; its members are "
                        "read on their own (the duplicate and skipped counts may count some twice)",
                        extra={
                            "request_id": request.request_id,
                            "groups": [p.code for p in parts if p.kind == "group"],
                        },
                    )
                if page.done:
                    break
                due = (
                    since_checkpoint >= self._settings.checkpoint_rows
                    or time.monotonic() - checkpoint_clock >= self._settings.checkpoint_seconds
                )
                if time_left() <= 0:
                    flush()
                    self._requests.pause_expansion(request.request_id, self.run_id, state.to_json(), self._clock())
                    report.paused.append(request.request_id)
                    logger().info(
                        "expansion paused at its time budget",
                        extra={"request_id": request.request_id, "rows": state.written, "position": state.to_json()},
                    )
                    return
                if due:
                    flush()
                    self._requests.save_checkpoint(request.request_id, self.run_id, state.to_json())
                    since_checkpoint = 0
                    checkpoint_clock = time.monotonic()
            flush()
        except TemplateProblem as exc:
            self._fail(claim, str(exc), report, cancel_rows=True)
        except ConditionFailed as exc:
            self._lost(claim, exc, report)

        now = self._clock()
        try:
            self._requests.finish_expansion(
                request.request_id,
                self.run_id,
                counts=state.counts(),
                skipped_sample=state.sample,
                now=now,
                check_at=now,
            )
        except ConditionFailed as exc:
            self._lost(claim, exc, report)
        report.expanded.append(request.request_id)
        logger().info(
            "message request expanded",
            extra={
                "request_id": request.request_id,
                "total": state.written,
                "skipped": state.skipped,
                "duplicates": state.duplicates,
            },
        )
        if state.written == 0:
            reasons = ", ".join(f"{n} {r}" for r, n in sorted(state.reasons.items())) or "nobody matched"
            self._requests.finalize(
                request.request_id, request.round, RequestStatus.FAILED, 0, 0, f"no recipients ({reasons})", now
            )

    def _write(
        self,
        request: MessageRequest,
        rows: list[OutboxRow],
        state: ExpansionState,
        check_existing: bool,
        resume_seq: int,
    ) -> None:
        if check_existing:
            existing = self._outbox.existing(request.request_id, [row.recipient for row in rows])
            fresh = []
            for row in rows:
                found = existing.get(row.recipient)
                if found is None:
                    fresh.append(row)
                elif found.seq >= resume_seq:
                    state.written += 1  # written by the interrupted run after its last checkpoint
                else:
                    state.duplicates += 1  # an address an earlier page already took
            rows = fresh
        if rows:
            self._outbox.put_batch(rows)
            state.written += len(rows)

    def _context(self, request: MessageRequest, user: User, email: str, name: str, kind: SendTo) -> dict[str, Any]:
        return template_context(
            request=request,
            site=self._settings.site,
            user=user,
            recipient_email=email,
            recipient_name=name,
            kind=kind,
        )

    def _row(
        self,
        request: MessageRequest,
        templates: MessageTemplates,
        context: Mapping[str, Any],
        email: str,
        name: str,
        user: User,
        kind: SendTo,
        seq: int,
        now: datetime,
    ) -> OutboxRow:
        rendered = templates.render(context)
        return OutboxRow(
            request_id=request.request_id,
            recipient=recipient_key(request.request_id, email),
            to=Address(email, name),
            sender=request.sender,
            reply_to=request.reply_to,
            headers=request.headers,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            kind=RowKind.BULK,
            username=user.username,
            recipient_kind=kind.value,
            category=self._settings.category,
            priority=request.priority,
            seq=seq,
            created_at=now,
            next_attempt_at=now,
        )

    # ------------------------------------------------------------------ endings
    def _fail(
        self, claim: ExpansionClaim, error: str, report: ExpansionReport, *, cancel_rows: bool = False
    ) -> NoReturn:
        request_id = claim.request.request_id
        now = self._clock()
        ended = self._requests.end(
            request_id, RequestStatus.FAILED, error, now, owner=self.run_id, expect=(RequestStatus.EXPANDING,)
        )
        if cancel_rows or claim.checkpoint is not None or claim.request.attempts > 1:
            self._outbox.cancel_queued(request_id, f"request failed: {error}", now + self._settings.retention)
        report.failed.append((request_id, error))
        logger().warning("message request failed", extra={"request_id": request_id, "error": error, "recorded": ended})
        raise _Stop

    def _lost(self, claim: ExpansionClaim, exc: ConditionFailed, report: ExpansionReport) -> NoReturn:
        request_id = claim.request.request_id
        status = self._requests.status_of(request_id)
        if status is RequestStatus.CANCELLED:
            now = self._clock()
            self._outbox.cancel_queued(request_id, "request cancelled", now + self._settings.retention)
            logger().info("expansion stopped: the request was cancelled", extra={"request_id": request_id})
        else:
            report.errors.append((request_id, str(exc)))
            logger().error("expansion lost its lease", extra={"request_id": request_id, "status": str(status)})
        raise _Stop

    def _expire(self, request: MessageRequest, now: datetime, report: ExpansionReport) -> None:
        age = now - request.due_since()
        reason = (
            f"expired: not expanded within {self._settings.max_age.days} days of when it was due "
            f"({age.days} days ago); nothing was sent"
        )
        if self._requests.end(request.request_id, RequestStatus.EXPIRED, reason, now, expect=(RequestStatus.PENDING,)):
            report.expired.append(request.request_id)
            logger().warning("message request expired", extra={"request_id": request.request_id, "age_days": age.days})

    def _record_error(self, claim: ExpansionClaim, exc: Exception, report: ExpansionReport) -> None:
        request_id = claim.request.request_id
        error = f"{type(exc).__name__}: {exc}"
        report.errors.append((request_id, error))
        logger().exception("expansion failed unexpectedly; it will be retried", extra={"request_id": request_id})
        try:
            self._requests.release_after_error(request_id, self.run_id, error, self._clock() + RETRY_AFTER_ERROR)
        except Exception:  # noqa: BLE001 - the lease runs out by itself; the original error is reported
            logger().exception("could not release the request after an error", extra={"request_id": request_id})
