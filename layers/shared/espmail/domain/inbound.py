"""What the mailgate decided about a received message, as the InboundLog keeps it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Decision(StrEnum):
    FORWARDED = "forwarded"
    HELD = "held"  # kept for its moderators to approve or reject (see ``Hold``)
    REFUSED = "refused"
    DROPPED = "dropped"


class HoldState(StrEnum):
    HELD = "held"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class InboundStatus(StrEnum):
    RECEIVED = "received"  # recorded, not (yet) fully handled: a retry does what is left
    DONE = "done"  # every recipient address has its decision
    FAILED = "failed"  # an attempt raised; Lambda's retries (then the on-failure queue) take over


class ForwardState(StrEnum):
    SENDING = "sending"  # claimed under a lease; batches recorded as they are accepted
    SENT = "sent"  # every batch accepted by SendGrid
    FAILED = "failed"  # the last attempt failed; a retry may claim it again


@dataclass(frozen=True, slots=True)
class RecipientDecision:
    """The decision for one address the message was sent to (a list, a redirect, an alias)."""

    address: str
    decision: Decision
    reason: str
    rule: str = ""
    handler: str = ""
    list_id: str = ""
    fan_out: int = 0
    forwarded_to: tuple[str, ...] = ()  # at most MAX_LOGGED_RECIPIENTS; fan_out has the count
    sendgrid_message_ids: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # "address: why" for each recipient of the list that did not get it


def overall_decision(decisions: Iterable[RecipientDecision]) -> Decision | None:
    """A message's overall decision: forwarded if any address was, else held, else refused, else dropped."""
    found = {d.decision for d in decisions}
    order = (Decision.FORWARDED, Decision.HELD, Decision.REFUSED, Decision.DROPPED)
    return next((d for d in order if d in found), None)


def overall_reason(decisions: Sequence[RecipientDecision]) -> str:
    """The reasons (each once) of the addresses that share the overall decision."""
    overall = overall_decision(decisions)
    return "; ".join(dict.fromkeys(d.reason for d in decisions if d.decision is overall))


@dataclass(frozen=True, slots=True)
class ForwardProgress:
    """Where forwarding to one list stands (the per-list idempotency record)."""

    address: str
    state: ForwardState
    batches: int
    sent_batches: frozenset[int]
    lease_until: int
    attempts: int
    sendgrid_message_ids: tuple[str, ...] = ()
    error: str = ""
    # Parts of refused requests accepted on their own (see ``Mailgate``): "batch:first-end" recipient ranges.
    sent_parts: frozenset[str] = frozenset()

    def parts_sent(self, batch: int) -> frozenset[tuple[int, int]]:
        """The recipient ranges ``(first, end)`` of request ``batch`` accepted as parts of it."""
        found: set[tuple[int, int]] = set()
        for part in self.sent_parts:
            number, _, span = part.partition(":")
            first, _, end = span.partition("-")
            if number == str(batch) and first.isdigit() and end.isdigit():
                found.add((int(first), int(end)))
        return frozenset(found)


@dataclass(frozen=True, slots=True)
class Hold:
    """A post to one list kept for its moderators: the decision on it, who made it, and what the sender
    was told (``sender_notice``: empty until a rejection or expiry notice is claimed)."""

    address: str
    state: HoldState
    rule: str
    reason: str
    held_at: datetime
    expires_at: datetime
    moderators: tuple[str, ...] = ()
    decided_by: str = ""
    decided_at: datetime | None = None
    note: str = ""  # the moderator's reason for a rejection
    sender_notice: str = ""


@dataclass(frozen=True, slots=True)
class InboundRecord:
    message_id: str
    received_at: datetime
    status: InboundStatus
    attempts: int
    source: str = ""
    recipients: tuple[str, ...] = ()
    s3_key: str = ""
    subject: str = ""
    from_address: str = ""
    sender_username: str = ""
    authenticated: bool = False
    auth_reason: str = ""
    size: int = 0
    verdicts: Mapping[str, str] = field(default_factory=dict)
    decisions: tuple[RecipientDecision, ...] = ()
    forwards: tuple[ForwardProgress, ...] = ()
    notice: str = ""
    last_error: str = ""
    holds: tuple[Hold, ...] = ()
    moderator_notice: str = ""

    @property
    def decision(self) -> Decision | None:
        return overall_decision(self.decisions)

    @property
    def reason(self) -> str:
        return overall_reason(self.decisions)

    @property
    def fan_out(self) -> int:
        return sum(d.fan_out for d in self.decisions)

    def decision_for(self, address: str) -> RecipientDecision | None:
        wanted = address.strip().lower()
        return next((d for d in self.decisions if d.address == wanted), None)

    def hold_for(self, address: str) -> Hold | None:
        wanted = address.strip().lower()
        return next((h for h in self.holds if h.address == wanted), None)

    def forward_for(self, address: str) -> ForwardProgress | None:
        wanted = address.strip().lower()
        return next((f for f in self.forwards if f.address == wanted), None)
