"""Where a command works: the target (a running local stack, a deployed stack, or an EmbeddedStack handed
in by a test or by ``local serve`` itself), resolved once per invocation and handed to every command.

Each target gives the environment a function gets from the template (so the CLI builds the same settings
objects and repositories the functions build, from the same variables), boto3 clients that reach the
stack, the physical name of a template resource, and a way to run a function:

- ``EmbeddedTarget``: an ``EmbeddedStack`` object in this process (tests, ``local serve``);
- ``LocalTarget``: a ``local serve`` in another process, found through its state file; functions run in
  this process with the environment the serving stack resolved for them (everything they reach is HTTP);
- ``DeployedTarget``: a CloudFormation stack: parameters and outputs from ``describe_stacks``; the function
  environment is resolved from ``template.yaml`` with the stack's parameter values and, for each resource,
  the stack output that names it; functions run through ``lambda invoke``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import click
from rich.console import Console

from embedded.template import Resolver
from espmail.errors import ConfigurationError, EspMailError, NotFound
from espmail.settings import TableNames
from espmail_cli.local_state import DEFAULT_STATE_FILE, LocalState, read_state

if TYPE_CHECKING:
    from embedded.stack import EmbeddedStack


class FunctionFailed(EspMailError):
    """A function ran and raised (in this process) or reported ``FunctionError`` (deployed)."""


class TargetUnavailable(EspMailError):
    """The stack a command should work against cannot be found or read (exit code 2, like a usage error)."""


class Target(Protocol):
    @property
    def label(self) -> str: ...

    def environment(self, logical_id: str | None = None) -> dict[str, str]:
        """The environment the function gets (``None``: what every function gets, the template's Globals)."""
        ...

    def client(self, service: str) -> Any: ...

    def name(self, logical_id: str) -> str:
        """The physical name of a template resource (a queue's is its URL, as ``Ref`` gives it)."""
        ...

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Runs the function on the event and returns its result; ``FunctionFailed`` when it raised."""
        ...

    def activate(self) -> None:
        """Puts the common environment into this process, for code that reads it (PynamoDB, bootstrap)."""
        ...


def tables_of(target: Target) -> TableNames:
    return TableNames.from_env(target.environment())


# ---------------------------------------------------------------------------------------------- local
class EmbeddedTarget:
    """An ``EmbeddedStack`` object living in this process."""

    def __init__(self, stack: EmbeddedStack) -> None:
        self.stack = stack

    @property
    def label(self) -> str:
        return f"embedded stack at {self.stack.endpoint}"

    def environment(self, logical_id: str | None = None) -> dict[str, str]:
        return self.stack.function_env(logical_id)

    def client(self, service: str) -> Any:
        return self.stack.client(service)

    def name(self, logical_id: str) -> str:
        return _as_ref_gives_it(self.stack.tpl, self.stack.endpoint, logical_id, self.stack.name(logical_id))

    def invoke(self, logical_id: str, event: Any) -> Any:
        _require_function(self.stack.tpl, logical_id)
        try:
            return self.stack.invoke(logical_id, event)
        except Exception as exc:
            raise FunctionFailed(f"{logical_id} failed: {type(exc).__name__}: {exc}") from exc

    def activate(self) -> None:
        self.stack.activate()


class LocalTarget:
    """A running ``espmail local serve``, through the state file it wrote."""

    def __init__(self, state: LocalState) -> None:
        self.state = state

    @property
    def label(self) -> str:
        return f"local stack at {self.state.endpoint} (espmail local serve, pid {self.state.pid})"

    def environment(self, logical_id: str | None = None) -> dict[str, str]:
        if logical_id is None:
            return dict(self.state.environment)
        if logical_id not in self.state.functions:
            raise ConfigurationError(
                f"the running `espmail local serve` has no function {logical_id}; restart it with this version"
            )
        return dict(self.state.functions[logical_id])

    def client(self, service: str) -> Any:
        from embedded.aws import client

        return client(service, self.state.endpoint)

    def name(self, logical_id: str) -> str:
        from embedded.template import template

        if logical_id not in self.state.names:
            raise ConfigurationError(f"the running local stack has no resource {logical_id}; restart it")
        return _as_ref_gives_it(template(), self.state.endpoint, logical_id, self.state.names[logical_id])

    def invoke(self, logical_id: str, event: Any) -> Any:
        from embedded.lambda_runtime import invoke_handler
        from embedded.template import template

        _require_function(template(), logical_id)
        variables = self.environment(logical_id)
        deployment = Resolver(template(), self.state.parameters, self.state.names)
        try:
            return invoke_handler(logical_id, event, variables, resolver=deployment)
        except Exception as exc:
            raise FunctionFailed(f"{logical_id} failed: {type(exc).__name__}: {exc}") from exc

    def activate(self) -> None:
        os.environ.update(self.state.environment)


def _as_ref_gives_it(tpl: Mapping[str, Any], endpoint: str, logical_id: str, physical: str) -> str:
    """A local resource's name as ``Ref`` gives it: a queue's is its URL."""
    from embedded.aws import queue_url

    if tpl["Resources"].get(logical_id, {}).get("Type") == "AWS::SQS::Queue":
        return queue_url(endpoint, physical)
    return physical


def _require_function(tpl: Mapping[str, Any], logical_id: str) -> None:
    if tpl.get("Resources", {}).get(logical_id, {}).get("Type") != "AWS::Serverless::Function":
        raise ConfigurationError(f"template.yaml has no function {logical_id}")


# ---------------------------------------------------------------------------------------------- deployed
class StackResolver(Resolver):
    """Refuses to guess: a resource the stack publishes no output for is a clear error, not its logical id."""

    def ref(self, name: str) -> Any:
        if name in self.physical or name in self.parameters or name in self.pseudo:
            return super().ref(name)
        if name in self.tpl.get("Resources", {}):
            raise ConfigurationError(
                f"the stack publishes no output for {name}; add an output `{name}Name: Value: !Ref {name}` "
                "to template.yaml and deploy again"
            )
        return super().ref(name)


@dataclass
class DeployedTarget:
    """A deployed CloudFormation stack, found by name and region."""

    stack_name: str
    region: str
    parameters: dict[str, Any]
    physical: dict[str, str]
    account: str
    session: Any = field(repr=False, default=None)

    @property
    def label(self) -> str:
        return f"stack {self.stack_name} ({self.region})"

    @classmethod
    def find(cls, stack_name: str, region: str, session: Any | None = None) -> DeployedTarget:
        """``ConfigurationError`` (one line) when the stack does not exist or cannot be read."""
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        from embedded.template import parameter_value, template

        session = session or boto3.Session(region_name=region)
        cloudformation = session.client("cloudformation", region_name=region)
        try:
            stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
        except ClientError as exc:
            error = exc.response.get("Error", {})
            message = error.get("Message", str(exc))
            if error.get("Code") == "ValidationError":  # CloudFormation's answer for a stack it does not have
                raise NotFound(f"no stack {stack_name!r} in {region}: {message}") from exc
            raise ConfigurationError(f"cannot read stack {stack_name!r} in {region}: {message}") from exc
        except BotoCoreError as exc:
            raise ConfigurationError(f"cannot reach CloudFormation in {region}: {exc}") from exc
        if not stacks:
            raise NotFound(f"no stack {stack_name!r} in {region}")
        described = stacks[0]
        tpl = template()
        parameters: dict[str, Any] = {}
        for parameter in described.get("Parameters", []):
            key, value = parameter["ParameterKey"], parameter.get("ResolvedValue", parameter.get("ParameterValue", ""))
            parameters[key] = parameter_value(tpl, key, value)
        outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
        physical = physical_names_from_outputs(tpl, outputs)
        account = str(described.get("StackId", "")).split(":")[4] if described.get("StackId") else ""
        return cls(stack_name, region, parameters, physical, account, session)

    def _resolver(self) -> Resolver:
        from embedded.template import template

        return StackResolver(template(), self.parameters, self.physical, account=self.account, region=self.region)

    def environment(self, logical_id: str | None = None) -> dict[str, str]:
        from embedded.template import function_environment

        env = function_environment(logical_id, self._resolver())
        return {**env, "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}

    def client(self, service: str) -> Any:
        from botocore.config import Config

        if service == "lambda":
            # A synchronous invoke waits for the whole run (up to the function's 15-minute ceiling) and is
            # not repeated by botocore: a replay that timed out on our side may still be running.
            config = Config(read_timeout=905, retries={"max_attempts": 1, "mode": "standard"})
        else:
            config = Config(retries={"max_attempts": 5, "mode": "standard"})
        return self.session.client(service, region_name=self.region, config=config)

    def name(self, logical_id: str) -> str:
        return str(self._resolver().ref(logical_id))

    def invoke(self, logical_id: str, event: Any) -> Any:
        answer = self.client("lambda").invoke(
            FunctionName=self.name(logical_id), InvocationType="RequestResponse", Payload=json.dumps(event).encode()
        )
        payload = answer["Payload"].read()
        result = json.loads(payload) if payload else None
        if answer.get("FunctionError"):
            detail = result.get("errorMessage", payload.decode()) if isinstance(result, dict) else payload.decode()
            raise FunctionFailed(f"{logical_id} failed: {detail}")
        return result

    def activate(self) -> None:
        os.environ.update(self.environment())


def physical_names_from_outputs(tpl: Mapping[str, Any], outputs: Mapping[str, str]) -> dict[str, str]:
    """Logical id -> physical name, for each template output whose value is ``!Ref <resource>``."""
    physical: dict[str, str] = {}
    for key, body in tpl.get("Outputs", {}).items():
        value = body.get("Value") if isinstance(body, Mapping) else None
        if isinstance(value, Mapping) and set(value) == {"Ref"} and key in outputs:
            physical[str(value["Ref"])] = outputs[key]
    return physical


# ---------------------------------------------------------------------------------------------- per invocation
@dataclass
class CliContext:
    """Handed to every command through click's ``obj``. A test may pass one with ``target`` already set."""

    target_override: Target | None = None
    local: bool = False
    state_file: Path = DEFAULT_STATE_FILE
    stack_name: str | None = None
    region: str | None = None
    console: Console = field(default_factory=Console)
    errors: Console = field(default_factory=lambda: Console(stderr=True))
    _target: Target | None = field(default=None, repr=False)

    @property
    def target(self) -> Target:
        """Resolved once, on first use: commands that need no stack (``local serve``) never resolve it."""
        if self._target is None:
            self._target = self._resolve()
            self._target.activate()
        return self._target

    def bind_tables(self) -> TableNames:
        """Binds the storage models to the target's tables (what a function's bootstrap does)."""
        from espmail.bootstrap import bind

        return bind(tables_of(self.target))

    def _resolve(self) -> Target:
        if self.target_override is not None:
            return self.target_override
        try:
            return self._find()
        except EspMailError as exc:
            raise TargetUnavailable(str(exc)) from exc

    def _find(self) -> Target:
        if self.local and self.stack_name:
            raise click.UsageError("use either --local or --stack-name, not both")
        if self.local:
            return LocalTarget(read_state(self.state_file))
        if self.stack_name:
            region = self.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            if not region:
                raise click.UsageError("--stack-name needs --region (or AWS_REGION)")
            return DeployedTarget.find(self.stack_name, region)
        raise click.UsageError(
            "say which stack: --local (a running `espmail local serve` in this folder) "
            "or --stack-name NAME --region REGION"
        )


pass_cli = click.make_pass_decorator(CliContext, ensure=True)
"""Hands a command the invocation's ``CliContext`` (one made when the command runs on its own, in a test)."""
