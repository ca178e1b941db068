"""The SendGrid API key never shows in any log line, answer or event of a full Create and Delete, even with
every logger at DEBUG (where the SendGrid HTTP client would print request headers and botocore the
GetSecretValue response)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from espmail.observability import logger
from tests.integration.domain_auth_support import (
    DOMAIN_AUTH_FUNCTION,
    SITE_DOMAIN,
    CloudFormationResponses,
    cfn_event,
    create_zone,
)


@pytest.fixture
def powertools_output() -> Iterator[io.StringIO]:
    """Everything the project's Powertools logger writes, at DEBUG, formatted as it is in CloudWatch."""
    log = logger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(log.registered_formatter)
    level = log.log_level
    log.addHandler(handler)
    log.setLevel("DEBUG")
    try:
        yield stream
    finally:
        logging.getLogger(log.name).removeHandler(handler)  # Powertools' own logging.Logger
        log.setLevel(level)


def test_a_full_create_and_delete_never_logs_the_api_key(
    stack: Any,
    responses: CloudFormationResponses,
    powertools_output: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api_key = stack.sendgrid.api_key
    caplog.set_level(logging.DEBUG)
    zone = create_zone(stack)
    properties = {
        "Domain": SITE_DOMAIN,
        "HostedZoneId": zone,
        "ApiKeySecretArn": stack.secret_arn,
        "RetainOnDelete": "false",
    }
    created, deleted = responses.url(), responses.url()
    create = cfn_event("Create", properties, created)

    stack.invoke(DOMAIN_AUTH_FUNCTION, create)
    physical_id = responses.only(created)["PhysicalResourceId"]
    delete = cfn_event("Delete", properties, deleted, physical_id=physical_id)
    stack.invoke(DOMAIN_AUTH_FUNCTION, delete)

    assert responses.only(created)["Status"] == "SUCCESS"
    assert responses.only(deleted)["Status"] == "SUCCESS"
    captured = capsys.readouterr()
    records = "\n".join(f"{r.name} {r.levelname} {r.getMessage()} {r.args!r} {r.__dict__!r}" for r in caplog.records)
    everything = {
        "powertools": powertools_output.getvalue(),
        "caplog": caplog.text + records,
        "stdout": captured.out,
        "stderr": captured.err,
        "answers": json.dumps([r.body for r in responses.received]),
        "events": json.dumps([create, delete]),
    }
    # The capture works: the work was logged, at DEBUG too, and libraries logged through the root logger.
    assert "answering CloudFormation" in everything["powertools"]
    assert "waiting for Route53 change" in everything["powertools"]
    assert any(r.name.startswith(("botocore", "urllib3", "python_http_client")) for r in caplog.records)
    leaks = [where for where, text in everything.items() if api_key in text or api_key.split(".", 1)[1] in text]
    assert leaks == []
