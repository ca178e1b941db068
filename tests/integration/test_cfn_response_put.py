"""The CloudFormation response PUT (``cfn_response.put_response``) against a loopback server standing in
for the pre-signed S3 URL: a 5xx is retried, a 4xx is not, and what is logged on a retry never holds the
URL's path or query (its signature is a credential)."""

from __future__ import annotations

import io
import json
import logging
import urllib.error
from collections.abc import Iterator

import pytest

from cfn_response import put_response
from espmail.observability import logger
from tests.integration.domain_auth_support import CloudFormationResponses

BODY = json.dumps({"Status": "SUCCESS", "PhysicalResourceId": "x"}).encode()


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    log = logger()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(log.registered_formatter)
    log.addHandler(handler)
    try:
        yield stream
    finally:
        logging.getLogger(log.name).removeHandler(handler)


def test_a_5xx_answer_is_retried_and_the_log_names_the_host_only(
    responses: CloudFormationResponses, logged: io.StringIO
) -> None:
    url = responses.url()
    responses.refusals = [503, 500]

    put_response(url, BODY)

    assert responses.only(url) == json.loads(BODY)
    text = logged.getvalue()
    assert text.count("CloudFormation response PUT failed; retrying") == 2
    path_and_query = url.split("/", 3)[3]
    assert path_and_query not in text
    assert "X-Amz-Signature" not in text
    assert "cfn-response" not in text
    assert "127.0.0.1" in text  # the host is what a person needs to see


def test_a_4xx_answer_is_not_retried(responses: CloudFormationResponses) -> None:
    url = responses.url()
    responses.refusals = [403, 403]

    with pytest.raises(urllib.error.HTTPError) as refused:
        put_response(url, BODY)

    assert refused.value.code == 403
    assert responses.refusals == [403]  # asked once
    assert responses.for_url(url) == []


def test_the_last_5xx_is_raised_after_three_tries(responses: CloudFormationResponses) -> None:
    url = responses.url()
    responses.refusals = [502, 502, 502, 502]

    with pytest.raises(urllib.error.HTTPError):
        put_response(url, BODY)

    assert responses.refusals == [502]
