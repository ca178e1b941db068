"""The IAM contract itself (``embedded.iam``, run on every test through ``tests/conftest.py``): that it
reads the roles as SAM writes them, names the resources IAM authorizes, and fails when a grant is missing;
and the resource policies (a key's, the bucket's) that let AWS services do their part."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from embedded import aws_calls
from embedded.iam import (
    Contract,
    Request,
    RoleBook,
    decide,
    requests_of,
    resource_policy_grants,
    translate,
    translated,
)
from embedded.lambda_runtime import invoke_handler
from embedded.template import Resolver, load_template, resources_of_type
from tests.e2e.outgoing_support import expand, put_unchecked, seeded, send

ACCOUNT, REGION = "123456789012", "us-east-1"


def _without_action(tpl: dict[str, Any], function: str, sid: str, action: str) -> dict[str, Any]:
    broken = copy.deepcopy(tpl)
    for policy in broken["Resources"][function]["Properties"]["Policies"]:
        for statement in policy.get("Statement", []):
            if statement.get("Sid") == sid:
                statement["Action"].remove(action)
                return broken
    raise AssertionError(f"{function} has no statement {sid} granting {action}")


def _sender_calls(stack: Any) -> list[Any]:
    seeded(stack)
    put_unchecked(stack, recipients=["E1234s1:class"])
    expand(stack)
    aws_calls.drain()
    send(stack)
    return aws_calls.drain()


def test_a_grant_taken_away_fails_the_call_that_needed_it(stack: Any) -> None:
    calls = _sender_calls(stack)
    assert Contract().denials(calls) == []  # the template as it is grants every call

    tpl = load_template()
    broken = translate(_without_action(tpl, "SenderFunction", "ClaimSendAndRecordOutboxRows", "dynamodb:UpdateItem"))
    denied = Contract(tpl=tpl, cfn=broken).denials(calls)

    assert denied == [
        f"SenderFunction would be denied dynamodb:UpdateItem on arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/OutboxTable"
    ]


def test_a_function_without_a_role_in_the_template_fails(stack: Any) -> None:
    calls = _sender_calls(stack)
    tpl = load_template()
    cfn = copy.deepcopy(translated())
    cfn["Resources"]["SenderFunction"]["Properties"]["Role"] = "arn:aws:iam::123456789012:role/made-by-hand"

    (denied,) = Contract(tpl=tpl, cfn=cfn).denials(calls[:1])

    assert denied.startswith("SenderFunction: secretsmanager:GetSecretValue: ")  # its first call
    assert "SenderFunction has no role in template.yaml" in denied


def test_every_function_of_the_template_is_known_to_the_contract() -> None:
    """A function added to template.yaml is covered without touching the contract: it is in the report of
    functions, and its role is read like the others'."""
    functions = set(resources_of_type(load_template(), "AWS::Serverless::Function"))
    contract = Contract()
    assert set(contract.functions()) == functions
    book = RoleBook.for_deployment(Resolver(load_template(), {"SendGridApiKeySecretArn": "arn:x"}, {}))
    assert all(book.grants(f) for f in functions)


def test_calls_from_a_thread_started_while_two_functions_ran_are_not_guessed() -> None:
    import threading

    both_running = threading.Barrier(3, timeout=5)  # the two invocations and this test
    release = threading.Event()

    def blocked(_event: Any, _context: Any) -> None:
        both_running.wait()
        release.wait(5)

    outcome: list[Any] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("embedded.lambda_runtime.resolve_handler", lambda _handler: blocked)
        runs = [
            threading.Thread(target=invoke_handler, args=(name, {}, {}))
            for name in ("SenderFunction", "ExpanderFunction")
        ]
        for run in runs:
            run.start()
        both_running.wait()
        from embedded.lambda_runtime import invocation_of_this_thread

        stranger = threading.Thread(target=lambda: outcome.append(invocation_of_this_thread()))
        stranger.start()
        stranger.join()
        release.set()
        for run in runs:
            run.join()
    assert outcome == [None]


@pytest.mark.parametrize(
    ("service", "operation", "params", "status", "expected"),
    [
        (
            "dynamodb",
            "Query",
            {"TableName": "OutboxTable", "IndexName": "due"},
            200,
            [f"dynamodb:Query on arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/OutboxTable/index/due"],
        ),
        (
            "dynamodb",
            "BatchGetItem",
            {"RequestItems": {"UsersTable": {}, "GroupsTable": {}}},
            200,
            [
                f"dynamodb:BatchGetItem on arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/UsersTable",
                f"dynamodb:BatchGetItem on arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/GroupsTable",
            ],
        ),
        (
            "dynamodb",
            "TransactWriteItems",
            {"TransactItems": [{"ConditionCheck": {"TableName": "A"}}, {"Put": {"TableName": "B"}}]},
            200,
            [
                f"dynamodb:ConditionCheckItem on arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/A",
                f"dynamodb:PutItem on arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/B",
            ],
        ),
        (
            "s3",
            "GetObject",
            {"Bucket": "raw", "Key": "inbound/abc"},
            404,
            [
                "s3:GetObject on arn:aws:s3:::raw/inbound/abc",
                "s3:ListBucket on arn:aws:s3:::raw (for S3 to answer NoSuchKey rather than 403 for a missing key)",
            ],
        ),
        (
            "lambda",
            "Invoke",
            {"FunctionName": "SendGridDomainAuthFunction"},
            202,
            [f"lambda:InvokeFunction on arn:aws:lambda:{REGION}:{ACCOUNT}:function:SendGridDomainAuthFunction"],
        ),
        (
            "route53",
            "GetChange",
            {"Id": "/change/C123"},
            200,
            ["route53:GetChange on arn:aws:route53:::change/C123"],
        ),
        ("ses", "SetActiveReceiptRuleSet", {}, 200, ["ses:SetActiveReceiptRuleSet on *"]),
        ("sts", "GetCallerIdentity", {}, 200, ["sts:GetCallerIdentity on (a resource the contract cannot name)"]),
    ],
)
def test_each_call_is_named_as_iam_authorizes_it(
    service: str, operation: str, params: dict[str, Any], status: int, expected: list[str]
) -> None:
    assert [str(r) for r in requests_of(service, operation, params, REGION, ACCOUNT, status)] == expected


def _domain_auth_grants(zone: str) -> list[Any]:
    resolver = Resolver(load_template(), {"HostedZoneId": zone, "SendGridApiKeySecretArn": "arn:x"}, {})
    return RoleBook.for_deployment(resolver).grants("SendGridDomainAuthFunction")


def _record_change(zone: str, record_type: str) -> Request:
    change = {"Action": "UPSERT", "ResourceRecordSet": {"Name": "s1._domainkey.esp.example.org.", "Type": record_type}}
    (request,) = requests_of(
        "route53",
        "ChangeResourceRecordSets",
        {"HostedZoneId": f"/hostedzone/{zone}", "ChangeBatch": {"Changes": [change]}},
        REGION,
        ACCOUNT,
    )
    return request


def test_the_domain_auth_role_changes_sendgrids_record_types_in_any_zone_and_nothing_else() -> None:
    grants = _domain_auth_grants("ZNEW")
    assert decide(grants, _record_change("ZOLD", "CNAME")).allowed  # the old zone, after HostedZoneId changed
    assert not decide(grants, _record_change("ZNEW", "A")).allowed
    assert not decide(grants, _record_change("ZNEW", "NS")).allowed
    assert not any(g.matches(_record_change("ZNEW", "CNAME")) for g in _domain_auth_grants(""))  # no zone: none


def test_cloudwatch_alarms_can_publish_to_the_topics_they_notify() -> None:
    """CloudWatch publishes to an encrypted topic only through a customer managed key whose policy lets
    cloudwatch.amazonaws.com use it (an AWS managed key such as alias/aws/sns cannot grant that)."""
    tpl = load_template()
    resolver = Resolver(tpl, {}, {})
    topics = {
        action["Ref"]
        for alarm in resources_of_type(tpl, "AWS::CloudWatch::Alarm").values()
        for action in alarm["Properties"].get("AlarmActions", []) + alarm["Properties"].get("OKActions", [])
    }
    assert topics
    for topic in topics:
        key = tpl["Resources"][topic]["Properties"].get("KmsMasterKeyId")
        if key is None:
            continue
        assert isinstance(key, dict), f"{topic} is encrypted with {key}, a key CloudWatch cannot use"
        body = tpl["Resources"][key["Ref"]]
        assert body["Type"] == "AWS::KMS::Key"
        grants = resource_policy_grants(
            body["Properties"]["KeyPolicy"], resolver, "cloudwatch.amazonaws.com", key["Ref"]
        )
        key_arn = resolver.resolve({"Fn::GetAtt": [key["Ref"], "Arn"]})
        for action in ("kms:Decrypt", "kms:GenerateDataKey"):
            assert decide(grants, Request(action, key_arn)).allowed, f"CloudWatch may not {action} with {key['Ref']}"
