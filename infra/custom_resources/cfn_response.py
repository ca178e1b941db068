"""Answering CloudFormation for a custom resource.

CloudFormation waits for one JSON document PUT to the event's pre-signed ``ResponseURL``; a resource that
never answers leaves its stack waiting for an hour (or the resource's ``ServiceTimeout``). So
``answer_custom_resource`` wraps the whole of a custom resource's work and guarantees an answer:

- the work returns an ``Answer`` (SUCCESS or FAILED) and it is sent;
- the work raises: FAILED is sent, with the exception's message as the reason (actionable text is the
  work's job; the project's own exceptions carry it);
- the Lambda is about to run out of time: a timer sends FAILED a few seconds before the end, naming what
  the work was doing and where its logs are;
- the work hands off to another invocation of the same function (``Responder.hand_off``): nothing is sent
  here, and the invocation that finishes answers.

At most one answer per invocation is sent (a lock decides between the work and the timer). The document
is kept under CloudFormation's 4,096-byte limit by shortening the reason, then the longest data values,
cutting on character boundaries. ``NoEcho`` is always false: nothing secret is ever put in ``Data``.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Self

from espmail.errors import InvalidInput
from espmail.observability import logger

MAX_RESPONSE_BYTES: Final = 4096
# Room for the answer itself: three PUT attempts of 4 s each plus their short back-off.
GUARD_SECONDS: Final = 15.0
TRUNCATED: Final = " …[truncated]"

Status = Literal["SUCCESS", "FAILED"]
ResponseSender = Callable[[str, bytes], None]


@dataclass(frozen=True, slots=True)
class CustomResourceRequest:
    """The fields of a CloudFormation custom resource event that the resources read."""

    request_type: Literal["Create", "Update", "Delete"]
    response_url: str
    stack_id: str
    request_id: str
    logical_resource_id: str
    resource_type: str
    properties: Mapping[str, Any]
    old_properties: Mapping[str, Any]
    physical_resource_id: str | None
    event: Mapping[str, Any]

    @classmethod
    def from_event(cls, event: Any) -> Self:
        if not isinstance(event, Mapping):
            raise InvalidInput(f"a custom resource event is a JSON object, not {type(event).__name__}")
        missing = [
            key
            for key in ("RequestType", "ResponseURL", "StackId", "RequestId", "LogicalResourceId")
            if not isinstance(event.get(key), str) or not event.get(key)
        ]
        if missing:
            raise InvalidInput(f"the custom resource event lacks {', '.join(missing)}")
        request_type = event["RequestType"]
        if request_type not in ("Create", "Update", "Delete"):
            raise InvalidInput(f"unknown RequestType {request_type!r}; expected Create, Update or Delete")
        properties = event.get("ResourceProperties") or {}
        old_properties = event.get("OldResourceProperties") or {}
        if not isinstance(properties, Mapping) or not isinstance(old_properties, Mapping):
            raise InvalidInput("ResourceProperties and OldResourceProperties must be JSON objects")
        physical = event.get("PhysicalResourceId")
        return cls(
            request_type=request_type,
            response_url=event["ResponseURL"],
            stack_id=event["StackId"],
            request_id=event["RequestId"],
            logical_resource_id=event["LogicalResourceId"],
            resource_type=str(event.get("ResourceType", "")),
            properties=properties,
            old_properties=old_properties,
            physical_resource_id=physical if isinstance(physical, str) and physical else None,
            event=event,
        )

    @property
    def placeholder_physical_id(self) -> str:
        """The physical id of a Create that failed before it made anything: a Delete of it does nothing."""
        return f"not-created/{self.logical_resource_id}/{self.request_id}"


@dataclass(frozen=True, slots=True)
class Answer:
    status: Status
    physical_resource_id: str
    data: Mapping[str, str] = field(default_factory=dict)
    reason: str = ""

    @classmethod
    def success(cls, physical_resource_id: str, data: Mapping[str, str] | None = None, reason: str = "") -> Self:
        return cls("SUCCESS", physical_resource_id, dict(data or {}), reason)

    @classmethod
    def failed(cls, physical_resource_id: str, reason: str) -> Self:
        return cls("FAILED", physical_resource_id, {}, reason)


class HandedOff:
    """Returned by work that passed the event on to another invocation, which will answer."""


HANDED_OFF: Final = HandedOff()


def _cut(text: str, max_bytes: int) -> str:
    """``text`` in at most ``max_bytes`` UTF-8 bytes, marked when shortened, never splitting a character."""
    if len(text.encode("utf-8")) <= max_bytes:
        return text
    room = max(0, max_bytes - len(TRUNCATED.encode("utf-8")))
    return text.encode("utf-8")[:room].decode("utf-8", "ignore") + TRUNCATED


def response_body(request: CustomResourceRequest, answer: Answer, *, max_bytes: int = MAX_RESPONSE_BYTES) -> bytes:
    """The response document, shortened to fit ``max_bytes``: first the reason, then the longest data values."""
    reason = answer.reason or ("OK" if answer.status == "SUCCESS" else "failed without a reason")
    data = {str(k): str(v) for k, v in answer.data.items()}

    def encode() -> bytes:
        document = {
            "Status": answer.status,
            "Reason": reason,
            "PhysicalResourceId": answer.physical_resource_id,
            "StackId": request.stack_id,
            "RequestId": request.request_id,
            "LogicalResourceId": request.logical_resource_id,
            "NoEcho": False,
            "Data": data,
        }
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    body = encode()
    if len(body) > max_bytes:
        excess = len(body) - max_bytes
        reason = _cut(reason, max(200, len(reason.encode("utf-8")) - excess))
        body = encode()
    while len(body) > max_bytes and data:
        longest = max(data, key=lambda k: len(data[k].encode("utf-8")))
        size = len(data[longest].encode("utf-8"))
        if size <= len(TRUNCATED.encode("utf-8")):
            del data[longest]
        else:
            data[longest] = _cut(data[longest], max(0, size - (len(body) - max_bytes) - 2))
        body = encode()
    if len(body) > max_bytes:  # only an absurdly long physical id can get here
        reason = _cut(reason, 64)
        body = encode()
    return body


def put_response(url: str, body: bytes, *, timeout: float = 4.0, attempts: int = 3) -> None:
    """PUTs ``body`` to the pre-signed S3 URL. The signature covers an empty Content-Type, so none is sent."""
    request = urllib.request.Request(  # noqa: S310 - the URL is CloudFormation's pre-signed https URL
        url, data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    host = urllib.parse.urlsplit(url).netloc  # the query string is a credential: never logged
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
                answer.read()
                return
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or attempt == attempts:
                raise
            logger().warning("CloudFormation response PUT failed; retrying", extra={"host": host, "status": exc.code})
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            if attempt == attempts:
                raise
            logger().warning("CloudFormation response PUT failed; retrying", extra={"host": host, "error": repr(exc)})
        time.sleep(0.5 * attempt)


class Responder:
    """Sends at most one answer for one invocation; the work and the timeout guard share it.

    ``physical_id`` is what a FAILED answer carries: the event's id for Update and Delete, and for a Create
    the id of whatever the work has already made (the work updates it), so CloudFormation's rollback Delete
    cleans that up. ``doing`` says what the work is busy with, for the timeout's reason.
    """

    def __init__(self, request: CustomResourceRequest, sender: ResponseSender = put_response) -> None:
        self.request = request
        self.physical_id = request.physical_resource_id or request.placeholder_physical_id
        self.doing = "starting"
        self._sender = sender
        self._lock = threading.Lock()
        self._state: Literal["pending", "answered", "handed-off"] = "pending"
        self.sent: Answer | None = None

    def answer(self, answer: Answer) -> bool:
        """Sends ``answer`` unless an answer was sent or the event handed off already; True when sent."""
        with self._lock:
            if self._state != "pending":
                return False
            self._state = "answered"
            self.sent = answer
        log = logger()
        log.info(
            "answering CloudFormation",
            extra={
                "status": answer.status,
                "physical_resource_id": answer.physical_resource_id,
                "reason": answer.reason,
                "logical_resource_id": self.request.logical_resource_id,
                "request_type": self.request.request_type,
            },
        )
        self._sender(self.request.response_url, response_body(self.request, answer))
        return True

    def fail(self, reason: str) -> bool:
        return self.answer(Answer.failed(self.physical_id, reason))

    def hand_off(self, pass_on: Callable[[], None]) -> bool:
        """Runs ``pass_on`` (which starts the invocation that will answer) unless an answer went out already.

        If ``pass_on`` raises, nothing is settled and the exception propagates, so FAILED can still be sent.
        """
        with self._lock:
            if self._state != "pending":
                return False
            pass_on()
            self._state = "handed-off"
            return True


def _log_location(context: Any) -> str:
    group = getattr(context, "log_group_name", "")
    stream = getattr(context, "log_stream_name", "")
    return f"CloudWatch Logs {group} {stream}".strip() if group else "the function's CloudWatch Logs"


def answer_custom_resource(
    event: Any,
    context: Any,
    work: Callable[[CustomResourceRequest, Responder], Answer | HandedOff],
    *,
    sender: ResponseSender = put_response,
    guard_seconds: float = GUARD_SECONDS,
) -> Answer | None:
    """Runs ``work`` for one custom resource event and makes sure CloudFormation hears back.

    Returns the answer sent (None when the work handed off, or when a re-run found the event already
    answered). An event without a ``ResponseURL`` cannot be answered: it raises ``InvalidInput``.
    """
    log = logger()
    request = CustomResourceRequest.from_event(event)
    responder = Responder(request, sender)
    remaining = float(context.get_remaining_time_in_millis()) / 1000.0 if context is not None else 900.0

    def on_timeout() -> None:
        reason = (
            f"{request.logical_resource_id}: the function ran out of time while {responder.doing}; "
            f"see {_log_location(context)}"
        )
        log.error("about to run out of time; answering FAILED", extra={"doing": responder.doing})
        try:
            responder.fail(reason)
        except Exception:
            log.exception("could not answer CloudFormation before the timeout")

    guard = threading.Timer(max(0.0, remaining - guard_seconds), on_timeout)
    guard.daemon = True
    guard.start()
    try:
        try:
            outcome = work(request, responder)
        except Exception as exc:
            log.exception(
                "custom resource failed",
                extra={"logical_resource_id": request.logical_resource_id, "request_type": request.request_type},
            )
            reason = str(exc) or type(exc).__name__
            responder.fail(f"{reason} (see {_log_location(context)})")
        else:
            if isinstance(outcome, Answer):
                responder.answer(outcome)
    finally:
        guard.cancel()
    return responder.sent


def answer_setup_failure(
    event: Any, context: Any, error: Exception, *, sender: ResponseSender = put_response
) -> Answer | None:
    """Answers FAILED when the function could not even be set up (settings, clients): CloudFormation must
    hear back whatever happened, or the stack waits for its timeout."""

    def work(request: CustomResourceRequest, responder: Responder) -> Answer:
        raise error

    return answer_custom_resource(event, context, work, sender=sender)
