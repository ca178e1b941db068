"""When every row of an expanded request is sent or failed: final status, final counts, and, if any row
failed, one summary notice to the request's creator (ESP #6016 sent it to whoever happened to be last).

The counts come from counting the rows themselves (the request's counters are progress only). The notice
is an outbox row with a deterministic key (``notice#<round>``) written with a conditional put before the
request is made final, so two finishers, or a finisher that crashed in between, still queue exactly one;
the sender then delivers it like any row (at least once).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from espmail.domain.mail import Address
from espmail.domain.message_requests import MAX_PRIORITY, MessageRequest, RequestStatus
from espmail.domain.outbox import OutboxRow, RowKind, notice_key
from espmail.observability import logger
from espmail.outgoing.render import header_value
from espmail.settings import SiteSettings
from espmail.storage.message_requests import MessageRequestRepository
from espmail.storage.outbox import OutboxRepository, RowTally
from espmail.storage.users import UserRepository

MAX_LISTED_FAILURES = 50


def final_status(sent: int, failed: int) -> RequestStatus:
    if failed == 0:
        return RequestStatus.SENT
    return RequestStatus.FAILED if sent == 0 else RequestStatus.SENT_WITH_FAILURES


def notice_text(request: MessageRequest, tally: RowTally, site: SiteSettings) -> str:
    lines = [
        f"Your message request {request.request_id} has finished.",
        "",
        f"  Subject:  {header_value(request.subject)}",
        f"  Sent:     {tally.sent} of {tally.answered}",
        f"  Failed:   {tally.failed}",
        f"  Skipped:  {request.counts.skipped} (users without a usable address, inactive or opted out)",
        "",
        "Why they failed:",
    ]
    reasons = Counter(reason for _, reason in tally.failures)
    lines += [f"  {count} x {reason}" for reason, count in reasons.most_common(10)]
    lines += ["", f"Failed recipients (the first {MAX_LISTED_FAILURES}):"]
    lines += [f"  {address}: {reason}" for address, reason in tally.failures[:MAX_LISTED_FAILURES]]
    lines += [
        "",
        f"To try the failed recipients again: espmail requests retry-failed {request.request_id}",
        "",
        f"-- {site.name} mail ({site.support_address})",
    ]
    return "\n".join(lines) + "\n"


class Completion:
    def __init__(
        self,
        requests: MessageRequestRepository,
        outbox: OutboxRepository,
        users: UserRepository,
        site: SiteSettings,
        *,
        notice_category: str,
        retention: timedelta,
    ) -> None:
        self._requests = requests
        self._outbox = outbox
        self._users = users
        self._site = site
        self._notice_category = notice_category
        self._retention = retention

    def try_finish(self, request_id: str, now: datetime) -> RequestStatus | None:
        """The final status if the request is now final (by this call), else None (rows still open, or
        it is not in ``expanded``)."""
        request = self._requests.get(request_id)
        if request is None or request.status is not RequestStatus.EXPANDED:
            return None
        tally = self._outbox.tally(request_id)
        if tally.open:
            return None
        status = final_status(tally.sent, tally.failed)
        error = ""
        if tally.failed:
            error = f"{tally.failed} of {tally.answered} recipients failed"
            if self._outbox.add_if_absent(self._notice(request, tally, now)):
                logger().info("failure notice queued", extra={"request_id": request_id, "failed": tally.failed})
        if not self._requests.finalize(request_id, request.round, status, tally.sent, tally.failed, error, now):
            return None
        logger().info(
            "message request finished",
            extra={"request_id": request_id, "status": status.value, "sent": tally.sent, "failed": tally.failed},
        )
        return status

    def _notice(self, request: MessageRequest, tally: RowTally, now: datetime) -> OutboxRow:
        creator = self._users.get(request.creator)
        if creator is not None and creator.email:
            to = Address(creator.email, creator.name)
        else:
            logger().warning(
                "the creator of a message request has no address; the failure notice goes to support",
                extra={"request_id": request.request_id, "creator": request.creator},
            )
            to = Address(self._site.support_address, f"{self._site.name} support")
        sender = Address(self._site.support_address, f"{self._site.name} mail")
        subject = header_value(
            f"[{self._site.name}] {tally.failed} of {tally.answered} messages not delivered: {request.subject}"
        )
        text = notice_text(request, tally, self._site)
        headers = {"Auto-Submitted": "auto-generated", "X-ESPMail-Request": request.request_id}
        return OutboxRow(
            request_id=request.request_id,
            recipient=notice_key(request.round),
            to=to,
            sender=sender,
            subject=subject,
            text=text,
            headers=headers,
            created_at=now,
            next_attempt_at=now,
            kind=RowKind.NOTICE,
            username=request.creator,
            recipient_kind="creator",
            category=self._notice_category,
            priority=MAX_PRIORITY,
        )
