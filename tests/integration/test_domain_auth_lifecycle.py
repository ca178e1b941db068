"""Custom::SendGridDomainAuthentication through its life: Create, a retried Create, Updates (new domain,
new subdomain, in place), Delete, Delete of what is already gone, no hosted zone; against moto's Route53,
the SendGrid double's domain endpoints and a local server standing in for CloudFormation's ResponseURL."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest

from sendgrid_domain_auth.handler import wiring
from sendgrid_domain_auth.resource import run_domain_authentication
from sendgrid_domain_auth.settings import DomainAuthSettings
from tests.integration.domain_auth_support import (
    DOMAIN_AUTH_FUNCTION,
    SITE_DOMAIN,
    CloudFormationResponses,
    FakeTime,
    cfn_event,
    context,
    create_zone,
    sendgrid_requests,
    zone_records,
)

DOUBLE_TARGET = "u4242001.wl1.sendgrid.net"


@pytest.fixture
def run(stack: Any) -> Callable[..., Any]:
    fake_time = FakeTime()
    clients = cache(stack.client)
    settings = DomainAuthSettings.from_env(stack.function_env(DOMAIN_AUTH_FUNCTION))

    def run_event(event: dict[str, Any]) -> Any:
        ctx = context()
        return run_domain_authentication(
            event,
            ctx,
            wiring(
                ctx, settings, clients=clients, invoke_again=_no_polling, clock=fake_time.clock, sleep=fake_time.sleep
            ),
        )

    return run_event


def _no_polling(event: Any) -> None:
    raise AssertionError("these cases never need a second invocation")


def properties(stack: Any, zone_id: str = "", **more: str) -> dict[str, str]:
    return {
        "Domain": SITE_DOMAIN,
        "Subdomain": "",
        "CustomDkimSelector": "",
        "HostedZoneId": zone_id,
        "ApiKeySecretArn": stack.secret_arn,
        "RetainOnDelete": "false",
        "ValidationTimeoutMinutes": "30",
        **more,
    }


def _sendgrid_cnames(mail_host: str, domain: str = SITE_DOMAIN) -> dict[tuple[str, str], list[str]]:
    return {
        (mail_host, "CNAME"): [DOUBLE_TARGET],
        (f"s1._domainkey.{domain}", "CNAME"): [f"s1.domainkey.{DOUBLE_TARGET}"],
        (f"s2._domainkey.{domain}", "CNAME"): [f"s2.domainkey.{DOUBLE_TARGET}"],
    }


def _existing_record(stack: Any, zone: str, name: str, record_type: str, value: str) -> None:
    """A record the zone held before the resource came."""
    record_set = {"Name": f"{name}.", "Type": record_type, "TTL": 300, "ResourceRecords": [{"Value": value}]}
    stack.client("route53").change_resource_record_sets(
        HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": record_set}]}
    )


def _authentication_made_by_hand(stack: Any) -> None:
    """A SendGrid authentication of em.esp.example.org without automated security (MX and TXT records)."""
    from espmail.transport.sendgrid_mailer import SendGridMailer

    api = SendGridMailer(stack.sendgrid.api_key, host=stack.sendgrid.host).api
    api.whitelabel.domains.post(request_body={"domain": SITE_DOMAIN, "subdomain": "em", "automatic_security": False})


def test_create_writes_exactly_sendgrids_records_and_answers_with_the_domain(
    stack: Any, responses: CloudFormationResponses
) -> None:
    zone = create_zone(stack)
    url = responses.url()
    event = cfn_event("Create", properties(stack, zone), url)

    stack.invoke(DOMAIN_AUTH_FUNCTION, event)  # the real handler, as the template names it

    answer = responses.only(url)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    (domain,) = stack.sendgrid.domains
    mail_host = f"{domain['subdomain']}.{SITE_DOMAIN}"
    assert answer["PhysicalResourceId"] == f"sendgrid-domain/{domain['id']}/{mail_host}"
    assert (answer["StackId"], answer["RequestId"], answer["LogicalResourceId"]) == (
        event["StackId"],
        event["RequestId"],
        event["LogicalResourceId"],
    )
    assert answer["NoEcho"] is False
    data = answer["Data"]
    assert data["DomainId"] == str(domain["id"])
    assert data["Valid"] == "true"
    assert data["ValidationReasons"] == "all records valid"
    assert json.loads(data["Records"]) == [
        {"type": d["type"].upper(), "host": d["host"], "data": d["data"]} for d in domain["dns"].values()
    ]
    assert data["MailCname"] == f"{mail_host} CNAME {DOUBLE_TARGET}"
    assert domain["automatic_security"] is True
    assert zone_records(stack, zone) == _sendgrid_cnames(mail_host)
    # The pre-signed URL is signed for an empty Content-Type.
    assert responses.received[0].headers.get("Content-Type", "") == ""


def test_a_retried_create_reuses_the_domain_instead_of_making_a_second(
    stack: Any, responses: CloudFormationResponses, run: Callable[..., Any]
) -> None:
    zone = create_zone(stack)
    first, second = responses.url(), responses.url()
    run(cfn_event("Create", properties(stack, zone), first))
    run(cfn_event("Create", properties(stack, zone), second))

    assert len(stack.sendgrid.domains) == 1
    assert len(sendgrid_requests(stack, "POST", "/domains")) == 1
    assert responses.only(first)["PhysicalResourceId"] == responses.only(second)["PhysicalResourceId"]
    assert responses.only(second)["Status"] == "SUCCESS"


def test_create_with_a_subdomain_and_selector_passes_them_to_sendgrid(
    stack: Any, responses: CloudFormationResponses, run: Callable[..., Any]
) -> None:
    zone = create_zone(stack)
    url = responses.url()
    run(cfn_event("Create", properties(stack, zone, Subdomain="em", CustomDkimSelector="esp"), url))

    answer = responses.only(url)
    assert answer["PhysicalResourceId"].endswith("/em.esp.example.org")
    records = zone_records(stack, zone)
    assert ("em.esp.example.org", "CNAME") in records
    assert (f"esp._domainkey.{SITE_DOMAIN}", "CNAME") in records
    assert (f"esp2._domainkey.{SITE_DOMAIN}", "CNAME") in records


def test_update_with_a_changed_domain_makes_a_new_one_and_the_old_stays_until_its_delete(
    stack: Any, responses: CloudFormationResponses, run: Callable[..., Any]
) -> None:
    zone = create_zone(stack)
    created = responses.url()
    old_properties = properties(stack, zone)
    run(cfn_event("Create", old_properties, created))
    old_id = responses.only(created)["PhysicalResourceId"]

    updated = responses.url()
    new_properties = properties(stack, zone, Domain=f"mail.{SITE_DOMAIN}")
    run(cfn_event("Update", new_properties, updated, physical_id=old_id, old_properties=old_properties))

    answer = responses.only(updated)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    new_id = answer["PhysicalResourceId"]
    assert new_id != old_id
    assert sorted(d["domain"] for d in stack.sendgrid.domains) == [SITE_DOMAIN, f"mail.{SITE_DOMAIN}"]
    old_host, new_host = old_id.rsplit("/", 1)[1], new_id.rsplit("/", 1)[1]
    both = {**_sendgrid_cnames(old_host), **_sendgrid_cnames(new_host, f"mail.{SITE_DOMAIN}")}
    assert zone_records(stack, zone) == both

    # CloudFormation then deletes the old one, with the old properties.
    deleted = responses.url()
    run(cfn_event("Delete", old_properties, deleted, physical_id=old_id))

    assert responses.only(deleted)["Status"] == "SUCCESS"
    assert [d["domain"] for d in stack.sendgrid.domains] == [f"mail.{SITE_DOMAIN}"]
    assert zone_records(stack, zone) == _sendgrid_cnames(new_host, f"mail.{SITE_DOMAIN}")


def test_deleting_the_old_subdomain_keeps_the_dkim_records_the_new_one_shares(
    stack: Any, responses: CloudFormationResponses, run: Callable[..., Any]
) -> None:
    zone = create_zone(stack)
    created, updated, deleted = responses.url(), responses.url(), responses.url()
    old_properties = properties(stack, zone, Subdomain="em")
    run(cfn_event("Create", old_properties, created))
    old_id = responses.only(created)["PhysicalResourceId"]
    new_properties = properties(stack, zone, Subdomain="mail")
    run(cfn_event("Update", new_properties, updated, physical_id=old_id, old_properties=old_properties))
    assert responses.only(updated)["PhysicalResourceId"] != old_id

    run(cfn_event("Delete", old_properties, deleted, physical_id=old_id))

    assert responses.only(deleted)["Status"] == "SUCCESS"
    # s1/s2 DKIM CNAMEs are the same for both authentications of the account: they must survive.
    assert zone_records(stack, zone) == _sendgrid_cnames(f"mail.{SITE_DOMAIN}")
    assert [d["subdomain"] for d in stack.sendgrid.domains] == ["mail"]


def test_update_in_place_keeps_the_physical_id_and_moves_the_records_to_the_new_zone(
    stack: Any, responses: CloudFormationResponses, run: Callable[..., Any]
) -> None:
    old_zone, new_zone = create_zone(stack), create_zone(stack)
    created, updated = responses.url(), responses.url()
    old_properties = properties(stack, old_zone)
    run(cfn_event("Create", old_properties, created))
    physical_id = responses.only(created)["PhysicalResourceId"]

    new_properties = properties(stack, new_zone, RetainOnDelete="true", ValidationTimeoutMinutes="10")
    # Through the real handler: by now CloudFormation has updated the role's policy to the new zone (the
    # custom resource depends on it), and the old zone's records must still be removable.
    stack.invoke(
        DOMAIN_AUTH_FUNCTION,
        cfn_event("Update", new_properties, updated, physical_id=physical_id, old_properties=old_properties),
    )

    answer = responses.only(updated)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["PhysicalResourceId"] == physical_id
    assert len(stack.sendgrid.domains) == 1
    assert zone_records(stack, old_zone) == {}
    assert zone_records(stack, new_zone) == _sendgrid_cnames(physical_id.rsplit("/", 1)[1])


def test_delete_removes_the_records_and_the_sendgrid_domain(
    stack: Any, responses: CloudFormationResponses, run: Callable[..., Any]
) -> None:
    zone = create_zone(stack)
    _existing_record(stack, zone, f"www.{SITE_DOMAIN}", "A", "192.0.2.10")
    created, deleted = responses.url(), responses.url()
    run(cfn_event("Create", properties(stack, zone), created))
    physical_id = responses.only(created)["PhysicalResourceId"]

    stack.invoke(DOMAIN_AUTH_FUNCTION, cfn_event("Delete", properties(stack, zone), deleted, physical_id=physical_id))

    answer = responses.only(deleted)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["PhysicalResourceId"] == physical_id
    assert stack.sendgrid.domains == []
    assert zone_records(stack, zone) == {(f"www.{SITE_DOMAIN}", "A"): ["192.0.2.10"]}


def test_delete_when_everything_is_already_gone_succeeds(
    stack: Any, responses: CloudFormationResponses, run: Callable[..., Any]
) -> None:
    zone = create_zone(stack)
    created, first, second = responses.url(), responses.url(), responses.url()
    run(cfn_event("Create", properties(stack, zone), created))
    physical_id = responses.only(created)["PhysicalResourceId"]
    run(cfn_event("Delete", properties(stack, zone), first, physical_id=physical_id))

    run(cfn_event("Delete", properties(stack, zone), second, physical_id=physical_id))

    answer = responses.only(second)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["PhysicalResourceId"] == physical_id


def test_delete_after_sendgrid_forgot_the_domain_still_removes_its_cnames(
    stack: Any, responses: CloudFormationResponses, run: Callable[..., Any]
) -> None:
    zone = create_zone(stack)
    created, deleted = responses.url(), responses.url()
    run(cfn_event("Create", properties(stack, zone), created))
    physical_id = responses.only(created)["PhysicalResourceId"]
    domain_id = physical_id.split("/")[1]
    stack.sendgrid.reset()  # someone deleted it in SendGrid's console
    assert zone_records(stack, zone) != {}

    run(cfn_event("Delete", properties(stack, zone), deleted, physical_id=physical_id))

    assert responses.only(deleted)["Status"] == "SUCCESS"
    assert zone_records(stack, zone) == {}
    assert not sendgrid_requests(stack, "DELETE", f"/{domain_id}")


def test_delete_of_a_zone_that_no_longer_exists_succeeds(
    stack: Any, responses: CloudFormationResponses, run: Callable[..., Any]
) -> None:
    created, deleted = responses.url(), responses.url()
    zone = create_zone(stack)
    run(cfn_event("Create", properties(stack, zone), created))
    physical_id = responses.only(created)["PhysicalResourceId"]
    gone = properties(stack, "Z0000000000NOSUCHZONE")

    run(cfn_event("Delete", gone, deleted, physical_id=physical_id))

    assert responses.only(deleted)["Status"] == "SUCCESS"
    assert stack.sendgrid.domains == []


def test_delete_with_retain_on_delete_keeps_the_domain_and_its_records(
    stack: Any, responses: CloudFormationResponses, run: Callable[..., Any]
) -> None:
    zone = create_zone(stack)
    created, deleted = responses.url(), responses.url()
    run(cfn_event("Create", properties(stack, zone), created))
    physical_id = responses.only(created)["PhysicalResourceId"]
    before = zone_records(stack, zone)

    run(cfn_event("Delete", properties(stack, zone, RetainOnDelete="true"), deleted, physical_id=physical_id))

    assert responses.only(deleted)["Status"] == "SUCCESS"
    assert len(stack.sendgrid.domains) == 1
    assert zone_records(stack, zone) == before


def test_without_a_hosted_zone_nothing_is_written_and_the_records_are_returned_pending(
    stack: Any, responses: CloudFormationResponses, run: Callable[..., Any]
) -> None:
    zone = create_zone(stack)  # exists, but the resource is not told about it
    stack.sendgrid.domain_validation(passes_after=None)  # nobody has entered the records yet
    url = responses.url()

    run(cfn_event("Create", properties(stack, ""), url))

    answer = responses.only(url)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert answer["Data"]["Valid"] == "pending"
    (domain,) = stack.sendgrid.domains
    assert len(json.loads(answer["Data"]["Records"])) == len(domain["dns"])
    assert "Expected CNAME" in answer["Data"]["ValidationReasons"]
    assert f"{domain['subdomain']}.{SITE_DOMAIN} CNAME {DOUBLE_TARGET}" in answer["Reason"]
    assert zone_records(stack, zone) == {}


def test_without_a_hosted_zone_records_entered_by_hand_validate(
    stack: Any, responses: CloudFormationResponses, run: Callable[..., Any]
) -> None:
    url = responses.url()
    run(cfn_event("Create", properties(stack, ""), url))
    assert responses.only(url)["Data"]["Valid"] == "true"


def test_manual_security_records_are_written_as_route53_wants_them(
    stack: Any, responses: CloudFormationResponses, run: Callable[..., Any]
) -> None:
    """An authentication made by hand without automated security (MX and TXT records) is reused, and the
    apex TXT keeps the verification that was already there."""
    zone = create_zone(stack)
    _existing_record(stack, zone, SITE_DOMAIN, "TXT", '"google-site-verification=abc123"')
    _authentication_made_by_hand(stack)
    created, deleted = responses.url(), responses.url()

    run(cfn_event("Create", properties(stack, zone, Subdomain="em"), created))

    answer = responses.only(created)
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert len(stack.sendgrid.domains) == 1
    records = zone_records(stack, zone)
    assert records[(f"em.{SITE_DOMAIN}", "MX")] == ["10 mx.sendgrid.net"]
    assert records[(f"em.{SITE_DOMAIN}", "TXT")] == ['"v=spf1 include:sendgrid.net ~all"']
    assert sorted(records[(SITE_DOMAIN, "TXT")]) == [
        '"google-site-verification=abc123"',
        f'"v=spf1 include:em.{SITE_DOMAIN} -all"',
    ]
    (dkim,) = records[(f"m1._domainkey.{SITE_DOMAIN}", "TXT")]
    assert dkim.startswith('"k=rsa; t=s; p=')
    assert dkim.endswith('"')

    run(cfn_event("Delete", properties(stack, zone, Subdomain="em"), deleted, physical_id=answer["PhysicalResourceId"]))

    assert responses.only(deleted)["Status"] == "SUCCESS"
    assert zone_records(stack, zone) == {(SITE_DOMAIN, "TXT"): ['"google-site-verification=abc123"']}


def test_a_second_spf_policy_is_refused_with_a_reason(
    stack: Any, responses: CloudFormationResponses, run: Callable[..., Any]
) -> None:
    zone = create_zone(stack)
    _existing_record(stack, zone, SITE_DOMAIN, "TXT", '"v=spf1 include:_spf.google.com ~all"')
    _authentication_made_by_hand(stack)
    url = responses.url()

    run(cfn_event("Create", properties(stack, zone, Subdomain="em"), url))

    answer = responses.only(url)
    assert answer["Status"] == "FAILED"
    assert "v=spf1 include:_spf.google.com ~all" in answer["Reason"]
    assert "two SPF policies" in answer["Reason"]
    # The Create made (reused) a SendGrid domain: its id is the physical id, so the rollback cleans up.
    assert answer["PhysicalResourceId"].startswith("sendgrid-domain/")
    assert zone_records(stack, zone) == {(SITE_DOMAIN, "TXT"): ['"v=spf1 include:_spf.google.com ~all"']}
