"""Synthetic programs for the benchmarks: many students in classes and sections, seeded quickly through the
repositories' batch writes (``put_many`` / ``put_members``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from espmail.domain.people import Group, GroupKind, Membership, Role, User
from espmail.storage.groups import GroupRepository
from espmail.storage.users import UserRepository

DIRECTORS = "bench-directors@mit.example.edu"
PROGRAM = "Splash Bench 2026"
_FIRST = ["Ada", "Ben", "Chloe", "Dev", "Eli", "Fatima", "Gus", "Hana", "Ivan", "June", "Kofi", "Lena", "Mo", "Nia"]
_LAST = ["Park", "Okafor", "Silva", "Nguyen", "Cohen", "Haddad", "Ito", "Novak", "Reyes", "Singh", "Berg"]


@dataclass
class BenchProgram:
    """``students`` distinct students (one address each) in classes of sections; a few students also sit
    in a section of the next class, so recipient de-duplication has work to do while the number of
    distinct recipients stays exactly ``len(students)``."""

    prefix: str
    students: list[User] = field(default_factory=list)
    teachers: list[User] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    memberships: list[Membership] = field(default_factory=list)

    @property
    def class_codes(self) -> list[str]:
        return [g.code for g in self.groups if g.kind is GroupKind.CLASS]

    @property
    def users(self) -> list[User]:
        return self.teachers + self.students


def build_program(
    students: int,
    *,
    prefix: str = "B",
    first_class: int = 5000,
    students_per_section: int = 50,
    sections_per_class: int = 4,
    teachers: bool = True,
    overlap_every: int = 20,
) -> BenchProgram:
    """Class codes are ESP-shaped (``B5000``, sections ``B5000s1``...) so the mailgate's class and section
    list rules match them; usernames, emails and ids are unique per ``prefix``."""
    program = BenchProgram(prefix=prefix)
    tag = prefix.lower()
    base_id = 1_000_000 + (ord(prefix[0]) * 100_000)
    per_class = students_per_section * sections_per_class
    classes = max(1, math.ceil(students / per_class))
    index = 0
    for c in range(classes):
        class_code = f"{prefix}{first_class + c}"
        sections = tuple(f"{class_code}s{s + 1}" for s in range(sections_per_class))
        title = f"Bench Class {c + 1}"
        program.groups.append(Group(class_code, GroupKind.CLASS, title, PROGRAM, DIRECTORS, sections=sections))
        for s, section in enumerate(sections):
            program.groups.append(Group(section, GroupKind.SECTION, title, PROGRAM, DIRECTORS, class_code=class_code))
            if teachers:
                username = f"{tag}teacher{c:04d}{s}"
                program.teachers.append(
                    User(
                        username,
                        base_id + 90_000 + c * 10 + s,
                        f"{username}@teachers.example.edu",
                        "Teacher",
                        f"{c}-{s}",
                        frozenset({Role.TEACHER}),
                    )
                )
                program.memberships.append(Membership(section, username, Role.TEACHER))
            for _ in range(students_per_section):
                if index >= students:
                    break
                first = _FIRST[index % len(_FIRST)]
                last = _LAST[(index * 7) % len(_LAST)]
                username = f"{tag}{index:06d}"
                program.students.append(
                    User(
                        username,
                        base_id + index,
                        f"{username}@students.example.net",
                        first,
                        last,
                        frozenset({Role.STUDENT}),
                    )
                )
                program.memberships.append(Membership(section, username, Role.STUDENT))
                if overlap_every and index % overlap_every == overlap_every - 1 and classes > 1:
                    other = f"{prefix}{first_class + (c + 1) % classes}s1"
                    program.memberships.append(Membership(other, username, Role.STUDENT))
                index += 1
    return program


def seed_program(program: BenchProgram) -> int:
    """Writes users, groups and memberships (tables already bound); returns the number of items written."""
    written = UserRepository().put_many(program.users)
    groups = GroupRepository()
    groups.put_groups(program.groups)
    written += len(program.groups)
    written += groups.put_members(program.memberships)
    return written
