"""A custom resource function that cannot even be set up still answers CloudFormation (FAILED, with the
reason), so a stack never waits for CloudFormation's timeout."""

from __future__ import annotations

import pytest

import active_receipt_rule_set
from sendgrid_domain_auth import handler as domain_auth_handler
from tests.integration.domain_auth_support import CloudFormationResponses, cfn_event, context


def test_domain_authentication_with_a_broken_setting_answers_failed(
    responses: CloudFormationResponses, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGRID_TIMEOUT_SECONDS", "soon")
    domain_auth_handler._settings.cache_clear()
    url = responses.url()
    event = cfn_event("Create", {"Domain": "esp.example.org", "ApiKeySecretArn": "arn:aws:secretsmanager:x"}, url)
    try:
        domain_auth_handler.lambda_handler(event, context())
    finally:
        domain_auth_handler._settings.cache_clear()
    answer = responses.only(url)
    assert answer["Status"] == "FAILED"
    assert "SENDGRID_TIMEOUT_SECONDS" in answer["Reason"]


def test_rule_set_activation_without_a_region_answers_failed(
    responses: CloudFormationResponses, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    active_receipt_rule_set._ses.cache_clear()
    url = responses.url()
    event = cfn_event("Create", {"RuleSetName": "espmail-inbound"}, url, logical_id="ActiveReceiptRuleSet")
    try:
        active_receipt_rule_set.lambda_handler(event, context())
    finally:
        active_receipt_rule_set._ses.cache_clear()
    answer = responses.only(url)
    assert answer["Status"] == "FAILED"
    assert "region" in answer["Reason"].lower()
