"""The template as CloudFormation will see it: cfn-lint clean, the SAM translation (offline) holding the
resources, encryption, least-privilege IAM and failure destinations the design promises."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from embedded.iam import translate
from embedded.template import TEMPLATE_PATH, load_template, resources_of_type

PARAMETERS = {
    "SiteDomain": "esp.example.org",
    "AllowedSenderDomains": "esp.example.org",
    "SupportAddress": "support@esp.example.org",
    "BouncesAddress": "bounces@esp.example.org",
    "UnsubscribeUrl": "https://esp.example.org/unsubscribe",
    "SendGridApiKeySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:espmail/sendgrid-AbCdEf",
}
DATA_SERVICES = ("dynamodb:", "s3:", "sqs:", "secretsmanager:", "route53:ChangeResourceRecordSets")


@cache
def translated() -> dict[str, Any]:
    return translate(load_template(), PARAMETERS)


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    statements = []
    for policy in role["Properties"].get("Policies", []):
        document = policy["PolicyDocument"]
        for statement in document["Statement"] if isinstance(document["Statement"], list) else [document["Statement"]]:
            statements.append(statement)
    return statements


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_cfn_lint_finds_nothing() -> None:
    from cfnlint.api import ManualArgs, lint

    regions = load_template()["Metadata"]["cfn-lint"]["config"]["regions"]
    matches = lint(TEMPLATE_PATH.read_text(), config=ManualArgs(regions=regions))
    # Errors and warnings fail the gate; informational hints (I...) are advice, as on the command line.
    assert [str(m) for m in matches if m.rule.id[0] in "EW"] == []


def test_the_sam_translation_succeeds_and_keeps_every_table() -> None:
    resources = translated()["Resources"]
    tables = {name for name, body in resources.items() if body["Type"] == "AWS::DynamoDB::Table"}
    assert tables == {
        "UsersTable",
        "GroupsTable",
        "ListRulesTable",
        "RedirectsTable",
        "MessageRequestsTable",
        "OutboxTable",
        "InboundLogTable",
    }


def test_every_table_is_on_demand_encrypted_and_recoverable() -> None:
    for name, body in resources_of_type(load_template(), "AWS::DynamoDB::Table").items():
        properties = body["Properties"]
        assert properties["BillingMode"] == "PAY_PER_REQUEST", name
        assert properties["SSESpecification"]["SSEEnabled"] is True, name
        assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, name
        assert body.get("DeletionPolicy") == "Retain", name


def test_queue_indexes_are_sparse_by_design() -> None:
    """The keys of the queue indexes are attributes only due items carry, never the table's own keys."""
    tables = resources_of_type(load_template(), "AWS::DynamoDB::Table")
    outbox = tables["OutboxTable"]["Properties"]
    due = next(i for i in outbox["GlobalSecondaryIndexes"] if i["IndexName"] == "due")
    assert {k["AttributeName"] for k in due["KeySchema"]}.isdisjoint({"request_id", "recipient"})
    requests = tables["MessageRequestsTable"]["Properties"]
    pending = next(i for i in requests["GlobalSecondaryIndexes"] if i["IndexName"] == "pending-by-time")
    assert "request_id" not in {k["AttributeName"] for k in pending["KeySchema"]}


def test_raw_mail_bucket_is_encrypted_private_expiring_and_writable_only_by_ses_of_this_account() -> None:
    tpl = load_template()
    bucket = tpl["Resources"]["RawMailBucket"]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == {"Ref": "RawMailRetentionDays"}
    statements = tpl["Resources"]["RawMailBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    allows = [s for s in statements if s["Effect"] == "Allow"]
    assert len(allows) == 1
    assert allows[0]["Principal"] == {"Service": "ses.amazonaws.com"}
    assert allows[0]["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_the_api_key_is_never_a_plain_parameter() -> None:
    tpl = load_template()
    for name, spec in tpl["Parameters"].items():
        if "key" in name.lower() or "secret" in name.lower():
            assert name.endswith("SecretArn"), f"{name} looks like a secret passed as a plain parameter"
            assert "secretsmanager" in spec.get("AllowedPattern", ""), name
    assert "SG." not in TEMPLATE_PATH.read_text()


def test_globals_run_python312_with_powertools_settings() -> None:
    function_globals = load_template()["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.12"
    variables = function_globals["Environment"]["Variables"]
    assert variables["POWERTOOLS_SERVICE_NAME"] == "espmail"
    assert "POWERTOOLS_LOG_LEVEL" in variables


def test_layers_are_built_by_sam() -> None:
    for name in ("SharedLayer", "DependenciesLayer"):
        layer = load_template()["Resources"][name]
        assert layer["Metadata"]["BuildMethod"] == "python3.12", name


def _roles() -> dict[str, dict[str, Any]]:
    return {n: b for n, b in translated()["Resources"].items() if b["Type"] == "AWS::IAM::Role"}


def test_no_data_action_is_granted_on_every_resource() -> None:
    offenders = []
    for role_name, role in _roles().items():
        for statement in _statements(role):
            if statement.get("Effect") != "Allow":
                continue
            actions = [str(a) for a in _as_list(statement.get("Action", []))]
            data_actions = [a for a in actions if a.startswith(DATA_SERVICES) or a == "*"]
            resources = _as_list(statement.get("Resource", []))
            if data_actions and any(r == "*" for r in resources):
                offenders.append((role_name, data_actions))
    assert offenders == []


def _functions() -> dict[str, dict[str, Any]]:
    return resources_of_type(load_template(), "AWS::Serverless::Function")


def test_every_function_imports_from_the_tested_path() -> None:
    """``Handler`` is an importable module path under CodeUri: exactly what the tests import."""
    import importlib

    for name, body in _functions().items():
        handler = body["Properties"]["Handler"]
        module, _, function = handler.rpartition(".")
        assert callable(getattr(importlib.import_module(module), function)), name


def test_every_async_function_has_a_failure_destination_and_an_error_alarm() -> None:
    resources = translated()["Resources"]
    invoke_configs = [b for b in resources.values() if b["Type"] == "AWS::Lambda::EventInvokeConfig"]
    alarms = [b for b in resources.values() if b["Type"] == "AWS::CloudWatch::Alarm"]
    alarm_text = json.dumps(alarms)
    for name, body in resources.items():
        if body["Type"] != "AWS::Lambda::Function":
            continue
        has_dlq = "DeadLetterConfig" in body["Properties"]
        has_destination = any(
            json.dumps(c["Properties"].get("FunctionName")).find(name) >= 0
            and c["Properties"].get("DestinationConfig", {}).get("OnFailure")
            for c in invoke_configs
        )
        assert has_dlq or has_destination, f"{name} has no dead-letter queue or on-failure destination"
        assert f'"{name}"' in alarm_text, f"{name} has no CloudWatch alarm"


@pytest.mark.parametrize("output", ["UsersTableName", "OutboxTableName", "RawMailBucketName"])
def test_outputs_name_the_resources_the_cli_needs(output: str) -> None:
    assert output in load_template()["Outputs"]


def test_every_alarm_tells_someone() -> None:
    alarms = resources_of_type(load_template(), "AWS::CloudWatch::Alarm")
    assert len(alarms) >= 9
    for name, body in alarms.items():
        assert body["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], name


@pytest.mark.parametrize(
    ("rate", "accepted"),
    [
        ("rate(1 minute)", True),
        ("rate(5 minutes)", True),
        ("rate(15 minutes)", True),
        ("rate(1 minutes)", False),
        ("rate(5 minute)", False),
        ("rate(16 minutes)", False),
    ],
)
def test_the_schedule_rate_accepts_only_what_eventbridge_accepts(rate: str, accepted: bool) -> None:
    import re

    pattern = load_template()["Parameters"]["ScheduleRate"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, rate)) is accepted


def test_bulk_mail_always_has_an_https_unsubscribe_endpoint() -> None:
    spec = load_template()["Parameters"]["UnsubscribeUrl"]
    assert "Default" not in spec
    assert spec["AllowedPattern"].startswith("^https://")
