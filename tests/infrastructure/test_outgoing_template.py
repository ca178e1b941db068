"""The outgoing section of the template: the expander and sender on the ScheduleRate schedule (one sender
schedule per worker, enabled by SenderWorkers), roles that touch exactly their tables and indexes, the
failure queue for both and its alarms."""

from __future__ import annotations

import json
from typing import Any

import pytest

from embedded.template import load_template
from espmail.domain.outbox import DUE_SHARDS
from espmail.outgoing.schedule import parse_scheduled_event
from tests.infrastructure.test_template import translated


def _resources() -> dict[str, Any]:
    resources: dict[str, Any] = load_template()["Resources"]
    return resources


def _statements(role: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for policy in translated()["Resources"][role]["Properties"].get("Policies", []):
        statement = policy["PolicyDocument"]["Statement"]
        found += statement if isinstance(statement, list) else [statement]
    return [s for s in found if s.get("Effect") == "Allow"]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _dynamodb_grants(role: str) -> dict[str, set[str]]:
    """Resource (as written in the template) -> DynamoDB actions granted on it."""
    grants: dict[str, set[str]] = {}
    for statement in _statements(role):
        actions = {a for a in _list(statement["Action"]) if a.startswith("dynamodb:")}
        if not actions:
            continue
        for resource in _list(statement["Resource"]):
            grants.setdefault(json.dumps(resource, sort_keys=True), set()).update(actions)
    return grants


def _table(name: str) -> str:
    return json.dumps({"Fn::GetAtt": [name, "Arn"]}, sort_keys=True)


def _index(name: str, index: str) -> str:
    return json.dumps({"Fn::Sub": f"${{{name}.Arn}}/index/{index}"}, sort_keys=True)


@pytest.mark.parametrize(("function", "handler"), [("ExpanderFunction", "expander"), ("SenderFunction", "sender")])
def test_the_functions_run_the_tested_handlers_on_the_schedule_with_a_failure_queue(
    function: str, handler: str
) -> None:
    properties = _resources()[function]["Properties"]
    assert properties["CodeUri"] == "functions/"
    assert properties["Handler"] == f"{handler}.handler.lambda_handler"
    config = properties["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == 0  # the next tick does the work again
    assert config["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["OutgoingFailureQueue", "Arn"]},
    }
    for event in properties["Events"].values():
        assert event["Type"] == "Schedule"
        assert event["Properties"]["Schedule"] == {"Ref": "ScheduleRate"}
        assert event["Properties"]["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["OutgoingFailureQueue", "Arn"]}}


def test_each_sender_worker_has_its_own_schedule_enabled_by_sender_workers() -> None:
    events = _resources()["SenderFunction"]["Properties"]["Events"]
    assert sorted(events) == ["Worker0", "Worker1", "Worker2", "Worker3"]
    assert "State" not in events["Worker0"]["Properties"]  # always on
    assert events["Worker1"]["Properties"]["State"] == {"Fn::If": ["HasSenderWorker1", "ENABLED", "DISABLED"]}
    for name in ("Worker2", "Worker3"):
        assert events[name]["Properties"]["State"] == {"Fn::If": ["HasSenderWorkers2And3", "ENABLED", "DISABLED"]}
    allowed = load_template()["Parameters"]["SenderWorkers"]["AllowedValues"]
    for workers in allowed:
        for index in range(int(workers)):
            text = events[f"Worker{index}"]["Properties"]["Input"]["Fn::Sub"].replace("${SenderWorkers}", workers)
            run = parse_scheduled_event(json.loads(text))
            assert (run.worker, run.workers) == (index, int(workers))
            assert run.workers <= DUE_SHARDS


def test_the_expander_role_touches_exactly_its_tables() -> None:
    grants = _dynamodb_grants("ExpanderFunctionRole")
    assert grants[_table("MessageRequestsTable")] == {
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",  # a backlog's chosen requests, in one batch
        "dynamodb:UpdateItem",
        "dynamodb:Query",
    }
    assert grants[_index("MessageRequestsTable", "pending-by-time")] == {
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:Query",
    }
    assert grants[_table("OutboxTable")] == {
        "dynamodb:BatchWriteItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
    }
    read_only = {k for k in grants if "UsersTable" in k or "GroupsTable" in k}
    assert len(read_only) == 4  # each table and its indexes, through DynamoDBReadPolicy
    for resource in read_only:
        assert grants[resource] <= {
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",
            "dynamodb:Query",
            "dynamodb:Scan",
            "dynamodb:DescribeTable",
        }
    assert len(grants) == 7  # nothing else: no inbound log, no list rules, no redirects
    assert all("secretsmanager" not in str(s["Action"]) for s in _statements("ExpanderFunctionRole"))


def test_the_sender_role_touches_exactly_its_tables_and_the_one_secret() -> None:
    grants = _dynamodb_grants("SenderFunctionRole")
    assert grants == {
        _table("OutboxTable"): {"dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:BatchWriteItem"},
        _index("OutboxTable", "due"): {
            "dynamodb:Query",
            "dynamodb:UpdateItem",
            "dynamodb:PutItem",
            "dynamodb:BatchWriteItem",
        },
        _table("MessageRequestsTable"): {"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:Query"},
        _index("MessageRequestsTable", "pending-by-time"): {
            "dynamodb:GetItem",
            "dynamodb:UpdateItem",
            "dynamodb:Query",
        },
        _table("UsersTable"): {"dynamodb:GetItem"},
    }
    secrets = [s for s in _statements("SenderFunctionRole") if "secretsmanager:GetSecretValue" in _list(s["Action"])]
    assert len(secrets) == 1
    assert "SendGridApiKeySecretArn" in json.dumps(secrets[0]["Resource"])


def test_the_failure_queue_takes_dead_letters_only_from_the_outgoing_schedules() -> None:
    policy = _resources()["OutgoingFailureQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (statement,) = policy
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    sources = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert {s["Fn::GetAtt"][0] for s in sources} == {
        "ExpanderFunctionSchedule",
        "SenderFunctionWorker0",
        "SenderFunctionWorker1",
        "SenderFunctionWorker2",
        "SenderFunctionWorker3",
    }
    translated_resources = translated()["Resources"]
    for source in sources:
        assert translated_resources[source["Fn::GetAtt"][0]]["Type"] == "AWS::Events::Rule"


def test_alarms_watch_errors_the_failure_queue_and_rows_failed_for_good() -> None:
    alarms = {n: b["Properties"] for n, b in _resources().items() if b["Type"] == "AWS::CloudWatch::Alarm"}
    assert alarms["ExpanderErrorsAlarm"]["Dimensions"][0]["Value"] == {"Ref": "ExpanderFunction"}
    assert alarms["SenderErrorsAlarm"]["Dimensions"][0]["Value"] == {"Ref": "SenderFunction"}
    assert alarms["OutgoingFailureAlarm"]["Dimensions"][0]["Value"] == {
        "Fn::GetAtt": ["OutgoingFailureQueue", "QueueName"]
    }
    failed = alarms["OutboxFailedRowsAlarm"]
    # The metric the sender handler publishes through Powertools (namespace and service from Globals).
    assert (failed["Namespace"], failed["MetricName"]) == ("ESPMail", "OutboxRowsFailed")
    assert failed["Dimensions"] == [{"Name": "service", "Value": "espmail"}]
    assert failed["Threshold"] == {"Ref": "FailedRowsAlarmThreshold"}
