"""Every AWS call a function makes while the embedded runtime invokes it, recorded through botocore's
event hooks (boto3 clients and PynamoDB's connections alike), for the IAM contract (``embedded.iam``).

``install()`` adds two handlers to botocore's built-in handlers, so every botocore session created from
then on carries them: ``before-parameter-build`` keeps the operation, its parameters and the client's
region; ``after-call`` adds the HTTP status and error code of the answer. A call is kept only when it
belongs to an invocation (``embedded.lambda_runtime.invocation_of_this_thread``); a call from a thread
started while two different functions ran is kept as ambiguous (it cannot be held against one role).
Nothing is changed: the hooks only look.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from embedded.lambda_runtime import Invocation, invocation_of_this_thread, running_invocations

_CONTEXT_KEY = "espmail_recorded_call"
# Parameters that hold payloads, never names: not kept (a PutObject body may be 40 MB).
_PAYLOAD_PARAMETERS = frozenset({"Body", "SecretString", "SecretBinary", "Payload"})


@dataclass
class AwsCall:
    """One API call as IAM would see it: the service's signing name (its IAM prefix), the operation, the
    parameters given, the client's region, and the invocation it belongs to (``None``: ambiguous)."""

    service: str
    operation: str
    params: dict[str, Any]
    region: str
    invocation: Invocation | None
    status: int | None = None
    error_code: str | None = None
    functions_running: tuple[str, ...] = field(default=())

    @property
    def function(self) -> str | None:
        return self.invocation.logical_id if self.invocation else None

    @property
    def action(self) -> str:
        return f"{self.service}:{self.operation}"


_calls: list[AwsCall] = []
_lock = threading.Lock()


def _before_parameter_build(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    invocation = invocation_of_this_thread()
    running: tuple[str, ...] = ()
    if invocation is None:
        current = threading.current_thread()
        started_during = [i for i in running_invocations() if current not in i.threads_before]
        if not started_during:
            return  # not a function's call: a test, the CLI, the local stack's own set-up
        running = tuple(sorted({i.logical_id for i in started_during}))
    call = AwsCall(
        service=str(model.service_model.signing_name),
        operation=str(model.name),
        params={k: v for k, v in params.items() if k not in _PAYLOAD_PARAMETERS},
        region=str(context.get("client_region") or ""),
        invocation=invocation,
        functions_running=running,
    )
    context[_CONTEXT_KEY] = call
    with _lock:
        _calls.append(call)


def _after_call(http_response: Any, parsed: Any, context: dict[str, Any], **_: Any) -> None:
    call = context.get(_CONTEXT_KEY)
    if not isinstance(call, AwsCall):
        return
    call.status = int(getattr(http_response, "status_code", 0) or 0)
    error = parsed.get("Error", {}) if isinstance(parsed, dict) else {}
    call.error_code = str(error["Code"]) if error.get("Code") else None


_HANDLERS = (
    ("before-parameter-build", _before_parameter_build),
    ("after-call", _after_call),
)


def install() -> None:
    """Records from now on (idempotent). Sessions made before this (boto3's default one included, if it
    exists) get the handlers too."""
    import boto3
    from botocore import handlers

    for spec in _HANDLERS:
        if spec not in handlers.BUILTIN_HANDLERS:
            handlers.BUILTIN_HANDLERS.append(spec)
    if boto3.DEFAULT_SESSION is not None:
        events = boto3.DEFAULT_SESSION._session.get_component("event_emitter")
        for event_name, handler in _HANDLERS:
            events.register(event_name, handler, unique_id=f"espmail-aws-calls-{event_name}")


def drain() -> list[AwsCall]:
    """The calls recorded since the last drain, forgotten here."""
    with _lock:
        taken = list(_calls)
        _calls.clear()
    return taken
