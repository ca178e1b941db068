"""Reads ``template.yaml`` the way CloudFormation does, for the embedded stack and the template tests.

The local tables, bucket, queues and SES rule set are created from these definitions, and the functions'
environment is resolved from the template's own ``Globals`` and ``Environment``, so the local schema and
wiring cannot drift from what is deployed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """PyYAML loader that turns CloudFormation's short forms (``!Ref``, ``!Sub``...) into long forms."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return loaded


@cache
def template() -> dict[str, Any]:
    return load_template()


def resources_of_type(tpl: Mapping[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: body for name, body in tpl.get("Resources", {}).items() if body.get("Type") == resource_type}


def parameter_value(tpl: Mapping[str, Any], name: str, value: Any) -> Any:
    """A parameter's value as ``Ref`` gives it: a ``CommaDelimitedList``'s text becomes its list of items."""
    if tpl.get("Parameters", {}).get(name, {}).get("Type") == "CommaDelimitedList" and isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class Resolver:
    """Resolves intrinsic functions against local parameter values and local physical names."""

    def __init__(
        self,
        tpl: Mapping[str, Any],
        parameters: Mapping[str, Any],
        physical_names: Mapping[str, str],
        *,
        account: str = "123456789012",
        region: str = "us-east-1",
    ) -> None:
        self.tpl = tpl
        self.parameters = dict(parameters)
        self.physical = dict(physical_names)
        self.pseudo = {
            "AWS::AccountId": account,
            "AWS::Region": region,
            "AWS::Partition": "aws",
            "AWS::StackName": "espmail-local",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
        }

    def rebound(self, tpl: Mapping[str, Any] | None = None, parameters: Mapping[str, Any] | None = None) -> Resolver:
        """The same deployment read through another template (the SAM translation of this one) or with
        some parameter values changed."""
        other = copy.copy(self)
        other.tpl = self.tpl if tpl is None else tpl
        other.parameters = {**self.parameters, **(parameters or {})}
        other.physical = dict(self.physical)
        other.pseudo = dict(self.pseudo)
        return other

    def _default(self, name: str) -> Any:
        spec = self.tpl.get("Parameters", {}).get(name)
        if spec is None:
            raise KeyError(f"template has no parameter or resource named {name}")
        return parameter_value(self.tpl, name, spec.get("Default"))

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.physical:
            return self.physical[name]
        if name in self.tpl.get("Resources", {}):
            return name
        return self._default(name)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::Join":
                sep, items = arg
                return str(sep).join(str(i) for i in self.resolve(items))
            if key == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
                return re.sub(
                    r"\$\{([^}]+)\}",
                    lambda m: str(extra[m.group(1)] if m.group(1) in extra else self._sub_name(m.group(1))),
                    text,
                )
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
                return self.get_att(logical, attribute)
            if key == "Fn::If":
                condition, when_true, when_false = arg
                return self.resolve(when_true if self.condition(condition) else when_false)
            if key == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text)).split(sep)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(index)]
        return {k: self.resolve(v) for k, v in value.items()}

    def condition(self, name: str) -> bool:
        """A template condition's value under these parameters (``Conditions`` of the template)."""
        return self._holds(self.tpl.get("Conditions", {})[name])

    def _holds(self, expression: Any) -> bool:
        ((key, arg),) = expression.items()
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::Equals":
            left, right = (self.resolve(a) for a in arg)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self._holds(arg[0])
        if key == "Fn::And":
            return all(self._holds(a) for a in arg)
        if key == "Fn::Or":
            return any(self._holds(a) for a in arg)
        raise ValueError(f"unsupported condition function {key}")

    def _sub_name(self, name: str) -> Any:
        if "." in name:
            logical, attribute = name.split(".", 1)
            return self.get_att(logical, attribute)
        return self.ref(name)

    def get_att(self, logical: str, attribute: str) -> str:
        physical = self.ref(logical)
        kind = self.tpl["Resources"].get(logical, {}).get("Type", "")
        if attribute == "Arn":
            if kind == "AWS::S3::Bucket":
                return f"arn:aws:s3:::{physical}"
            if kind == "AWS::SQS::Queue":
                return f"arn:aws:sqs:{self.pseudo['AWS::Region']}:{self.pseudo['AWS::AccountId']}:{physical}"
            if kind == "AWS::KMS::Key":
                return f"arn:aws:kms:{self.pseudo['AWS::Region']}:{self.pseudo['AWS::AccountId']}:key/{physical}"
            if kind == "AWS::DynamoDB::Table":
                return f"arn:aws:dynamodb:{self.pseudo['AWS::Region']}:{self.pseudo['AWS::AccountId']}:table/{physical}"
            return f"arn:aws:lambda:{self.pseudo['AWS::Region']}:{self.pseudo['AWS::AccountId']}:function:{physical}"
        return str(physical)


def function_handler(logical_id: str, tpl: Mapping[str, Any] | None = None) -> str:
    """The ``Handler`` string of a function in the template, e.g. ``expander.handler.lambda_handler``."""
    tpl = tpl or template()
    resource = tpl["Resources"][logical_id]
    return str(resource["Properties"]["Handler"])


def function_environment(logical_id: str | None, resolver: Resolver) -> dict[str, str]:
    """The environment a function gets when deployed: Globals, then its own variables."""
    tpl = resolver.tpl
    variables: dict[str, Any] = dict(
        tpl.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    )
    if logical_id:
        own = tpl["Resources"][logical_id].get("Properties", {}).get("Environment", {}).get("Variables", {})
        variables.update(own)
    resolved = {}
    for name, value in variables.items():
        final = resolver.resolve(value)
        resolved[name] = "" if final is None else str(final)
    return resolved
