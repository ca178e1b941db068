"""The demo's incoming-mail chapter on the embedded stack."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from espmail_cli.stories.incoming import run
from tests.e2e.mailgate_support import seeded


def test_the_chapter_forwards_the_teachers_message_and_refuses_the_strangers(stack: Any) -> None:
    program = seeded(stack)
    out = io.StringIO()
    rows = dict(run(stack, program, Console(file=out, width=200)))
    assert rows["class list mail"].endswith("forwarded to 11 people as teacher_ruth@esp.example.org")
    assert rows["class list .eml files"] == "11"
    assert rows["stranger's mail"].startswith("refused: unknown sender: promo@prizes.example.com")
    assert len(stack.sendgrid.accepted) == 1  # the stranger got nothing, not even a notice
    assert all(path.exists() for path in stack.sendgrid.accepted[0].eml_paths)
    assert "[E1234] Goggles on Saturday" in out.getvalue()
