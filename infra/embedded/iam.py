"""The IAM contract: each AWS call a function made, held against that function's role as the SAM translator
writes it from ``template.yaml``.

- ``translated()``: the template through ``samtranslator`` (what ``sam deploy`` hands CloudFormation):
  policy templates such as ``DynamoDBCrudPolicy`` become statements, each function gets its role.
- ``RoleBook``: per function, the statements of its role (inline policies, ``AWS::IAM::Policy`` resources
  naming the role, and the AWS managed policies SAM attaches), with ``Ref``/``Fn::Sub``/``Fn::GetAtt``/
  ``Fn::If`` resolved against one deployment's parameters and physical names.
- ``requests_of(call)``: what IAM authorizes for one API call: the action and the resource ARN(s) (a
  table's, an index's, each table of a batch, each item of a transaction), with the condition keys the
  service sets. An S3 read of a missing key also asks for ``s3:ListBucket``: without it S3 answers 403,
  not ``NoSuchKey``, and the code that expects "gone" sees "denied".
- ``decide()``: IAM's evaluation for one principal's identity policies: an explicit Deny wins, else some
  Allow must match action, resource and conditions.

What it does not model: session policies, permission boundaries, SCPs, resource policies (a bucket's or
a key's own policy), and for a custom resource's Delete after a replacement, that the role already has the
new parameters while the event carries the old ones (the parameters are taken from the event's
``ResourceProperties``, which is right for Create and Update).
"""

from __future__ import annotations

import copy
import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import urlparse

from embedded.template import Resolver, template

# What `sam package` does to a local code folder before the transform: an S3 location.
_ARTIFACTS_BUCKET = "espmail-artifacts"
MANAGED_POLICY_ARNS = {
    "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "AWSXRayDaemonWriteAccess": "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
}
# The documents of the AWS managed policies SAM attaches (as AWS publishes them).
MANAGED_POLICY_DOCUMENTS: dict[str, list[dict[str, Any]]] = {
    MANAGED_POLICY_ARNS["AWSLambdaBasicExecutionRole"]: [
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "*",
        }
    ],
    MANAGED_POLICY_ARNS["AWSXrayWriteOnlyAccess"]: [
        {
            "Effect": "Allow",
            "Action": [
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
                "xray:GetSamplingStatisticSummaries",
            ],
            "Resource": "*",
        }
    ],
}
# Grants the Lambda service uses on the function's behalf, never the code: not "unused" when no call
# of the code matches them (SAM's EventInvokeConfig destination policy, the managed logging and tracing).
_SERVICE_USED_POLICY_SUFFIXES = ("EventInvokeConfigOnFailureSQSPolicy", "EventInvokeConfigOnSuccessSQSPolicy")


def translate(sam: Mapping[str, Any], parameter_values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The SAM template as CloudFormation gets it (offline: the managed policy ARNs are given)."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    sam = copy.deepcopy(dict(sam))
    for name, body in sam.get("Resources", {}).items():
        properties = body.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
                properties[key] = f"s3://{_ARTIFACTS_BUCKET}/{name}.zip"
    translator = Translator(
        managed_policy_map=dict(MANAGED_POLICY_ARNS),
        sam_parser=Parser(),
        boto_session=boto3.session.Session(region_name="us-east-1"),
    )
    result: dict[str, Any] = translator.translate(sam, parameter_values=dict(parameter_values or {}))
    return result


@cache
def translated() -> dict[str, Any]:
    return translate(template(), {})


# --------------------------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class Request:
    """What IAM is asked for one API call: an action on a resource, with the request's condition keys."""

    action: str
    resource: str | None
    context: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    why: str = ""

    def __str__(self) -> str:
        text = f"{self.action} on {self.resource or '(a resource the contract cannot name)'}"
        return f"{text} ({self.why})" if self.why else text


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _table_arn(name: str, region: str, account: str) -> str:
    return name if name.startswith("arn:") else f"arn:aws:dynamodb:{region}:{account}:table/{name}"


_TRANSACT_ACTIONS = {
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "Get": "dynamodb:GetItem",
}


def _dynamodb(operation: str, params: Mapping[str, Any], region: str, account: str) -> list[Request]:
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [
            Request(f"dynamodb:{operation}", _table_arn(t, region, account)) for t in params.get("RequestItems", {})
        ]
    if operation in ("TransactWriteItems", "TransactGetItems"):
        requests = []
        for item in params.get("TransactItems", []):
            for kind, body in item.items():
                requests.append(Request(_TRANSACT_ACTIONS[kind], _table_arn(body["TableName"], region, account)))
        return requests
    if "TableName" in params:
        arn = _table_arn(str(params["TableName"]), region, account)
        if params.get("IndexName"):
            arn = f"{arn}/index/{params['IndexName']}"
        return [Request(f"dynamodb:{operation}", arn)]
    return [Request(f"dynamodb:{operation}", None)]


_S3_OBJECT_ACTIONS = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "DeleteObject": "s3:DeleteObject",
}
_S3_BUCKET_ACTIONS = {"ListObjectsV2": "s3:ListBucket", "ListObjects": "s3:ListBucket", "HeadBucket": "s3:ListBucket"}


def _s3(operation: str, params: Mapping[str, Any], status: int | None) -> list[Request]:
    bucket = f"arn:aws:s3:::{params.get('Bucket', '')}"
    if operation in _S3_OBJECT_ACTIONS:
        requests = [Request(_S3_OBJECT_ACTIONS[operation], f"{bucket}/{params.get('Key', '')}")]
        if operation in ("GetObject", "HeadObject") and status == 404:
            requests.append(
                Request("s3:ListBucket", bucket, why="for S3 to answer NoSuchKey rather than 403 for a missing key")
            )
        return requests
    if operation in _S3_BUCKET_ACTIONS:
        return [Request(_S3_BUCKET_ACTIONS[operation], bucket)]
    return [Request(f"s3:{operation}", None)]


def _lambda(operation: str, params: Mapping[str, Any], region: str, account: str) -> list[Request]:
    name = str(params.get("FunctionName", ""))
    if name.startswith("arn:"):
        arn = name
    elif ":" in name:  # account:function:name or name:qualifier
        arn = f"arn:aws:lambda:{region}:{account}:function:{name.rsplit('function:', 1)[-1]}"
    else:
        arn = f"arn:aws:lambda:{region}:{account}:function:{name}"
    if params.get("Qualifier") and arn.count(":") == 6:
        arn = f"{arn}:{params['Qualifier']}"
    action = "lambda:InvokeFunction" if operation in ("Invoke", "InvokeAsync") else f"lambda:{operation}"
    return [Request(action, arn)]


def _route53(operation: str, params: Mapping[str, Any]) -> list[Request]:
    if operation == "GetChange":
        return [Request("route53:GetChange", f"arn:aws:route53:::change/{str(params['Id']).rsplit('/', 1)[-1]}")]
    if "HostedZoneId" in params:
        zone = f"arn:aws:route53:::hostedzone/{str(params['HostedZoneId']).rsplit('/', 1)[-1]}"
        context: dict[str, tuple[str, ...]] = {}
        if operation == "ChangeResourceRecordSets":
            changes = params.get("ChangeBatch", {}).get("Changes", [])
            context = {
                "route53:ChangeResourceRecordSetsNormalizedRecordNames": tuple(
                    str(c["ResourceRecordSet"]["Name"]).lower().rstrip(".") for c in changes
                ),
                "route53:ChangeResourceRecordSetsRecordTypes": tuple(
                    str(c["ResourceRecordSet"]["Type"]) for c in changes
                ),
                "route53:ChangeResourceRecordSetsActions": tuple(str(c["Action"]) for c in changes),
            }
        return [Request(f"route53:{operation}", zone, context)]
    return [Request(f"route53:{operation}", None)]


# Actions IAM authorizes on "*" only (no resource type in the service authorization reference).
_STAR_ONLY = frozenset(
    {
        "ses:DescribeActiveReceiptRuleSet",
        "ses:SetActiveReceiptRuleSet",
        "cloudwatch:PutMetricData",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
    }
)


def requests_of(
    service: str, operation: str, params: Mapping[str, Any], region: str, account: str, status: int | None = None
) -> list[Request]:
    """The IAM requests one API call makes (``resource`` ``None``: the contract does not know this call's
    resource; it is then denied, so that the contract is taught rather than silently passed)."""
    if f"{service}:{operation}" in _STAR_ONLY:
        return [Request(f"{service}:{operation}", "*")]
    if service == "dynamodb":
        return _dynamodb(operation, params, region, account)
    if service == "s3":
        return _s3(operation, params, status)
    if service == "secretsmanager" and "SecretId" in params:
        return [Request(f"secretsmanager:{operation}", str(params["SecretId"]))]
    if service == "lambda":
        return _lambda(operation, params, region, account)
    if service == "route53":
        return _route53(operation, params)
    if service == "sqs" and "QueueUrl" in params:
        name = urlparse(str(params["QueueUrl"])).path.rstrip("/").rsplit("/", 1)[-1]
        return [Request(f"sqs:{operation}", f"arn:aws:sqs:{region}:{account}:{name}")]
    return [Request(f"{service}:{operation}", None)]


# ------------------------------------------------------------------------------------------- statements
@dataclass(frozen=True)
class Grant:
    """One statement of a function's role, resolved; ``label`` names it as the template writes it."""

    function: str
    policy: str
    label: str
    effect: str
    actions: tuple[str, ...]
    not_actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_resources: tuple[str, ...]
    conditions: Mapping[str, Mapping[str, Any]]
    resource_labels: tuple[str, ...] = ()
    service_used: bool = False

    def matches(self, request: Request) -> bool:
        return bool(self.matching(request))

    def matching(self, request: Request) -> list[tuple[str, str]]:
        """The parts of this statement that match, as (action, resource) as the template writes them
        (empty: the statement does not apply to the request)."""
        if request.resource is None:
            return []
        if self.not_actions and any(_action_matches(p, request.action) for p in self.not_actions):
            return []
        if self.not_resources and any(_resource_matches(p, request.resource) for p in self.not_resources):
            return []
        actions = [p for p in self.actions if _action_matches(p, request.action)] if self.actions else ["*"]
        resources = (
            [
                label
                for p, label in zip(self.resources, self.resource_labels, strict=True)
                if _resource_matches(p, request.resource)
            ]
            if self.resources
            else ["*"]
        )
        if not actions or not resources or not _conditions_hold(self.conditions, request.context):
            return []
        return [(a, r) for a in actions for r in resources]

    def parts(self) -> list[tuple[str, str]]:
        actions = self.actions or (f"all but {', '.join(self.not_actions)}",)
        return [(a, r) for a in actions for r in (self.resource_labels or ("*",))]


def _action_matches(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def _resource_matches(pattern: str, resource: str) -> bool:
    return fnmatch.fnmatchcase(resource, pattern)


_STRING_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda value, pattern: value == pattern,
    "StringLike": fnmatch.fnmatchcase,
    "ArnEquals": lambda value, pattern: value == pattern,
    "ArnLike": fnmatch.fnmatchcase,
    "Bool": lambda value, pattern: value.lower() == pattern.lower(),
}


def _conditions_hold(conditions: Mapping[str, Mapping[str, Any]], context: Mapping[str, tuple[str, ...]]) -> bool:
    for operator, tests in conditions.items():
        qualifier, _, base = operator.rpartition(":")
        compare = _STRING_OPERATORS.get(base)
        if compare is None:
            raise ValueError(f"the IAM contract does not evaluate the condition operator {operator}")
        for key, wanted in tests.items():
            patterns = [str(p) for p in _as_list(wanted)]
            values = context.get(key)
            if qualifier == "ForAllValues":
                if values is not None and not all(any(compare(v, p) for p in patterns) for v in values):
                    return False
            elif qualifier == "ForAnyValue":
                if not values or not any(compare(v, p) for v in values for p in patterns):
                    return False
            elif not values or not any(compare(values[0], p) for p in patterns):
                return False
    return True


def _label(value: Any) -> str:
    """A statement's resource as the template writes it (``${OutboxTable.Arn}/index/due``)."""
    if isinstance(value, str):
        return re.sub(r"arn:\$\{AWS::Partition\}:(\w+):\$\{AWS::Region\}:\$\{AWS::AccountId\}:", r"\1:", value)
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            return f"${{{arg}}}"
        if key == "Fn::GetAtt":
            return "${" + ".".join(arg if isinstance(arg, list) else [arg]) + "}"
        if key == "Fn::Sub":
            if isinstance(arg, str):
                return arg
            text, variables = arg
            return _label(re.sub(r"\$\{([^}]+)\}", lambda m: _label(variables.get(m.group(1), m.group(0))), text))
        if key == "Fn::If":
            return f"if {arg[0]}: {_label(arg[1])}"
    if isinstance(value, list):
        return ", ".join(_label(v) for v in value)
    return str(value)


@dataclass
class RoleBook:
    """The roles of one translated template, resolved for one deployment."""

    cfn: Mapping[str, Any]
    resolver: Resolver

    @classmethod
    def for_deployment(cls, resolver: Resolver, cfn: Mapping[str, Any] | None = None) -> RoleBook:
        cfn = cfn if cfn is not None else translated()
        return cls(cfn, resolver.rebound(tpl=cfn))

    @property
    def account(self) -> str:
        return str(self.resolver.pseudo["AWS::AccountId"])

    def functions(self) -> list[str]:
        return sorted(n for n, b in self.cfn["Resources"].items() if b["Type"] == "AWS::Lambda::Function")

    def role_of(self, function: str) -> str | None:
        """The logical id of the role the function runs as (``None``: not a role of this template)."""
        body = self.cfn["Resources"].get(function)
        if body is None or body["Type"] != "AWS::Lambda::Function":
            return None
        role = body["Properties"].get("Role")
        if isinstance(role, dict) and "Fn::GetAtt" in role:
            logical = role["Fn::GetAtt"][0] if isinstance(role["Fn::GetAtt"], list) else role["Fn::GetAtt"]
            logical = str(logical).split(".", 1)[0]
            if self.cfn["Resources"].get(logical, {}).get("Type") == "AWS::IAM::Role":
                return logical
        return None

    def _policy_label(self, function: str, policy: str) -> str:
        """A SAM function's ``Policies[i]`` by what the template writes there (``DynamoDBReadPolicy``,
        ``Statement``); any other policy by its name."""
        match = re.fullmatch(rf"{re.escape(function)}RolePolicy(\d+)", policy)
        if match is None:
            return policy
        index = int(match.group(1))
        policies = _as_list(self.sam_policies.get(function))
        entry = policies[index] if index < len(policies) else None
        name = next(iter(entry)) if isinstance(entry, dict) and len(entry) == 1 else "Statement"
        return f"Policies[{index}] {'Statement' if name == 'Statement' else name}"

    @property
    def sam_policies(self) -> dict[str, Any]:
        return {
            n: b.get("Properties", {}).get("Policies")
            for n, b in template()["Resources"].items()
            if b.get("Type") == "AWS::Serverless::Function"
        }

    def _chosen(self, written: Any) -> Any:
        """A statement as written, its ``Fn::If`` decided for this deployment (``None``: no statement)."""
        while isinstance(written, dict) and set(written) == {"Fn::If"}:
            condition, when_true, when_false = written["Fn::If"]
            written = when_true if self.resolver.condition(condition) else when_false
        if written == {"Ref": "AWS::NoValue"}:
            return None
        return written

    def grants(self, function: str) -> list[Grant]:
        role = self.role_of(function)
        if role is None:
            raise LookupError(f"{function} has no role in template.yaml (AWS::IAM::Role through Role: !GetAtt)")
        documents: list[tuple[str, Any]] = []
        properties = self.cfn["Resources"][role]["Properties"]
        for policy in properties.get("Policies", []):
            documents.append((str(policy["PolicyName"]), policy["PolicyDocument"]))
        for name, body in self.cfn["Resources"].items():
            if body["Type"] == "AWS::IAM::Policy" and {"Ref": role} in _as_list(body["Properties"].get("Roles")):
                documents.append((name, body["Properties"]["PolicyDocument"]))
        for arn in self.resolver.resolve(properties.get("ManagedPolicyArns", [])):
            documents.append((str(arn).rsplit("/", 1)[-1], {"Statement": MANAGED_POLICY_DOCUMENTS.get(str(arn), [])}))
        grants = []
        for policy, document in documents:
            service_used = policy.endswith(_SERVICE_USED_POLICY_SUFFIXES) or policy in {
                a.rsplit("/", 1)[-1] for a in MANAGED_POLICY_DOCUMENTS
            }
            for written in _as_list(document.get("Statement")):
                raw = self._chosen(written)
                if raw is None:  # a conditional statement that is off in this deployment
                    continue
                statement = self.resolver.resolve(raw)
                label = self._policy_label(function, policy) + (f" {raw['Sid']}" if raw.get("Sid") else "")
                resources = [
                    (str(resolved), _label(r))
                    for r in _as_list(raw.get("Resource"))
                    for resolved in _as_list(self.resolver.resolve(r))
                    if resolved is not None
                ]
                grants.append(
                    Grant(
                        function=function,
                        policy=policy,
                        label=label,
                        effect=str(statement.get("Effect", "Allow")),
                        actions=tuple(str(a) for a in _as_list(statement.get("Action"))),
                        not_actions=tuple(str(a) for a in _as_list(statement.get("NotAction"))),
                        resources=tuple(r for r, _ in resources),
                        resource_labels=tuple(label for _, label in resources),
                        not_resources=tuple(str(r) for r in _as_list(statement.get("NotResource"))),
                        conditions=statement.get("Condition", {}),
                        service_used=service_used,
                    )
                )
        return grants


@dataclass(frozen=True)
class Decision:
    request: Request
    allowed: bool
    used: tuple[tuple[Grant, tuple[str, str]], ...]  # each Allow statement that matched, with the part that did


def decide(grants: Iterable[Grant], request: Request) -> Decision:
    grants = list(grants)
    if any(g.effect == "Deny" and g.matches(request) for g in grants):
        return Decision(request, False, ())
    used = tuple((g, part) for g in grants if g.effect == "Allow" for part in g.matching(request))
    return Decision(request, bool(used), used)


def deployment_parameters(tpl: Mapping[str, Any], event: Any) -> dict[str, Any]:
    """The parameter values a CloudFormation custom resource event shows: each property the template sets
    to ``!Ref SomeParameter`` carries that parameter's value in this deploy (empty for other events)."""
    if not isinstance(event, Mapping) or "ResourceProperties" not in event or "LogicalResourceId" not in event:
        return {}
    resource = tpl.get("Resources", {}).get(str(event["LogicalResourceId"]), {})
    parameters = tpl.get("Parameters", {})
    shown: dict[str, Any] = {}
    for key, value in resource.get("Properties", {}).items():
        is_parameter = isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in parameters
        if is_parameter and key in event["ResourceProperties"]:
            shown[str(value["Ref"])] = event["ResourceProperties"][key]
    return shown


# ------------------------------------------------------------------------------------------- contract
@dataclass
class Contract:
    """Holds recorded calls against the roles and keeps, across a test session, which functions ran and
    which grants a call used."""

    tpl: Mapping[str, Any] = field(default_factory=template)
    cfn: Mapping[str, Any] = field(default_factory=translated)
    invoked: set[str] = field(default_factory=set)
    # (function, statement, action, resource), as the template writes them
    used: set[tuple[str, str, str, str]] = field(default_factory=set)
    granted: set[tuple[str, str, str, str]] = field(default_factory=set)

    def functions(self) -> list[str]:
        return sorted(n for n, b in self.cfn["Resources"].items() if b["Type"] == "AWS::Lambda::Function")

    def denials(self, calls: Iterable[Any]) -> list[str]:
        """One line per call the deployed role would refuse: function, action, resource."""
        found: list[str] = []
        books: dict[tuple[int, str], tuple[RoleBook, list[Grant]]] = {}
        for call in calls:
            invocation = call.invocation
            if invocation is None:
                found.append(
                    f"{call.action} came from a thread started while {', '.join(call.functions_running)} ran at "
                    "once: no single role to hold it against (run different functions one after the other)"
                )
                continue
            function = invocation.logical_id
            self.invoked.add(function)
            if invocation.resolver is None:
                found.append(f"{function}: {call.action} in an invocation without its deployment (pass resolver=)")
                continue
            key = (id(invocation), function)
            if key not in books:
                shown = deployment_parameters(self.tpl, invocation.event)
                resolver = invocation.resolver.rebound(parameters=shown)
                book = RoleBook.for_deployment(resolver, self.cfn)
                try:
                    grants = book.grants(function)
                except LookupError as exc:
                    found.append(f"{function}: {call.action}: {exc}")
                    continue
                books[key] = (book, grants)
                self.granted.update(
                    (function, g.label, *part) for g in grants if not g.service_used for part in g.parts()
                )
            book, grants = books[key]
            for request in requests_of(
                call.service, call.operation, call.params, call.region, book.account, call.status
            ):
                decision = decide(grants, request)
                self.used.update((function, g.label, *part) for g, part in decision.used)
                if not decision.allowed:
                    found.append(f"{function} would be denied {request}")
        return sorted(set(found))

    def unused(self) -> list[str]:
        """Per statement and action, the resources no call used it on."""
        grouped: dict[tuple[str, str, str], list[str]] = {}
        for function, statement, action, resource in sorted(self.granted - self.used):
            grouped.setdefault((function, statement, action), []).append(resource)
        return [f"{f} {s}: {a} on {', '.join(r)}" for (f, s, a), r in grouped.items()]

    def never_invoked(self) -> list[str]:
        return [f for f in self.functions() if f not in self.invoked]


def resource_policy_grants(document: Mapping[str, Any], resolver: Resolver, principal: str, owner: str) -> list[Grant]:
    """The statements of a resource's own policy (a bucket's, a key's) that apply to ``principal`` (a
    service principal such as ``ses.amazonaws.com``, or an ARN), resolved; ``owner`` names the resource."""
    grants = []
    for written in _as_list(document.get("Statement")):
        statement = resolver.resolve(written)
        if statement is None:
            continue
        named = statement.get("Principal", {})
        principals = ["*"] if named == "*" else [str(p) for values in dict(named).values() for p in _as_list(values)]
        if "*" not in principals and principal not in principals:
            continue
        resources = [str(r) for r in _as_list(statement.get("Resource"))]
        grants.append(
            Grant(
                function=owner,
                policy=owner,
                label=f"{owner} {statement.get('Sid', '')}".strip(),
                effect=str(statement.get("Effect", "Allow")),
                actions=tuple(str(a) for a in _as_list(statement.get("Action"))),
                not_actions=tuple(str(a) for a in _as_list(statement.get("NotAction"))),
                resources=tuple(resources),
                resource_labels=tuple(resources),
                not_resources=(),
                conditions=statement.get("Condition", {}),
            )
        )
    return grants
