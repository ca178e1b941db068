"""Running ``espmail`` commands through click's CliRunner against the session's embedded stack."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from click.testing import CliRunner, Result
from rich.console import Console

from embedded.seed import SeededProgram, seed
from espmail.settings import TableNames
from espmail_cli.context import CliContext, EmbeddedTarget
from espmail_cli.main import cli

SITE = "esp.example.org"
RUTH = "ruth@physics.example.edu"


def run(stack: Any, *args: str, obj: CliContext | None = None) -> Result:
    """One command against the fixture's stack (an ``EmbeddedTarget`` handed in through ``obj``)."""
    context = obj or CliContext(
        target_override=EmbeddedTarget(stack),
        console=Console(width=200, highlight=False),
        errors=Console(stderr=True, width=200, highlight=False),
    )
    return CliRunner().invoke(cli, list(args), obj=context, catch_exceptions=False)


def run_plain(*args: str, env: dict[str, str] | None = None) -> Result:
    """A command the way a person types it: options decide the target (no ``obj`` handed in)."""
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "200", **(env or {})}, catch_exceptions=False)


def seeded(stack: Any) -> SeededProgram:
    return seed(TableNames.from_env(stack.function_env()), stack.client("dynamodb"))


def message(sender: str, to: str, subject: str, body: str = "Hello.") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{abs(hash((sender, to, subject)))}@test.example>"
    msg.set_content(body)
    return msg.as_bytes()


def assert_one_line_error(result: Result, code: int, *fragments: str) -> None:
    """A clear message and a non-zero exit, never a traceback."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)
