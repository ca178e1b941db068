"""Shared fixtures: one embedded stack per test session (per xdist worker), reset before each test; and the
IAM contract: every AWS call a function makes in a test is held against that function's role in
template.yaml (``embedded.iam``), and a call the role would refuse fails the test that made it. At the end
the session lists the functions no test invoked and the grants no call used."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile("default")

CORPUS = Path(__file__).parent / "corpus"


def corpus_event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CORPUS / "aws-events" / name).read_text())
    return data


@pytest.fixture(scope="session")
def _session_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from embedded.stack import EmbeddedStack

    stack = EmbeddedStack(eml_dir=tmp_path_factory.mktemp("eml"))
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def stack(_session_stack: Any) -> Any:
    """The embedded stack, empty but for what the template declares."""
    _session_stack.reset()
    return _session_stack


@pytest.fixture
def responses() -> Iterator[Any]:
    """A local server standing in for CloudFormation's ResponseURL (custom resource tests): a
    ``CloudFormationResponses`` that keeps every answer PUT to it."""
    from tests.integration.domain_auth_support import CloudFormationResponses

    with CloudFormationResponses() as server:
        yield server


# ------------------------------------------------------------------------------------------ IAM contract
def pytest_configure(config: pytest.Config) -> None:
    from embedded import aws_calls

    aws_calls.install()
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist) gathers the report
        config.stash[_REPORT_DIR] = tempfile.mkdtemp(prefix="espmail-iam-")


_REPORT_DIR = pytest.StashKey[str]()
_CONTRACT = pytest.StashKey[Any]()


def pytest_configure_node(node: Any) -> None:  # xdist: where each worker writes its share of the report
    node.workerinput["espmail_iam_report_dir"] = node.config.stash[_REPORT_DIR]


def _contract(config: pytest.Config) -> Any:
    from embedded.iam import Contract

    if _CONTRACT not in config.stash:
        config.stash[_CONTRACT] = Contract()
    return config.stash[_CONTRACT]


@pytest.fixture(autouse=True)
def iam_contract(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails a test in which a function made an AWS call its deployed role would be denied."""
    from embedded import aws_calls

    aws_calls.drain()
    yield
    calls = aws_calls.drain()
    if calls:
        denied = _contract(request.config).denials(calls)
        if denied:
            pytest.fail("IAM contract (template.yaml):\n  " + "\n  ".join(denied), pytrace=False)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if _CONTRACT not in config.stash:
        return
    contract = config.stash[_CONTRACT]
    folder = (
        config.workerinput["espmail_iam_report_dir"] if hasattr(config, "workerinput") else config.stash[_REPORT_DIR]
    )
    share = {"invoked": sorted(contract.invoked), "granted": sorted(contract.granted), "used": sorted(contract.used)}
    with open(os.path.join(folder, f"{os.getpid()}.json"), "w", encoding="utf-8") as handle:
        json.dump(share, handle)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or _REPORT_DIR not in config.stash:
        return
    from embedded.iam import Contract

    folder = config.stash[_REPORT_DIR]
    merged = Contract()
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            share = json.load(handle)
        merged.invoked.update(share["invoked"])
        merged.granted.update(tuple(g) for g in share["granted"])
        merged.used.update(tuple(u) for u in share["used"])
    if not merged.invoked:
        return
    terminalreporter.section("IAM contract")
    terminalreporter.write_line(f"functions invoked by the tests: {', '.join(sorted(merged.invoked))}")
    never = merged.never_invoked()
    terminalreporter.write_line(f"functions no test invoked: {', '.join(never) if never else 'none'}")
    unused = merged.unused()
    terminalreporter.write_line(f"grants no call used ({len(unused)}):")
    for line in unused:
        terminalreporter.write_line(f"  {line}")
