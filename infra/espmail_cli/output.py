"""How the command line speaks: one clear line per error a person can cause (never a traceback), rich
tables for what it shows."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
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


class _FileOnFirstWrite:
    """A text stream that creates its file (and folder) only when something is written to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def write(self, text: str) -> int:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        written = self._file.write(text)
        self._file.flush()
        return written

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()


FUNCTION_LOG = Path(".espmail/functions.log")


def send_function_logs_to(path: Path) -> None:
    """The functions this process runs (local serve, ``--local``, approve, redrive) log as they would in
    Lambda: structured JSON, with the traceback of what failed. That is for the log, not for a person's
    terminal: it goes to ``path``; the command says in one line what happened."""
    from espmail.observability import logger

    handler = logger().registered_handler
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(_FileOnFirstWrite(path))  # type: ignore[arg-type]
    embedded = logging.getLogger("embedded")
    embedded.handlers = [logging.StreamHandler(_FileOnFirstWrite(path))]  # type: ignore[arg-type]
    embedded.propagate = False


class EspMailGroup(click.Group):
    """The root group: turns the project's errors and AWS errors into one line and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        send_function_logs_to(FUNCTION_LOG)
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
