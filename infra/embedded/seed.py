"""A sample program for the demo, the replay command and the tests: a few classes with sections,
teachers, students (some with guardians), directors, an admin, ESP's four default list rules and a
couple of redirects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from espmail.domain.list_rules import DEFAULT_RULES, Redirect
from espmail.domain.people import Group, GroupKind, Membership, Role, User
from espmail.settings import TableNames
from espmail.storage.groups import GroupRepository
from espmail.storage.list_rules import ListRuleRepository, RedirectRepository
from espmail.storage.tables import bind_tables
from espmail.storage.users import UserRepository

PROGRAM = "Splash Fall 2026"
DIRECTORS = "splash-directors@mit.example.edu"

_FIRST = ["Ada", "Ben", "Chloe", "Dev", "Eli", "Fatima", "Gus", "Hana", "Ivan", "June", "Kofi", "Lena"]
_LAST = ["Park", "Okafor", "Silva", "Nguyen", "Cohen", "Haddad", "Ito", "Novak", "Reyes", "Singh"]

CLASSES: dict[str, dict[str, Any]] = {
    "E1234": {
        "title": "The Physics of Lasers",
        "sections": {"E1234s1": "teacher_ruth", "E1234s2": "teacher_omar"},
    },
    "M2345": {"title": "Knots and Braids", "sections": {"M2345s1": "teacher_ruth"}},
    "H3456": {"title": "Reading Old Maps", "sections": {"H3456s1": "teacher_lin", "H3456s2": "teacher_lin"}},
}


@dataclass
class SeededProgram:
    users: list[User] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    memberships: list[Membership] = field(default_factory=list)
    redirects: list[Redirect] = field(default_factory=list)

    def user(self, username: str) -> User:
        return next(u for u in self.users if u.username == username)

    def members_of(self, code: str, role: Role | None = None) -> list[User]:
        names = [m.username for m in self.memberships if m.code == code and (role is None or m.role == role)]
        return [self.user(n) for n in names]


def sample_program(students_per_section: int = 4) -> SeededProgram:
    program = SeededProgram()
    program.users += [
        User("admin_kim", 1, "kim.director@mit.example.edu", "Kim", "Alvarez", frozenset({Role.ADMIN})),
        User("teacher_ruth", 2, "ruth@physics.example.edu", "Ruth", "Feld", frozenset({Role.TEACHER})),
        User("teacher_omar", 3, "omar.h@example.com", "Omar", "Haddad", frozenset({Role.TEACHER})),
        User("teacher_lin", 4, "lin.maps@example.net", "Lin", "Zhou", frozenset({Role.TEACHER})),
    ]
    next_id = 100
    student_index = 0
    for class_code, spec in CLASSES.items():
        sections = tuple(spec["sections"])
        program.groups.append(Group(class_code, GroupKind.CLASS, spec["title"], PROGRAM, DIRECTORS, sections=sections))
        for section_code, teacher in spec["sections"].items():
            program.groups.append(
                Group(section_code, GroupKind.SECTION, spec["title"], PROGRAM, DIRECTORS, class_code=class_code)
            )
            program.memberships.append(Membership(section_code, teacher, Role.TEACHER))
            for _ in range(students_per_section):
                first = _FIRST[student_index % len(_FIRST)]
                last = _LAST[(student_index * 7) % len(_LAST)]
                username = f"{first.lower()}{next_id}"
                guardian = f"parent.of.{username}@family.example.org" if student_index % 2 == 0 else ""
                program.users.append(
                    User(
                        username,
                        next_id,
                        f"{username}@students.example.net",
                        first,
                        last,
                        frozenset({Role.STUDENT}),
                        guardian_name=f"Parent of {first}" if guardian else "",
                        guardian_email=guardian,
                    )
                )
                program.memberships.append(Membership(section_code, username, Role.STUDENT))
                next_id += 1
                student_index += 1
    program.redirects += [
        Redirect("directors", (DIRECTORS,)),
        Redirect("info", ("kim.director@mit.example.edu", "ruth@physics.example.edu", "lin.maps@example.net")),
    ]
    return program


def seed(tables: TableNames, dynamodb_client: Any, program: SeededProgram | None = None) -> SeededProgram:
    """Writes the program, the default list rules and the redirects; returns what it wrote."""
    program = program or sample_program()
    bind_tables(tables)
    UserRepository().put_many(program.users)
    groups = GroupRepository()
    groups.put_groups(program.groups)
    groups.put_members(program.memberships)
    rules = ListRuleRepository(tables.list_rules, dynamodb_client)
    for rule in DEFAULT_RULES:
        rules.put(rule)
    redirects = RedirectRepository(tables.redirects, dynamodb_client)
    for redirect in program.redirects:
        redirects.put(redirect)
    return program
