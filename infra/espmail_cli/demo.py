"""``espmail local demo`` (what ``make demo`` runs): the whole story on the embedded stack."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from embedded.seed import SeededProgram, seed
from embedded.stack import EmbeddedStack
from espmail.domain.people import Role
from espmail.settings import TableNames

Chapter = Callable[[EmbeddedStack, SeededProgram, Console], list[tuple[str, str]]]


def show_program(console: Console, program: SeededProgram) -> None:
    table = Table(title="Seeded program: classes and sections")
    for column in ("code", "title", "teachers", "students", "directors"):
        table.add_column(column)
    for group in program.groups:
        teachers = ", ".join(u.username for u in program.members_of(group.code, Role.TEACHER))
        students = str(len(program.members_of(group.code, Role.STUDENT)))
        if group.sections:
            teachers = "(its sections)"
            students = str(sum(len(program.members_of(s, Role.STUDENT)) for s in group.sections))
        table.add_row(group.code, group.title, teachers, students, group.directors_email)
    console.print(table)
    people = Table(title="Staff accounts")
    for column in ("username", "name", "email", "roles"):
        people.add_column(column)
    for user in program.users:
        if user.is_staff:
            people.add_row(user.username, user.name, user.email, ", ".join(sorted(r.value for r in user.roles)))
    console.print(people)


def _chapters() -> list[Chapter]:
    from espmail_cli.stories import incoming, outgoing

    return [outgoing.run, incoming.run]


def run_demo(out_dir: Path, console: Console | None = None) -> int:
    console = console or Console()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    eml_dir = out_dir / "sent"
    eml_dir.mkdir(parents=True)
    console.rule("[bold]ESP Mail: the embedded local stack")
    with EmbeddedStack(eml_dir=eml_dir) as stack:
        console.print(f"AWS (moto, server mode): {stack.endpoint}")
        console.print(f"SendGrid v3 double:      {stack.sendgrid.host}  (messages saved as .eml in {eml_dir})")
        stack.activate()
        tables = TableNames.from_env()
        program = seed(tables, stack.client("dynamodb"))
        console.print(
            f"Seeded {len(program.users)} users, {len(program.groups)} groups, "
            f"{len(program.memberships)} memberships, ESP's 4 default list rules, {len(program.redirects)} redirects"
        )
        show_program(console, program)
        summary: list[tuple[str, str]] = [("users seeded", str(len(program.users)))]
        for chapter in _chapters():
            summary += chapter(stack, program, console)
        summary_table = Table(title="Summary")
        summary_table.add_column("what")
        summary_table.add_column("result")
        for what, result in summary:
            summary_table.add_row(what, result)
        console.print(summary_table)
    return 0
