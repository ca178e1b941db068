"""Shared fixtures: one embedded stack per test session (per xdist worker), reset before each test."""

from __future__ import annotations

import json
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
