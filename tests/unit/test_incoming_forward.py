"""The forwarded message: From alias, Reply-To policy, subject tags once, list headers, no transport
headers, recipients only from the handler, nothing injectable through a display name."""

from __future__ import annotations

import base64
import json

import pytest

from espmail.domain.list_rules import ReplyToPolicy
from espmail.domain.mail import Address
from espmail.incoming.forward import (
    ForwardPlan,
    batches,
    forwarded_message,
    forwarded_subject,
    list_id,
    personalizations,
    reply_to,
    request_bodies,
    request_part,
    request_recipients,
    sender_alias,
)
from espmail.incoming.handlers import display_name
from espmail.mime import convert, parse_message
from tests.unit.incoming_support import CLASS_RULE, SITE

RAW = (
    b"Return-Path: <ruth@physics.example.edu>\r\n"
    b"Received: from mx.example.edu by inbound-smtp.us-east-1.amazonaws.com\r\n"
    b"DKIM-Signature: v=1; d=physics.example.edu; s=s1; b=abc\r\n"
    b"X-SES-Spam-Verdict: PASS\r\n"
    b'From: "Ruth\\"\\r\\nBcc: victim@evil.example" <ruth@physics.example.edu>\r\n'
    b"To: E1234-class@esp.example.org, someone@else.example\r\n"
    b"Cc: cc@else.example\r\n"
    b"Bcc: hidden@else.example\r\n"
    b"Subject: =?utf-8?q?Lasers_=E2=9C=94?=\r\n"
    b"Message-ID: <orig@physics.example.edu>\r\n"
    b"In-Reply-To: <earlier@esp.example.org>\r\n"
    b"References: <first@esp.example.org> <earlier@esp.example.org>\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Bring goggles.\r\n"
)


def _plan(recipients: int = 2, **rule_changes: object) -> ForwardPlan:
    from dataclasses import replace

    rule = replace(CLASS_RULE, **rule_changes)  # type: ignore[arg-type]
    people = tuple(Address(f"s{i}@students.example.net", f"Student {i}") for i in range(recipients))
    return ForwardPlan("e1234-class@esp.example.org", rule, people, "E1234", "E1234 class: Lasers", True)


@pytest.mark.parametrize(
    ("subject", "prefix", "expected"),
    [
        ("Lasers", "", "[E1234] Lasers"),
        ("Re: [E1234] Lasers", "", "Re: [E1234] Lasers"),
        ("RE: [e1234] Lasers", "", "RE: [e1234] Lasers"),
        ("Lasers", "Splash", "[Splash] [E1234] Lasers"),
        ("Re: [Splash] [E1234] Lasers", "Splash", "Re: [Splash] [E1234] Lasers"),
        ("Fwd: Re: [Splash] [E1234] Lasers", "[Splash]", "Fwd: Re: [Splash] [E1234] Lasers"),
        ("", "", "[E1234]"),
        ("two\r\nlines", "", "[E1234] two lines"),
    ],
)
def test_subject_tags_are_added_once(subject: str, prefix: str, expected: str) -> None:
    assert forwarded_subject(subject, "E1234", prefix) == expected


def test_list_id() -> None:
    assert list_id("E1234-Class@esp.example.org") == "e1234-class.esp.example.org"
    assert list_id("we.ird+x@esp.example.org") == "we-ird-x.esp.example.org"


@pytest.mark.parametrize(
    ("policy", "member", "expected"),
    [
        (ReplyToPolicy.LIST, True, ["e1234-class@esp.example.org"]),
        (ReplyToPolicy.LIST, False, ["e1234-class@esp.example.org", "teacher_ruth@esp.example.org"]),
        (ReplyToPolicy.SENDER, True, ["teacher_ruth@esp.example.org"]),
        (ReplyToPolicy.NONE, False, []),
    ],
)
def test_reply_to_policy(policy: ReplyToPolicy, member: bool, expected: list[str]) -> None:
    from dataclasses import replace

    plan = replace(_plan(reply_to=policy), sender_is_member=member)
    alias = sender_alias("teacher_ruth", "Ruth Feld", SITE)
    assert [a.email for a in reply_to(plan, alias)] == expected


def _forward(plan: ForwardPlan, name: str = "Ruth Feld") -> dict[str, object]:
    converted = convert(parse_message(RAW))
    message = forwarded_message(
        converted,
        plan,
        sender_username="teacher_ruth",
        sender_name=name,
        site=SITE,
        ses_message_id="abc",
        text=converted.text,
    )
    (body,) = request_bodies(message, converted, plan)
    return body


def test_the_forwarded_request() -> None:
    body = _forward(_plan())
    assert body["from"] == {"email": "teacher_ruth@esp.example.org", "name": "Ruth Feld"}
    assert body["subject"] == "[E1234] Lasers ✔"
    assert body["reply_to"] == {"email": "e1234-class@esp.example.org", "name": "E1234 class: Lasers"}
    recipients = [to["email"] for p in body["personalizations"] for to in p["to"]]  # type: ignore[attr-defined]
    assert recipients == ["s0@students.example.net", "s1@students.example.net"]
    headers = body["headers"]
    assert headers == {
        "Message-ID": "<orig@physics.example.edu>",  # the sender's own: every copy carries it
        "List-Id": '"E1234 class: Lasers" <e1234-class.esp.example.org>',
        "List-Post": "<mailto:e1234-class@esp.example.org>",
        "Precedence": "list",
        "Delivered-To": "e1234-class@esp.example.org",
        "In-Reply-To": "<earlier@esp.example.org>",
        "References": "<first@esp.example.org> <earlier@esp.example.org>",
    }
    text = json.dumps(body)
    for transport in ("DKIM-Signature", "Return-Path", "Received", "X-SES", "cc@else", "hidden@else"):
        assert transport not in text
    assert body["content"] == [{"type": "text/plain", "value": "Bring goggles.\r\n"}]


def test_a_display_name_cannot_inject_headers() -> None:
    hostile = 'Ruth"\r\nBcc: victim@evil.example\r\nX-Evil: 1'
    body = _forward(_plan(), name=hostile)
    name = body["from"]["name"]  # type: ignore[index]
    assert "\r" not in name
    assert "\n" not in name
    assert '"' not in name
    assert "victim@evil.example" not in [to["email"] for p in body["personalizations"] for to in p["to"]]  # type: ignore[attr-defined]
    assert display_name('A "B" <c@d>;, e\r\nf') == "A B c@d e f"


def test_a_rule_from_email_replaces_the_alias() -> None:
    body = _forward(_plan(from_email="lists@esp.example.org"))
    assert body["from"] == {"email": "lists@esp.example.org", "name": "Ruth Feld"}


def test_batches_hold_at_most_1000_recipients_each() -> None:
    plan = _plan(recipients=2500)
    sizes = [sum(len(p.to) for p in batch) for batch in batches(personalizations(plan))]
    assert sizes == [1000, 1000, 500]
    cc_all = _plan(recipients=2500, cc_all=True)
    envelopes = personalizations(cc_all)
    assert [len(p.to) for p in envelopes] == [1000, 1000, 500]
    assert [len(b) for b in batches(envelopes)] == [1, 1, 1]


def test_attachments_travel_as_the_converter_shaped_them() -> None:
    raw = (
        b"From: ruth@physics.example.edu\r\nSubject: pic\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/related; boundary="b"\r\n\r\n'
        b'--b\r\nContent-Type: text/html\r\n\r\n<img src="cid:dot@x">\r\n'
        b"--b\r\nContent-Type: image/gif\r\nContent-ID: <dot@x>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(b"GIF89a-bytes")
        + b"\r\n--b--\r\n"
    )
    converted = convert(parse_message(raw))
    plan = _plan()
    message = forwarded_message(
        converted, plan, sender_username="teacher_ruth", sender_name="Ruth", site=SITE, ses_message_id="x", text=None
    )
    (body,) = request_bodies(message, converted, plan)
    (attachment,) = body["attachments"]
    assert base64.b64decode(attachment["content"]) == b"GIF89a-bytes"
    assert attachment["disposition"] == "inline"
    assert attachment["content_id"] == "dot@x"


def _bodies(plan: ForwardPlan) -> list[dict[str, object]]:
    converted = convert(parse_message(RAW))
    message = forwarded_message(
        converted, plan, sender_username="teacher_ruth", sender_name="Ruth", site=SITE, ses_message_id="x", text=None
    )
    return request_bodies(message, converted, plan)


@pytest.mark.parametrize("cc_all", [False, True])
def test_a_request_part_carries_exactly_its_recipients_and_everything_else(cc_all: bool) -> None:
    (body,) = _bodies(_plan(recipients=7, cc_all=cc_all))
    everyone = request_recipients(body)
    assert everyone == [f"s{i}@students.example.net" for i in range(7)]
    for first, end in [(0, 7), (0, 3), (3, 7), (5, 6), (6, 7)]:
        part = request_part(body, first, end)
        assert request_recipients(part) == everyone[first:end]
        assert {k: v for k, v in part.items() if k != "personalizations"} == {
            k: v for k, v in body.items() if k != "personalizations"
        }
    assert body["personalizations"] == _bodies(_plan(recipients=7, cc_all=cc_all))[0]["personalizations"]  # intact


@pytest.mark.parametrize(
    ("original", "expected_id", "referenced"),
    [
        ("<orig@physics.example.edu>", "<orig@physics.example.edu>", None),
        ("  <orig@physics.example.edu>\r\n", "<orig@physics.example.edu>", None),
        (None, "<abc@esp.example.org>", None),
        ("", "<abc@esp.example.org>", None),
        ("not an id", "<abc@esp.example.org>", None),
        ("<two@a.example> <ids@b.example>", "<abc@esp.example.org>", None),
        ("<a..b@x.example>", "<abc@esp.example.org>", None),
        ("<x@[127.0.0.1]>", "<abc@esp.example.org>", None),
        # Ids on the site's own domain are the ones the mailgate makes: kept out, but referenced.
        ("<abc@esp.example.org>", "<abc@esp.example.org>", "<abc@esp.example.org>"),
        ("<other@lists.esp.example.org>", "<abc@esp.example.org>", "<other@lists.esp.example.org>"),
        ("<" + "x" * 300 + "@long.example>", "<abc@esp.example.org>", "<" + "x" * 300 + "@long.example>"),
    ],
)
def test_one_message_id_for_every_copy(original: str | None, expected_id: str, referenced: str | None) -> None:
    from espmail.incoming.forward import list_message_id

    assert list_message_id(original, "abc", SITE) == (expected_id, referenced)


def test_an_unsafe_original_id_is_replaced_and_referenced() -> None:
    raw = RAW.replace(b"<orig@physics.example.edu>", b"<forged@esp.example.org>")
    converted = convert(parse_message(raw))
    plan = _plan()
    message = forwarded_message(
        converted, plan, sender_username="teacher_ruth", sender_name="R", site=SITE, ses_message_id="ses.1", text="t"
    )
    assert message.headers["Message-ID"] == "<ses.1@esp.example.org>"
    assert message.headers["References"].split() == [
        "<first@esp.example.org>",
        "<earlier@esp.example.org>",
        "<forged@esp.example.org>",
    ]


@pytest.mark.parametrize(
    "title",
    ["The Physics of Lasers", 'Lasers: a.k.a. <light>, "quoted" (and more)', "Physik der Laser – très bien ✔", ""],
)
def test_the_list_id_phrase_is_a_valid_rfc_5322_phrase(title: str) -> None:
    from email import _header_value_parser as grammar
    from email.header import decode_header, make_header

    from espmail.incoming.forward import list_id_header

    value = list_id_header(f"E1234 class: {title}".strip(": "), "e1234-class.esp.example.org")
    phrase, rest = grammar.get_phrase(value)
    assert phrase.all_defects == []
    assert rest == "<e1234-class.esp.example.org>"  # the whole phrase read, up to the angle bracket
    assert value.isascii()
    shown = str(make_header(decode_header(value.rpartition(" <")[0])))
    assert shown.strip('"') == display_name(f"E1234 class: {title}".strip(": "))


def test_an_alias_forward_is_not_list_mail() -> None:
    from espmail.domain.list_rules import DEFAULT_RULES

    for name in ("user-alias", "redirect"):
        rule = next(r for r in DEFAULT_RULES if r.name == name)
        people = (Address("ruth@physics.example.edu", "Ruth"),)
        plan = ForwardPlan("teacher_ruth@esp.example.org", rule, people, "", "teacher_ruth (alias)", False)
        headers = _forward(plan)["headers"]
        assert isinstance(headers, dict)
        assert not {"List-Id", "List-Post", "Precedence"} & set(headers), name
        assert headers["Delivered-To"] == "teacher_ruth@esp.example.org"  # the loop marker stays
        assert headers["Message-ID"] == "<orig@physics.example.edu>"


def test_the_text_made_from_html_has_no_markdown_marks() -> None:
    from espmail.incoming.forward import html_to_text

    html = (
        "<h2>Lab safety</h2><p>Wear <b>goggles</b>, <i>always</i>; run <code>make_safe</code>.</p>"
        '<p>See <a href="https://esp.example.org/rules">the rules</a> or <a href="mailto:k@x.example">Kim</a>.</p>'
        "<ul><li>one</li><li>two</li></ul><p>1. not a list item + - #</p><hr><p>&lt;end&gt; &amp; done</p>"
    )
    assert html_to_text(html) == (
        "Lab safety\n\n"
        "Wear goggles, always; run make_safe.\n\n"
        "See the rules (https://esp.example.org/rules) or Kim (k@x.example).\n\n"
        "- one\n- two\n\n"
        "1. not a list item + - #\n\n"
        "<end> & done"
    )
