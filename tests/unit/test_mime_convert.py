"""Inbound MIME to SendGrid's shape: one test per rule, on hand-built messages."""

from __future__ import annotations

import base64
import email
import json
from email import policy
from email.message import EmailMessage
from pathlib import Path

import jsonschema
import pytest

from espmail.domain.mail import Address, Attachment
from espmail.errors import InvalidInput
from espmail.mime import (
    SENDGRID_MAX_REQUEST_BYTES,
    ConvertedMail,
    ParsedMessage,
    convert,
    estimate_sendgrid_size,
    parse_message,
    safe_header,
    safe_header_all,
    to_sendgrid_attachments,
)
from espmail.mime.charset import decode_text
from espmail.mime.headers import decode_header_value, parse_parameters

CONTRACT = Path(__file__).resolve().parents[2] / "contracts" / "sendgrid" / "tsg_mail_v3.json"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PDF = b"%PDF-1.4\n\x00\x01\x02\xff binary \r\n stays \r exact\n%%EOF"


def raw_message(*lines: str | bytes) -> bytes:
    """A message from lines joined with CRLF, as it arrives over SMTP."""
    return b"\r\n".join(line.encode("latin-1") if isinstance(line, str) else line for line in lines)


def convert_raw(raw: bytes) -> ConvertedMail:
    return convert(parse_message(raw))


def convert_built(message: EmailMessage) -> ConvertedMail:
    return convert_raw(message.as_bytes())


def simple_message(subject: str = "Hello") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Ada Lovelace <ada@example.org>"
    message["To"] = "class-a@esp.example"
    message["Subject"] = subject
    message["Message-ID"] = "<m1@example.org>"
    return message


# -- bodies -------------------------------------------------------------------------------------------


def test_alternative_gives_both_text_and_html():
    message = simple_message()
    message.set_content("Plain body\n")
    message.add_alternative("<p>HTML body</p>\n", subtype="html")

    converted = convert_built(message)

    assert converted.text == "Plain body\n"
    assert converted.html == "<p>HTML body</p>\n"
    assert converted.attachments == ()
    assert converted.subject == "Hello"
    assert converted.message_id == "<m1@example.org>"
    assert converted.from_address == Address("ada@example.org", "Ada Lovelace")


def test_text_only_leaves_html_none_and_html_only_leaves_text_none():
    text_only = simple_message()
    text_only.set_content("just text\n")
    html_only = simple_message()
    html_only.set_content("<b>just html</b>\n", subtype="html")

    assert (convert_built(text_only).text, convert_built(text_only).html) == ("just text\n", None)
    assert (convert_built(html_only).text, convert_built(html_only).html) == (None, "<b>just html</b>\n")


def test_mixed_with_attachment_keeps_body_and_exact_bytes():
    message = simple_message()
    message.set_content("See the worksheet.\n")
    message.add_attachment(PDF, maintype="application", subtype="pdf", filename="worksheet.pdf")

    converted = convert_built(message)

    assert converted.text == "See the worksheet.\n"
    assert converted.attachments == (Attachment("worksheet.pdf", "application/pdf", PDF, "attachment", None),)


def test_mixed_with_several_inline_text_parts_joins_them_with_blank_lines():
    raw = raw_message(
        "From: a@example.org",
        "Subject: parts",
        'Content-Type: multipart/mixed; boundary="XX"',
        "",
        "--XX",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "First part",
        "--XX",
        "Content-Type: image/png",
        "Content-Transfer-Encoding: base64",
        "",
        base64.b64encode(PNG),
        "--XX",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Disposition: inline",
        "",
        "Second part",
        "",
        "--XX",
        "Content-Type: text/plain",
        "",
        "Third",
        "--XX--",
        "",
    )

    converted = convert_raw(raw)

    assert converted.text == "First part\n\nSecond part\r\n\r\nThird"
    assert converted.html is None
    assert [(item.filename, item.content) for item in converted.attachments] == [("attachment-1.png", PNG)]


def test_mixed_html_and_plain_only_parts_put_everything_in_the_html():
    """A list footer added as text/plain after an HTML message is not lost from the HTML view."""
    raw = raw_message(
        'Content-Type: multipart/mixed; boundary="outer"',
        "",
        "--outer",
        'Content-Type: multipart/alternative; boundary="inner"',
        "",
        "--inner",
        "Content-Type: text/plain",
        "",
        "Hello",
        "--inner",
        "Content-Type: text/html",
        "",
        "<p>Hello</p>",
        "--inner--",
        "--outer",
        "Content-Type: text/plain",
        "",
        "-- footer <unsubscribe>",
        "--outer--",
    )

    converted = convert_raw(raw)

    assert converted.text == "Hello\n\n-- footer <unsubscribe>"
    assert converted.html is not None
    assert converted.html.startswith("<p>Hello</p>\n<pre")
    assert "-- footer &lt;unsubscribe&gt;" in converted.html


def test_html_only_part_next_to_plain_only_part_leaves_text_to_the_caller():
    raw = raw_message(
        'Content-Type: multipart/mixed; boundary="b"',
        "",
        "--b",
        "Content-Type: text/html",
        "",
        "<p>Main</p>",
        "--b",
        "Content-Type: text/plain",
        "",
        "footer",
        "--b--",
    )

    converted = convert_raw(raw)

    assert converted.text is None
    assert converted.html is not None
    assert "<p>Main</p>" in converted.html
    assert "footer" in converted.html


def test_nested_related_inside_alternative_inside_mixed():
    message = simple_message()
    message.set_content("plain version\n")
    message.add_alternative('<p>look: <img src="cid:logo@esp"></p>\n', subtype="html")
    html_part = message.get_body(("html",))
    assert html_part is not None
    html_part.add_related(PNG, maintype="image", subtype="png", cid="<logo@esp>")
    message.add_attachment(PDF, maintype="application", subtype="pdf", filename="a.pdf")

    converted = convert_built(message)

    assert converted.text == "plain version\n"
    assert converted.html == '<p>look: <img src="cid:logo@esp"></p>\n'
    assert [(a.content_type, a.disposition, a.content_id, a.content) for a in converted.attachments] == [
        ("image/png", "inline", "logo@esp", PNG),
        ("application/pdf", "attachment", None, PDF),
    ]


def test_blank_text_part_does_not_count_as_body():
    raw = raw_message(
        'Content-Type: multipart/alternative; boundary="b"',
        "",
        "--b",
        "Content-Type: text/plain",
        "",
        "   ",
        "--b",
        "Content-Type: text/html",
        "",
        "<p>content</p>",
        "--b--",
    )

    converted = convert_raw(raw)

    assert converted.text is None
    assert converted.html == "<p>content</p>"
    assert any("blank text/plain" in defect for defect in converted.defects)


def test_alternative_keeps_other_versions_as_attachments():
    raw = raw_message(
        'Content-Type: multipart/alternative; boundary="b"',
        "",
        "--b",
        "Content-Type: text/plain",
        "",
        "Meeting at 10",
        "--b",
        "Content-Type: text/html",
        "",
        "<p>Meeting at 10</p>",
        "--b",
        "Content-Type: text/calendar; method=REQUEST",
        "",
        "BEGIN:VCALENDAR",
        "END:VCALENDAR",
        "--b--",
    )

    converted = convert_raw(raw)

    assert (converted.text, converted.html) == ("Meeting at 10", "<p>Meeting at 10</p>")
    assert [(a.filename, a.content_type, a.content) for a in converted.attachments] == [
        ("attachment-1.ics", "text/calendar", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR")
    ]


def test_related_root_is_the_start_part():
    raw = raw_message(
        'Content-Type: multipart/related; boundary="b"; start="<root@x>"; type="text/html"',
        "",
        "--b",
        "Content-Type: image/png",
        "Content-ID: <img@x>",
        "Content-Transfer-Encoding: base64",
        "",
        base64.b64encode(PNG),
        "--b",
        "Content-Type: text/html",
        "Content-ID: <root@x>",
        "",
        '<img src="cid:img@x">',
        "--b--",
    )

    converted = convert_raw(raw)

    assert converted.html == '<img src="cid:img@x">'
    assert [(a.content_id, a.disposition) for a in converted.attachments] == [("img@x", "inline")]


def test_base64_encoded_root_text():
    raw = raw_message(
        "From: a@example.org",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: base64",
        "",
        base64.encodebytes("Grüße aus Köln\n".encode()).strip(),
    )

    assert convert_raw(raw).text == "Grüße aus Köln\n"


def test_base64_encoded_root_attachment():
    raw = raw_message(
        "Content-Type: image/png; name=shot.png",
        "Content-Transfer-Encoding: base64",
        "Content-Disposition: attachment; filename=shot.png",
        "",
        base64.encodebytes(PNG).strip(),
    )

    converted = convert_raw(raw)

    assert (converted.text, converted.html) == (None, None)
    assert converted.attachments == (Attachment("shot.png", "image/png", PNG),)


def test_part_without_content_type_is_plain_text():
    raw = raw_message(
        'Content-Type: multipart/mixed; boundary="b"',
        "",
        "--b",
        "",
        "no headers at all",
        "--b--",
    )

    assert convert_raw(raw).text == "no headers at all"


# -- attachments --------------------------------------------------------------------------------------


def test_inline_image_referenced_by_cid_is_inline_even_without_disposition():
    raw = raw_message(
        'Content-Type: multipart/related; boundary="b"',
        "",
        "--b",
        "Content-Type: text/html",
        "",
        '<img src="CID:Logo%40School"><img src="cid:other@x">',
        "--b",
        "Content-Type: image/png",
        "Content-ID: < Logo@School >",
        "Content-Transfer-Encoding: base64",
        "",
        base64.b64encode(PNG),
        "--b",
        "Content-Type: image/png",
        "Content-ID: <unused@x>",
        "Content-Disposition: attachment; filename=unused.png",
        "Content-Transfer-Encoding: base64",
        "",
        base64.b64encode(PNG),
        "--b",
        "Content-Type: image/png",
        "Content-ID: <declared@x>",
        "Content-Disposition: inline; filename=declared.png",
        "Content-Transfer-Encoding: base64",
        "",
        base64.b64encode(PNG),
        "--b",
        "Content-Type: image/png",
        "Content-Disposition: inline; filename=no-id.png",
        "Content-Transfer-Encoding: base64",
        "",
        base64.b64encode(PNG),
        "--b--",
    )

    converted = convert_raw(raw)

    assert [(a.filename, a.disposition, a.content_id) for a in converted.attachments] == [
        ("attachment-1.png", "inline", "Logo@School"),
        ("unused.png", "attachment", "unused@x"),
        ("declared.png", "inline", "declared@x"),
        ("no-id.png", "attachment", None),
    ]
    assert [a.content_id for a in converted.inline_attachments] == ["Logo@School", "declared@x"]


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        ("attachment; filename*=iso-8859-1'de'B%FCcher%20%28neu%29.pdf", "Bücher (neu).pdf"),
        ("attachment; filename*0*=utf-8''%E2%9C%94%20long; filename*1=\" name\"; filename*2=.pdf", "✔ long name.pdf"),
        ('attachment; filename="=?utf-8?B?0J/RgNC40LLQtdGCLnR4dA==?="', "Привет.txt"),
        ('attachment; filename="=?iso-8859-1?Q?caf=E9?= =?iso-8859-1?Q?_menu.doc?="', "café menu.doc"),
        ('attachment; filename="C:\\fakepath\\report.doc"', "C:\\fakepath\\report.doc"),
        ('attachment; filename="say \\"hi\\".txt"', 'say "hi".txt'),
        ("attachment; filename*=utf-8''evil%0D%0ABcc%3A%20x.txt", "evil Bcc: x.txt"),
        ("attachment; filename*=x-unknown''%E9t%E9.txt", "été.txt"),
        ('attachment; filename="\xc3\xa9t\xc3\xa9 raw utf8.txt"', "été raw utf8.txt"),
    ],
)
def test_attachment_filenames_are_decoded(disposition, expected):
    raw = raw_message(
        'Content-Type: multipart/mixed; boundary="b"',
        "",
        "--b",
        "Content-Type: application/octet-stream; name=wrong.bin",
        f"Content-Disposition: {disposition}".encode("latin-1"),
        "Content-Transfer-Encoding: base64",
        "",
        base64.b64encode(PDF),
        "--b--",
    )

    (attachment,) = convert_raw(raw).attachments

    assert attachment.filename == expected
    assert attachment.content == PDF


def test_filename_falls_back_to_content_type_name_then_to_a_generated_one():
    raw = raw_message(
        'Content-Type: multipart/mixed; boundary="b"',
        "",
        "--b",
        "Content-Type: text/plain",
        "",
        "body",
        "--b",
        'Content-Type: application/pdf; name="=?utf-8?q?Zeugnis_=C3=BC.pdf?="',
        "",
        "%PDF",
        "--b",
        "Content-Type: application/pdf",
        "Content-Disposition: attachment",
        "",
        "%PDF",
        "--b",
        "Content-Type: application/x-made-up",
        "Content-Disposition: attachment",
        "",
        "data",
        "--b--",
    )

    converted = convert_raw(raw)

    assert [a.filename for a in converted.attachments] == ["Zeugnis ü.pdf", "attachment-2.pdf", "attachment-3.bin"]


def test_quoted_printable_attachment_bytes_are_exact():
    raw = raw_message(
        'Content-Type: multipart/mixed; boundary="b"',
        "",
        "--b",
        "Content-Type: text/plain; name=notes.txt",
        "Content-Disposition: attachment; filename=notes.txt",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        "tere =FF=00 =10=C3=B5",
        "soft=",
        "break=0D=0A",
        "--b--",
    )

    (attachment,) = convert_raw(raw).attachments

    assert attachment.content == b"tere \xff\x00 \x10\xc3\xb5\r\nsoftbreak\r\n"
    assert attachment.content_type == "text/plain"


def test_eight_bit_attachment_bytes_are_exact():
    payload = b"caf\xe9\r\nna\xefve\r\n\x00\x7f"
    raw = raw_message(
        'Content-Type: multipart/mixed; boundary="b"',
        "",
        "--b",
        "Content-Type: application/octet-stream; name=blob",
        "Content-Transfer-Encoding: 8bit",
        "",
        payload,
        "--b--",
    )

    (attachment,) = convert_raw(raw).attachments

    assert attachment.content == payload


def test_content_type_is_lower_case_type_and_subtype_only():
    raw = raw_message(
        'Content-Type: multipart/mixed; boundary="b"',
        "",
        "--b",
        "Content-Type: Application/PDF; Name=x.pdf; x-mac-type=42",
        "",
        "%PDF",
        "--b",
        "Content-Type: not a type",
        "Content-Disposition: attachment; filename=odd",
        "",
        "?",
        "--b--",
    )

    assert [a.content_type for a in convert_raw(raw).attachments] == ["application/pdf", "text/plain"]


def test_empty_attachment_is_left_out_and_said_so():
    raw = raw_message(
        'Content-Type: multipart/mixed; boundary="b"',
        "",
        "--b",
        "Content-Type: text/plain",
        "",
        "body",
        "--b",
        "Content-Type: application/pdf",
        "Content-Disposition: attachment; filename=empty.pdf",
        "",
        "",
        "--b--",
    )

    converted = convert_raw(raw)

    assert converted.attachments == ()
    assert any("empty.pdf" in defect and "left out" in defect for defect in converted.defects)


# -- embedded messages and reports --------------------------------------------------------------------

FORWARDED = raw_message(
    "From: Original Sender <orig@example.net>",
    "Subject: The original: a/b?",
    "DKIM-Signature: v=1; a=rsa-sha256; d=example.net; s=s;",
    "\tb=abc",
    "Content-Type: text/plain;charset=utf-8",
    "",
    "Original body",
    "",
)


def test_message_rfc822_travels_as_eml_with_the_embedded_bytes():
    raw = raw_message(
        "From: fwd@example.org",
        'Content-Type: multipart/mixed; boundary="b"',
        "",
        "--b",
        "Content-Type: text/plain",
        "",
        "See attached.",
        "--b",
        "Content-Type: message/rfc822",
        "Content-Disposition: attachment",
        "",
        FORWARDED,
        "--b--",
    )

    converted = convert_raw(raw)

    assert converted.text == "See attached."
    assert converted.attachments == (
        Attachment("The original_ a_b.eml", "message/rfc822", FORWARDED, "attachment", None),
    )


def test_delivery_report_keeps_text_status_and_original():
    raw = raw_message(
        "From: MAILER-DAEMON@example.org",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"',
        "",
        "--r",
        "Content-Type: text/plain",
        "",
        "Could not deliver.",
        "--r",
        "Content-Type: message/delivery-status",
        "",
        "Reporting-MTA: dns; mx.example.org",
        "",
        "Final-Recipient: rfc822; nobody@example.net",
        "Action: failed",
        "--r",
        "Content-Type: text/rfc822-headers",
        "",
        "Subject: lost",
        "--r--",
    )

    converted = convert_raw(raw)

    assert converted.text == "Could not deliver."
    assert converted.from_address == Address("MAILER-DAEMON@example.org")
    assert [(a.filename, a.content_type, a.content) for a in converted.attachments] == [
        (
            "delivery-status.txt",
            "message/delivery-status",
            b"Reporting-MTA: dns; mx.example.org\r\n\r\nFinal-Recipient: rfc822; nobody@example.net\r\nAction: failed",
        ),
        ("attachment-2.txt", "text/rfc822-headers", b"Subject: lost"),
    ]


def test_base64_encoded_message_rfc822_is_decoded():
    raw = raw_message(
        'Content-Type: multipart/mixed; boundary="b"',
        "",
        "--b",
        "Content-Type: message/rfc822",
        "Content-Transfer-Encoding: base64",
        "",
        base64.encodebytes(FORWARDED).strip(),
        "--b--",
    )

    (attachment,) = convert_raw(raw).attachments

    assert attachment.content == FORWARDED


# -- signed and encrypted -----------------------------------------------------------------------------

# Header folding, spacing and a very long line that re-serialising would change: the bytes must not.
SIGNED_CONTENT = raw_message(
    'Content-Type: multipart/alternative;\tboundary="alt"',
    "Content-Language:   en",
    "X-Long: " + "x" * 200,
    "",
    "--alt",
    "Content-Type:text/plain; charset=iso-8859-1",
    "Content-Transfer-Encoding: quoted-printable",
    "",
    "Signed b=FCcher  ",
    "--alt",
    "Content-Type: text/html",
    "",
    "<p>Signed</p>",
    "--alt--",
    "",
)
SIGNATURE = base64.encodebytes(b"\x30\x82 fake pkcs7 signature" * 5).replace(b"\n", b"\r\n")
SIGNED_ENTITY = raw_message(
    'Content-Type: multipart/signed; protocol="application/pkcs7-signature";',
    '  micalg=sha-256; boundary="sig"',
    "",
    "This is an S/MIME signed message",
    "--sig",
    SIGNED_CONTENT,
    "--sig",
    "Content-Type: application/pkcs7-signature; name=smime.p7s",
    "Content-Transfer-Encoding: base64",
    "Content-Disposition: attachment; filename=smime.p7s",
    "",
    SIGNATURE,
    "--sig--",
    "",
)
ROOT_HEADERS = raw_message(
    "Received: from mx by mx",
    "From: Teacher <teacher@example.org>",
    "To: class@esp.example",
    "Subject: Signed",
    "Date: Mon, 1 Jan 2024 10:00:00 +0000",
    "Message-ID: <signed@example.org>",
    "MIME-Version: 1.0",
    "",
)


def test_signed_message_body_is_extracted_and_the_whole_travels_byte_for_byte():
    raw = ROOT_HEADERS + SIGNED_ENTITY

    converted = convert_raw(raw)

    assert converted.text == "Signed bücher  "
    assert converted.html == "<p>Signed</p>"
    assert converted.attachments == (Attachment("original-message.eml", "message/rfc822", raw, "attachment", None),)
    assert b"--sig\r\n" + SIGNED_CONTENT + b"\r\n--sig\r\n" in converted.attachments[0].content


def test_nested_signed_part_travels_exactly_with_the_messages_headers():
    raw = ROOT_HEADERS + raw_message(
        'Content-Type: multipart/mixed; boundary="list"',
        "",
        "--list",
        SIGNED_ENTITY.removesuffix(b"\r\n"),
        "--list",
        "Content-Type: text/plain",
        "",
        "-- list footer",
        "--list--",
    )

    converted = convert_raw(raw)

    (eml,) = converted.attachments
    assert eml.filename == "original-message.eml"
    assert eml.content.endswith(SIGNED_ENTITY.removesuffix(b"\r\n"))
    prefix = eml.content.removesuffix(SIGNED_ENTITY.removesuffix(b"\r\n"))
    assert b"From: Teacher <teacher@example.org>\r\n" in prefix
    assert b"Subject: Signed\r\n" in prefix
    assert b"Received" not in prefix
    reparsed = email.message_from_bytes(eml.content, policy=policy.default)
    assert reparsed.get_content_type() == "multipart/signed"
    assert converted.text == "Signed bücher  \n\n-- list footer"


def test_signed_part_with_attachment_keeps_the_attachment_usable_too():
    inner = raw_message(
        'Content-Type: multipart/mixed; boundary="in"',
        "",
        "--in",
        "Content-Type: text/plain",
        "",
        "Homework attached",
        "--in",
        "Content-Type: application/pdf; name=hw.pdf",
        "Content-Transfer-Encoding: base64",
        "",
        base64.b64encode(PDF),
        "--in--",
    )
    raw = raw_message(
        'Content-Type: multipart/signed; protocol="application/pgp-signature"; boundary="s"',
        "",
        "--s",
        inner,
        "--s",
        "Content-Type: application/pgp-signature",
        "",
        "-----BEGIN PGP SIGNATURE-----",
        "--s--",
    )

    converted = convert_raw(raw)

    assert converted.text == "Homework attached"
    assert [(a.filename, a.content) for a in converted.attachments] == [
        ("hw.pdf", PDF),
        ("original-message.eml", raw),
    ]


def test_multipart_encrypted_travels_whole_without_a_body():
    raw = raw_message(
        "From: a@example.org",
        'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="e"',
        "",
        "--e",
        "Content-Type: application/pgp-encrypted",
        "",
        "Version: 1",
        "--e",
        "Content-Type: application/octet-stream",
        "",
        "-----BEGIN PGP MESSAGE-----",
        "--e--",
    )

    converted = convert_raw(raw)

    assert (converted.text, converted.html) == (None, None)
    assert converted.attachments == (Attachment("original-message.eml", "message/rfc822", raw),)


def test_pkcs7_mime_part_travels_whole():
    encrypted = raw_message(
        'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"',
        "Content-Transfer-Encoding: base64",
        "",
        base64.b64encode(b"\x30\x80 opaque"),
    )
    raw = raw_message(
        "From: a@example.org",
        "Subject: secret",
        'Content-Type: multipart/mixed; boundary="b"',
        "",
        "--b",
        "Content-Type: text/plain",
        "",
        "Encrypted part follows",
        "--b",
        encrypted,
        "--b--",
    )

    converted = convert_raw(raw)

    (eml,) = converted.attachments
    assert eml.filename == "original-message.eml"
    assert eml.content.endswith(encrypted)
    assert b"Subject: secret\r\n" in eml.content


def test_without_the_source_bytes_signed_parts_are_serialised_again_and_said_so():
    message = parse_message(ROOT_HEADERS + SIGNED_ENTITY)
    assert isinstance(message, ParsedMessage)
    message.source = None

    converted = convert(message)

    (eml,) = converted.attachments
    assert b"Signed b=FCcher" in eml.content
    assert any("serialised again" in defect for defect in converted.defects)


def test_explicit_raw_argument_is_used_for_a_message_parsed_elsewhere():
    raw = ROOT_HEADERS + SIGNED_ENTITY
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)

    converted = convert(message, raw=raw)

    assert converted.attachments[0].content == raw
    assert converted.size == len(raw)


# -- charsets -----------------------------------------------------------------------------------------


def body_in(charset: str, payload: bytes) -> bytes:
    return raw_message(
        f"Content-Type: text/plain; charset={charset}",
        "Content-Transfer-Encoding: 8bit",
        "",
        payload,
    )


@pytest.mark.parametrize(
    ("charset", "text"),
    [
        ("cp850", "Größe: ½ ░▒▓ naïve"),
        ("ibm850", "Ça va très bien"),
        ("windows-1252", "“quoted” – 5 €"),
        ("iso-8859-2", "Zażółć gęślą jaźń"),
        ("iso-8859-15", "Prix: 5 € œuvre"),
        ("koi8-r", "Привет, мир"),
        ("windows-1251", "Здравствуйте"),
        ("utf-8", "日本語 ✔ emoji 😊"),
        ("gb2312", "你好，世界"),
        ("shift_jis", "こんにちは"),
        ("euc-kr", "안녕하세요"),
        ('"UTF-8"', "quoted label ✔"),
    ],
)
def test_declared_charset_is_honoured(charset, text):
    codec = charset.strip('"')
    converted = convert_raw(body_in(charset, text.encode(codec)))

    assert converted.text == text
    assert converted.defects == ("no From header",)


def test_windows_1252_declared_as_iso_8859_1_gets_its_quotes_and_euro():
    payload = b"\x93Smart quotes\x94 cost \x80 5 \x96 caf\xe9 \x81"

    converted = convert_raw(body_in("iso-8859-1", payload))

    assert converted.text == "“Smart quotes” cost € 5 – café \x81"


def test_gbk_characters_in_a_gb2312_part_decode_as_gb18030():
    text = "镕基"  # 镕 is in GBK, not in GB2312
    assert convert_raw(body_in("gb2312", text.encode("gbk"))).text == text


@pytest.mark.parametrize(
    ("charset", "payload", "expected", "note"),
    [
        ("unknown-8bit", "Grüße".encode(), "Grüße", "unknown charset 'unknown-8bit', decoded as utf-8"),
        ("x-unknown", "Grüße".encode("cp1252"), "Grüße", "decoded as windows-1252"),
        ("utf-8x-misspelled", "naïve".encode(), "naïve", "unknown charset"),
        ("utf-8", b"caf\xe9 \x93ok\x94", "café “ok”", "not valid utf-8, decoded as windows-1252"),
        ("utf-8", "ünïcödé ✔ ".encode() + b"\xff", "ünïcödé ✔ \ufffd", "invalid UTF-8 bytes replaced"),
        ("us-ascii", "Grüße".encode(), "Grüße", "8-bit bytes in a us-ascii part, decoded as utf-8"),
        ("koi8-r;", "Привет".encode("koi8-r"), "Привет", None),
        ("base64", b"plain", "plain", "unknown charset 'base64'"),
        ("unicode-escape", b"\\u0041", "\\u0041", "unknown charset"),
        ("euc-kr", b"\xff\xfe\xfd", "ÿþý", "decoded as windows-1252"),
    ],
)
def test_broken_charset_declarations_fall_back_and_say_so(charset, payload, expected, note):
    converted = convert_raw(body_in(charset, payload))

    assert converted.text == expected
    if note is None:
        assert converted.defects == ("no From header",)
    else:
        assert any(note in defect for defect in converted.defects), converted.defects


def test_missing_charset_with_eight_bit_bytes_is_guessed():
    raw = raw_message("Content-Type: text/plain", "", "Gr\xfc\xdfe".encode("latin-1"))

    assert convert_raw(raw).text == "Grüße"


def test_charset_decoder_never_raises_on_stateful_codecs():
    assert decode_text(b"\x1b$B\xff\xff", "iso-2022-jp").text
    assert decode_text(b"\xff", "utf-16").text == "ÿ"
    assert decode_text(b"", "nonsense").text == ""


# -- headers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject_line",
    [
        b"Subject: =?utf-8?q?Hi=0D=0ABcc:_evil@example.com?=",
        b"Subject: =?utf-8?b?SGkNCkJjYzogZXZpbEBleGFtcGxlLmNvbQ==?=",
        b"Subject: Hi\r\n Bcc: evil@example.com",
        b"Subject: =?utf-8?q?Hi=0A?=\r\n =?utf-8?q?Bcc:_evil@example.com=0D?=",
        b"Subject: Hi\x00\x0b\x0c\x1c\xc2\x85\xe2\x80\xa8Bcc: evil@example.com",
    ],
)
def test_subject_never_keeps_line_breaks(subject_line):
    converted = convert_raw(subject_line + b"\r\nFrom: a@example.org\r\n\r\nbody")

    assert "\r" not in converted.subject
    assert "\n" not in converted.subject
    assert converted.subject.startswith("Hi")
    assert converted.subject.endswith("Bcc: evil@example.com")
    assert "\u2028" not in converted.subject


def test_a_bare_cr_ends_the_subject_as_it_ends_any_header_line():
    message = parse_message(b"Subject: Hi\rBcc: evil@example.com\r\n\r\nbody")

    assert convert(message).subject == "Hi"
    assert safe_header(message, "bcc") == "evil@example.com"  # a header of its own, never a recipient


def test_subject_encoded_words_are_decoded_and_joined():
    raw = (
        b"Subject: =?UTF-8?Q?Nodemailer_is_=E2=9C?=\r\n =?UTF-8?Q?=94_friendly?= and\r\n"
        b" =?iso-8859-1?q?caf=E9?=\r\n\r\n"
    )

    assert convert_raw(raw).subject == "Nodemailer is ✔ friendly and café"


def test_missing_and_garbled_headers_do_not_break_conversion():
    raw = raw_message(
        "From: a@",
        "Message-ID: <a@",
        "In-Reply-To: <x@y>",
        "References: <r1@y>",
        "  <r2@y>",
        "Subject: =?bogus?q?=FF?= and =?utf-8?b?!!!?=",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "body",
    )
    message = parse_message(raw)
    with pytest.raises(IndexError):  # what policy.default does with these on access
        str(message["From"])

    converted = convert(message)

    assert converted.text == "body"
    assert converted.message_id == "<a@"
    assert converted.in_reply_to == "<x@y>"
    assert converted.references == "<r1@y> <r2@y>"
    assert converted.from_address is None
    assert "from: no usable address" in converted.defects
    assert converted.subject.startswith("ÿ and")
    assert safe_header(message, "message-id") == "<a@"


def test_no_headers_at_all():
    converted = convert_raw(b"\r\njust a body\r\n")

    assert converted.subject == ""
    assert converted.text == "just a body\r\n"
    assert converted.message_id is None
    assert converted.from_address is None
    assert "no From header" in converted.defects


def test_empty_message():
    converted = convert_raw(b"")

    assert converted == ConvertedMail(
        subject="",
        text=None,
        html=None,
        attachments=(),
        message_id=None,
        in_reply_to=None,
        references=None,
        from_address=None,
        size=0,
        defects=("no From header",),
    )
    assert not converted.has_body


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            b"From: Betsy at betsy@example.com <info@example.com>",
            Address("info@example.com", "Betsy at betsy@example.com"),
        ),
        (b'From: "Reinman, Andris" <andris@example.com>', Address("andris@example.com", "Reinman, Andris")),
        (b"From: =?utf-8?q?Unicode_=F0=9F=98=8A_name?= <u@example.com>", Address("u@example.com", "Unicode 😊 name")),
        (b"From: =?x-bogus?q?J=FCrgen?= <j@example.com>", Address("j@example.com", "Jürgen")),
        (b"From: J\xc3\xbcrgen <j@example.com>", Address("j@example.com", "Jürgen")),
        (b"From: plain@example.com (Comment Name)", Address("plain@example.com")),
        (b"From: <>", None),
        (b"From: undisclosed-recipients:;", None),
    ],
)
def test_from_address_is_parsed_safely(header, expected):
    assert convert_raw(header + b"\r\n\r\nbody").from_address == expected


def test_safe_header_reads_every_value_decoded_and_unfolded():
    message = parse_message(
        b"Delivered-To: a@esp.example\r\nDelivered-To: =?utf-8?q?b=0A?=@esp.example\r\nX-Folded: one\r\n\ttwo\r\n\r\n"
    )

    assert safe_header_all(message, "delivered-to") == ["a@esp.example", "b @esp.example"]
    assert safe_header(message, "X-FOLDED") == "one\ttwo"
    assert safe_header(message, "x-missing") is None


def test_header_helpers_tolerate_nonsense():
    assert decode_header_value("=?utf-8?q?unterminated") == "=?utf-8?q?unterminated"
    assert decode_header_value("a =?utf-8?q?b?=   =?utf-8?q?c?= d") == "a bc d"
    params = parse_parameters('attachment; filename="unterminated; size=3; =novalue; noequals')
    assert params.value == "attachment"
    assert params.get("filename") == "unterminated; size=3; =novalue; noequals"


# -- malformed structure ------------------------------------------------------------------------------


def test_multipart_without_its_boundary_is_read_as_text():
    raw = raw_message('Content-Type: multipart/mixed; boundary="nowhere"', "", "some text", "")

    converted = convert_raw(raw)

    assert converted.text == "some text\r\n"
    assert any("without parts" in defect for defect in converted.defects)


def test_missing_closing_boundary_and_bad_base64_are_tolerated():
    raw = raw_message(
        'Content-Type: multipart/mixed; boundary="b"',
        "",
        "--b",
        "Content-Type: text/plain",
        "",
        "body",
        "--b",
        "Content-Type: application/octet-stream; name=x.bin",
        "Content-Transfer-Encoding: base64",
        "",
        "AAEC!!!Aw",
    )

    converted = convert_raw(raw)

    assert converted.text == "body"
    assert converted.attachments[0].filename == "x.bin"
    assert converted.attachments[0].content.startswith(b"\x00\x01\x02")
    assert any("closing boundary" in defect for defect in converted.defects)
    assert any("base64" in defect for defect in converted.defects)


def test_unknown_transfer_encoding_keeps_the_bytes_as_they_are():
    raw = raw_message(
        "Content-Type: application/octet-stream",
        "Content-Transfer-Encoding: x-gzip64",
        "",
        "H4sI",
    )

    converted = convert_raw(raw)

    assert converted.attachments[0].content == b"H4sI"
    assert any("x-gzip64" in defect for defect in converted.defects)


def test_a_parser_failure_attaches_the_raw_message_whole():
    def broken(raw: bytes) -> ParsedMessage:
        raise IndexError("parser bug")

    message = parse_message(b"Subject: x\r\n\r\nbody", parsers=[broken])
    converted = convert(message)

    assert converted.attachments == (Attachment("original-message.eml", "message/rfc822", b"Subject: x\r\n\r\nbody"),)
    assert "IndexError: parser bug" in converted.defects[0]


def test_size_is_the_raw_size_or_the_serialised_size():
    built = simple_message()
    built.set_content("x")

    raw = b"Subject: a\r\n\r\nbody"

    assert convert_raw(raw).size == len(raw)
    assert convert(built).size == len(built.as_bytes())


# -- SendGrid shape -----------------------------------------------------------------------------------


def attachments_schema() -> dict[str, object]:
    contract = json.loads(CONTRACT.read_text())
    body = contract["components"]["requestBodies"]["PostMailSend"]["content"]["application/json"]["schema"]
    return {**body["properties"]["attachments"], "components": contract["components"]}


def test_sendgrid_attachments_match_the_contract():
    items = to_sendgrid_attachments(
        [
            Attachment("a.pdf", "application/pdf", PDF),
            Attachment("logo.png", "image/png", PNG, "inline", "logo@esp"),
            Attachment("line\r\nbreak.txt", "Text/Plain", b"x", "inline", None),
            Attachment("odd", "not a type", b"y"),
        ]
    )

    jsonschema.validate(items, attachments_schema())
    assert items == [
        {
            "content": base64.b64encode(PDF).decode(),
            "filename": "a.pdf",
            "type": "application/pdf",
            "disposition": "attachment",
        },
        {
            "content": base64.b64encode(PNG).decode(),
            "filename": "logo.png",
            "type": "image/png",
            "disposition": "inline",
            "content_id": "logo@esp",
        },
        {"content": "eA==", "filename": "line break.txt", "type": "text/plain", "disposition": "attachment"},
        {"content": "eQ==", "filename": "odd", "type": "application/octet-stream", "disposition": "attachment"},
    ]
    assert all("\n" not in item["content"] for item in items)


def test_sendgrid_refuses_empty_attachments_so_we_do_too():
    with pytest.raises(InvalidInput, match="empty"):
        to_sendgrid_attachments([Attachment("empty.txt", "text/plain", b"")])


def test_size_estimate_covers_the_request_and_is_close():
    message = simple_message("Größe ✔")
    message.set_content("Grüße " * 1000)
    message.add_alternative("<p>" + "😊" * 500 + "</p>", subtype="html")
    message.add_attachment(PDF * 1000, maintype="application", subtype="pdf", filename="büch.pdf")
    converted = convert_built(message)

    request = {
        "from": {"email": "ada@esp.example", "name": "Ada Lovelace"},
        "reply_to_list": [{"email": "class-a@esp.example"}],
        "subject": converted.subject,
        "content": [
            {"type": "text/plain", "value": converted.text},
            {"type": "text/html", "value": converted.html},
        ],
        "attachments": to_sendgrid_attachments(converted.attachments),
        "headers": {"List-Id": "<class-a.esp.example>", "In-Reply-To": "<m0@example.org>"},
    }
    actual = len(json.dumps(request).encode())
    estimate = estimate_sendgrid_size(converted)

    assert actual <= estimate <= actual + 10_000
    assert estimate < SENDGRID_MAX_REQUEST_BYTES


def test_a_large_attachment_is_measured_with_base64_growth():
    converted = ConvertedMail(
        subject="big",
        text="x",
        html=None,
        attachments=(Attachment("big.bin", "application/octet-stream", b"\0" * 23_000_000),),
        message_id=None,
        in_reply_to=None,
        references=None,
        from_address=None,
        size=23_000_000,
        defects=(),
    )

    assert estimate_sendgrid_size(converted) > SENDGRID_MAX_REQUEST_BYTES
    assert converted.attachment_bytes == 23_000_000


# -- hostile structure --------------------------------------------------------------------------------


def test_absurdly_deep_nesting_travels_whole_below_a_depth_limit():
    depth = 200
    raw = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level) for level in range(depth)
    ) + raw_message("Content-Type: text/plain", "", "deep down")

    converted = convert_raw(raw)

    (eml,) = converted.attachments
    assert eml.filename == "original-message.eml"
    assert b"deep down" in eml.content
    assert any("nested too deeply" in defect for defect in converted.defects)


def test_hostile_headers_are_read_in_linear_time():
    import time

    raw = raw_message(
        b"From: " + b"a" * 200_000 + b"<" * 50_000 + b" <real@example.org>",
        b"Subject: " + b"=?" * 50_000 + b"=?utf-8?q?" + b"x" * 100_000,
        b"Content-Type: application/octet-stream; " + b"filename*" + b"9" * 5000 + b"*=x; " * 2000,
        b"",
        b"data",
    )
    started = time.perf_counter()

    converted = convert_raw(raw)

    assert time.perf_counter() - started < 5
    assert converted.from_address is not None
    assert converted.from_address.email == "real@example.org"
    assert converted.attachments[0].content == b"data"


class ExplodingMessage(EmailMessage):
    """A message whose defect list cannot be read: stands for any bug deep inside the walk."""

    @property  # type: ignore[override]
    def defects(self) -> list[object]:
        raise RuntimeError("boom")

    @defects.setter
    def defects(self, value: list[object]) -> None:
        pass


def test_an_unexpected_failure_inside_conversion_still_sends_the_message_whole():
    raw = b"From: a@example.org\r\nSubject: x\r\n\r\nbody"
    message = email.message_from_bytes(raw, _class=ExplodingMessage, policy=policy.default)
    assert isinstance(message, EmailMessage)

    converted = convert(message, raw=raw)

    assert converted.subject == "x"
    assert converted.attachments == (Attachment("original-message.eml", "message/rfc822", raw),)
    assert any("conversion failed (RuntimeError: boom)" in defect for defect in converted.defects)
