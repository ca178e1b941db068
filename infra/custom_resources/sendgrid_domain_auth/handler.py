"""The Lambda handler of ``Custom::SendGridDomainAuthentication``: real clients wired, one call, no logic.

The API key is read from the secret named in the event and handed only to the SendGrid client. Two
libraries would log it at DEBUG level (the SendGrid HTTP client logs request headers, botocore logs the
GetSecretValue response body), so in this function those loggers never go below INFO, whatever level the
function runs at.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from cfn_response import answer_setup_failure
from espmail.errors import ConfigurationError
from sendgrid_domain_auth.resource import PollingHandOffFailed, Wiring, run_domain_authentication
from sendgrid_domain_auth.route53_zone import HostedZone
from sendgrid_domain_auth.sendgrid_domains import SendGridDomains
from sendgrid_domain_auth.settings import DomainAuthSettings

SECRET_BEARING_LOGGERS = ("python_http_client", "botocore")


def keep_the_key_out_of_logs() -> None:
    for name in SECRET_BEARING_LOGGERS:
        library_logger = logging.getLogger(name)
        if library_logger.getEffectiveLevel() < logging.INFO:
            library_logger.setLevel(logging.INFO)


@cache
def _settings() -> DomainAuthSettings:
    return DomainAuthSettings.from_env()


@cache
def _client(service: str) -> Any:
    from espmail.bootstrap import aws_client

    return aws_client(service)


def wiring(
    context: Any,
    settings: DomainAuthSettings,
    *,
    clients: Callable[[str], Any] = _client,
    invoke_again: Callable[[Mapping[str, Any]], None] | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Wiring:
    """Real adapters over ``clients`` (boto3 clients by service name); the re-invocation goes to the
    function's own ARN unless ``invoke_again`` is given."""
    from espmail.transport.secrets import read_api_key

    def sendgrid(secret_arn: str) -> SendGridDomains:
        from espmail.transport.sendgrid_mailer import SendGridMailer

        api_key = read_api_key(secret_arn, clients("secretsmanager"))
        mailer = SendGridMailer(api_key, host=settings.sendgrid_host, timeout=settings.sendgrid_timeout_seconds)
        return SendGridDomains(mailer.api)

    def zone(zone_id: str) -> HostedZone:
        return HostedZone(zone_id, clients("route53"))

    def invoke_self(event: Mapping[str, Any]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        function_arn = context.invoked_function_arn
        try:
            clients("lambda").invoke(
                FunctionName=function_arn, InvocationType="Event", Payload=json.dumps(event).encode("utf-8")
            )
        except (ClientError, BotoCoreError) as exc:
            raise PollingHandOffFailed(
                f"could not invoke {function_arn} again to go on waiting for validation ({exc}); "
                "the function needs lambda:InvokeFunction on itself"
            ) from exc

    return Wiring(sendgrid=sendgrid, zone=zone, invoke_again=invoke_again or invoke_self, clock=clock, sleep=sleep)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, str] | None:
    keep_the_key_out_of_logs()
    try:
        settings = _settings()
    except ConfigurationError as exc:
        answer = answer_setup_failure(event, context, exc)
    else:
        answer = run_domain_authentication(event, context, wiring(context, settings))
    return None if answer is None else {"Status": answer.status, "PhysicalResourceId": answer.physical_resource_id}
