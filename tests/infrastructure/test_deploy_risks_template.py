"""What would make a first deploy fail, or a deployed stack misbehave, refused or fixed in the template:
a region without SES receiving, a partial secret ARN, a secret under a customer managed key, another
account's or rule's SES writing to the raw-mail bucket, logs kept for ever."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from embedded.iam import Request, RoleBook, decide, resource_policy_grants, translate
from embedded.template import REPO_ROOT, Resolver, load_template, resources_of_type

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:espmail/sendgrid-api-key-AbCdEf"
KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SECRET_READERS = ("MailgateFunction", "SenderFunction", "SendGridDomainAuthFunction", "ModerationExpiryFunction")


def _regions() -> tuple[list[str], Any]:
    rule = load_template()["Rules"]["SesReceivesMailInThisRegion"]
    regions, region = rule["Assertions"][0]["Assert"]["Fn::Contains"]
    return regions, region


def test_a_region_without_ses_receiving_is_refused_before_anything_is_made() -> None:
    regions, region = _regions()
    assert region == {"Ref": "AWS::Region"}
    assert {"us-east-1", "us-west-2", "eu-west-1"} <= set(regions)
    assert not {"us-west-1", "eu-south-1", "sa-east-1", "ap-south-1"} & set(regions)
    linted = load_template()["Metadata"]["cfn-lint"]["config"]["regions"]
    assert set(linted) <= set(regions)
    description = load_template()["Rules"]["SesReceivesMailInThisRegion"]["Assertions"][0]["AssertDescription"]
    assert all(r in description for r in regions)
    assert "Rules" in translate(load_template(), {})  # SAM hands the rule on to CloudFormation


def test_the_readme_lists_the_regions_the_template_accepts() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    regions, _ = _regions()
    line = next(line for line in readme.splitlines() if "SES receives mail only in" in line)
    assert re.findall(r"`([a-z]{2}-[a-z]+-\d)`", line) == regions


@pytest.mark.parametrize(
    ("arn", "accepted"),
    [
        (SECRET, True),
        ("arn:aws:secretsmanager:us-east-1:123456789012:secret:espmail/sendgrid-api-key", False),  # partial
        ("espmail/sendgrid-api-key", False),
    ],
)
def test_only_a_complete_secret_arn_is_accepted(arn: str, accepted: bool) -> None:
    pattern = load_template()["Parameters"]["SendGridApiKeySecretArn"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, arn)) is accepted


def _grants(function: str, **parameters: str) -> list[Any]:
    resolver = Resolver(load_template(), {"SendGridApiKeySecretArn": SECRET, **parameters}, {})
    return RoleBook.for_deployment(resolver).grants(function)


def _decrypt(via: str) -> Request:
    return Request("kms:Decrypt", KEY, {"kms:ViaService": (via,)})


@pytest.mark.parametrize("function", SECRET_READERS)
def test_a_secret_under_a_customer_key_is_decrypted_through_secrets_manager_only(function: str) -> None:
    grants = _grants(function, SendGridApiKeyKmsKeyArn=KEY)
    assert decide(grants, _decrypt("secretsmanager.us-east-1.amazonaws.com")).allowed
    assert not decide(grants, _decrypt("s3.us-east-1.amazonaws.com")).allowed
    assert not decide(_grants(function), _decrypt("secretsmanager.us-east-1.amazonaws.com")).allowed  # no key


def test_every_role_that_reads_the_api_key_may_decrypt_it_when_a_key_is_given() -> None:
    """A function added later that reads the secret must list the decrypt policy too."""
    readers = []
    for function in resources_of_type(load_template(), "AWS::Serverless::Function"):
        grants = _grants(function, SendGridApiKeyKmsKeyArn=KEY)
        if decide(grants, Request("secretsmanager:GetSecretValue", SECRET)).allowed:
            readers.append(function)
            assert decide(grants, _decrypt("secretsmanager.us-east-1.amazonaws.com")).allowed, function
    assert sorted(readers) == sorted(SECRET_READERS)


def _ses_put(account: str, rule_set: str) -> Request:
    return Request(
        "s3:PutObject",
        "arn:aws:s3:::raw-mail/inbound/abc",
        {
            "aws:SourceAccount": (account,),
            "aws:SourceArn": (
                f"arn:aws:ses:us-east-1:{account}:receipt-rule-set/{rule_set}:receipt-rule/inbound-to-mailgate",
            ),
        },
    )


def test_only_this_stacks_receipt_rule_may_write_raw_mail() -> None:
    tpl = load_template()
    resolver = Resolver(tpl, {}, {"RawMailBucket": "raw-mail", "InboundReceiptRuleSet": "espmail-inbound"})
    policy = tpl["Resources"]["RawMailBucketPolicy"]["Properties"]["PolicyDocument"]
    grants = resource_policy_grants(policy, resolver, "ses.amazonaws.com", "RawMailBucketPolicy")
    secure = {"aws:SecureTransport": ("true",)}

    def allowed(request: Request) -> bool:
        return decide(grants, Request(request.action, request.resource, {**request.context, **secure})).allowed

    assert allowed(_ses_put("123456789012", "espmail-inbound"))
    assert not allowed(_ses_put("123456789012", "another-rule-set"))  # another rule set of the account
    assert not allowed(_ses_put("210987654321", "espmail-inbound"))  # another account
    (rule,) = resources_of_type(tpl, "AWS::SES::ReceiptRule").values()
    assert rule["Properties"]["Rule"]["Name"] == "inbound-to-mailgate"  # the name the condition writes out


def test_every_function_logs_to_a_group_that_expires() -> None:
    tpl = load_template()
    cfn = translate(tpl, {})
    functions = [b for b in cfn["Resources"].values() if b["Type"] == "AWS::Lambda::Function"]
    assert functions
    for body in functions:
        group = body["Properties"]["LoggingConfig"]["LogGroup"]
        log_group = tpl["Resources"][group["Ref"]]
        assert log_group["Type"] == "AWS::Logs::LogGroup"
        assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert tpl["Parameters"]["LogRetentionDays"]["Default"] in tpl["Parameters"]["LogRetentionDays"]["AllowedValues"]


def test_the_readme_says_what_to_do_about_an_existing_mx_or_ses_identity() -> None:
    readme = Path(REPO_ROOT / "README.md").read_text()
    assert "espmail deploy-check" in readme
    for words in ("already has an identity", "already has an MX record"):
        assert words in readme
