"""The mailgate use case: one SES receipt in, each recipient address forwarded, refused or dropped
(DESIGN.md, "Incoming pipeline", steps 1-11).

Delivery guarantee, per list address of a message:

- a message is recorded in InboundLog by SES ``messageId`` with a conditional write; a delivery of a
  message already handled (SES and Lambda's async retries both deliver twice) does nothing;
- a list is claimed with a conditional write before anything is sent and each SendGrid request
  (up to 1,000 recipients) is recorded as it is accepted, so a redelivery never sends a recorded request
  again, and two concurrent deliveries never both send to a list;
- a transient failure (S3, DynamoDB, SendGrid 429/5xx/timeout) raises after recording it, so Lambda's
  async retries and then the on-failure queue take over, and the retry sends only what is left;
- a list found claimed by another delivery under an unexpired lease is not this delivery's to send, but
  it is not done either: the holder may be working (a duplicate delivery running at the same time) or
  may have died after claiming (out of memory, a timeout, the sandbox killed). So the delivery does all
  the rest, records it, and then raises :class:`ListHeld`; Lambda's retries, then the on-failure queue
  and ``espmail inbound redrive``, come back to it. A holder that finished leaves the message ``done``
  and the retry does nothing; a holder that died leaves its lease, and the first delivery after the
  lease has run out claims the list and sends what the holder had not recorded as sent.

The lease and Lambda's retry timing. A list is claimed for ``60 + 3 x SendGrid timeout x requests``
seconds (90 s for one request at the default 10 s timeout): long enough for a live holder to send every
request and record it, so no second delivery sends while the holder still may. A holder that raises
gives its claim back at once (the list is marked failed); only a holder that dies holds it to the end.
Lambda retries a failed asynchronous invocation about 1 minute after the failure, then about 2 minutes
after that, so after a holder died just after claiming:

- the first retry (~60 s) finds the lease running and raises ``ListHeld`` again;
- the second retry (~180 s) finds it expired and sends, for a list of up to 3 requests (3,000
  recipients): ``60 + 30 x 3 = 150 s``;
- a larger list's lease outlasts both retries: the event goes to the on-failure queue (its depth raises
  the alarm) and ``espmail inbound redrive``, run after the lease has expired, sends it.

A holder that timed out died at its deadline; its first retry, about a minute later, finds the list free
unless the holder claimed it less than ``lease - 60 s`` before that deadline (then the second retry does).

One bad address costs only its own recipient. A list member whose address is not a valid address is
left out before SendGrid sees it; a request SendGrid refuses with a 400 (an address it will not take)
is sent again in halves, and each refused half halved again, until every part is accepted or is the one
recipient SendGrid refuses. The halves are always the same, and each accepted part is recorded as it
is accepted, so a retry goes on with the parts not yet sent and never sends one twice. The halving is
bounded (``MAX_SPLIT_REQUESTS`` more requests per list, and never past the list's lease); recipients
it did not reach are named with the reason. Any other refusal (401, 403: the account; 413: the size)
stops the list: halving would not help.

So forwarding is at most once per list and request, but for one case that no client can rule out: a
request SendGrid accepted whose answer was lost (a timeout, a dropped connection, a crash between the
answer and its record) is sent again by the retry. Nothing is dropped silently: every address gets a
decision and a reason in InboundLog, and a list's decision names (``skipped``) each of its recipients
that did not get the message, and why; refusals reach registered, authenticated senders as a notice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any, Protocol

from espmail.domain.inbound import (
    Decision,
    ForwardState,
    InboundRecord,
    InboundStatus,
    RecipientDecision,
    overall_decision,
    overall_reason,
)
from espmail.domain.list_rules import ListRule, RuleProblem
from espmail.domain.mail import Address, MailMessage, Personalization, SendReceipt
from espmail.domain.people import User
from espmail.domain.words import counted
from espmail.errors import ConditionFailed, PermanentSendError, RetryableSendError
from espmail.incoming.events import CommonHeaders, SesReceipt, StoredAt, Verdict, Verdicts
from espmail.incoming.forward import (
    ForwardPlan,
    forwarded_message,
    html_to_text,
    largest_request,
    list_id,
    own_list_ids,
    request_bodies,
    request_json,
    request_part,
    request_recipients,
)
from espmail.incoming.handlers import HANDLERS, Directories, HandlerResult, user_address
from espmail.incoming.identity import Sender, domain_of, identify_sender, within
from espmail.incoming.moderation import HeldPost, ModerationLinks, notify_moderators
from espmail.incoming.notices import Refusal, refusal_notice
from espmail.incoming.posting import Posting, judge_posting
from espmail.incoming.rules import RuleMatcher
from espmail.incoming.settings import MailgateSettings, SpamPolicy
from espmail.mime import (
    ConvertedMail,
    convert,
    estimate_sendgrid_size,
    parse_message,
    safe_header_all,
    to_sendgrid_attachments,
)
from espmail.mime.parse import raw_header_all
from espmail.observability import logger
from espmail.storage.inbound_log import MAX_LOGGED_RECIPIENTS, InboundLog

SES_TIMESTAMP_WINDOW = timedelta(days=30)
NOTICE_KEEP = timedelta(days=2)
# Requests a list may take beyond its own after SendGrid refused some: each refused address costs about
# 2 x log2(recipients of its request), 20 for a request of 1,000.
MAX_SPLIT_REQUESTS = 64


class ListHeld(ConditionFailed):
    """A list of the message is claimed by another delivery whose lease has not run out: raised after
    everything else was done and recorded, so Lambda's retries (then the on-failure queue) come back."""

    def __init__(self, message_id: str, held: Sequence[tuple[str, int]]) -> None:
        self.message_id = message_id
        self.held = tuple(held)
        lists = ", ".join(
            f"{address} until {datetime.fromtimestamp(until, UTC).isoformat(timespec='seconds')}"
            for address, until in self.held
        )
        super().__init__(
            f"held by another delivery of this message (retried until it finishes or its lease runs out): {lists}"
        )


class RuleSource(Protocol):
    def load(self) -> tuple[list[ListRule], list[RuleProblem]]: ...


class RawMail(Protocol):
    def fetch(self, key: str) -> bytes: ...


class Mailer(Protocol):
    """SendGrid as the mailgate uses it. A mailer that also has ``send_json(body: bytes)`` (the real one
    does) is handed each request serialised once, by :func:`request_json`, rather than as a dict."""

    def send(self, message: MailMessage, personalizations: Sequence[Personalization]) -> SendReceipt: ...

    def send_payload(self, payload: dict[str, Any]) -> SendReceipt: ...


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where mail to one address goes, and why (``explain`` answers with this, nothing is sent)."""

    address: str
    decision: Decision
    reason: str
    rule: ListRule | None = None
    recipients: tuple[Address, ...] = ()
    class_code: str = ""
    list_name: str = ""
    member_usernames: frozenset[str] = frozenset()
    tried: tuple[str, ...] = ()  # "rule: why it yielded nobody", in order
    problems: tuple[RuleProblem, ...] = ()  # rules skipped as broken or too slow
    skipped: tuple[str, ...] = ()  # "address: why" for each member address left out as unusable
    moderators: tuple[Address, ...] = ()  # who decides on a post held for the list (decision HELD)

    @property
    def list_id(self) -> str:
        return list_id(self.address) if self.decision is Decision.FORWARDED else ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one delivery of a message came to."""

    message_id: str
    decisions: tuple[RecipientDecision, ...]
    repeated: bool = False  # the message had been handled already: nothing was done this time
    notice: str = ""

    @property
    def decision(self) -> Decision | None:
        return overall_decision(self.decisions)

    @property
    def reason(self) -> str:
        return overall_reason(self.decisions)

    @property
    def forwarded_to(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a for d in self.decisions for a in d.forwarded_to))

    def as_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "decision": self.decision.value if self.decision else None,
            "reason": self.reason,
            "repeated": self.repeated,
            "notice": self.notice,
            "recipients": [
                {
                    "address": d.address,
                    "decision": d.decision.value,
                    "reason": d.reason,
                    "rule": d.rule,
                    "fan_out": d.fan_out,
                    "skipped": list(d.skipped),
                }
                for d in self.decisions
            ],
        }


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Delivery:
    """The working state of one delivery of one message."""

    receipt: SesReceipt
    now: datetime
    decisions: dict[str, RecipientDecision] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)  # site addresses still without a decision
    refusals: list[Refusal] = field(default_factory=list)
    held: list[tuple[str, int]] = field(default_factory=list)  # (list, lease_until) in another delivery's hands

    def decide(self, address: str, decision: Decision, reason: str, **extra: Any) -> None:
        self.decisions[address] = RecipientDecision(address, decision, reason, **extra)
        if address in self.pending:
            self.pending.remove(address)

    def decide_all(self, decision: Decision, reason: str) -> None:
        for address in list(self.pending):
            self.decide(address, decision, reason)


@dataclass
class _Split:
    """One list's requests sent in parts after SendGrid refused them (see ``Mailgate._send_parts``)."""

    message_id: str
    address: str
    lease_until: int
    ids: list[str]  # SendGrid message ids of the list, in order
    requests: int = 0  # parts sent so far (at most MAX_SPLIT_REQUESTS)
    missed: dict[str, str] = field(default_factory=dict)  # lower-cased address -> "address: why"

    def miss(self, addresses: Iterable[str], why: str) -> None:
        for email in addresses:
            self.missed.setdefault(email.lower(), f"{email}: {why}")


class Mailgate:
    def __init__(
        self,
        settings: MailgateSettings,
        *,
        directories: Directories,
        rules: RuleSource,
        log: InboundLog,
        raw_mail: RawMail,
        mailer: Mailer,
        clock: Callable[[], datetime] = _utc_now,
        moderation_links: ModerationLinks | None = None,
    ) -> None:
        self.settings = settings
        self.site = settings.site
        self.directories = directories
        self.rules = rules
        self.log = log
        self.raw_mail = raw_mail
        self.mailer = mailer
        self.clock = clock
        self.moderation_links = moderation_links

    # ------------------------------------------------------------------ public API
    def explain(self, address: str, sender: str | None = None) -> Resolution:
        """Which rule takes mail to ``address``, who would receive it, or why it would be refused.

        ``sender`` is a From address, taken as authenticated; without one the rules are judged for a
        registered sender who is neither teacher nor admin. Nothing is sent or recorded.
        """
        address = address.strip().lower()
        if "@" not in address:
            address = f"{address}@{self.site.domain}"
        if sender:
            who = identify_sender(
                sender,
                "",
                Verdicts(dmarc=Verdict.PASS),
                envelope_sender=sender,
                dkim_signatures=(),
                users=self.directories.users,
            )
            if not who.known:
                return Resolution(address, Decision.REFUSED, f"unknown sender: {who.reason}")
        else:
            who = Sender("", "", User("(any registered sender)", 0, ""), True, True, "assumed")
        return self._resolve(address, who, self._matcher())

    def receive(self, receipt: SesReceipt) -> Outcome:
        """Handles one delivery of one received message (see the module docstring for the guarantee)."""
        now = self.clock()
        key = receipt.object_key(self.settings.raw_mail_prefix)
        record, first = self.log.begin(
            receipt.message_id,
            received_at=_received_at(receipt, now),
            now=now,
            source=receipt.source,
            recipients=receipt.recipients,
            s3_key=key,
            subject=receipt.common_headers.subject,
            verdicts=receipt.verdicts.as_dict(),
        )
        if not first and record.status is InboundStatus.DONE:
            logger().info(
                "message already handled; this delivery does nothing",
                extra={"message_id": receipt.message_id, "attempts": record.attempts},
            )
            return Outcome(receipt.message_id, record.decisions, repeated=True, notice=record.notice)
        try:
            return self._handle(receipt, key, now)
        except Exception as exc:
            logger().exception(
                "mailgate attempt failed; Lambda's retries take over", extra={"message_id": receipt.message_id}
            )
            try:
                self.log.record_failure(receipt.message_id, f"{type(exc).__name__}: {exc}", now=self.clock())
            except Exception:  # noqa: BLE001 - the original error is raised; this one is logged with it
                logger().exception("could not record the failure", extra={"message_id": receipt.message_id})
            raise

    def forward_approved(self, record: InboundRecord, addresses: Sequence[str]) -> tuple[RecipientDecision, ...]:
        """Forwards the posts to ``addresses`` a moderator approved (``espmail.incoming.moderation``): the
        message is handled again from its raw copy, for those addresses only and without the posting
        check; each list goes through the usual per-list claim, so it is sent once."""
        receipt = SesReceipt(
            message_id=record.message_id,
            source=record.source,
            timestamp=record.received_at.isoformat(),
            destination=tuple(addresses),
            recipients=tuple(addresses),
            common_headers=CommonHeaders(subject=record.subject),
            headers=(),
            headers_truncated=False,
            verdicts=Verdicts.from_dict(record.verdicts),
            action_type="Lambda",
            stored_at=StoredAt(None, record.s3_key or None),
        )
        outcome = self._handle(receipt, receipt.object_key(self.settings.raw_mail_prefix), self.clock(), approved=True)
        return outcome.decisions

    # ------------------------------------------------------------------ steps
    def _handle(self, receipt: SesReceipt, key: str, now: datetime, *, approved: bool = False) -> Outcome:
        delivery = _Delivery(receipt, now)
        for address in dict.fromkeys(r.strip().lower() for r in receipt.recipients if r.strip()):
            if domain_of(address) == self.site.domain:
                delivery.pending.append(address)
            else:
                delivery.decide(address, Decision.DROPPED, f"{address} is not an address of {self.site.domain}")
        if not self._screen(delivery):
            return self._finish(delivery)
        raw = self.raw_mail.fetch(key)
        parsed = parse_message(raw)
        converted = convert(parsed)
        if not self._loop_free(delivery, parsed, converted):
            return self._finish(delivery)
        sender = self._identify(delivery, parsed, converted, len(raw))
        # Only the conversion is needed from here on: the source and its parsed tree (each about the
        # message's size) are let go before the request bodies are built and sent.
        del raw, parsed
        if not sender.known:
            delivery.decide_all(Decision.REFUSED, f"unknown sender: {sender.reason}")
            return self._finish(delivery, notice="none: the sender is not a registered, authenticated account")
        matcher = self._matcher()
        plans: list[tuple[str, Resolution]] = []
        held: list[HeldPost] = []
        for address in list(delivery.pending):
            resolution = self._resolve(address, sender, matcher, approved=approved)
            if resolution.skipped:
                logger().warning(
                    "list members left out: not valid addresses",
                    extra={"message_id": receipt.message_id, "list": address, "skipped": list(resolution.skipped)},
                )
            if resolution.decision is Decision.FORWARDED:
                plans.append((address, resolution))
            elif resolution.decision is Decision.HELD and resolution.rule is not None:
                held_by = resolution.rule
                held.append(HeldPost(address, held_by.name, resolution.reason, resolution.moderators))
                delivery.decide(
                    address, Decision.HELD, resolution.reason, rule=held_by.name, handler=held_by.handler.value
                )
            else:
                rule = resolution.rule.name if resolution.rule else ""
                delivery.decide(address, Decision.REFUSED, resolution.reason, rule=rule, skipped=resolution.skipped)
                delivery.refusals.append(Refusal(address, resolution.reason))
        for problem in matcher.problems:
            logger().warning("list rule skipped", extra={"problem": str(problem), "message_id": receipt.message_id})
        least = estimate_sendgrid_size(converted)  # the content alone, before any envelope
        attachments: list[dict[str, str]] = []
        if plans and least <= self.settings.max_request_bytes:
            # Encoded once for every list and request; the decoded bytes are not needed after that.
            attachments = to_sendgrid_attachments(converted.attachments)
            converted = replace(converted, attachments=())
        self._forward_all(delivery, plans, sender, converted, least=least, attachments=attachments)
        if held:
            self._hold(delivery, held, converted)
        outcome = self._finish(delivery, notice=self._notify(delivery, sender, converted))
        if delivery.held:
            raise ListHeld(receipt.message_id, delivery.held)
        return outcome

    def _screen(self, delivery: _Delivery) -> bool:
        """Step 2: virus FAIL, and spam FAIL unless the policy forwards spam, are dropped."""
        verdicts = delivery.receipt.verdicts
        if verdicts.virus is Verdict.FAIL:
            delivery.decide_all(Decision.DROPPED, "virus verdict FAIL")
        elif verdicts.spam is Verdict.FAIL and self.settings.spam_policy is SpamPolicy.DROP:
            delivery.decide_all(Decision.DROPPED, "spam verdict FAIL (spam policy: drop)")
        if not delivery.pending:
            logger().info(
                "message dropped", extra={"message_id": delivery.receipt.message_id, "verdicts": verdicts.as_dict()}
            )
        return bool(delivery.pending)

    def _own(self, address: str) -> bool:
        address = address.strip().lower()
        return bool(address) and (address in self.site.own_addresses or within(domain_of(address), self.site.domain))

    def _loop_free(self, delivery: _Delivery, parsed: EmailMessage, converted: ConvertedMail) -> bool:
        """Step 4: this site's List-Id, the system's own From or envelope, or this address's Delivered-To."""
        for value in safe_header_all(parsed, "list-id"):
            identifier = value.rpartition("<")[2].rstrip(">").strip().lower() if "<" in value else value.strip().lower()
            if identifier.endswith(own_list_ids(self.site)):
                delivery.decide_all(Decision.DROPPED, f"loop: the message carries this site's List-Id {identifier}")
                return False
        from_address = converted.from_address.email if converted.from_address else ""
        for what, address in (("From", from_address), ("envelope sender", delivery.receipt.source)):
            if self._own(address):
                delivery.decide_all(
                    Decision.DROPPED, f"loop: the {what} {address.lower()} is this system's own address"
                )
                return False
        delivered = {a.strip().lower() for _, a in getaddresses(safe_header_all(parsed, "delivered-to")) if a}
        for address in list(delivery.pending):
            if address in delivered:
                delivery.decide(address, Decision.DROPPED, f"loop: the message was already delivered to {address}")
        if not delivery.pending:
            logger().info("message dropped as a loop", extra={"message_id": delivery.receipt.message_id})
        return bool(delivery.pending)

    def _identify(self, delivery: _Delivery, parsed: EmailMessage, converted: ConvertedMail, size: int) -> Sender:
        """Step 5: the From, looked up and counted only when authenticated."""
        from_address = converted.from_address
        sender = identify_sender(
            from_address.email if from_address else "",
            from_address.name if from_address else "",
            delivery.receipt.verdicts,
            envelope_sender=delivery.receipt.source,
            dkim_signatures=safe_header_all(parsed, "dkim-signature"),
            users=self.directories.users,
            from_headers=raw_header_all(parsed, "from"),
        )
        self.log.record_sender(
            delivery.receipt.message_id,
            from_address=sender.address,
            sender_username=sender.account.username if sender.account else "",
            authenticated=sender.authenticated,
            auth_reason=sender.reason,
            size=size,
        )
        return sender

    def _matcher(self) -> RuleMatcher:
        rules, problems = self.rules.load()
        return RuleMatcher(rules, timeout=self.settings.regex_timeout_seconds, problems=list(problems))

    def _hold(self, delivery: _Delivery, held: Sequence[HeldPost], converted: ConvertedMail) -> None:
        """Posts the rule's posting policy holds: kept in the log, one notice to their moderators."""
        message_id = delivery.receipt.message_id
        expires_at = delivery.now + timedelta(hours=self.settings.moderation_hold_hours)
        moderators: dict[str, Address] = {}
        for post in held:
            for moderator in post.moderators:
                moderators.setdefault(moderator.email.lower(), moderator)
            self.log.record_hold(
                message_id,
                post.address,
                rule=post.rule,
                reason=post.reason,
                moderators=[m.email for m in post.moderators] or [self.site.support_address],
                expires_at=expires_at,
                now=delivery.now,
            )
            logger().info("held for moderation", extra={"message_id": message_id, "list": post.address})
        record = self.log.get(message_id)
        assert record is not None
        text = converted.text if converted.text is not None or converted.html is None else html_to_text(converted.html)
        notify_moderators(
            self.log,
            self.mailer,
            record,
            moderators=list(moderators.values()),
            text=text,
            site=self.site,
            links=self.moderation_links,
        )

    def _resolve(self, address: str, sender: Sender, matcher: RuleMatcher, *, approved: bool = False) -> Resolution:
        """Step 6: the first rule, in ``seq`` order, whose regex matches and whose handler yields; then the
        rule's posting policy (not for a post a moderator ``approved``)."""
        local, _, domain = address.rpartition("@")
        if domain != self.site.domain or not local:
            return Resolution(address, Decision.REFUSED, f"{address} is not an address of {self.site.domain}")
        tried: list[str] = []
        skipped: dict[str, None] = {}
        for match in matcher.matches(local):
            handler = HANDLERS[match.rule.handler]
            result: HandlerResult = handler(match, local, sender, self.directories, self.site.domain)
            skipped.update(dict.fromkeys(result.skipped))
            if result.yields and not approved:
                account = sender.account
                member = account is not None and (
                    account.username in result.member_usernames
                    or account.email.lower() in {r.email.lower() for r in result.recipients}
                )
                verdict = judge_posting(
                    match.rule,
                    sender,
                    address,
                    member=member,
                    teacher_usernames=result.teacher_usernames,
                    directors_email=result.directors_email,
                )
                if verdict.posting is not Posting.POST:
                    return Resolution(
                        address,
                        Decision.HELD if verdict.posting is Posting.HOLD else Decision.REFUSED,
                        verdict.reason,
                        rule=match.rule,
                        recipients=result.recipients,
                        class_code=result.class_code,
                        list_name=result.list_name,
                        tried=tuple(tried),
                        problems=tuple(matcher.problems),
                        moderators=result.moderators,
                    )
            if result.yields:
                return Resolution(
                    address,
                    Decision.FORWARDED,
                    f"rule {match.rule.name} ({match.rule.handler.value}): {counted(len(result.recipients), 'recipient')}",
                    rule=match.rule,
                    recipients=result.recipients,
                    class_code=result.class_code,
                    list_name=result.list_name,
                    member_usernames=result.member_usernames,
                    tried=tuple(tried),
                    problems=tuple(matcher.problems),
                    skipped=result.skipped,
                )
            tried.append(f"{match.rule.name}: {result.reason}")
        reason = f"no list rule takes mail for {local}" + (f" ({'; '.join(tried)})" if tried else " (no rule matches)")
        return Resolution(
            address,
            Decision.REFUSED,
            reason,
            tried=tuple(tried),
            problems=tuple(matcher.problems),
            skipped=tuple(skipped),
        )

    # ------------------------------------------------------------------ forwarding
    def _forward_all(
        self,
        delivery: _Delivery,
        plans: Sequence[tuple[str, Resolution]],
        sender: Sender,
        converted: ConvertedMail,
        *,
        least: int,
        attachments: list[dict[str, str]],
    ) -> None:
        """Steps 8-10 for every list, each recipient once per message (the first list that reaches them).

        ``least`` is the size of a request before its envelope (``estimate_sendgrid_size``);
        ``attachments`` the converted attachments as SendGrid takes them, shared by every request.
        """
        account = sender.account
        assert account is not None
        text = converted.text if converted.text is not None or converted.html is None else html_to_text(converted.html)
        reached: set[str] = set()
        for address, resolution in plans:
            assert resolution.rule is not None
            recipients = tuple(r for r in resolution.recipients if r.email.lower() not in reached)
            base = {
                "rule": resolution.rule.name,
                "handler": resolution.rule.handler.value,
                "list_id": list_id(address),
                "skipped": resolution.skipped,
            }
            if not recipients:
                delivery.decide(
                    address, Decision.FORWARDED, "every recipient already received it through another address", **base
                )
                continue
            member = account.username in resolution.member_usernames or account.email.lower() in {
                r.email.lower() for r in resolution.recipients
            }
            plan = ForwardPlan(
                address, resolution.rule, recipients, resolution.class_code, resolution.list_name, member
            )
            message = forwarded_message(
                converted,
                plan,
                sender_username=account.username,
                sender_name=account.name,
                site=self.site,
                ses_message_id=delivery.receipt.message_id,
                text=text,
            )
            bodies: list[dict[str, Any]] = []
            if least <= self.settings.max_request_bytes:
                bodies = request_bodies(message, converted, plan, attachments=attachments)
            size = largest_request(bodies) if bodies else least
            if size > self.settings.max_request_bytes:
                reason = (
                    f"too large: forwarding it takes a {readable_size(size)} request; "
                    f"at most {readable_size(self.settings.max_request_bytes)} can be sent"
                )
                delivery.decide(address, Decision.REFUSED, reason, **base)
                delivery.refusals.append(Refusal(address, reason, too_large=True))
                continue
            decided = self._send_list(delivery, plan, bodies)
            if decided is None:
                delivery.pending.remove(address)
                continue
            extra = {**_extra(decided), **base, "skipped": resolution.skipped + decided.skipped}
            delivery.decide(address, decided.decision, decided.reason, **extra)
            if decided.decision is Decision.FORWARDED:
                reached.update(r.email.lower() for r in recipients)

    def _post(self, body: dict[str, Any]) -> SendReceipt:
        send_json: Callable[[bytes], SendReceipt] | None = getattr(self.mailer, "send_json", None)
        if send_json is None:
            return self.mailer.send_payload(body)
        return send_json(request_json(body))

    def _lease_until(self, batches: int) -> int:
        seconds = 60 + 3 * self.settings.sendgrid.timeout_seconds * max(1, batches)
        return int(self.clock().timestamp() + seconds)

    def _send_list(
        self, delivery: _Delivery, plan: ForwardPlan, bodies: Sequence[dict[str, Any]]
    ) -> RecipientDecision | None:
        """Sends one list's requests under its claim; None when another delivery holds the list (noted in
        ``delivery.held``)."""
        message_id = delivery.receipt.message_id
        address = plan.list_address
        forwarded_to = tuple(r.email for r in plan.recipients[:MAX_LOGGED_RECIPIENTS])
        fan_out = len(plan.recipients)
        lease_until = self._lease_until(len(bodies))
        claimed, progress = self.log.claim_forward(
            message_id, address, batches=len(bodies), lease_until=lease_until, now=self.clock()
        )
        if not claimed:
            if progress is not None and progress.state is ForwardState.SENT:
                return RecipientDecision(
                    address,
                    Decision.FORWARDED,
                    f"forwarded to {counted(fan_out, 'recipient')} (by an earlier delivery of this message)",
                    fan_out=fan_out,
                    forwarded_to=forwarded_to,
                    sendgrid_message_ids=progress.sendgrid_message_ids,
                )
            holder_lease = progress.lease_until if progress is not None else 0
            logger().warning(
                "list held by another delivery: left to it, this delivery will raise for a retry",
                extra={"message_id": message_id, "list": address, "lease_until": holder_lease},
            )
            delivery.held.append((address, holder_lease))
            return None
        assert progress is not None
        ids = list(progress.sendgrid_message_ids)
        todo = [i for i in range(len(bodies)) if i not in progress.sent_batches]
        if progress.attempts > 1 and todo:
            logger().warning(
                "retrying a list: requests recorded as sent are skipped, the others sent",
                extra={"message_id": message_id, "list": address, "sent": sorted(progress.sent_batches)},
            )
        split = _Split(message_id, address, lease_until, ids)
        for i in todo:
            try:
                parts = set(progress.parts_sent(i))
                if parts:  # an earlier attempt was splitting this request: go on where it stopped
                    self._send_parts(split, i, bodies[i], parts, (0, len(request_recipients(bodies[i]))), None)
                    self.log.mark_batch_sent(message_id, address, i, "", last=i == todo[-1])
                    continue
                try:
                    receipt = self._post(bodies[i])
                except PermanentSendError as exc:
                    if exc.status != 400:
                        raise
                    logger().warning(
                        "SendGrid refused a request of a list: sent again in halves, so only the refused "
                        "recipients miss it",
                        extra={"message_id": message_id, "list": address, "request": i, "error": str(exc)},
                    )
                    self._send_parts(split, i, bodies[i], parts, (0, len(request_recipients(bodies[i]))), exc)
                    self.log.mark_batch_sent(message_id, address, i, "", last=i == todo[-1])
                    continue
            except RetryableSendError as exc:
                self.log.mark_forward_failed(message_id, address, str(exc), now=self.clock())
                raise
            except PermanentSendError as exc:
                self.log.mark_forward_failed(message_id, address, str(exc), now=self.clock())
                logger().error(
                    "SendGrid refused a forward", extra={"message_id": message_id, "list": address, "error": str(exc)}
                )
                if exc.status == 413:
                    reason = "too large: SendGrid refused the request as too large"
                    delivery.refusals.append(Refusal(address, reason, too_large=True))
                    return RecipientDecision(address, Decision.REFUSED, reason)
                sent = len(ids)
                return RecipientDecision(
                    address,
                    Decision.DROPPED if not sent else Decision.FORWARDED,
                    f"SendGrid refused request {i + 1} of {len(bodies)}: {exc}",
                    fan_out=fan_out if sent else 0,
                    forwarded_to=forwarded_to if sent else (),
                    sendgrid_message_ids=tuple(ids),
                    skipped=tuple(split.missed.values()),
                )
            ids.append(receipt.message_id)
            self.log.mark_batch_sent(message_id, address, i, receipt.message_id, last=i == todo[-1])
        if not todo:
            self.log.mark_forward_sent(message_id, address, now=self.clock())
        if not split.missed:
            logger().info("forwarded", extra={"message_id": message_id, "list": address, "fan_out": fan_out})
            return RecipientDecision(
                address,
                Decision.FORWARDED,
                f"forwarded to {counted(fan_out, 'recipient')}",
                fan_out=fan_out,
                forwarded_to=forwarded_to,
                sendgrid_message_ids=tuple(ids),
            )
        missed = tuple(split.missed.values())
        reached = tuple(r.email for r in plan.recipients if r.email.lower() not in split.missed)
        logger().warning(
            "SendGrid refused recipients of a list; the others were sent it",
            extra={
                "message_id": message_id,
                "list": address,
                "fan_out": len(reached),
                "missed": len(missed),
                "first_missed": list(missed[:20]),
                "split_requests": split.requests,
            },
        )
        if not reached:
            return RecipientDecision(
                address,
                Decision.DROPPED,
                f"SendGrid refused every recipient ({len(missed)}): {missed[0]}",
                skipped=missed,
            )
        return RecipientDecision(
            address,
            Decision.FORWARDED,
            f"forwarded to {counted(len(reached), 'recipient')}; {len(missed)} refused by SendGrid",
            fan_out=len(reached),
            forwarded_to=reached[:MAX_LOGGED_RECIPIENTS],
            sendgrid_message_ids=tuple(ids),
            skipped=missed,
        )

    def _send_parts(
        self,
        split: _Split,
        batch: int,
        body: dict[str, Any],
        sent: set[tuple[int, int]],
        span: tuple[int, int],
        refusal: PermanentSendError | None,
    ) -> None:
        """Recipients ``span`` of request ``batch``, halved until each part is accepted or down to the one
        recipient SendGrid refuses (``refusal``: SendGrid already refused this span as a whole).

        The halves are always the same (``(first + end) // 2``), so the parts a retry finds recorded in
        ``sent`` are exactly the ones it meets: a span holding one is split without being sent again.
        Bounded: after ``MAX_SPLIT_REQUESTS`` parts, or when the lease leaves no time for one more
        request, the rest is not tried and its recipients are named as missed.
        """
        first, end = span
        if any(a <= first and end <= b for a, b in sent):
            return
        if refusal is None and not any(first <= a and b <= end for a, b in sent):
            part = request_part(body, first, end)
            timeout = self.settings.sendgrid.timeout_seconds
            if split.requests >= MAX_SPLIT_REQUESTS or self.clock().timestamp() + timeout >= split.lease_until:
                why = f"not sent: after {split.requests} requests in parts, no more were tried"
                split.miss(request_recipients(part), why)
                return
            split.requests += 1
            try:
                receipt = self._post(part)
            except PermanentSendError as exc:
                if exc.status != 400 or end - first == 1:
                    split.miss(request_recipients(part), f"refused by SendGrid: {exc.body or exc}")
                    return
                refusal = exc
            else:
                split.ids.append(receipt.message_id)
                sent.add(span)
                self.log.mark_part_sent(split.message_id, split.address, batch, span, receipt.message_id)
                return
        if end - first == 1:
            assert refusal is not None
            split.miss(
                request_recipients(request_part(body, first, end)), f"refused by SendGrid: {refusal.body or refusal}"
            )
            return
        middle = (first + end) // 2
        self._send_parts(split, batch, body, sent, (first, middle), None)
        self._send_parts(split, batch, body, sent, (middle, end), None)

    # ------------------------------------------------------------------ notices and the record
    def _notify(self, delivery: _Delivery, sender: Sender, converted: ConvertedMail) -> str:
        """Step 7/10: at most one notice per registered, authenticated sender per day; never to ourselves."""
        if not delivery.refusals:
            return ""
        account = sender.account
        if account is None or not sender.authenticated:
            return "none: the sender is not a registered, authenticated account"
        if not self.settings.notices:
            return "none: notices are turned off"
        if self._own(account.email) or self._own(sender.address):
            return "none: the sender is this system's own address"
        day = delivery.now.astimezone(UTC).date().isoformat()
        message_id = delivery.receipt.message_id
        if not self.log.claim_notice(account.email, day, message_id=message_id, expires_at=delivery.now + NOTICE_KEEP):
            if self.log.notice_holder(account.email, day) == message_id:
                return f"sent to {account.email} (by an earlier delivery of this message)"
            return f"none: {account.email} already had a notice on {day}"
        notice, envelope = refusal_notice(
            user_address(account),
            delivery.refusals,
            subject=converted.subject,
            original_message_id=converted.message_id,
            site=self.site,
            limit=readable_size(self.settings.max_request_bytes),
        )
        try:
            self.mailer.send(notice, [envelope])
        except RetryableSendError:
            self.log.release_notice(account.email, day, message_id=message_id)
            raise
        except PermanentSendError as exc:
            logger().error("SendGrid refused a notice", extra={"message_id": message_id, "error": str(exc)})
            return f"not sent: SendGrid refused it ({exc})"
        return f"sent to {account.email}"

    def _finish(self, delivery: _Delivery, notice: str | None = None) -> Outcome:
        decisions = list(delivery.decisions.values())
        self.log.record_decisions(
            delivery.receipt.message_id,
            decisions,
            done=not delivery.held and not delivery.pending,
            now=self.clock(),
            notice=notice,
        )
        for decision in decisions:
            logger().info(
                "decision",
                extra={
                    "message_id": delivery.receipt.message_id,
                    "address": decision.address,
                    "decision": decision.decision.value,
                    "reason": decision.reason,
                    "fan_out": decision.fan_out,
                },
            )
        return Outcome(delivery.receipt.message_id, tuple(decisions), notice=notice or "")


def readable_size(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 1_000_000 else f"{max(1, round(size / 1000))} kB"


def _received_at(receipt: SesReceipt, now: datetime) -> datetime:
    """SES's timestamp when it is plausible (sample events say 1970), else the time of handling."""
    try:
        stamp = datetime.fromisoformat(receipt.timestamp)
    except ValueError:
        return now
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp if now - SES_TIMESTAMP_WINDOW <= stamp <= now + timedelta(days=1) else now


def _extra(decision: RecipientDecision) -> dict[str, Any]:
    return {
        "fan_out": decision.fan_out,
        "forwarded_to": decision.forwarded_to,
        "sendgrid_message_ids": decision.sendgrid_message_ids,
        "skipped": decision.skipped,
    }
