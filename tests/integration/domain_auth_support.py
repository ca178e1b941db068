"""What the custom resource tests share: a local HTTP server standing in for CloudFormation's pre-signed
ResponseURL (it keeps every PUT body), events built from the real corpus shapes, a fake clock whose sleeps
return at once, and the Route53 zone as a plain mapping."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from embedded.lambda_runtime import LambdaContext

AWS_EVENTS = Path(__file__).resolve().parents[1] / "corpus" / "aws-events"
DOMAIN_AUTH_FUNCTION = "SendGridDomainAuthFunction"
RULE_SET_FUNCTION = "ActiveReceiptRuleSetFunction"
SITE_DOMAIN = "esp.example.org"


@dataclass
class CapturedResponse:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class CloudFormationResponses:
    """A loopback HTTP server that takes PUTs the way the pre-signed S3 URL does and keeps them."""

    def __init__(self) -> None:
        self.received: list[CapturedResponse] = []
        self.refusals: list[int] = []  # statuses to answer the next PUTs with (kept, as S3 would not)
        self._lock = threading.Lock()
        responses = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                with responses._lock:
                    status = responses.refusals.pop(0) if responses.refusals else 200
                    if status == 200:
                        responses.received.append(
                            CapturedResponse(self.path, {k: v for k, v in self.headers.items()}, json.loads(raw))
                        )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> CloudFormationResponses:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self) -> str:
        """A fresh pre-signed-looking URL (one per request, as CloudFormation gives)."""
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/cfn-response/{uuid.uuid4().hex}?X-Amz-Signature=local"

    def for_url(self, url: str) -> list[dict[str, Any]]:
        path = url.split(str(self._server.server_address[1]), 1)[1]
        with self._lock:
            return [r.body for r in self.received if r.path == path]

    def only(self, url: str) -> dict[str, Any]:
        bodies = self.for_url(url)
        assert len(bodies) == 1, f"expected exactly one answer to {url}, got {len(bodies)}"
        return bodies[0]


def cfn_event(
    request_type: str,
    properties: Mapping[str, Any],
    response_url: str,
    *,
    physical_id: str | None = None,
    old_properties: Mapping[str, Any] | None = None,
    logical_id: str = "SendGridDomainAuthentication",
) -> dict[str, Any]:
    """A real CloudFormation event shape (the corpus files), with our properties and ResponseURL filled in.
    Delete has Update's shape without OldResourceProperties."""
    source = "cfn-custom-resource-create.json" if request_type == "Create" else "cfn-custom-resource-update.json"
    event: dict[str, Any] = json.loads((AWS_EVENTS / source).read_text())
    token = event["ResourceProperties"]["ServiceToken"]
    event["RequestType"] = request_type
    event["ResponseURL"] = response_url
    event["RequestId"] = str(uuid.uuid4())
    event["LogicalResourceId"] = logical_id
    event["ResourceType"] = (
        "Custom::SendGridDomainAuthentication" if logical_id.startswith("SendGrid") else "Custom::ActiveReceiptRuleSet"
    )
    event["ResourceProperties"] = {"ServiceToken": token, **properties}
    if request_type == "Create":
        event.pop("PhysicalResourceId", None)
    else:
        event["PhysicalResourceId"] = physical_id
    if request_type == "Update":
        event["OldResourceProperties"] = {"ServiceToken": token, **(old_properties or {})}
    else:
        event.pop("OldResourceProperties", None)
    return event


@dataclass
class FakeTime:
    """A clock that only moves when slept on; the sleeps are recorded and return at once."""

    now: float = 1_800_000_000.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += max(0.0, seconds)


def context(remaining_ms: int = 300_000) -> LambdaContext:
    return LambdaContext(function_name=DOMAIN_AUTH_FUNCTION, remaining_ms=remaining_ms)


def create_zone(stack: Any, domain: str = SITE_DOMAIN) -> str:
    answer = stack.client("route53").create_hosted_zone(Name=domain, CallerReference=str(uuid.uuid4()))
    return str(answer["HostedZone"]["Id"]).rsplit("/", 1)[-1]


def zone_records(stack: Any, zone_id: str) -> dict[tuple[str, str], list[str]]:
    """(name without trailing dot, type) -> values, SOA and NS left out."""
    found: dict[tuple[str, str], list[str]] = {}
    paginator = stack.client("route53").get_paginator("list_resource_record_sets")
    for page in paginator.paginate(HostedZoneId=zone_id):
        for record_set in page["ResourceRecordSets"]:
            if record_set["Type"] in ("SOA", "NS"):
                continue
            key = (record_set["Name"].rstrip("."), record_set["Type"])
            found[key] = [r["Value"] for r in record_set.get("ResourceRecords", [])]
    return found


def sendgrid_requests(stack: Any, method: str | None = None, suffix: str = "") -> list[Any]:
    return [
        r
        for r in stack.sendgrid.requests_log
        if r.path.startswith("/v3/whitelabel/domains")
        and (method is None or r.method == method)
        and r.path.endswith(suffix)
    ]


def drain(queue: list[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """The re-invocations a run asked for, in order, including those asked for while draining."""
    while queue:
        yield queue.pop(0)
