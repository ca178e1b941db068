"""``Custom::ActiveReceiptRuleSet``: makes an SES receipt rule set the active one (CloudFormation cannot).

An account has at most one active rule set per region, so this resource is careful with what is not its:

- Properties: ``RuleSetName`` (required); ``AllowReplaceActiveRuleSet`` (``false``): whether it may replace
  another rule set that is already active (another stack's, or one made by hand).
- Physical id: the rule set name.
- Create / Update: activates ``RuleSetName``. If another set is active and replacing is not allowed,
  FAILED, naming that set and the property that allows it. Activating an already active set is a no-op.
- Delete: deactivates only if the set is still the active one; otherwise nothing (someone activated
  another since, or the Create never activated it).
- Attributes: ``RuleSetName``; ``PreviouslyActive`` (the set that was active before, or empty).

``SetActiveReceiptRuleSet`` and ``DescribeActiveReceiptRuleSet`` take no resource ARN in IAM; the
function's policy names just those two actions.
"""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from cfn_response import (
    Answer,
    CustomResourceRequest,
    Responder,
    ResponseSender,
    answer_custom_resource,
    answer_setup_failure,
    put_response,
)
from espmail.errors import ConfigurationError, EspMailError, InvalidInput
from espmail.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_ses import SESClient

_RULE_SET_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class RuleSetActivationFailed(EspMailError):
    """SES did not tell or change the active rule set; the message says why."""


class ReceiptRuleSets:
    """The SES adapter: which rule set is active, and activating one (or none)."""

    def __init__(self, client: SESClient | Any) -> None:
        self._client: Any = client

    def _call(self, doing: str, **arguments: Any) -> Any:
        try:
            return getattr(self._client, doing)(**arguments)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise RuleSetActivationFailed(
                f"SES refused {doing}: {error.get('Code', '')}: {error.get('Message', '')}"
            ) from exc
        except BotoCoreError as exc:
            raise RuleSetActivationFailed(f"SES could not be reached for {doing}: {exc}") from exc

    def active(self) -> str | None:
        answer = self._call("describe_active_receipt_rule_set")
        name = (answer.get("Metadata") or {}).get("Name")
        return str(name) if name else None

    def activate(self, name: str) -> None:
        self._call("set_active_receipt_rule_set", RuleSetName=name)

    def deactivate_all(self) -> None:
        self._call("set_active_receipt_rule_set")


def _rule_set_name(properties: Any) -> str:
    name = str(properties.get("RuleSetName", "")).strip()
    if not _RULE_SET_NAME.match(name):
        raise InvalidInput(f"property RuleSetName={name!r} is not an SES receipt rule set name")
    return name


def _allowed_to_replace(properties: Any) -> bool:
    raw = str(properties.get("AllowReplaceActiveRuleSet", "false")).strip().lower()
    if raw not in {"true", "false", ""}:
        raise InvalidInput(f"property AllowReplaceActiveRuleSet={raw!r} is not true or false")
    return raw == "true"


def apply(request: CustomResourceRequest, rule_sets: ReceiptRuleSets, responder: Responder) -> Answer:
    log = logger()
    if request.request_type == "Delete":
        name = request.physical_resource_id or ""
        responder.doing = f"checking whether {name} is still the active SES receipt rule set"
        active = rule_sets.active()
        if name and active == name:
            responder.doing = f"deactivating SES receipt rule set {name}"
            rule_sets.deactivate_all()
            log.info("deactivated SES receipt rule set", extra={"rule_set": name})
        else:
            log.info("not deactivating: another rule set or none is active", extra={"rule_set": name, "active": active})
        return Answer.success(name or request.placeholder_physical_id, reason="deleted")

    name = _rule_set_name(request.properties)
    allowed = _allowed_to_replace(request.properties)
    responder.doing = "reading the active SES receipt rule set"
    active = rule_sets.active()
    previous_ours = request.physical_resource_id if request.request_type == "Update" else None
    if active is not None and active not in (name, previous_ours) and not allowed:
        return Answer.failed(
            request.physical_resource_id or name,
            f"SES receipt rule set {active!r} is already active in this account and region, and only one can be. "
            f"Set the parameter AllowReplaceActiveRuleSet to true to make {name!r} active instead (mail that "
            f"{active!r} handles will then stop being handled), or deactivate {active!r} first.",
        )
    if active != name:
        responder.doing = f"activating SES receipt rule set {name}"
        rule_sets.activate(name)
        log.info("activated SES receipt rule set", extra={"rule_set": name, "previously_active": active})
    return Answer.success(
        name, {"RuleSetName": name, "PreviouslyActive": active if active and active != name else ""}, "active"
    )


def run_active_receipt_rule_set(
    event: Any, context: Any, rule_sets: ReceiptRuleSets, *, sender: ResponseSender = put_response
) -> Answer | None:
    return answer_custom_resource(
        event, context, lambda request, responder: apply(request, rule_sets, responder), sender=sender
    )


@cache
def _ses() -> ReceiptRuleSets:
    from espmail.bootstrap import aws_client

    return ReceiptRuleSets(aws_client("ses"))


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, str] | None:
    try:
        rule_sets = _ses()
    except (ConfigurationError, BotoCoreError) as exc:
        answer = answer_setup_failure(event, context, exc)
    else:
        answer = run_active_receipt_rule_set(event, context, rule_sets)
    return None if answer is None else {"Status": answer.status, "PhysicalResourceId": answer.physical_resource_id}
