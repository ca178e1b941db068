"""The outgoing pipeline's layers: its domain types know neither storage nor the use cases, and its
storage adapters know the domain but not the use cases (``espmail.outgoing``) that call them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def modules_loaded_by(*names: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, *names], capture_output=True, text=True, check=True, timeout=60)
    loaded: list[str] = json.loads(out.stdout)
    return loaded


@pytest.mark.parametrize(
    ("modules", "forbidden"),
    [
        (
            ("espmail.storage.message_requests", "espmail.storage.outbox", "espmail.storage.recipient_pages"),
            ("espmail.outgoing",),
        ),
        (
            ("espmail.domain.message_requests", "espmail.domain.outbox", "espmail.domain.recipients"),
            ("espmail.outgoing", "espmail.storage", "pynamodb", "boto3", "jinja2"),
        ),
    ],
    ids=["storage", "domain"],
)
def test_a_layer_imports_nothing_above_it(modules: tuple[str, ...], forbidden: tuple[str, ...]) -> None:
    loaded = modules_loaded_by(*modules)
    assert [m for m in loaded if m.split(".")[0] == "espmail" and m.startswith(forbidden)] == []
    assert [m for m in loaded if m.split(".")[0] in forbidden] == []
