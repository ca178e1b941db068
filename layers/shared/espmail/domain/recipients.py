"""Where the users a message request reaches come from: a request's recipient spec is read as *parts* (one
per group, section of a class, the explicit usernames, the role scan), each read a page at a time from a
resumable position through a ``Directory`` (the storage adapter implements it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from espmail.domain.people import Group, Role, User


@dataclass(frozen=True, slots=True)
class Part:
    """One resumable source of users: a group's members with some roles, the named users, or a role."""

    kind: str  # "group" | "users" | "roles"
    code: str = ""
    roles: tuple[Role, ...] = ()
    usernames: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.kind == "group":
            return f"{self.code} ({', '.join(r.value for r in self.roles)})"
        if self.kind == "users":
            return f"{len(self.usernames)} named users"
        return f"users with role {', '.join(r.value for r in self.roles)}"


@dataclass(frozen=True, slots=True)
class UserPage:
    users: list[User]
    missing: list[str]  # usernames that name no account
    next_position: str | None  # None: the part is done


class Directory(Protocol):
    """Reads users and groups page by page (the storage adapter implements it)."""

    def group(self, code: str) -> Group | None: ...

    def page(self, part: Part, position: str | None, size: int) -> UserPage: ...
