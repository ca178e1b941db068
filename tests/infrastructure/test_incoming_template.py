"""The incoming section of the template: the receipt rule set and rule, the mailgate with its retries,
failure queue and alarms, SES's permission to invoke it, and a role that reads and writes only what the
mailgate touches."""

from __future__ import annotations

import json
from typing import Any

from embedded.template import load_template
from tests.infrastructure.test_template import translated


def _resources() -> dict[str, Any]:
    resources: dict[str, Any] = load_template()["Resources"]
    return resources


def test_the_receipt_rule_stores_then_invokes_the_mailgate_for_the_site_domain() -> None:
    resources = _resources()
    assert resources["InboundReceiptRuleSet"]["Type"] == "AWS::SES::ReceiptRuleSet"
    rule = resources["InboundReceiptRule"]
    assert rule["Type"] == "AWS::SES::ReceiptRule"
    assert rule["Properties"]["RuleSetName"] == {"Ref": "InboundReceiptRuleSet"}
    body = rule["Properties"]["Rule"]
    assert body["Recipients"] == [{"Ref": "SiteDomain"}]
    assert body["ScanEnabled"] is True
    assert body["TlsPolicy"] == "Optional"
    assert body["Enabled"] is True
    s3, invoke = body["Actions"]
    assert s3 == {"S3Action": {"BucketName": {"Ref": "RawMailBucket"}, "ObjectKeyPrefix": "inbound/"}}
    assert invoke == {
        "LambdaAction": {"FunctionArn": {"Fn::GetAtt": ["MailgateFunction", "Arn"]}, "InvocationType": "Event"}
    }
    assert set(rule["DependsOn"]) == {"MailgateSesInvokePermission", "RawMailBucketPolicy"}


def test_only_ses_of_this_account_and_rule_set_may_invoke_the_mailgate() -> None:
    permission = _resources()["MailgateSesInvokePermission"]["Properties"]
    assert permission["Principal"] == "ses.amazonaws.com"
    assert permission["Action"] == "lambda:InvokeFunction"
    assert permission["SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert "receipt-rule-set/${InboundReceiptRuleSet}" in permission["SourceArn"]["Fn::Sub"]


def test_the_mailgate_retries_twice_then_goes_to_its_queue_with_alarms_on_both() -> None:
    function = _resources()["MailgateFunction"]["Properties"]
    assert function["Handler"] == "mailgate.handler.lambda_handler"
    assert function["CodeUri"] == "functions/"
    config = function["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == 2
    assert config["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["MailgateFailureQueue", "Arn"]},
    }
    alarms = {
        name: body["Properties"] for name, body in _resources().items() if body["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert alarms["MailgateErrorsAlarm"]["Dimensions"][0]["Value"] == {"Ref": "MailgateFunction"}
    assert alarms["MailgateFailureAlarm"]["Dimensions"][0]["Value"] == {
        "Fn::GetAtt": ["MailgateFailureQueue", "QueueName"]
    }


def _mailgate_statements() -> list[dict[str, Any]]:
    role = translated()["Resources"]["MailgateFunctionRole"]
    statements: list[dict[str, Any]] = []
    for policy in role["Properties"].get("Policies", []):
        found = policy["PolicyDocument"]["Statement"]
        statements += found if isinstance(found, list) else [found]
    return [s for s in statements if s.get("Effect") == "Allow"]


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement.get("Action", [])
    return [actions] if isinstance(actions, str) else list(actions)


def test_the_mailgate_role_reads_raw_mail_only_under_inbound_and_writes_only_the_inbound_log() -> None:
    statements = _mailgate_statements()
    s3 = [s for s in statements if any(a.startswith("s3:") for a in _actions(s))]
    assert [_actions(s) for s in s3] == [["s3:GetObject"], ["s3:ListBucket"]]
    assert json.dumps(s3[0]["Resource"]).endswith('/inbound/*"}')
    # Listing the bucket (names only) is what makes S3 answer NoSuchKey, not 403, for expired raw mail.
    assert s3[1]["Resource"] == {"Fn::GetAtt": ["RawMailBucket", "Arn"]}
    writes = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
    for statement in statements:
        if writes & set(_actions(statement)):
            assert "InboundLogTable" in json.dumps(statement["Resource"]), statement
    secrets = [s for s in statements if any(a.startswith("secretsmanager:") for a in _actions(s))]
    assert secrets
    assert all('{"Ref": "SendGridApiKeySecretArn"}' in json.dumps(s["Resource"]) for s in secrets)
    assert all("*" not in json.dumps(s["Resource"]) for s in secrets)
    assert not any(a.startswith(("ses:", "sqs:Receive", "lambda:")) for s in statements for a in _actions(s))


def test_the_moderation_expiry_runs_on_a_schedule_and_may_touch_only_the_inbound_log_and_the_api_key() -> None:
    function = _resources()["ModerationExpiryFunction"]["Properties"]
    assert function["Handler"] == "moderation.handler.lambda_handler"
    assert function["Events"]["Schedule"]["Type"] == "Schedule"
    assert function["Environment"]["Variables"]["MODERATION_HOLD_HOURS"] == {"Ref": "ModerationHoldHours"}
    mailgate = _resources()["MailgateFunction"]["Properties"]["Environment"]["Variables"]
    assert mailgate["MODERATION_HOLD_HOURS"] == {"Ref": "ModerationHoldHours"}  # both read one setting
    role = translated()["Resources"]["ModerationExpiryFunctionRole"]
    statements = [
        s
        for policy in role["Properties"].get("Policies", [])
        for s in (
            policy["PolicyDocument"]["Statement"]
            if isinstance(policy["PolicyDocument"]["Statement"], list)
            else [policy["PolicyDocument"]["Statement"]]
        )
    ]
    data = [s for s in statements if any(a.startswith("dynamodb:") for a in _actions(s))]
    assert [sorted(_actions(s)) for s in data] == [["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"]]
    assert "InboundLogTable" in json.dumps(data[0]["Resource"])
    assert json.dumps(data[0]["Resource"]).count("/index/by-hold") == 1
    secrets = [s for s in statements if any(a.startswith("secretsmanager:") for a in _actions(s))]
    assert secrets
    assert all('{"Ref": "SendGridApiKeySecretArn"}' in json.dumps(s["Resource"]) for s in secrets)
    assert not any(a.startswith(("s3:", "ses:", "lambda:")) for s in statements for a in _actions(s))
