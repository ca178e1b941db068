"""The embedded stack as the bench runs it: moto and the template's resources as in the tests, with the
SendGrid double in a process of its own (``bench.remote_double`` says why)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.remote_double import RemoteSendGridDouble
from embedded.stack import LOCAL_API_KEY, EmbeddedStack
from embedded.template import function_handler

REPO_ROOT = Path(__file__).parent.parent
CORPUS_EVENTS = REPO_ROOT / "tests" / "corpus" / "aws-events"


def python_path() -> list[str]:
    """The import roots of the Lambda runtime and the tests (``/opt/python``, ``/var/task``, ops tooling)."""
    return [
        str(REPO_ROOT / "layers" / "shared"),
        str(REPO_ROOT / "functions"),
        str(REPO_ROOT / "infra"),
        str(REPO_ROOT / "infra" / "custom_resources"),
        str(REPO_ROOT),
    ]


def corpus_event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CORPUS_EVENTS / name).read_text(encoding="utf-8"))
    return data


class BenchStack(EmbeddedStack):
    """``EmbeddedStack`` whose ``sendgrid`` is the double running in its own process."""

    def __init__(self) -> None:
        super().__init__()
        self.remote = RemoteSendGridDouble(LOCAL_API_KEY, python_path=python_path())
        self.sendgrid = self.remote  # type: ignore[assignment]

    def handler(self, logical_id: str) -> str:
        """The function's ``Handler`` string from the template."""
        return function_handler(logical_id, self.tpl)

    def function_timeout_ms(self, logical_id: str) -> int:
        """The function's ``Timeout`` (its own, else the template's ``Globals``), as Lambda's time budget."""
        own = self.tpl["Resources"][logical_id].get("Properties", {}).get("Timeout")
        default = self.tpl.get("Globals", {}).get("Function", {}).get("Timeout", 300)
        return int(own or default) * 1000
