"""Where commands work: --local (the state file of a running `local serve`), --stack-name (a CloudFormation
stack's parameters and outputs), and the one-line errors when neither can be found."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from embedded.aws import queue_url
from embedded.smtp_gateway import SmtpGateway
from embedded.stack import LOCAL_PARAMETERS, SITE_DOMAIN
from embedded.template import function_environment, resources_of_type, template
from espmail.errors import ConfigurationError
from espmail_cli.context import StackResolver, physical_names_from_outputs
from espmail_cli.local_state import LocalState, write_state
from tests.integration.cli_support import RUTH, assert_one_line_error, message, run_plain, seeded


def _state_for(stack: Any, pid: int) -> LocalState:
    functions = resources_of_type(stack.tpl, "AWS::Serverless::Function")
    return LocalState(
        pid=pid,
        endpoint=stack.endpoint,
        sendgrid_host=stack.sendgrid.host,
        smtp_host="127.0.0.1",
        smtp_port=2525,
        out_dir="out/local",
        started_at="2026-05-01T09:00:00+00:00",
        environment=stack.function_env(),
        functions={name: stack.function_env(name) for name in functions},
        names=dict(stack.names),
        parameters=dict(stack.parameters),
    )


def test_local_without_a_running_serve_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_plain("--local", "--state-file", str(tmp_path / "local.json"), "redirects", "show")

    assert_one_line_error(result, 2, "error: no `espmail local serve` is running here", "start one in this folder")


def test_local_with_a_stale_or_damaged_state_file(stack: Any, tmp_path: Path) -> None:
    stale = tmp_path / "stale.json"
    write_state(stale, _state_for(stack, pid=2**22 + 12345))  # above any pid this machine hands out
    damaged = tmp_path / "damaged.json"
    damaged.write_text("{not json")
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"version": 0, "pid": os.getpid()}))

    gone = run_plain("--local", "--state-file", str(stale), "lists", "check")
    broken = run_plain("--local", "--state-file", str(damaged), "lists", "check")
    older = run_plain("--local", "--state-file", str(old), "lists", "check")

    assert_one_line_error(gone, 2, "is no longer running; start it again")
    assert_one_line_error(broken, 2, "is damaged (not JSON)")
    assert_one_line_error(older, 2, "is not a state file this espmail understands")


def test_local_works_against_the_stack_the_state_file_names(stack: Any, tmp_path: Path) -> None:
    """The state file points at the fixture's stack, as `local serve` would write it for its own."""
    seeded(stack)
    state_file = tmp_path / "local.json"
    write_state(state_file, _state_for(stack, pid=os.getpid()))

    redirects = run_plain("--local", "--state-file", str(state_file), "redirects", "show")
    test = run_plain("--local", "--state-file", str(state_file), "lists", "test", "E1234s1-teachers", "--from", RUTH)

    assert redirects.exit_code == 0, redirects.output
    assert "info@esp.example.org" in redirects.output
    assert test.exit_code == 0, test.output
    assert "ruth@physics.example.edu" in test.output


def test_local_redrive_runs_the_mailgate_in_this_process_with_the_served_environment(
    stack: Any, tmp_path: Path
) -> None:
    seeded(stack)
    state_file = tmp_path / "local.json"
    write_state(state_file, _state_for(stack, pid=os.getpid()))
    events: list[Any] = []
    SmtpGateway(stack, domains=(SITE_DOMAIN,), deliver=lambda received: events.append(received)).receive(
        message(RUTH, "M2345-class@esp.example.org", "Knots"),
        mail_from=RUTH,
        recipients=["M2345-class@esp.example.org"],
    )
    stack.client("sqs").send_message(
        QueueUrl=queue_url(stack.endpoint, stack.name("MailgateFailureQueue")),
        MessageBody=json.dumps({"requestPayload": events[0].event}),
    )

    result = run_plain("--local", "--state-file", str(state_file), "inbound", "redrive")

    assert result.exit_code == 0, result.output
    assert "replayed 1" in result.output
    assert len(stack.sendgrid.accepted) == 1


def test_a_second_serve_in_the_same_folder_is_refused(tmp_path: Path) -> None:
    state_file = tmp_path / "local.json"
    state_file.write_text(
        json.dumps(
            {
                "version": 1,
                "pid": os.getppid(),
                "endpoint": "http://127.0.0.1:1",
                "sendgrid_host": "http://127.0.0.1:2",
                "smtp_host": "127.0.0.1",
                "smtp_port": 2525,
                "out_dir": "out/local",
                "started_at": "2026-05-01T09:00:00+00:00",
            }
        )
    )

    result = run_plain("--state-file", str(state_file), "local", "serve")

    assert_one_line_error(result, 1, f"already running in this folder (pid {os.getppid()})")


def test_stack_name_that_does_not_exist_is_one_line_and_exit_2(stack: Any) -> None:
    result = run_plain("--stack-name", "espmail-nowhere", "--region", "us-east-1", "redirects", "show")

    assert_one_line_error(result, 2, "error: no stack 'espmail-nowhere' in us-east-1")


def test_local_and_stack_name_together_or_neither_is_a_usage_error() -> None:
    both = run_plain("--local", "--stack-name", "x", "--region", "us-east-1", "lists", "check")
    neither = run_plain("lists", "check")

    assert_one_line_error(both, 2, "use either --local or --stack-name, not both")
    assert_one_line_error(neither, 2, "say which stack: --local")


def _deploy_outputs_only_stack(stack: Any, name: str) -> None:
    """A CloudFormation stack (in moto) with the real template's parameters and outputs, whose outputs name
    the fixture's tables and queues: what `sam deploy` leaves behind, minus the resources themselves."""
    tpl = template()
    parameters = {}
    values = []
    for key, spec in tpl["Parameters"].items():
        kind = "CommaDelimitedList" if spec.get("Type") == "CommaDelimitedList" else "String"
        parameters[key] = {"Type": kind, "Default": str(spec.get("Default", ""))}
        value = stack.parameters.get(key, spec.get("Default", ""))
        values.append(
            {"ParameterKey": key, "ParameterValue": ",".join(value) if isinstance(value, list) else str(value)}
        )
    outputs = {}
    for key, body in tpl["Outputs"].items():
        ref = body["Value"].get("Ref") if isinstance(body.get("Value"), dict) else None
        if ref in tpl["Resources"]:
            kind = tpl["Resources"][ref]["Type"]
            physical = stack.name(ref)
            if kind == "AWS::SQS::Queue":
                physical = queue_url(stack.endpoint, physical)
            outputs[key] = {"Value": physical}
    body = {
        "Parameters": parameters,
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": f"{name}-placeholder"}}},
        "Outputs": outputs,
    }
    stack.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(body), Parameters=values)


def test_stack_name_finds_tables_through_the_stack_outputs(stack: Any, tmp_path: Path) -> None:
    seeded(stack)
    _deploy_outputs_only_stack(stack, "espmail-test")
    users = tmp_path / "users.csv"
    users.write_text("username,user_id,email,roles\nteacher_new,900,new@example.edu,teacher\n")
    where = ("--stack-name", "espmail-test", "--region", "us-east-1")

    shown = run_plain(*where, "redirects", "show")
    imported = run_plain(*where, "users", "import", str(users))
    reaches = run_plain(*where, "lists", "test", "teacher_new", "--from", RUTH)

    assert shown.exit_code == 0, shown.output
    assert "directors@esp.example.org" in shown.output
    assert imported.exit_code == 0, imported.output
    assert "into stack espmail-test (us-east-1)" in imported.output
    assert reaches.exit_code == 0, reaches.output
    assert "new@example.edu" in reaches.output


@pytest.mark.parametrize("logical_id", [None, *resources_of_type(template(), "AWS::Serverless::Function")])
def test_every_resource_a_function_environment_names_is_a_stack_output(logical_id: str | None) -> None:
    """--stack-name resolves each function's environment from the outputs; a missing output would be an error."""
    tpl = template()
    outputs = {key: f"physical-{key}" for key in tpl["Outputs"]}
    parameters = {**LOCAL_PARAMETERS, "SendGridApiKeySecretArn": "arn:aws:secretsmanager:us-east-1:1:secret:x"}
    resolver = StackResolver(tpl, parameters, physical_names_from_outputs(tpl, outputs))
    try:
        environment = function_environment(logical_id, resolver)
    except ConfigurationError as exc:
        pytest.fail(f"{logical_id or 'Globals'}: {exc}")
    assert environment["USERS_TABLE"] == "physical-UsersTableName"


def test_usage_errors_exit_2_as_the_readme_says_and_print_no_traceback() -> None:
    for args in (["requests", "create"], ["inbound", "approve"], ["no-such-command"], ["lists", "check", "--bogus"]):
        result = run_plain(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "Error:" in result.output
        assert "Traceback" not in result.output
    readme = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    assert "exit 2 for a usage error" in " ".join(readme.split())
