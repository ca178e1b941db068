"""Users and groups as the mail system sees them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    STUDENT = "student"
    TEACHER = "teacher"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class User:
    username: str
    user_id: int
    email: str
    first_name: str = ""
    last_name: str = ""
    roles: frozenset[Role] = frozenset()
    is_active: bool = True
    opted_out: bool = False
    guardian_name: str = ""
    guardian_email: str = ""
    emergency_name: str = ""
    emergency_email: str = ""

    @property
    def name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part) or self.username

    @property
    def is_staff(self) -> bool:
        """Teachers and admins: their aliases take mail from anyone."""
        return bool(self.roles & {Role.TEACHER, Role.ADMIN})

    def precedence(self) -> tuple[int, int]:
        """Among several accounts with one address: admin, then teacher, then the lowest user id."""
        if Role.ADMIN in self.roles:
            rank = 0
        elif Role.TEACHER in self.roles:
            rank = 1
        else:
            rank = 2
        return (rank, self.user_id)


class GroupKind(StrEnum):
    CLASS = "class"
    SECTION = "section"
    GROUP = "group"


@dataclass(frozen=True, slots=True)
class Group:
    """A class (``E1234``), a section (``E1234s1``) or any named group."""

    code: str
    kind: GroupKind
    title: str = ""
    program: str = ""
    directors_email: str = ""
    class_code: str = ""
    sections: tuple[str, ...] = field(default=())
    # The class every membership of this group is indexed under (``""``: not all of them are, or the
    # group is in no class). Storage keeps it; the expander reads a class's sections in one go only when
    # each section says it is indexed under that class.
    members_class: str = ""

    def indexed_under(self, class_code: str) -> bool:
        """Whether every membership of this group is indexed under ``class_code``."""
        return bool(class_code) and self.members_class == class_code

    @property
    def is_class(self) -> bool:
        """A class, or any group that lists sections: read as itself and each of its sections."""
        return self.kind is GroupKind.CLASS or bool(self.sections)

    @property
    def index_class(self) -> str:
        """The class this group's memberships belong under: a class's own code, a section's class code,
        ``""`` for any other group."""
        if self.is_class:
            return self.code
        if self.kind is GroupKind.SECTION:
            return self.class_code
        return ""


@dataclass(frozen=True, slots=True)
class Membership:
    code: str
    username: str
    role: Role
