"""``espmail deploy-check`` against moto: an existing SES identity, an MX already in the zone, a region
without SES receiving, an active rule set, a partial secret ARN and a secret under a customer key are each
said with what to do; a clean account passes."""

from __future__ import annotations

import uuid
from typing import Any

from embedded.template import load_template
from espmail_cli.deploy_check import receiving_regions
from tests.integration.cli_support import run_plain

DOMAIN = "lists.example.net"


def _check(*args: str) -> Any:
    return run_plain("deploy-check", "--region", "us-east-1", "--site-domain", DOMAIN, *args)


def test_a_clean_account_passes(stack: Any) -> None:
    result = _check()
    assert result.exit_code == 0, result.output
    assert "nothing in us-east-1 stands in the way" in result.output


def test_an_existing_ses_identity_is_a_problem_with_what_to_do(stack: Any) -> None:
    stack.client("sesv2").create_email_identity(EmailIdentity=DOMAIN)
    result = _check()
    assert result.exit_code == 1
    assert f"already has an identity for {DOMAIN}" in result.output
    assert f"aws sesv2 delete-email-identity --email-identity {DOMAIN}" in result.output


def test_an_existing_mx_in_the_zone_is_a_problem_with_what_to_do(stack: Any) -> None:
    route53 = stack.client("route53")
    zone = route53.create_hosted_zone(Name=DOMAIN, CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"]
    zone_id = zone.rsplit("/", 1)[-1]
    assert _check("--hosted-zone-id", zone_id).exit_code == 0
    mx = {"Name": f"{DOMAIN}.", "Type": "MX", "TTL": 300, "ResourceRecords": [{"Value": "10 mx.example.net."}]}
    route53.change_resource_record_sets(
        HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": mx}]}
    )
    result = _check("--hosted-zone-id", zone_id)
    assert result.exit_code == 1
    assert f"already has an MX record for {DOMAIN} (10 mx.example.net.)" in result.output
    assert "delete that MX record" in result.output


def test_a_region_without_ses_receiving_is_refused_like_the_template_refuses_it(stack: Any) -> None:
    result = run_plain("deploy-check", "--region", "us-west-1", "--site-domain", DOMAIN)
    assert result.exit_code == 1
    assert "SES does not receive mail in us-west-1" in result.output
    assert receiving_regions(load_template())[0] in result.output


def test_an_active_rule_set_is_a_note(stack: Any) -> None:
    ses = stack.client("ses")
    ses.create_receipt_rule_set(RuleSetName="made-by-hand")
    ses.set_active_receipt_rule_set(RuleSetName="made-by-hand")
    result = _check()
    assert result.exit_code == 0
    assert "note: the receipt rule set made-by-hand is active" in result.output
    assert "AllowReplaceActiveRuleSet=true" in result.output


def test_a_partial_secret_arn_and_a_customer_key_are_problems(stack: Any) -> None:
    key = stack.client("kms").create_key()["KeyMetadata"]
    secret = stack.client("secretsmanager").create_secret(Name="esp/key", SecretString="SG.x", KmsKeyId=key["KeyId"])
    partial = secret["ARN"].rsplit("-", 1)[0]

    result = _check("--secret-arn", partial)
    assert result.exit_code == 1
    assert "is not the secret's complete ARN" in result.output
    assert f"SendGridApiKeySecretArn={secret['ARN']}" in result.output
    assert "encrypted with the customer managed key" in result.output

    fine = _check("--secret-arn", secret["ARN"], "--kms-key-arn", key["KeyId"])
    assert fine.exit_code == 0, fine.output


def test_without_aws_credentials_it_says_so_in_one_line(stack: Any) -> None:
    result = run_plain(
        "deploy-check",
        "--region",
        "us-east-1",
        "--site-domain",
        DOMAIN,
        env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"},
    )
    assert result.exit_code == 2
    assert "error: cannot look at us-east-1 with these AWS credentials" in result.output
    assert "Traceback" not in result.output
