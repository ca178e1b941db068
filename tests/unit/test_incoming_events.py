"""SES receipt events (real shapes from the corpus) and the mailgate's settings."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from espmail.errors import ConfigurationError, InvalidInput
from espmail.incoming.events import Verdict, parse_ses_event
from espmail.incoming.settings import MailgateSettings, SpamPolicy

CORPUS = Path(__file__).parents[1] / "corpus"


def _event(path: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CORPUS / path).read_text())
    return data


def test_the_lambda_action_event_from_aws() -> None:
    (receipt,) = parse_ses_event(_event("aws-events/ses-receipt-lambda.json"))
    assert receipt.message_id == "o3vrnil0e2ic28tr"
    assert receipt.source == "janedoe@example.com"
    assert receipt.recipients == ("johndoe@example.com",)
    assert receipt.common_headers.from_ == ("Jane Doe <janedoe@example.com>",)
    assert receipt.common_headers.subject == "Test Subject"
    assert receipt.header(
        "dkim-signature",
    ).startswith("v=1;")  # type: ignore[union-attr]
    v = receipt.verdicts
    assert (v.spf, v.dkim, v.dmarc, v.spam, v.virus) == (Verdict.PASS,) * 5
    assert receipt.action_type == "Lambda"
    assert receipt.object_key("inbound/") == "inbound/o3vrnil0e2ic28tr"


def test_the_ses_forwarder_event_has_no_dmarc_verdict() -> None:
    (receipt,) = parse_ses_event(_event("ses-forwarder/event.json"))
    assert receipt.verdicts.dmarc is Verdict.ABSENT
    assert receipt.recipients == ("info@example.com",)


def test_an_s3_action_event_names_its_own_object() -> None:
    event = _event("aws-events/ses-receipt-lambda.json")
    event["Records"][0]["ses"]["receipt"]["action"] = {
        "type": "S3",
        "bucketName": "raw",
        "objectKey": "elsewhere/o3vrnil0e2ic28tr",
    }
    (receipt,) = parse_ses_event(event)
    assert receipt.object_key("inbound/") == "elsewhere/o3vrnil0e2ic28tr"


def test_dmarc_fail_carries_the_policy() -> None:
    event = _event("aws-events/ses-receipt-lambda.json")
    receipt = event["Records"][0]["ses"]["receipt"]
    receipt["dmarcVerdict"] = {"status": "FAIL"}
    receipt["dmarcPolicy"] = "reject"
    receipt["spamVerdict"] = {"status": "weird"}
    (parsed,) = parse_ses_event(event)
    assert parsed.verdicts.dmarc is Verdict.FAIL
    assert parsed.verdicts.dmarc_policy == "reject"
    assert parsed.verdicts.spam is Verdict.PROCESSING_FAILED


@pytest.mark.parametrize(
    "breakage",
    [
        lambda e: e.pop("Records"),
        lambda e: e["Records"][0].update(eventSource="aws:sqs"),
        lambda e: e["Records"][0]["ses"].pop("mail"),
        lambda e: e["Records"][0]["ses"]["mail"].update(messageId="../../etc"),
        lambda e: e["Records"][0]["ses"]["mail"].update(messageId=""),
        lambda e: e["Records"][0]["ses"]["mail"].update(messageId="notice#x"),
    ],
)
def test_a_malformed_event_is_invalid_input(breakage: Any) -> None:
    event = copy.deepcopy(_event("aws-events/ses-receipt-lambda.json"))
    breakage(event)
    with pytest.raises(InvalidInput):
        parse_ses_event(event)


BASE_ENV = {
    "SITE_DOMAIN": "esp.example.org",
    "SUPPORT_ADDRESS": "support@esp.example.org",
    "BOUNCES_ADDRESS": "bounces@esp.example.org",
    "SENDGRID_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:x",
    "RAW_MAIL_BUCKET": "raw",
    **{
        f"{name}_TABLE": name.lower()
        for name in ("USERS", "GROUPS", "LIST_RULES", "REDIRECTS", "MESSAGE_REQUESTS", "OUTBOX", "INBOUND_LOG")
    },
}


def test_settings_defaults() -> None:
    settings = MailgateSettings.from_env(BASE_ENV)
    assert settings.spam_policy is SpamPolicy.DROP
    assert settings.max_request_bytes == 30_000_000
    assert settings.raw_mail_prefix == "inbound/"
    assert settings.regex_timeout_seconds == 0.05
    assert settings.notices is True


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAILGATE_SPAM_POLICY", "keep"),
        ("MAILGATE_MAX_REQUEST_BYTES", "40000000"),
        ("MAILGATE_REGEX_TIMEOUT_MS", "5000"),
        ("MAILGATE_NOTICES", "perhaps"),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        MailgateSettings.from_env({**BASE_ENV, name: value})


def test_missing_bucket_is_named() -> None:
    env = {k: v for k, v in BASE_ENV.items() if k != "RAW_MAIL_BUCKET"}
    with pytest.raises(ConfigurationError, match="RAW_MAIL_BUCKET"):
        MailgateSettings.from_env(env)
