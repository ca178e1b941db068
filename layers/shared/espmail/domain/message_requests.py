"""Message requests: ESP's ``MessageRequest``, declarative and validated.

A request says what to send (subject and body templates, From, Reply-To, extra headers, template vars),
to whom (a ``RecipientSpec``: groups with roles, usernames, everyone with a role; and ``sendto``: the user,
the guardian, the emergency contact, or a combination) and when (``not_before``, ``priority``). Nothing here
knows about DynamoDB; ``request_problems`` returns every problem at once, each with what to do about it.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from espmail.domain.list_rules import is_valid_address
from espmail.domain.mail import Address
from espmail.domain.people import Role
from espmail.errors import InvalidInput

MIN_PRIORITY = 0
MAX_PRIORITY = 9
DEFAULT_PRIORITY = 5
MAX_SUBJECT_TEMPLATE = 1_000
MAX_BODY_TEMPLATE = 150_000  # an outbox row (text + html) must stay well under DynamoDB's 400 KB
MAX_HEADERS = 20
# Names templates see at the top level; a request's vars may not shadow them.
RESERVED_VARS = frozenset({"user", "recipient", "request", "site"})
# Headers set by the structured fields or by the sender itself, never through ``headers``.
MANAGED_HEADERS = frozenset(
    h.lower()
    for h in (
        "To",
        "Cc",
        "Bcc",
        "From",
        "Sender",
        "Subject",
        "Reply-To",
        "Content-Type",
        "Content-Transfer-Encoding",
        "MIME-Version",
        "Message-ID",
        "Date",
        "Received",
        "DKIM-Signature",
        "Return-Path",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "X-SG-ID",
        "X-SG-EID",
    )
)
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # RFC 5322 field-name: printable ASCII except ':'
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_HTML_HINT = re.compile(
    r"<\s*(html|body|p|div|br|a\s|table|ul|ol|li|h[1-6]|strong|em|b|i|span|img|hr)\b", re.IGNORECASE
)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class RequestStatus(StrEnum):
    PENDING = "pending"  # waiting for its not-before time and the expander
    EXPANDING = "expanding"  # an expander holds its lease (or held it and crashed: it comes back)
    EXPANDED = "expanded"  # every outbox row is written; rows are being sent
    SENT = "sent"  # final: every row sent
    SENT_WITH_FAILURES = "sent_with_failures"  # final: some rows failed (the creator got one notice)
    FAILED = "failed"  # final: the request itself is wrong, or every row failed; see last_error
    EXPIRED = "expired"  # final: not expanded within the maximum age
    CANCELLED = "cancelled"  # final: cancelled by a person


FINAL_STATUSES = frozenset(
    {
        RequestStatus.SENT,
        RequestStatus.SENT_WITH_FAILURES,
        RequestStatus.FAILED,
        RequestStatus.EXPIRED,
        RequestStatus.CANCELLED,
    }
)


class SendTo(StrEnum):
    """ESP's sendto functions, combinable: which addresses of each recipient user get the message."""

    SELF = "self"
    GUARDIAN = "guardian"
    EMERGENCY = "emergency"


SENDTO_ORDER = (SendTo.SELF, SendTo.GUARDIAN, SendTo.EMERGENCY)


class GroupScope(StrEnum):
    STUDENTS = "students"
    TEACHERS = "teachers"
    CLASS = "class"  # teachers + students

    @property
    def roles(self) -> frozenset[Role]:
        if self is GroupScope.STUDENTS:
            return frozenset({Role.STUDENT})
        if self is GroupScope.TEACHERS:
            return frozenset({Role.TEACHER})
        return frozenset({Role.STUDENT, Role.TEACHER})


class BodyFormat(StrEnum):
    TEXT = "text"
    HTML = "html"


@dataclass(frozen=True, slots=True)
class GroupSelector:
    code: str
    scope: GroupScope

    def __str__(self) -> str:
        return f"{self.code}:{self.scope.value}"


@dataclass(frozen=True, slots=True)
class RecipientSpec:
    """Who a request reaches, as a union: group members by role, named users, everyone with a role.

    The text form (what the CLI and the console show) is a list of strings: ``E1234:students``,
    ``E1234s1:teachers``, ``E1234:class``, ``user:alice``, ``role:teacher``.
    """

    groups: tuple[GroupSelector, ...] = ()
    usernames: tuple[str, ...] = ()
    roles: tuple[Role, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.groups or self.usernames or self.roles)

    def as_strings(self) -> list[str]:
        return (
            [str(g) for g in self.groups]
            + [f"user:{u}" for u in self.usernames]
            + [f"role:{r.value}" for r in self.roles]
        )

    def __str__(self) -> str:
        return ", ".join(self.as_strings())


def parse_recipient_spec(items: Iterable[str] | str) -> RecipientSpec:
    """Raises ``InvalidInput`` naming every item it cannot read."""
    if isinstance(items, str):
        items = [part for part in re.split(r"[,\s]+", items) if part]
    groups: list[GroupSelector] = []
    usernames: list[str] = []
    roles: list[Role] = []
    problems: list[str] = []
    for raw in items:
        item = str(raw).strip()
        head, sep, tail = item.partition(":")
        head, tail = head.strip(), tail.strip()
        if not sep or not head or not tail:
            problems.append(f"recipient {item!r} is not CODE:students|teachers|class, user:USERNAME or role:ROLE")
        elif head.lower() == "user":
            usernames.append(tail)
        elif head.lower() == "role":
            if tail.lower() not in Role._value2member_map_:
                known = ", ".join(r.value for r in Role)
                problems.append(f"recipient {item!r}: {tail!r} is not a role (use one of: {known})")
            else:
                roles.append(Role(tail.lower()))
        elif tail.lower() in GroupScope._value2member_map_:
            groups.append(GroupSelector(head, GroupScope(tail.lower())))
        else:
            problems.append(f"recipient {item!r}: {tail!r} is not students, teachers or class")
    if problems:
        raise InvalidInput("; ".join(problems))
    return RecipientSpec(
        groups=tuple(dict.fromkeys(groups)),
        usernames=tuple(dict.fromkeys(usernames)),
        roles=tuple(dict.fromkeys(roles)),
    )


_ESP_SENDTO = {
    "": "self",
    "send_to_self": "self",
    "send_to_guardian": "guardian",
    "send_to_emergency": "emergency",
    "send_to_self_and_guardian": "self+guardian",
    "send_to_self_and_emergency": "self+emergency",
    "send_to_guardian_and_emergency": "guardian+emergency",
    "send_to_self_and_guardian_and_emergency": "self+guardian+emergency",
}


def parse_sendto(value: str | Iterable[str | SendTo]) -> frozenset[SendTo]:
    """``self``, ``guardian``, ``emergency`` or a combination (``self+guardian``, ``self,guardian``, a list,
    or ESP's names such as ``send_to_self_and_guardian``)."""
    if isinstance(value, str):
        text = _ESP_SENDTO.get(value.strip().lower(), value)
        parts: list[str] = [p for p in re.split(r"[+,\s]+", text.strip().lower()) if p]
    else:
        parts = [str(p).strip().lower() for p in value]
    unknown = [p for p in parts if p not in SendTo._value2member_map_]
    if unknown or not parts:
        raise InvalidInput(f"sendto {value!r} is not self, guardian, emergency or a combination such as self+guardian")
    return frozenset(SendTo(p) for p in parts)


def sendto_text(sendto: Iterable[SendTo]) -> str:
    chosen = set(sendto)
    return "+".join(s.value for s in SENDTO_ORDER if s in chosen)


class InvalidAddress(InvalidInput):
    """An address that cannot be used. The message says what is wrong with it, not which field it was
    given for: the caller, who knows, names the field."""


def parse_address(value: str | Address) -> Address:
    """``Name <a@b>`` or ``a@b`` (or an ``Address``); raises ``InvalidAddress`` if it is not an address."""
    if isinstance(value, Address):
        address = value
    else:
        if "\r" in value or "\n" in value:
            raise InvalidAddress(f"address {value!r} contains a line break")
        name, email = parseaddr(value.strip())
        address = Address(email=email.strip(), name=name.strip())
    if not is_valid_address(address.email):
        raise InvalidAddress(f"{str(address)!r} is not an email address (use name@domain or 'Name <name@domain>')")
    if any(c in address.name for c in "\r\n"):
        raise InvalidAddress(f"the name of {address.email} contains a line break")
    return address


def sender_problem(sender: Address, allowed_domains: Sequence[str]) -> str | None:
    """Why this From may not be used, or None. The domain must be allowed exactly (DMARC alignment)."""
    domain = sender.email.rpartition("@")[2].lower()
    allowed = [d.lower() for d in allowed_domains]
    if domain not in allowed:
        return (
            f"From {sender.email} is not on an allowed sender domain ({', '.join(allowed) or 'none configured'}); "
            "mail from other domains fails DMARC alignment. Use an address on an allowed domain."
        )
    return None


def looks_like_html(body: str) -> bool:
    """ESP sent a body as HTML when it contained ``<html>``; common tags count too."""
    return bool(_HTML_HINT.search(body))


def new_request_id(now: float | None = None) -> str:
    """A ULID: 48 bits of milliseconds and 80 random bits, Crockford base32; sorts by creation time."""
    millis = int((time.time() if now is None else now) * 1000)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


@dataclass(frozen=True, slots=True)
class RequestCounts:
    total: int = 0  # outbox rows written (one per distinct address)
    sent: int = 0
    failed: int = 0
    skipped: int = 0  # addresses not written: no address, malformed, inactive, opted out, no such user
    duplicates: int = 0  # addresses already written for another user (or twice for one user)
    skipped_reasons: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class MessageRequest:
    request_id: str
    subject: str
    body: str
    body_format: BodyFormat
    sender: Address
    recipients: RecipientSpec
    creator: str
    created_at: datetime
    not_before: datetime
    sendto: frozenset[SendTo] = frozenset({SendTo.SELF})
    reply_to: Address | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    vars: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    priority: int = DEFAULT_PRIORITY
    public: bool = False
    status: RequestStatus = RequestStatus.PENDING
    counts: RequestCounts = field(default_factory=RequestCounts)
    last_error: str = ""
    skipped_sample: tuple[str, ...] = ()
    expanded_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    crashes: int = 0
    round: int = 0  # 0, then +1 for each retry of its failed rows

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def due_since(self) -> datetime:
        """When it was meant to go out: its age for expiry counts from here."""
        return max(self.created_at, self.not_before)


def header_problems(headers: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    if len(headers) > MAX_HEADERS:
        problems.append(f"{len(headers)} extra headers; at most {MAX_HEADERS}")
    for name, value in headers.items():
        if not _HEADER_NAME.match(str(name)):
            problems.append(f"header name {name!r} is not a valid field name")
        elif str(name).lower() in MANAGED_HEADERS:
            problems.append(f"header {name} is set by the system (use the request's fields instead)")
        if not isinstance(value, str):
            problems.append(f"header {name} must be text")
        elif any(c in value for c in "\r\n\0"):
            problems.append(f"header {name} contains a line break")
    return problems


def vars_problems(variables: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    for name in variables:
        if not isinstance(name, str) or not _VAR_NAME.match(name):
            problems.append(f"template var {name!r} is not a name (letters, digits, _)")
        elif name in RESERVED_VARS:
            problems.append(f"template var {name!r} would hide the built-in {{{{ {name} }}}}")
    try:
        json.dumps(dict(variables))
    except (TypeError, ValueError) as exc:
        problems.append(f"template vars must be plain JSON values: {exc}")
    return problems


def request_problems(request: MessageRequest, allowed_sender_domains: Sequence[str]) -> list[str]:
    """What is wrong with a request, independent of the directory and the templates' syntax."""
    problems: list[str] = []
    sender = sender_problem(request.sender, allowed_sender_domains)
    if sender:
        problems.append(sender)
    if not request.subject.strip():
        problems.append("the subject is empty")
    if any(c in request.subject for c in "\r\n"):
        problems.append("the subject must be one line")
    if len(request.subject) > MAX_SUBJECT_TEMPLATE:
        problems.append(f"the subject is {len(request.subject)} characters; keep it under {MAX_SUBJECT_TEMPLATE}")
    if not request.body.strip():
        problems.append("the body is empty")
    if len(request.body.encode("utf-8")) > MAX_BODY_TEMPLATE:
        problems.append(f"the body is larger than {MAX_BODY_TEMPLATE} bytes")
    if request.recipients.is_empty:
        problems.append("no recipients: give groups (E1234:students), users (user:alice) or roles (role:teacher)")
    if not MIN_PRIORITY <= request.priority <= MAX_PRIORITY:
        problems.append(f"priority {request.priority} is not between {MIN_PRIORITY} and {MAX_PRIORITY}")
    if not request.sendto:
        problems.append("sendto is empty")
    if not request.creator.strip():
        problems.append("the creator (who gets the failure notice) is missing")
    problems += header_problems(request.headers)
    problems += vars_problems(request.vars)
    return problems
