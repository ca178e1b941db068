"""Moderation: posts the mailgate held (``espmail.incoming.posting``), approved, rejected or expired.

A held post stays in the InboundLog (``holds``, with its decision ``held``) and its raw message in the
raw-mail bucket; its moderators (the class's teachers and the directors' address) get one notice per
message (:func:`notify_moderators`, claimed once in the log before it is sent). Then exactly one of:

- **approve** (``espmail inbound approve ID``, or a signed link through :meth:`Moderation.decide_by_token`):
  a conditional write moves the hold from ``held`` to ``approved``, and the mailgate forwards the list
  through its usual per-list claim (``InboundLog.claim_forward``), so the list is sent once: a second
  approval finds the hold approved and the list sent, and does nothing. An approval whose forwarding
  failed part-way (SendGrid down) is taken up again by the next approve, which sends only what is left;
- **reject**: the hold becomes ``rejected`` and the sender gets one notice (claimed in the log);
- **expire**: a hold still ``held`` after ``hold_hours`` is marked ``expired`` by the scheduled
  :meth:`Moderation.expire_due` and the sender gets one notice. An approval or rejection after the time
  ran out is refused.

Delivery guarantee: the forward of an approved list is at most once per SendGrid request (as any list's);
each notice about a hold is sent at most once, except when SendGrid accepted it and the answer was lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from espmail.domain.inbound import Decision, ForwardState, Hold, HoldState, InboundRecord, RecipientDecision
from espmail.domain.mail import Address, MailMessage, Personalization, SendReceipt
from espmail.errors import InvalidInput, NotFound, PermanentSendError, RetryableSendError
from espmail.incoming.forward import one_line
from espmail.incoming.handlers import display_name
from espmail.incoming.moderation_tokens import ModerationAction, ModerationKeys, TokenRefused
from espmail.observability import logger
from espmail.settings import SiteSettings
from espmail.storage.inbound_log import InboundLog

MAX_QUOTED_TEXT = 4000
ACTIONS_TAG = "-espmail-moderation-actions-"  # replaced per moderator (SendGrid substitutions)


class NoticeMailer(Protocol):
    def send(self, message: MailMessage, personalizations: Sequence[Personalization]) -> SendReceipt: ...


class HeldForwarder(Protocol):
    """The mailgate, forwarding approved posts of a recorded message (see ``Mailgate.forward_approved``)."""

    def forward_approved(self, record: InboundRecord, addresses: Sequence[str]) -> Sequence[RecipientDecision]: ...


@dataclass(frozen=True, slots=True)
class ModerationLinks:
    """Signed approve / reject links to the HTTP edge's moderation route (``base_url?t=<token>``)."""

    base_url: str
    keys: ModerationKeys

    def link(self, hold: Hold, message_id: str, moderator: str, action: ModerationAction) -> str:
        token = self.keys.sign(
            message_id=message_id, address=hold.address, action=action, moderator=moderator, expires_at=hold.expires_at
        )
        separator = "&" if "?" in self.base_url else "?"
        return f"{self.base_url}{separator}t={token}"


@dataclass(frozen=True, slots=True)
class HeldPost:
    """What the mailgate holds for one list address of a message."""

    address: str
    rule: str
    reason: str
    moderators: tuple[Address, ...]


@dataclass(frozen=True, slots=True)
class ModerationResult:
    """What one approve / reject / expire did to one held list."""

    address: str
    result: str
    changed: bool  # this call moved the hold (or forwarded what an earlier approval left)


def _utc_now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------- the notices
def moderator_notice(
    record_id: str,
    holds: Sequence[Hold],
    moderators: Sequence[Address],
    *,
    sender: str,
    subject: str,
    text: str | None,
    site: SiteSettings,
    links: ModerationLinks | None,
) -> tuple[MailMessage, list[Personalization]]:
    """One notice for a message's held posts, one personalization per moderator (each their own links)."""
    lists = ", ".join(h.address for h in holds)
    until = min(h.expires_at for h in holds)
    lines = [
        f"A message to {lists} is waiting for a moderator's decision.",
        "",
        f"  From:     {sender}",
        f"  Subject:  {one_line(subject) or '(no subject)'}",
        f"  Why held: {holds[0].reason}",
        f"  Decide by {until.strftime('%Y-%m-%d %H:%M UTC')}; after that it expires and the sender is told.",
        "",
    ]
    lines_after = [
        "",
        f"Message id {record_id}. A director can also decide with",
        f"  espmail inbound approve {record_id}",
        f"  espmail inbound reject {record_id} --reason '...'",
        "",
        "The message as it was sent (its text; attachments are not shown):",
        "",
    ]
    quoted = (text or "(no text part)").strip()
    if len(quoted) > MAX_QUOTED_TEXT:
        quoted = quoted[:MAX_QUOTED_TEXT] + "\n[...]"
    lines_after += [f"> {line}" if line else ">" for line in quoted.splitlines()]
    lines_after += ["", f"-- {site.name} mail system"]
    personalizations: list[Personalization] = []
    for moderator in moderators:
        if links is not None:
            actions = [
                f"Approve {hold.address}: {links.link(hold, record_id, moderator.email, ModerationAction.APPROVE)}"
                for hold in holds
            ]
            actions += [
                f"Reject {hold.address}: {links.link(hold, record_id, moderator.email, ModerationAction.REJECT)}"
                for hold in holds
            ]
        else:
            actions = ["Ask a director to approve or reject it (the commands below)."]
        personalizations.append(Personalization(to=(moderator,), substitutions={ACTIONS_TAG: "\n".join(actions)}))
    message = MailMessage(
        sender=Address(site.support_address, display_name(f"{site.name} mail system")),
        subject=f"Held for moderation: {one_line(subject) or '(no subject)'}"[:300],
        text="\n".join([*lines, ACTIONS_TAG, *lines_after]),
        headers={"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"},
        categories=("moderation-notice",),
    )
    return message, personalizations


def sender_notice(
    hold: Hold, *, to: str, subject: str, site: SiteSettings, expired: bool
) -> tuple[MailMessage, Personalization]:
    if expired:
        what = f"was held for the moderators of {hold.address} and not approved in time; it was not delivered."
    else:
        what = f"to {hold.address} was not approved by its moderators and was not delivered."
    lines = [f'Your message "{one_line(subject) or "(no subject)"}" {what}']
    if hold.note and not expired:
        lines += ["", f"The moderator's note: {one_line(hold.note)}"]
    lines += [
        "",
        f"Why it was held: {hold.reason}.",
        f"If you think this is a mistake, write to {site.support_address}.",
        "",
        f"-- {site.name} mail system (an automatic notice)",
    ]
    message = MailMessage(
        sender=Address(site.support_address, display_name(f"{site.name} mail system")),
        subject=f"Not delivered: {one_line(subject) or '(no subject)'}"[:300],
        text="\n".join(lines),
        headers={"Auto-Submitted": "auto-replied", "X-Auto-Response-Suppress": "All"},
        categories=("moderation-notice",),
    )
    return message, Personalization(to=(Address(to),))


def notify_moderators(
    log: InboundLog,
    mailer: NoticeMailer,
    record: InboundRecord,
    *,
    moderators: Sequence[Address],
    text: str | None,
    site: SiteSettings,
    links: ModerationLinks | None,
) -> str:
    """The message's one notice to its moderators (claimed in the log first; given back when SendGrid
    could not be reached, so the retry sends it)."""
    holds = [h for h in record.holds if h.state is HoldState.HELD]
    if not holds:
        return ""
    if not log.claim_moderator_notice(record.message_id, "sending"):
        return record.moderator_notice or "sent (by an earlier delivery of this message)"
    people = list({m.email.lower(): m for m in moderators}.values()) or [Address(site.support_address)]
    message, envelopes = moderator_notice(
        record.message_id,
        holds,
        people,
        sender=record.from_address or record.source,
        subject=record.subject,
        text=text,
        site=site,
        links=links,
    )
    try:
        mailer.send(message, envelopes)
    except RetryableSendError:
        log.set_moderator_notice(record.message_id, None)
        raise
    except PermanentSendError as exc:
        logger().error("SendGrid refused a moderators' notice", extra={"message_id": record.message_id})
        what = f"not sent: SendGrid refused it ({exc})"
    else:
        what = f"sent to {len(people)} moderators: {', '.join(p.email for p in people)}"
    log.set_moderator_notice(record.message_id, what)
    return what


# ---------------------------------------------------------------------- the use case
class Moderation:
    """Approve, reject and expire held posts (see the module docstring for the guarantees)."""

    def __init__(
        self,
        *,
        log: InboundLog,
        mailer: NoticeMailer,
        forwarder: HeldForwarder,
        site: SiteSettings,
        keys: ModerationKeys | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.log = log
        self.mailer = mailer
        self.forwarder = forwarder
        self.site = site
        self.keys = keys
        self.clock = clock

    def _record(self, message_id: str) -> InboundRecord:
        record = self.log.get(message_id.strip())
        if record is None:
            raise NotFound(f"no inbound message {message_id!r} in the InboundLog")
        return record

    def _holds(self, record: InboundRecord, address: str | None) -> list[Hold]:
        if not record.holds:
            raise InvalidInput(f"message {record.message_id} has no post held for moderation")
        if address is None:
            return list(record.holds)
        found = record.hold_for(address if "@" in address else f"{address}@{self.site.domain}")
        if found is None:
            held = ", ".join(h.address for h in record.holds)
            raise InvalidInput(f"message {record.message_id} is not held for {address} (held for: {held})")
        return [found]

    def approve(self, message_id: str, *, address: str | None = None, by: str = "") -> list[ModerationResult]:
        """Forwards the held post (every held list of the message, or ``address`` only) exactly once."""
        record = self._record(message_id)
        now = self.clock()
        results: list[ModerationResult] = []
        to_forward: list[str] = []
        for hold in self._holds(record, address):
            won = hold.state is HoldState.HELD and self.log.decide_hold(
                record.message_id, hold.address, HoldState.APPROVED, by=by or "(unnamed)", now=now
            )
            state = HoldState.APPROVED if won else self._state(record.message_id, hold.address)
            if state is not HoldState.APPROVED:
                results.append(ModerationResult(hold.address, self._why_not(record.message_id, hold.address), False))
                continue
            current = record if won else self.log.get(record.message_id)  # an earlier approval may have sent it
            progress = current.forward_for(hold.address) if current is not None else None
            if not won and progress is not None and progress.state is ForwardState.SENT:
                results.append(ModerationResult(hold.address, "already approved and forwarded: nothing done", False))
                continue
            to_forward.append(hold.address)
        if to_forward:
            decisions = {d.address: d for d in self.forwarder.forward_approved(record, to_forward)}
            for address_done in to_forward:
                decision = decisions.get(address_done)
                text = f"approved: {decision.reason}" if decision else "approved"
                results.append(ModerationResult(address_done, text, True))
        self.log.close_hold_queue(record.message_id)
        return results

    def reject(
        self, message_id: str, *, address: str | None = None, by: str = "", reason: str = ""
    ) -> list[ModerationResult]:
        """Rejects the held post; its sender is told once."""
        record = self._record(message_id)
        now = self.clock()
        results: list[ModerationResult] = []
        for hold in self._holds(record, address):
            won = hold.state is HoldState.HELD and self.log.decide_hold(
                record.message_id, hold.address, HoldState.REJECTED, by=by or "(unnamed)", now=now, note=reason
            )
            state = HoldState.REJECTED if won else self._state(record.message_id, hold.address)
            if state is not HoldState.REJECTED:
                results.append(ModerationResult(hold.address, self._why_not(record.message_id, hold.address), False))
                continue
            notice = self._tell_sender(record.message_id, hold.address, expired=False)
            results.append(ModerationResult(hold.address, f"rejected; {notice}" if won else notice, won))
        self.log.close_hold_queue(record.message_id)
        return results

    def decide_by_token(self, token: str) -> list[ModerationResult]:
        """What an HTTP route calls with the token of a moderator's link: checked, then approve or reject
        for that moderator (who must be one of the hold's moderators). A forged, altered or expired token
        raises :class:`TokenRefused` and changes nothing."""
        if self.keys is None:
            raise TokenRefused("moderation links are not enabled on this site")
        claims = self.keys.verify(token, now=self.clock())
        record = self.log.get(claims.message_id)
        hold = record.hold_for(claims.address) if record is not None else None
        if record is None or hold is None or claims.moderator not in hold.moderators:
            raise TokenRefused("this approve / reject link is not valid")
        if claims.action is ModerationAction.APPROVE:
            return self.approve(record.message_id, address=hold.address, by=claims.moderator)
        return self.reject(record.message_id, address=hold.address, by=claims.moderator)

    def expire_due(self, limit: int = 200) -> list[ModerationResult]:
        """Marks every hold whose time has run out ``expired`` and tells its sender once (scheduled)."""
        now = self.clock()
        results: list[ModerationResult] = []
        for record in self.log.due_holds(now, limit=limit):
            for hold in record.holds:
                if hold.state is not HoldState.HELD or hold.expires_at > now:
                    continue
                if self.log.decide_hold(record.message_id, hold.address, HoldState.EXPIRED, by="expiry", now=now):
                    notice = self._tell_sender(record.message_id, hold.address, expired=True)
                    results.append(ModerationResult(hold.address, f"expired; {notice}", True))
            self.log.close_hold_queue(record.message_id)
        return results

    # ------------------------------------------------------------------ helpers
    def _state(self, message_id: str, address: str) -> HoldState | None:
        record = self.log.get(message_id)
        hold = record.hold_for(address) if record else None
        return hold.state if hold else None

    def _why_not(self, message_id: str, address: str) -> str:
        record = self.log.get(message_id)
        hold = record.hold_for(address) if record else None
        if hold is None:
            return "not held"
        if hold.state is HoldState.HELD:
            return f"not decided: its time ran out at {hold.expires_at.isoformat(timespec='minutes')} (it expires)"
        by = f" by {hold.decided_by}" if hold.decided_by else ""
        return f"already {hold.state.value}{by}: nothing done"

    def _tell_sender(self, message_id: str, address: str, *, expired: bool) -> str:
        record = self._record(message_id)
        hold = record.hold_for(address)
        assert hold is not None
        to = record.from_address
        if not to:
            return "no notice: the sender's address is not recorded"
        if not self.log.claim_hold_notice(message_id, address, "sending"):
            return f"the sender was told already ({hold.sender_notice})"
        message, envelope = sender_notice(hold, to=to, subject=record.subject, site=self.site, expired=expired)
        try:
            self.mailer.send(message, [envelope])
        except RetryableSendError:
            self.log.release_hold_notice(message_id, address)
            raise
        except PermanentSendError as exc:
            what = f"not sent: SendGrid refused it ({exc})"
        else:
            what = f"sent to {to}"
        self.log.set_hold_notice(message_id, address, what)
        return f"notice {what}"


def held_posts(decisions: Iterable[RecipientDecision]) -> list[str]:
    return [d.address for d in decisions if d.decision is Decision.HELD]


def hold_until(now: datetime, hours: int) -> datetime:
    return now + timedelta(hours=hours)
