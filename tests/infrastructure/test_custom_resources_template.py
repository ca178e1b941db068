"""The sender authentication and SES section of the template: the two custom resources with their
properties, their IAM (Route53 changes only in the given zone, the one secret only, re-invoking only
itself), the SES identity, DKIM and MX records only with a hosted zone, and cfn-lint clean."""

from __future__ import annotations

import json
from typing import Any

from embedded.template import TEMPLATE_PATH, load_template, resources_of_type
from tests.infrastructure.test_template import translated

ZONES_ARN = {"Fn::Sub": "arn:${AWS::Partition}:route53:::hostedzone/*"}
SECRET = {"Ref": "SendGridApiKeySecretArn"}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Statements of a policy document; a conditional (Fn::If) statement counts as its true branch."""
    found = []
    for statement in _list(document["Statement"]):
        if "Fn::If" in statement:
            _condition, statement, _otherwise = statement["Fn::If"]
        found.append(statement)
    return found


def _policies_of(role_name: str) -> list[dict[str, Any]]:
    """Every statement that applies to a role: its inline policies and AWS::IAM::Policy resources naming it."""
    resources = translated()["Resources"]
    statements = []
    for policy in resources[role_name]["Properties"].get("Policies", []):
        statements += _statements(policy["PolicyDocument"])
    for body in resources.values():
        if body["Type"] == "AWS::IAM::Policy" and {"Ref": role_name} in body["Properties"]["Roles"]:
            statements += _statements(body["Properties"]["PolicyDocument"])
    return statements


def _all_statements() -> list[dict[str, Any]]:
    resources = translated()["Resources"]
    statements = []
    for body in resources.values():
        if body["Type"] == "AWS::IAM::Role":
            for policy in body["Properties"].get("Policies", []):
                statements += _statements(policy["PolicyDocument"])
        if body["Type"] == "AWS::IAM::Policy":
            statements += _statements(body["Properties"]["PolicyDocument"])
    return statements


def _actions(statement: dict[str, Any]) -> list[str]:
    return [str(a) for a in _list(statement.get("Action", []))]


def test_the_domain_authentication_resource_takes_its_properties_from_the_parameters() -> None:
    resource = load_template()["Resources"]["SendGridDomainAuthentication"]
    assert resource["Type"] == "Custom::SendGridDomainAuthentication"
    assert resource["DependsOn"] == "SendGridDomainAuthPolicy"
    properties = resource["Properties"]
    assert properties == {
        "ServiceToken": {"Fn::GetAtt": ["SendGridDomainAuthFunction", "Arn"]},
        "ServiceTimeout": 2700,
        "Domain": {"Ref": "SiteDomain"},
        "Subdomain": {"Ref": "SendGridSubdomain"},
        "CustomDkimSelector": {"Ref": "DkimSelector"},
        "HostedZoneId": {"Ref": "HostedZoneId"},
        "ApiKeySecretArn": SECRET,
        "RetainOnDelete": {"Ref": "RetainSendGridDomainOnDelete"},
        "ValidationTimeoutMinutes": 30,
    }
    # CloudFormation stops waiting (ServiceTimeout) only after the function has stopped validating.
    assert properties["ServiceTimeout"] > (properties["ValidationTimeoutMinutes"] + 5) * 60


def test_the_active_rule_set_resource_activates_the_inbound_set_after_its_rule() -> None:
    resources = load_template()["Resources"]
    resource = resources["ActiveReceiptRuleSet"]
    assert resource["Type"] == "Custom::ActiveReceiptRuleSet"
    assert resource["Properties"]["ServiceToken"] == {"Fn::GetAtt": ["ActiveReceiptRuleSetFunction", "Arn"]}
    assert resource["Properties"]["RuleSetName"] == {"Ref": "InboundReceiptRuleSet"}
    assert resource["Properties"]["AllowReplaceActiveRuleSet"] == {"Ref": "AllowReplaceActiveRuleSet"}
    assert resources["InboundReceiptRuleSet"]["Type"] == "AWS::SES::ReceiptRuleSet"
    assert resource["DependsOn"] == "InboundReceiptRule"


def test_the_custom_resource_functions_run_the_tested_handlers() -> None:
    functions = resources_of_type(load_template(), "AWS::Serverless::Function")
    for name, handler in (
        ("SendGridDomainAuthFunction", "sendgrid_domain_auth.lambda_handler"),
        ("ActiveReceiptRuleSetFunction", "active_receipt_rule_set.lambda_handler"),
    ):
        properties = functions[name]["Properties"]
        assert properties["CodeUri"] == "infra/custom_resources/"
        assert properties["Handler"] == handler


def test_route53_records_are_changed_only_of_sendgrids_types_and_only_when_there_is_a_zone() -> None:
    # Any zone of the account: a changed HostedZoneId's old zone is cleaned under the updated policy.
    granting = [s for s in _all_statements() if any(a.startswith("route53:") for a in _actions(s))]
    changes = [s for s in granting if "route53:ChangeResourceRecordSets" in _actions(s)]
    assert len(changes) == 1
    assert sorted(_actions(changes[0])) == ["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets"]
    assert changes[0]["Resource"] == ZONES_ARN
    assert changes[0]["Condition"] == {
        "ForAllValues:StringEquals": {"route53:ChangeResourceRecordSetsRecordTypes": ["CNAME", "MX", "TXT"]}
    }
    others = [s for s in granting if s is not changes[0]]
    assert [(_actions(s), s["Resource"]) for s in others] == [
        (["route53:GetChange"], {"Fn::Sub": "arn:${AWS::Partition}:route53:::change/*"})
    ]
    document = load_template()["Resources"]["SendGridDomainAuthPolicy"]["Properties"]["PolicyDocument"]
    conditional = [s["Fn::If"] for s in document["Statement"] if "Fn::If" in s]
    assert [(c[0], c[2]) for c in conditional] == [("HasHostedZone", {"Ref": "AWS::NoValue"})] * 2


def test_the_domain_authentication_function_reads_the_one_secret_and_invokes_only_itself() -> None:
    statements = _policies_of("SendGridDomainAuthFunctionRole")
    secret_statements = [s for s in statements if any(a.startswith("secretsmanager:") for a in _actions(s))]
    assert [s["Resource"] for s in secret_statements] == [{"Fn::Sub": ["${secretArn}", {"secretArn": SECRET}]}]
    assert all(_actions(s) == ["secretsmanager:GetSecretValue"] for s in secret_statements)
    invoking = [s for s in statements if "lambda:InvokeFunction" in _actions(s)]
    assert [s["Resource"] for s in invoking] == [
        [
            {"Fn::GetAtt": ["SendGridDomainAuthFunction", "Arn"]},
            {"Fn::Sub": "${SendGridDomainAuthFunction.Arn}:*"},
        ]
    ]
    granted = {a.split(":")[0] for s in statements for a in _actions(s)}
    assert granted == {"secretsmanager", "lambda", "route53", "sqs"}  # sqs: the on-failure destination


def test_the_rule_set_function_may_only_read_and_set_the_active_rule_set() -> None:
    statements = _policies_of("ActiveReceiptRuleSetFunctionRole")
    ses = [s for s in statements if any(a.startswith("ses:") for a in _actions(s))]
    assert sorted(a for s in ses for a in _actions(s)) == [
        "ses:DescribeActiveReceiptRuleSet",
        "ses:SetActiveReceiptRuleSet",
    ]
    granted = {a.split(":")[0] for s in statements for a in _actions(s)}
    assert granted == {"ses", "sqs"}


def test_failed_custom_resource_events_land_in_a_queue_with_an_alarm() -> None:
    resources = translated()["Resources"]
    configs = [b for b in resources.values() if b["Type"] == "AWS::Lambda::EventInvokeConfig"]
    for function in ("SendGridDomainAuthFunction", "ActiveReceiptRuleSetFunction"):
        (config,) = [c for c in configs if c["Properties"]["FunctionName"] == {"Ref": function}]
        destination = config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
        assert destination == {"Fn::GetAtt": ["CustomResourceFailureQueue", "Arn"]}
    alarm = resources["CustomResourceFailureAlarm"]["Properties"]
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["CustomResourceFailureQueue", "QueueName"]}}
    ]


def test_ses_identity_dkim_and_inbound_mx_records_are_written_only_with_a_hosted_zone() -> None:
    resources = load_template()["Resources"]
    identity = resources["SiteEmailIdentity"]
    assert identity["Type"] == "AWS::SES::EmailIdentity"
    assert identity["Properties"]["EmailIdentity"] == {"Ref": "SiteDomain"}
    record_sets = resources_of_type(load_template(), "AWS::Route53::RecordSet")
    assert set(record_sets) == {"SiteDkimRecord1", "SiteDkimRecord2", "SiteDkimRecord3", "SiteInboundMxRecord"}
    for name, body in record_sets.items():
        assert body["Condition"] == "HasHostedZone", name
        assert body["Properties"]["HostedZoneId"] == {"Ref": "HostedZoneId"}, name
    for n in (1, 2, 3):
        properties = record_sets[f"SiteDkimRecord{n}"]["Properties"]
        assert properties["Name"] == {"Fn::GetAtt": ["SiteEmailIdentity", f"DkimDNSTokenName{n}"]}
        assert properties["ResourceRecords"] == [{"Fn::GetAtt": ["SiteEmailIdentity", f"DkimDNSTokenValue{n}"]}]
    mx = record_sets["SiteInboundMxRecord"]
    assert mx["Properties"]["Name"] == {"Ref": "SiteDomain"}
    assert mx["Properties"]["ResourceRecords"] == [{"Fn::Sub": "10 inbound-smtp.${AWS::Region}.amazonaws.com"}]
    assert mx["DependsOn"] == "ActiveReceiptRuleSet"
    assert load_template()["Conditions"]["HasHostedZone"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "HostedZoneId"}, ""]}]
    }


def test_the_outputs_show_the_domain_its_validity_records_and_reasons() -> None:
    outputs = load_template()["Outputs"]
    assert {name: outputs[name]["Value"] for name in ("SendGridDomainId", "SendGridDomainValid")} == {
        "SendGridDomainId": {"Fn::GetAtt": ["SendGridDomainAuthentication", "DomainId"]},
        "SendGridDomainValid": {"Fn::GetAtt": ["SendGridDomainAuthentication", "Valid"]},
    }
    assert outputs["SendGridDnsRecords"]["Value"] == {"Fn::GetAtt": ["SendGridDomainAuthentication", "RecordsText"]}
    assert outputs["SendGridValidationReasons"]["Value"] == {
        "Fn::GetAtt": ["SendGridDomainAuthentication", "ValidationReasons"]
    }
    assert "SesDkimRecords" in outputs
    assert "InboundMxRecord" in outputs


def test_the_parameters_default_to_a_stack_that_deploys_without_route53() -> None:
    parameters = load_template()["Parameters"]
    assert parameters["HostedZoneId"]["Default"] == ""
    assert parameters["RetainSendGridDomainOnDelete"]["Default"] == "false"
    assert parameters["AllowReplaceActiveRuleSet"]["Default"] == "false"
    assert "SG." not in json.dumps(parameters)


def test_cfn_lint_finds_nothing_in_a_region_that_receives_mail() -> None:
    from cfnlint.api import ManualArgs, lint

    matches = lint(TEMPLATE_PATH.read_text(), config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
    assert [str(m) for m in matches if m.rule.id[0] in "EW"] == []
