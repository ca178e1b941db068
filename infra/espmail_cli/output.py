"""How the command line speaks: one clear line per error a person can cause (never a traceback), rich
tables for what it shows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import IO, Any

import click
from botocore.exceptions import BotoCoreError, ClientError
from rich.table import Table

from espmail.errors import EspMailError
from espmail_cli.context import TargetUnavailable


class Failure(click.ClickException):
    """Printed as ``error: <message>`` on stderr, exit code 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class TargetFailure(Failure):
    """The stack to work against cannot be found: exit code 2, like a usage error."""

    exit_code = 2


def aws_error_line(exc: BotoCoreError | ClientError) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        operation = getattr(exc, "operation_name", "") or "a call"
        return f"AWS refused {operation}: {error.get('Code', '?')}: {error.get('Message', '')}".rstrip(": ")
    return f"AWS could not be reached: {exc}"


def as_failure(exc: EspMailError | ClientError | BotoCoreError) -> Failure:
    """The one-line form of an error a person can cause (a bug is not caught: it keeps its traceback)."""
    if isinstance(exc, TargetUnavailable):
        return TargetFailure(str(exc))
    if isinstance(exc, EspMailError):
        return Failure(str(exc))
    return Failure(aws_error_line(exc))


class EspMailGroup(click.Group):
    """The root group: turns the project's errors and AWS errors into one line and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (EspMailError, ClientError, BotoCoreError) as exc:
            raise as_failure(exc) from exc


IDENTIFIERS = frozenset({"request", "message id", "SES message id", "address", "received"})


def facts(rows: Iterable[tuple[str, str]]) -> Table:
    """Name and value pairs, one per line, the names in bold (what a ``show`` command prints first)."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for name, value in rows:
        grid.add_row(name, value)
    return grid


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """Identifiers are never wrapped (they are copied into the next command); other columns fold."""
    out = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        out.add_column(column, overflow="fold", no_wrap=column in IDENTIFIERS)
    for row in rows:
        out.add_row(*("" if cell is None else str(cell) for cell in row))
    return out
