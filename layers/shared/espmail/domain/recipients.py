"""Where the users a message request reaches come from: a request's recipient spec is read as *parts* (a
class with the sections indexed under it, any other group or section, the explicit usernames, the role
scan), each read a page at a time from a resumable position through a ``Directory`` (the storage adapter
implements it)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from espmail.domain.people import Group, Role, User


@dataclass(frozen=True, slots=True)
class Part:
    """One resumable source of users: a group's members with some roles, the members of a class's
    ``groups`` (itself and its sections) read together through the class index, the named users, or a
    role."""

    kind: str  # "group" | "class" | "users" | "roles"
    code: str = ""
    roles: tuple[Role, ...] = ()
    usernames: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()  # "class": the codes whose members it keeps

    def __str__(self) -> str:
        if self.kind == "group":
            return f"{self.code} ({', '.join(r.value for r in self.roles)})"
        if self.kind == "class":
            return f"{self.code}: {', '.join(self.groups)} ({', '.join(r.value for r in self.roles)})"
        if self.kind == "users":
            return f"{len(self.usernames)} named users"
        return f"users with role {', '.join(r.value for r in self.roles)}"


@dataclass(frozen=True, slots=True)
class UserPage:
    users: list[User]
    missing: list[str]  # usernames that name no account
    next_position: str | None  # None: the part is done
    # A "class" part's last page: groups found no longer indexed under the class (moved by an import
    # since the plan was made); their members are left out of the page and are to be read on their own.
    dropped: tuple[str, ...] = ()


class Directory(Protocol):
    """Reads users and groups page by page (the storage adapter implements it)."""

    def groups(self, codes: Iterable[str]) -> Mapping[str, Group]:
        """The groups among ``codes`` that exist, by code."""
        ...

    def page(self, part: Part, position: str | None, size: int) -> UserPage: ...
