"""SendGrid's records as Route53 wants them, the resource's properties and physical id, the back-off."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from espmail.errors import InvalidInput
from sendgrid_domain_auth.records import (
    DnsRecord,
    attribute_name,
    normal_value,
    quote_txt,
    records_of,
    unquote_txt,
)
from sendgrid_domain_auth.resource import DomainAuthId, DomainAuthProperties, Timing

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:espmail/sendgrid-AbCdEf"


@given(st.text())
def test_txt_quoting_round_trips_in_strings_of_at_most_255_bytes(text: str) -> None:
    quoted = quote_txt(text)
    assert unquote_txt(quoted) == text
    strings = [s for s in quoted.split('" "')]
    for string in strings:
        raw = string.strip('"').replace('\\"', '"').replace("\\\\", "\\")
        assert len(raw.encode("utf-8")) <= 255


def test_a_long_dkim_key_is_split_into_two_strings() -> None:
    key = "k=rsa; p=" + "A" * 400
    quoted = quote_txt(key)
    assert quoted == f'"{key[:255]}" "{key[255:]}"'


def test_quotes_and_backslashes_are_escaped() -> None:
    assert quote_txt('a "b" \\c') == '"a \\"b\\" \\\\c"'


def test_records_are_formatted_per_type() -> None:
    domain = {
        "id": 7,
        "subdomain": "em",
        "domain": "esp.example.org",
        "dns": {
            "mail_server": {"valid": False, "type": "mx", "host": "em.esp.example.org", "data": "mx.sendgrid.net"},
            "subdomain_spf": {
                "valid": False,
                "type": "txt",
                "host": "em.esp.example.org",
                "data": "v=spf1 include:sendgrid.net ~all",
            },
            "mail_cname": {
                "valid": False,
                "type": "cname",
                "host": "EM.esp.example.org.",
                "data": "u1.wl.sendgrid.net",
            },
        },
    }
    records = records_of(domain)
    assert [(r.key, r.type, r.name, r.route53_value) for r in records] == [
        ("mail_server", "MX", "em.esp.example.org", "10 mx.sendgrid.net"),
        ("subdomain_spf", "TXT", "em.esp.example.org", '"v=spf1 include:sendgrid.net ~all"'),
        ("mail_cname", "CNAME", "em.esp.example.org", "u1.wl.sendgrid.net"),
    ]


def test_an_mx_that_already_has_a_priority_keeps_it() -> None:
    assert DnsRecord("mx", "MX", "em.example.org", "20 mx.sendgrid.net").route53_value == "20 mx.sendgrid.net"


def test_values_compare_whatever_their_spelling() -> None:
    assert normal_value("CNAME", "U1.WL.sendgrid.net.") == normal_value("CNAME", "u1.wl.sendgrid.net")
    assert normal_value("TXT", '"v=spf1 " "-all"') == normal_value("TXT", "v=spf1 -all")
    assert normal_value("MX", "10 MX.sendgrid.net.") == "10 mx.sendgrid.net"


def test_attribute_names_come_from_sendgrids_keys() -> None:
    assert [attribute_name(k) for k in ("mail_cname", "dkim1", "subdomain_spf")] == [
        "MailCname",
        "Dkim1",
        "SubdomainSpf",
    ]


def test_properties_are_read_as_cloudformation_passes_them() -> None:
    props = DomainAuthProperties.parse(
        {
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:f",
            "Domain": "ESP.Example.org.",
            "Subdomain": "EM",
            "HostedZoneId": "/hostedzone/Z0123ABC",
            "ApiKeySecretArn": SECRET,
            "RetainOnDelete": "true",
            "ValidationTimeoutMinutes": "12",
        }
    )
    assert props == DomainAuthProperties("esp.example.org", "em", "", "Z0123ABC", SECRET, True, 12)
    assert props.dkim_hosts() == ("s1._domainkey.esp.example.org", "s2._domainkey.esp.example.org")


def test_a_value_that_looks_like_an_api_key_is_refused_without_being_repeated() -> None:
    with pytest.raises(InvalidInput) as caught:
        DomainAuthProperties.parse({"Domain": "esp.example.org", "ApiKeySecretArn": "SG.secret.value"})
    assert "SG.secret" not in str(caught.value)
    assert "Secrets Manager" in str(caught.value)


@pytest.mark.parametrize(
    "text",
    ["sendgrid-domain/1001/em.esp.example.org", "sendgrid-domain/7/em2001.mail.esp.example.org"],
)
def test_the_physical_id_round_trips(text: str) -> None:
    parsed = DomainAuthId.parse(text)
    assert parsed is not None
    assert str(parsed) == text


@pytest.mark.parametrize("text", [None, "", "not-created/X/123", "sendgrid-domain/abc/em.x.org", "sendgrid-domain/1"])
def test_other_physical_ids_are_not_ours(text: str | None) -> None:
    assert DomainAuthId.parse(text) is None


def test_the_back_off_doubles_up_to_a_minute() -> None:
    assert [Timing().backoff(n) for n in range(1, 8)] == [5, 10, 20, 40, 60, 60, 60]
