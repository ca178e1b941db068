"""Who a message request reaches: users page by page, then their addresses per ``sendto``.

A ``RecipientSpec`` is resolved into *parts* (one per group, section of a class, the explicit usernames,
the role scan); each part is read a page at a time from a resumable position, so a request to 100,000
people never holds them all in memory and a run can stop after any page and resume there.

Only active users who have not opted out receive bulk mail. A user whose address is missing or malformed
is skipped with the reason; an address already taken (by another account, or twice by one user) is
counted as a duplicate and sent once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from espmail.domain.list_rules import is_valid_address
from espmail.domain.message_requests import SENDTO_ORDER, RecipientSpec, SendTo
from espmail.domain.people import GroupKind, User
from espmail.domain.recipients import Directory, Part
from espmail.errors import InvalidInput

_LABEL = {SendTo.SELF: "", SendTo.GUARDIAN: "guardian ", SendTo.EMERGENCY: "emergency contact "}


class UnknownGroup(InvalidInput):
    """A recipient spec names a group that does not exist."""


def plan_parts(spec: RecipientSpec, directory: Directory) -> list[Part]:
    """The parts of a spec, in a fixed order. Raises ``UnknownGroup`` naming every group that is missing."""
    parts: list[Part] = []
    missing: list[str] = []
    for selector in spec.groups:
        group = directory.group(selector.code)
        if group is None:
            missing.append(selector.code)
            continue
        roles = tuple(sorted(selector.scope.roles))
        parts.append(Part("group", group.code, roles))
        if group.kind is GroupKind.CLASS or group.sections:
            parts.extend(Part("group", section, roles) for section in group.sections)
    if missing:
        raise UnknownGroup(f"unknown group{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
    if spec.usernames:
        parts.append(Part("users", usernames=spec.usernames))
    if spec.roles:
        parts.append(Part("roles", roles=spec.roles))
    return parts


@dataclass(frozen=True, slots=True)
class Recipient:
    """One address a user's copy goes to."""

    email: str
    name: str
    kind: SendTo
    user: User

    @property
    def address_key(self) -> str:
        return self.email.strip().lower()


@dataclass(frozen=True, slots=True)
class Skip:
    username: str
    reason: str

    def __str__(self) -> str:
        return f"{self.username}: {self.reason}"


def addresses_of(user: User, sendto: frozenset[SendTo]) -> tuple[list[Recipient], list[Skip], int]:
    """The user's recipients per ``sendto``, what was skipped and why, and how many repeated addresses
    within this user were folded into one."""
    if not user.is_active:
        return [], [Skip(user.username, "inactive account")], 0
    if user.opted_out:
        return [], [Skip(user.username, "opted out of bulk mail")], 0
    recipients: list[Recipient] = []
    skips: list[Skip] = []
    seen: set[str] = set()
    repeated = 0
    for kind in SENDTO_ORDER:
        if kind not in sendto:
            continue
        if kind is SendTo.SELF:
            email, name = user.email, user.name
        elif kind is SendTo.GUARDIAN:
            email, name = user.guardian_email, user.guardian_name or f"Guardian of {user.name}"
        else:
            email, name = user.emergency_email, user.emergency_name or f"Emergency contact of {user.name}"
        email = (email or "").strip()
        if not email:
            skips.append(Skip(user.username, f"no {_LABEL[kind]}address"))
            continue
        if not is_valid_address(email):  # a line break inside is malformed too
            skips.append(Skip(user.username, f"malformed {_LABEL[kind]}address"))
            continue
        key = email.lower()
        if key in seen:
            repeated += 1
            continue
        seen.add(key)
        recipients.append(Recipient(email=email, name=name, kind=kind, user=user))
    return recipients, skips, repeated


@dataclass(frozen=True, slots=True)
class Position:
    """Where a resolution stands: the part and the position inside it (None: its beginning)."""

    part: int = 0
    inside: str | None = None


@dataclass(frozen=True, slots=True)
class ResolvedPage:
    users: list[User]
    missing: list[str]
    after: Position  # where to resume once this page is written
    done: bool


def pages(parts: Sequence[Part], directory: Directory, start: Position, size: int) -> Iterator[ResolvedPage]:
    """Every page of users from ``start`` on, each with the position after it."""
    part_index, inside = start.part, start.inside
    while part_index < len(parts):
        page = directory.page(parts[part_index], inside, size)
        if page.next_position is None:
            part_index, inside = part_index + 1, None
        else:
            inside = page.next_position
        done = part_index >= len(parts)
        yield ResolvedPage(page.users, page.missing, Position(part_index, inside), done)
