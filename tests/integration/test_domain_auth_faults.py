"""Custom::SendGridDomainAuthentication when things go slowly or wrong: validation that takes tries or never
passes, polling across invocations, SendGrid 400 / 401 / 429 / 500, a Route53 error. Every case answers
CloudFormation exactly once, with a reason a person can act on."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest

from embedded.sendgrid_double import Status
from sendgrid_domain_auth.handler import wiring
from sendgrid_domain_auth.resource import POLLING_KEY, PollingHandOffFailed, run_domain_authentication
from sendgrid_domain_auth.settings import DomainAuthSettings
from tests.integration.domain_auth_support import (
    DOMAIN_AUTH_FUNCTION,
    SITE_DOMAIN,
    CloudFormationResponses,
    FakeTime,
    cfn_event,
    context,
    create_zone,
    drain,
    sendgrid_requests,
    zone_records,
)

DOMAINS = "/v3/whitelabel/domains"


@dataclass
class Runner:
    """Runs events through the real wiring with a fake clock; re-invocations queue up in ``invocations``."""

    stack: Any
    time: FakeTime = field(default_factory=FakeTime)
    invocations: list[Mapping[str, Any]] = field(default_factory=list)
    route53: Any = None

    def __call__(self, event: Mapping[str, Any], remaining_ms: int = 300_000) -> Any:
        ctx = context(remaining_ms)
        settings = DomainAuthSettings.from_env(self.stack.function_env(DOMAIN_AUTH_FUNCTION))
        clients = cache(self.stack.client)

        def client(service: str) -> Any:
            return self.route53 if service == "route53" and self.route53 is not None else clients(service)

        return run_domain_authentication(
            event,
            ctx,
            wiring(
                ctx,
                settings,
                clients=client,
                invoke_again=self.invocations.append,
                clock=self.time.clock,
                sleep=self.time.sleep,
            ),
        )


@pytest.fixture
def run(stack: Any) -> Runner:
    return Runner(stack)


def properties(stack: Any, zone_id: str, **more: str) -> dict[str, str]:
    return {"Domain": SITE_DOMAIN, "HostedZoneId": zone_id, "ApiKeySecretArn": stack.secret_arn, **more}


def test_validation_that_passes_on_the_third_try_backs_off_and_succeeds(
    stack: Any, responses: CloudFormationResponses, run: Runner
) -> None:
    stack.sendgrid.domain_validation(passes_after=3)
    url = responses.url()

    run(cfn_event("Create", properties(stack, create_zone(stack)), url))

    answer = responses.only(url)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["Data"]["Valid"] == "true"
    assert len(sendgrid_requests(stack, "POST", "/validate")) == 3
    assert run.time.sleeps == [5.0, 10.0]
    assert run.invocations == []


def test_validation_that_never_passes_answers_success_with_valid_false_and_sendgrids_reasons(
    stack: Any, responses: CloudFormationResponses, run: Runner
) -> None:
    """SUCCESS with Valid=false, not FAILED: the records are written and right; what is missing (zone
    delegation, propagation) is outside the stack, and FAILED would roll the whole stack back."""
    stack.sendgrid.domain_validation(passes_after=None)
    zone = create_zone(stack)
    url = responses.url()

    run(cfn_event("Create", properties(stack, zone, ValidationTimeoutMinutes="1"), url))

    answer = responses.only(url)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["Data"]["Valid"] == "false"
    (domain,) = stack.sendgrid.domains
    mail_host = f"{domain['subdomain']}.{SITE_DOMAIN}"
    reasons = answer["Data"]["ValidationReasons"]
    assert f'mail_cname: Expected CNAME for "{mail_host}" to match "u4242001.wl1.sendgrid.net".' in reasons
    assert "dkim1: " in reasons
    assert "dkim2: " in reasons
    assert "within 1 minutes" in answer["Reason"]
    # 0, 5, 15, 35 s: the next wait (40 s) would end past the one-minute limit.
    assert len(sendgrid_requests(stack, "POST", "/validate")) == 4
    assert zone_records(stack, zone) != {}


def test_slow_validation_goes_on_in_new_invocations_and_only_the_last_answers(
    stack: Any, responses: CloudFormationResponses, run: Runner
) -> None:
    stack.sendgrid.domain_validation(passes_after=5)
    url = responses.url()
    event = cfn_event("Create", properties(stack, create_zone(stack), ValidationTimeoutMinutes="10"), url)

    run(event, remaining_ms=60_000)  # 30 s of budget per run after the reserve
    assert responses.for_url(url) == []
    continued = []
    for payload in drain(run.invocations):
        continued.append(json.loads(json.dumps(payload)))  # it travels as JSON
        run(payload, remaining_ms=60_000)

    answer = responses.only(url)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["Data"]["Valid"] == "true"
    assert [p[POLLING_KEY]["invocation"] for p in continued] == [2, 3]
    for payload in continued:
        assert {k: v for k, v in payload.items() if k != POLLING_KEY} == event
        assert stack.sendgrid.api_key not in json.dumps(payload)
    assert len(stack.sendgrid.domains) == 1
    assert len(sendgrid_requests(stack, "POST", "/validate")) == 5
    assert len(sendgrid_requests(stack, "POST", DOMAINS)) == 1


def test_polling_stops_at_the_invocation_limit(stack: Any, responses: CloudFormationResponses, run: Runner) -> None:
    stack.sendgrid.domain_validation(passes_after=None)
    url = responses.url()
    run(cfn_event("Create", properties(stack, create_zone(stack), ValidationTimeoutMinutes="55"), url), 40_000)
    runs = 1
    for payload in drain(run.invocations):
        run(payload, remaining_ms=40_000)
        runs += 1

    answer = responses.only(url)
    assert answer["Data"]["Valid"] == "false"
    assert runs == 30


def test_route53_that_is_slow_to_be_insync_is_waited_for(
    stack: Any, responses: CloudFormationResponses, run: Runner
) -> None:
    run.route53 = SlowRoute53(stack.client("route53"), pending_reads=3)
    url = responses.url()

    run(cfn_event("Create", properties(stack, create_zone(stack)), url))

    assert responses.only(url)["Data"]["Valid"] == "true"
    assert run.time.sleeps == [2.0, 3.0, 4.5]
    assert run.route53.reads == 4


def test_a_failed_hand_off_answers_failed(stack: Any, responses: CloudFormationResponses, run: Runner) -> None:
    stack.sendgrid.domain_validation(passes_after=None)

    def refuse(event: Mapping[str, Any]) -> None:
        raise PollingHandOffFailed("could not invoke the function again (AccessDenied)")

    run.invocations = RefusingList(refuse)
    url = responses.url()
    run(cfn_event("Create", properties(stack, create_zone(stack)), url), remaining_ms=40_000)

    answer = responses.only(url)
    assert answer["Status"] == "FAILED"
    assert "AccessDenied" in answer["Reason"]


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        (Status(400, message="The domain esp.example.org is not allowed for this account."), "not allowed"),
        (Status(500, count=None), "HTTP 500"),
        (Status(429, count=None, retry_after=1), "HTTP 429"),
    ],
)
def test_sendgrid_errors_fail_the_create_with_sendgrids_words(
    stack: Any, responses: CloudFormationResponses, run: Runner, fault: Status, words: str
) -> None:
    stack.sendgrid.inject(fault, path=DOMAINS)
    url = responses.url()
    event = cfn_event("Create", properties(stack, create_zone(stack)), url)

    run(event)

    answer = responses.only(url)
    assert answer["Status"] == "FAILED"
    assert words in answer["Reason"]
    assert "looking up SendGrid domain authentication for esp.example.org" in answer["Reason"]
    assert answer["PhysicalResourceId"] == f"not-created/{event['LogicalResourceId']}/{event['RequestId']}"
    if fault.status >= 429:
        assert "deploy again later" in answer["Reason"]
        assert len(sendgrid_requests(stack, "GET")) == 4  # tried four times

    # CloudFormation's rollback then deletes what the failed Create answered: nothing to do, SUCCESS.
    stack.sendgrid.clear_faults()
    rollback = responses.url()
    run(cfn_event("Delete", properties(stack, ""), rollback, physical_id=answer["PhysicalResourceId"]))
    assert responses.only(rollback)["Status"] == "SUCCESS"


@pytest.mark.parametrize("status", [429, 500])
def test_a_passing_sendgrid_hiccup_is_retried(
    stack: Any, responses: CloudFormationResponses, run: Runner, status: int
) -> None:
    stack.sendgrid.inject(Status(status, retry_after=2), path=f"{DOMAINS}/")
    url = responses.url()

    run(cfn_event("Create", properties(stack, create_zone(stack)), url))

    answer = responses.only(url)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert 2.0 in run.time.sleeps  # SendGrid's Retry-After was honoured


def test_a_refused_api_key_names_the_secret_and_the_scope_never_the_key(
    stack: Any, responses: CloudFormationResponses, run: Runner
) -> None:
    stack.client("secretsmanager").put_secret_value(SecretId=stack.secret_arn, SecretString="SG.revoked-key-0000")
    url = responses.url()

    run(cfn_event("Create", properties(stack, create_zone(stack)), url))

    answer = responses.only(url)
    assert answer["Status"] == "FAILED"
    assert "HTTP 401" in answer["Reason"]
    assert stack.secret_arn in answer["Reason"]
    assert "Sender Authentication" in answer["Reason"]
    assert "SG.revoked-key-0000" not in json.dumps(answer)


def test_a_route53_error_fails_with_route53s_words_and_the_rollback_cleans_up(
    stack: Any, responses: CloudFormationResponses, run: Runner
) -> None:
    url = responses.url()
    missing_zone = "Z0000000000NOSUCHZONE"

    run(cfn_event("Create", properties(stack, missing_zone), url))

    answer = responses.only(url)
    assert answer["Status"] == "FAILED"
    assert "NoSuchHostedZone" in answer["Reason"]
    assert missing_zone in answer["Reason"]
    assert "writing 3 SendGrid records into hosted zone" in answer["Reason"]
    (domain,) = stack.sendgrid.domains
    assert answer["PhysicalResourceId"].startswith(f"sendgrid-domain/{domain['id']}/")

    rollback = responses.url()
    run(cfn_event("Delete", properties(stack, missing_zone), rollback, physical_id=answer["PhysicalResourceId"]))
    assert responses.only(rollback)["Status"] == "SUCCESS"
    assert stack.sendgrid.domains == []


def test_a_failed_update_keeps_the_old_physical_id(stack: Any, responses: CloudFormationResponses, run: Runner) -> None:
    zone = create_zone(stack)
    created, updated = responses.url(), responses.url()
    old = properties(stack, zone)
    run(cfn_event("Create", old, created))
    physical_id = responses.only(created)["PhysicalResourceId"]
    stack.sendgrid.inject(Status(400, message="subdomain is taken"), path=DOMAINS)

    run(
        cfn_event(
            "Update", properties(stack, zone, Subdomain="mail"), updated, physical_id=physical_id, old_properties=old
        )
    )

    answer = responses.only(updated)
    assert answer["Status"] == "FAILED"
    assert answer["PhysicalResourceId"] == physical_id
    assert "subdomain is taken" in answer["Reason"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"ApiKey": "SG.abcdefghijklmnop.qrstuvwxyz"}, "looks like a SendGrid API key"),
        ({"HostedZoneID": "Z123"}, "unknown properties HostedZoneID"),
        ({"Domain": "not a domain"}, "is not a domain name"),
        ({"ApiKeySecretArn": "my-secret"}, "must be the ARN of the Secrets Manager secret"),
        ({"ValidationTimeoutMinutes": "90"}, "must be 0 to 55"),
    ],
)
def test_bad_properties_fail_with_what_to_fix(
    stack: Any, responses: CloudFormationResponses, run: Runner, change: dict[str, str], words: str
) -> None:
    url = responses.url()
    run(cfn_event("Create", {**properties(stack, ""), **change}, url))

    answer = responses.only(url)
    assert answer["Status"] == "FAILED"
    assert words in answer["Reason"]
    assert "SG.abcdefghijklmnop" not in answer["Reason"]
    assert stack.sendgrid.domains == []


class SlowRoute53:
    """moto's Route53, except that a change reads PENDING the first few times, as real Route53's do."""

    def __init__(self, client: Any, pending_reads: int) -> None:
        self._client = client
        self._pending = pending_reads
        self.reads = 0

    def get_change(self, **arguments: Any) -> Any:
        self.reads += 1
        answer = self._client.get_change(**arguments)
        if self.reads <= self._pending:
            answer["ChangeInfo"]["Status"] = "PENDING"
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class RefusingList(list[Mapping[str, Any]]):
    """An invocation queue whose ``append`` fails the way a refused Lambda Invoke does."""

    def __init__(self, refuse: Callable[[Mapping[str, Any]], None]) -> None:
        super().__init__()
        self._refuse = refuse

    def append(self, item: Mapping[str, Any]) -> None:
        self._refuse(item)
