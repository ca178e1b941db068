"""Custom::ActiveReceiptRuleSet against moto's SES, through the real handler: it activates the stack's rule
set, never replaces another active set unless allowed, and deactivates on Delete only what is still its."""

from __future__ import annotations

from typing import Any

from tests.integration.domain_auth_support import RULE_SET_FUNCTION, CloudFormationResponses, cfn_event

RULE_SET = "InboundReceiptRuleSet"  # created by the embedded stack from template.yaml
LOGICAL_ID = "ActiveReceiptRuleSet"


def _active(stack: Any) -> str | None:
    metadata = stack.client("ses").describe_active_receipt_rule_set().get("Metadata") or {}
    return metadata.get("Name")


def _another_active_set(stack: Any, name: str = "other-stack-rules") -> str:
    ses = stack.client("ses")
    ses.create_receipt_rule_set(RuleSetName=name)
    ses.set_active_receipt_rule_set(RuleSetName=name)
    return name


def _event(request_type: str, url: str, *, allow: str = "false", name: str = RULE_SET, **more: Any) -> dict[str, Any]:
    properties = {"RuleSetName": name, "AllowReplaceActiveRuleSet": allow}
    return cfn_event(request_type, properties, url, logical_id=LOGICAL_ID, **more)


def test_create_activates_the_rule_set(stack: Any, responses: CloudFormationResponses) -> None:
    assert _active(stack) is None
    url = responses.url()

    stack.invoke(RULE_SET_FUNCTION, _event("Create", url))

    answer = responses.only(url)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["PhysicalResourceId"] == RULE_SET
    assert answer["Data"] == {"RuleSetName": RULE_SET, "PreviouslyActive": ""}
    assert _active(stack) == RULE_SET


def test_a_repeated_create_is_harmless(stack: Any, responses: CloudFormationResponses) -> None:
    first, second = responses.url(), responses.url()
    stack.invoke(RULE_SET_FUNCTION, _event("Create", first))
    stack.invoke(RULE_SET_FUNCTION, _event("Create", second))
    assert responses.only(second)["Status"] == "SUCCESS"
    assert _active(stack) == RULE_SET


def test_another_active_set_is_not_replaced_without_permission(stack: Any, responses: CloudFormationResponses) -> None:
    other = _another_active_set(stack)
    url = responses.url()

    stack.invoke(RULE_SET_FUNCTION, _event("Create", url))

    answer = responses.only(url)
    assert answer["Status"] == "FAILED"
    assert f"'{other}' is already active" in answer["Reason"]
    assert "AllowReplaceActiveRuleSet" in answer["Reason"]
    assert _active(stack) == other

    # The rollback's Delete of the failed Create leaves the other stack's set active.
    rollback = responses.url()
    stack.invoke(RULE_SET_FUNCTION, _event("Delete", rollback, physical_id=answer["PhysicalResourceId"]))
    assert responses.only(rollback)["Status"] == "SUCCESS"
    assert _active(stack) == other


def test_another_active_set_is_replaced_when_allowed(stack: Any, responses: CloudFormationResponses) -> None:
    other = _another_active_set(stack)
    url = responses.url()

    stack.invoke(RULE_SET_FUNCTION, _event("Create", url, allow="true"))

    answer = responses.only(url)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["Data"]["PreviouslyActive"] == other
    assert _active(stack) == RULE_SET


def test_delete_deactivates_the_set_while_it_is_still_the_active_one(
    stack: Any, responses: CloudFormationResponses
) -> None:
    created, deleted = responses.url(), responses.url()
    stack.invoke(RULE_SET_FUNCTION, _event("Create", created))

    stack.invoke(RULE_SET_FUNCTION, _event("Delete", deleted, physical_id=RULE_SET))

    assert responses.only(deleted)["Status"] == "SUCCESS"
    assert _active(stack) is None


def test_delete_leaves_a_set_someone_activated_since_alone(stack: Any, responses: CloudFormationResponses) -> None:
    created, deleted = responses.url(), responses.url()
    stack.invoke(RULE_SET_FUNCTION, _event("Create", created))
    other = _another_active_set(stack)

    stack.invoke(RULE_SET_FUNCTION, _event("Delete", deleted, physical_id=RULE_SET))

    assert responses.only(deleted)["Status"] == "SUCCESS"
    assert _active(stack) == other


def test_renaming_the_set_moves_activation_without_needing_permission(
    stack: Any, responses: CloudFormationResponses
) -> None:
    stack.client("ses").create_receipt_rule_set(RuleSetName="espmail-inbound-v2")
    created, updated, deleted = responses.url(), responses.url(), responses.url()
    stack.invoke(RULE_SET_FUNCTION, _event("Create", created))

    update = _event(
        "Update",
        updated,
        name="espmail-inbound-v2",
        physical_id=RULE_SET,
        old_properties={"RuleSetName": RULE_SET, "AllowReplaceActiveRuleSet": "false"},
    )
    stack.invoke(RULE_SET_FUNCTION, update)
    answer = responses.only(updated)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["PhysicalResourceId"] == "espmail-inbound-v2"
    assert _active(stack) == "espmail-inbound-v2"

    # CloudFormation then deletes the old physical id: the new set stays active.
    stack.invoke(RULE_SET_FUNCTION, _event("Delete", deleted, physical_id=RULE_SET))
    assert responses.only(deleted)["Status"] == "SUCCESS"
    assert _active(stack) == "espmail-inbound-v2"


def test_a_missing_rule_set_fails_with_ses_words(stack: Any, responses: CloudFormationResponses) -> None:
    url = responses.url()
    stack.invoke(RULE_SET_FUNCTION, _event("Create", url, name="no-such-set"))
    answer = responses.only(url)
    assert answer["Status"] == "FAILED"
    assert "RuleSetDoesNotExist" in answer["Reason"]
