"""``espmail users import`` and ``espmail groups import``: batched writes with a progress bar; a bad row
is reported with its line number and every other row is imported (exit 1 when any row was bad)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from espmail.domain.words import counted
from espmail.storage.groups import GroupRepository
from espmail.storage.users import UserRepository
from espmail_cli.context import CliContext, pass_cli
from espmail_cli.output import Failure
from espmail_cli.people_files import BadRow, read_groups, read_users

T = TypeVar("T")
BATCH = 25  # DynamoDB BatchWriteItem's limit; the repositories retry unprocessed items
FORMAT = click.option(
    "--format",
    "file_format",
    type=click.Choice(["auto", "csv", "json"]),
    default="auto",
    show_default=True,
    help="auto: by the file's extension, else by its first character.",
)


def write_in_batches(obj: CliContext, what: str, items: Sequence[T], write: Callable[[list[T]], object]) -> None:
    if not items:
        return
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=obj.console
    )
    with progress:
        task = progress.add_task(what, total=len(items))
        for start in range(0, len(items), BATCH):
            chunk = list(items[start : start + BATCH])
            write(chunk)
            progress.advance(task, len(chunk))


def report(obj: CliContext, path: Path, imported: str, bad: list[BadRow]) -> None:
    for row in bad:
        obj.errors.print(f"{path}: {row}", highlight=False, soft_wrap=True)
    obj.console.print(imported)
    if bad:
        lines = ", ".join(str(b.line) for b in bad[:20]) + (", ..." if len(bad) > 20 else "")
        raise Failure(
            f"{counted(len(bad), 'row')} of {path} {'was' if len(bad) == 1 else 'were'} not imported (lines {lines}); the rest were"
        )


@click.group()
def users() -> None:
    """Accounts: who can send to lists and who receives."""


@users.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@FORMAT
@pass_cli
def users_import(obj: CliContext, file: Path, file_format: str) -> None:
    """Create or update the accounts in FILE (CSV or JSON), matched by username.

    \b
    CSV header (any order; username, user_id and email are required):
      username,user_id,email,first_name,last_name,roles,is_active,opted_out,
      guardian_name,guardian_email,emergency_name,emergency_email
    roles: student, teacher, admin, separated by ";" (e.g. teacher;admin)
    is_active (default true), opted_out (default false): true/false, yes/no, 1/0

    \b
    JSON: a list of objects with the same keys, e.g.
      [{"username": "teacher_ruth", "user_id": 2, "email": "ruth@physics.example.edu",
        "first_name": "Ruth", "roles": ["teacher"]}]

    A bad row is reported with its line number and skipped; every other row is imported (exit 1).
    """
    judged = read_users(file, file_format)
    good = [user for _, user in judged.good]
    if good:
        obj.bind_tables()
        write_in_batches(obj, "users", good, UserRepository().put_many)
    report(obj, file, f"imported {counted(len(good), 'user')} into {obj.target.label}", judged.bad)


@click.group()
def groups() -> None:
    """Classes, sections and other groups, with their members."""


@groups.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@FORMAT
@pass_cli
def groups_import(obj: CliContext, file: Path, file_format: str) -> None:
    """Create or update groups, or memberships, from FILE (CSV or JSON).

    \b
    A CSV file holds groups or memberships; its header says which:
      groups:      code,kind,title,program,directors_email,class_code,sections
      memberships: code,username,role
    kind: class, section or group (default); sections: a class's section codes separated by ";"
    role: student, teacher or admin

    \b
    JSON: a list of groups, each with its members, e.g.
      [{"code": "E1234", "kind": "class", "title": "The Physics of Lasers",
        "directors_email": "splash-directors@mit.example.edu", "sections": ["E1234s1"]},
       {"code": "E1234s1", "kind": "section", "class_code": "E1234",
        "members": [{"username": "teacher_ruth", "role": "teacher"}]}]

    A bad row is reported with its line number and skipped; every other row is imported (exit 1).
    """
    judged = read_groups(file, file_format)
    new_groups = [group for _, group in judged.groups.good]
    members = [member for _, member in judged.memberships.good]
    obj.bind_tables()
    repository = GroupRepository()

    write_in_batches(obj, "groups", new_groups, repository.put_groups)
    write_in_batches(obj, "memberships", members, repository.put_members)
    report(
        obj,
        file,
        f"imported {counted(len(new_groups), 'group')} and {counted(len(members), 'membership')} into {obj.target.label}",
        judged.bad,
    )
