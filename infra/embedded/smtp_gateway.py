"""An SMTP listener on loopback that does what SES receiving does, for a person trying the local stack.

For each message accepted over SMTP (any client: ``smtplib``, ``swaks``, a mail program):

1. refuses, at ``RCPT TO``, a recipient outside the site's domain (SES's receipt rule lists the domain);
2. stores the raw message in the raw-mail bucket under ``inbound/<messageId>`` with the headers SES adds
   in front, and builds the SES receipt event of the Lambda action, both with ``embedded.ses_inbound``
   (the same builder the replay command and the tests use);
3. hands the event to ``deliver``: by default ``invoke_async``, which runs the mailgate the way Lambda runs
   an asynchronous (``Event``) invocation: the first try, then the retries of the function's
   ``EventInvokeConfig``, then an on-failure record (``requestPayload`` = the event) in the function's
   on-failure destination queue, where ``espmail inbound redrive`` finds it.

The listener cannot check SPF, DKIM or DMARC of a loopback client: the verdicts it reports are set when it
starts (all PASS by default, so a seeded teacher's address counts as that teacher; a DMARC FAIL makes
every sender an unauthenticated stranger).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiosmtpd.controller import Controller

from embedded.aws import free_port
from embedded.ses_inbound import MAILGATE, InboundVerdicts, deliver

log = logging.getLogger(__name__)

RAW_MAIL_BUCKET = "RawMailBucket"
SES_SIZE_LIMIT = 40 * 1024 * 1024  # what SES receiving accepts through the S3 action


class LocalStack(Protocol):
    """What the gateway needs of ``EmbeddedStack``."""

    tpl: dict[str, Any]

    def client(self, service: str) -> Any: ...

    def name(self, logical_id: str) -> str: ...

    def invoke(self, logical_id: str, event: Any, *, remaining_ms: int = ...) -> Any: ...

    def function_env(self, logical_id: str | None = None) -> dict[str, str]: ...


# ---------------------------------------------------------------------------------------------- async invoke
@dataclass(frozen=True, slots=True)
class Delivery:
    """How an asynchronous invocation ended: its result, or the error and where the record went."""

    ok: bool
    attempts: int
    result: Any = None
    error: str = ""
    failure_queue_url: str = ""


def _on_failure_queue(stack: LocalStack, logical_id: str) -> tuple[str, int]:
    """The function's on-failure destination queue name and its retry count, from its EventInvokeConfig."""
    properties = stack.tpl["Resources"][logical_id].get("Properties", {})
    config = properties.get("EventInvokeConfig", {})
    retries = int(config.get("MaximumRetryAttempts", 2))
    destination = config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
    if isinstance(destination, dict) and "Fn::GetAtt" in destination:
        target = destination["Fn::GetAtt"]
        logical = target[0] if isinstance(target, list) else str(target).split(".", 1)[0]
        return stack.name(logical), retries
    return "", retries


def invoke_async(stack: LocalStack, logical_id: str, event: Any, *, retry_delay: float = 0.2) -> Delivery:
    """Runs the function as Lambda runs an ``Event`` invocation: tries, retries, then the on-failure queue."""
    queue_name, retries = _on_failure_queue(stack, logical_id)
    error = ""
    for attempt in range(1, retries + 2):
        try:
            return Delivery(ok=True, attempts=attempt, result=stack.invoke(logical_id, event))
        except Exception as exc:  # noqa: BLE001 - as Lambda does: any failure is retried, then recorded
            error = f"{type(exc).__name__}: {exc}"
            log.warning("%s failed (attempt %d of %d): %s", logical_id, attempt, retries + 1, error)
            if attempt <= retries:
                time.sleep(retry_delay)
    if not queue_name:
        return Delivery(ok=False, attempts=retries + 1, error=error)
    sqs = stack.client("sqs")
    queue_url = str(sqs.get_queue_url(QueueName=queue_name)["QueueUrl"])
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    record = {
        "version": "1.0",
        "timestamp": now,
        "requestContext": {
            "requestId": secrets.token_hex(16),
            "functionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{logical_id}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": retries + 1,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": error, "errorType": error.split(":", 1)[0]},
    }
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(record))
    return Delivery(ok=False, attempts=retries + 1, error=error, failure_queue_url=queue_url)


# ---------------------------------------------------------------------------------------------- SMTP
@dataclass(frozen=True, slots=True)
class Received:
    message_id: str
    mail_from: str
    recipients: tuple[str, ...]
    size: int
    event: dict[str, Any]


class _SesLikeHandler:
    def __init__(self, gateway: SmtpGateway) -> None:
        self.gateway = gateway

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        domain = address.rpartition("@")[2].lower()
        if domain not in self.gateway.domains:
            return f"550 5.7.1 <{address}>: this stack receives mail for {', '.join(self.gateway.domains)} only"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or envelope.content
        try:
            received = self.gateway.receive(raw, mail_from=envelope.mail_from or "", recipients=envelope.rcpt_tos)
        except Exception as exc:
            log.exception("could not store a message from %s", envelope.mail_from)
            return f"451 4.3.0 could not store the message ({type(exc).__name__}); try again"
        return f"250 Ok: queued as {received.message_id}"


class SmtpGateway:
    """SES receiving for the embedded stack, on ``host:port`` (``port=0``: a free port)."""

    def __init__(
        self,
        stack: LocalStack,
        *,
        domains: Sequence[str],
        host: str = "127.0.0.1",
        port: int = 2525,
        verdicts: InboundVerdicts | None = None,
        deliver: Callable[[Received], object] | None = None,
    ) -> None:
        self.stack = stack
        self.domains = tuple(d.lower() for d in domains)
        self.host = host
        self.requested_port = port
        self.verdicts = verdicts or InboundVerdicts()
        self.deliver = deliver or (lambda received: invoke_async(self.stack, MAILGATE, received.event))
        self._controller: Any = None
        self._s3 = stack.client("s3")
        self._bucket = stack.name(RAW_MAIL_BUCKET)
        self._prefix = stack.function_env(MAILGATE).get("RAW_MAIL_PREFIX") or "inbound/"

        self.port = port

    def start(self) -> SmtpGateway:
        """``OSError`` when the port is taken. Port 0 picks a free one (``port`` then says which)."""
        self.port = self.requested_port or free_port()
        controller = Controller(
            _SesLikeHandler(self),
            hostname=self.host,
            port=self.port,
            server_hostname="inbound-smtp.local.espmail",
            data_size_limit=SES_SIZE_LIMIT,
            enable_SMTPUTF8=True,
            ready_timeout=10,
        )
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def receive(self, raw: bytes, *, mail_from: str, recipients: Sequence[str]) -> Received:
        """Stores the message as SES would, builds the event and hands it over (also usable without SMTP)."""
        delivered = deliver(
            raw,
            recipients=list(recipients),
            s3_client=self._s3,
            bucket=self._bucket,
            prefix=self._prefix,
            source=mail_from,
            verdicts=self.verdicts,
        )
        received = Received(delivered.message_id, mail_from, tuple(recipients), len(raw), delivered.event)
        self.deliver(received)
        return received
