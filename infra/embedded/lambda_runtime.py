"""Runs the real handlers in-process, the way Lambda would: the ``Handler`` string from the template,
the function's environment from the template, a context whose remaining time can be set.

Each invocation is kept while it runs (``invocation_of_this_thread``), so an AWS call made meanwhile can be
told apart as the function's own: the IAM contract (``embedded.aws_calls``) holds it against that function's
role. A call belongs to the invocation when it comes from the invoking thread or from a thread started
while the invocation ran (the sender's pools); calls from threads that were already there (a test or the
CLI reading tables while a function runs) belong to no function.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from embedded.template import Resolver, function_handler


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that code reads, with a settable time budget."""

    function_name: str = "espmail-local"
    remaining_ms: int = 300_000
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/espmail-local"
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        elapsed = int((time.monotonic() - self._started) * 1000)
        return max(0, self.remaining_ms - elapsed)


def resolve_handler(handler: str) -> Callable[[Any, Any], Any]:
    module_name, _, function_name = handler.rpartition(".")
    module = importlib.import_module(module_name)
    function: Callable[[Any, Any], Any] = getattr(module, function_name)
    return function


@contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Sets the function's environment for the duration of one invocation, as Lambda does."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        restore_environment(saved)


def restore_environment(saved: Mapping[str, str | None]) -> None:
    """Puts back the variables as they were (``None``: it was not set)."""
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@dataclass(frozen=True, eq=False)
class Invocation:
    """One handler call in progress: which function, on what event, in which deployment (the resolver of
    the stack's parameters and names, when the caller knows it)."""

    logical_id: str
    event: Any
    resolver: Resolver | None
    thread: threading.Thread
    threads_before: frozenset[threading.Thread]


_running: list[Invocation] = []
_running_lock = threading.Lock()


def running_invocations() -> list[Invocation]:
    with _running_lock:
        return list(_running)


def invocation_of_this_thread() -> Invocation | None:
    """The invocation this thread works for: the one it runs, or the only one running when this thread
    was started during it (several functions running at once: ``None`` rather than a guess)."""
    current = threading.current_thread()
    running = running_invocations()
    for invocation in reversed(running):
        if invocation.thread is current:
            return invocation
    started_during = [i for i in running if current not in i.threads_before]
    if len({i.logical_id for i in started_during}) == 1:
        return started_during[-1]
    return None


@contextmanager
def _running_as(invocation: Invocation) -> Iterator[None]:
    with _running_lock:
        _running.append(invocation)
    try:
        yield
    finally:
        with _running_lock:
            _running.remove(invocation)


def invoke_handler(
    logical_id: str,
    event: Any,
    variables: Mapping[str, str],
    *,
    tpl: Mapping[str, Any] | None = None,
    remaining_ms: int = 300_000,
    resolver: Resolver | None = None,
) -> Any:
    """Calls the function's real handler (``Handler:`` from the template) on ``event`` in this process, with
    the function's environment ``variables`` set for the call."""
    handler = resolve_handler(function_handler(logical_id, tpl))
    context = LambdaContext(function_name=logical_id, remaining_ms=remaining_ms)
    invocation = Invocation(logical_id, event, resolver, threading.current_thread(), frozenset(threading.enumerate()))
    with environment(variables), _running_as(invocation):
        return handler(event, context)
