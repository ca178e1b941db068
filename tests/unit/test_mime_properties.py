"""Properties of the MIME converter over generated messages (Hypothesis)."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
from email.message import EmailMessage
from urllib.parse import quote

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from espmail.mime import (
    ConvertedMail,
    convert,
    estimate_sendgrid_size,
    parse_message,
    to_sendgrid_attachments,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CONTENT_TYPES = st.sampled_from(
    ["application/octet-stream", "application/pdf", "image/png", "text/plain", "text/csv", "audio/mpeg"]
)
CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]+")
GENERATED_NAME = re.compile(r"attachment-\d+\.\w+")


def expected_filename(name: str | None) -> str | None:
    """The documented rule: runs of line breaks and controls become one space, outer spaces go."""
    return CONTROLS.sub(" ", name).strip() or None if name is not None else None


def normalized_body(text: str) -> str | None:
    """What the standard library's set_content keeps of a body: LF line ends, one trailing LF."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").removesuffix("\n")
    return text if text.strip() else None


def sha256s(contents: list[bytes]) -> list[str]:
    return [hashlib.sha256(content).hexdigest() for content in contents]


def assert_safe_for_sendgrid(converted: ConvertedMail) -> None:
    assert "\r" not in converted.subject
    assert "\n" not in converted.subject
    for attachment in converted.attachments:
        assert attachment.content
        assert not CONTROLS.search(attachment.filename)
        assert attachment.filename == attachment.filename.strip()
    # No lone surrogates anywhere: everything encodes to the UTF-8 JSON SendGrid takes.
    json.dumps(
        [
            converted.subject,
            converted.text,
            converted.html,
            converted.message_id,
            converted.in_reply_to,
            converted.references,
            str(converted.from_address),
            list(converted.defects),
            [(a.filename, a.content_type, a.content_id) for a in converted.attachments],
        ],
        ensure_ascii=False,
    ).encode("utf-8")
    for identifier in (converted.message_id, converted.in_reply_to, converted.references):
        assert identifier is None or not CONTROLS.search(identifier)
    to_sendgrid_attachments(converted.attachments)
    assert estimate_sendgrid_size(converted) > 0


# -- messages built by the standard library round-trip ------------------------------------------------

attachments_strategy = st.lists(
    st.tuples(
        st.binary(min_size=1, max_size=400),
        # The library refuses line breaks in a header it writes (the other tests put them in anyway).
        st.text(max_size=40).filter(lambda name: "".join(name.splitlines()) == name),
        CONTENT_TYPES,
    ),
    max_size=4,
)


@SETTINGS
@given(
    text=st.none() | st.text(max_size=400),
    html=st.none() | st.text(max_size=400),
    attachments=attachments_strategy,
)
def test_stdlib_built_messages_round_trip(text, html, attachments):
    message = EmailMessage()
    message["From"] = "Sender <sender@example.org>"
    message["Subject"] = "round trip"
    if text is not None:
        message.set_content(text)
    if html is not None:
        if text is not None:
            message.add_alternative(html, subtype="html")
        else:
            message.set_content(html, subtype="html")
    for content, filename, content_type in attachments:
        maintype, subtype = content_type.split("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename or None)
    raw = message.as_bytes()
    reparsed = parse_message(raw)

    converted = convert(reparsed)

    got_text = normalized_body(converted.text) if converted.text is not None else None
    got_html = normalized_body(converted.html) if converted.html is not None else None
    assert got_text == (normalized_body(text) if text is not None else None)
    assert got_html == (normalized_body(html) if html is not None else None)
    assert sha256s([a.content for a in converted.attachments]) == sha256s([c for c, _, _ in attachments])
    assert [a.content_type for a in converted.attachments] == [t for _, _, t in attachments]
    library_names = [part.get_filename() for part in reparsed.iter_attachments()]
    for attachment, library_name in zip(converted.attachments, library_names, strict=True):
        wanted = expected_filename(library_name)
        if wanted is None:
            assert GENERATED_NAME.fullmatch(attachment.filename)
        else:
            assert attachment.filename == wanted
        assert attachment.disposition == "attachment"
    assert converted.size == len(raw)
    assert_safe_for_sendgrid(converted)


# -- filenames in every encoding clients use ----------------------------------------------------------


def _rfc2231(name: str) -> bytes:
    return b"filename*=utf-8''" + quote(name.encode(), safe="").encode()


def _rfc2231_continued(name: str) -> bytes:
    tokens = re.findall(r"%[0-9A-F]{2}|.", quote(name.encode(), safe=""))
    chunks = ["".join(tokens[i : i + 5]) for i in range(0, len(tokens), 5)] or [""]
    pieces = [
        f"filename*{index}*={'utf-8' + chr(39) * 2 if index == 0 else ''}{chunk}" for index, chunk in enumerate(chunks)
    ]
    return ";\r\n ".join(pieces).encode()


def _rfc2047_in_quotes(name: str) -> bytes:
    return b'filename="=?utf-8?B?' + base64.b64encode(name.encode()) + b'?="'


def _quoted(name: str) -> bytes:
    return b'filename="' + name.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


FILENAME_STYLES = {
    "rfc2231": _rfc2231,
    "rfc2231-continued": _rfc2231_continued,
    "rfc2047": _rfc2047_in_quotes,
    "quoted-utf8": _quoted,
}


@SETTINGS
@given(
    files=st.lists(
        st.tuples(st.binary(min_size=1, max_size=200), st.text(max_size=30), st.sampled_from(sorted(FILENAME_STYLES))),
        min_size=1,
        max_size=4,
    )
)
def test_filenames_round_trip_or_are_sanitized(files):
    boundary = b"=_b0undary_="
    chunks = [b'Content-Type: multipart/mixed; boundary="' + boundary + b'"', b""]
    expected = []
    for content, name, style in files:
        if style == "quoted-utf8":
            # Raw in a quoted string: line breaks would end the header, an encoded word would be decoded.
            assume(not CONTROLS.search(name) and "=?" not in name)
        chunks += [
            b"--" + boundary,
            b"Content-Type: application/octet-stream",
            b"Content-Transfer-Encoding: base64",
            b"Content-Disposition: attachment; " + FILENAME_STYLES[style](name),
            b"",
            base64.encodebytes(content).strip(),
        ]
        expected.append((content, expected_filename(name)))
    raw = b"\r\n".join([*chunks, b"--" + boundary + b"--", b""])

    converted = convert(parse_message(raw))

    assert len(converted.attachments) == len(expected)
    for attachment, (content, name) in zip(converted.attachments, expected, strict=True):
        assert attachment.content == content
        if name is None:
            assert GENERATED_NAME.fullmatch(attachment.filename)
        else:
            assert attachment.filename == name
    assert_safe_for_sendgrid(converted)


# -- subjects -----------------------------------------------------------------------------------------


@SETTINGS
@given(subject=st.text(max_size=120), cuts=st.lists(st.integers(min_value=0, max_value=500), max_size=6))
def test_subject_round_trips_through_encoded_words_split_anywhere(subject, cuts):
    data = subject.encode()
    positions = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    words = [b"=?utf-8?b?" + base64.b64encode(data[start:end]) + b"?=" for start, end in itertools.pairwise(positions)]
    raw = b"Subject: " + b"\r\n ".join(words) + b"\r\nFrom: a@example.org\r\n\r\nbody"

    converted = convert(parse_message(raw))

    assert converted.subject == CONTROLS.sub(" ", subject).strip()
    assert_safe_for_sendgrid(converted)


# -- charsets -----------------------------------------------------------------------------------------

# (declared label, how senders' software encodes it): "Shift_JIS" mail is Windows-31J in practice and
# "EUC-KR" mail is Windows-949, and they are read as such, as browsers do (the WHATWG mapping).
CHARSETS = [
    ("utf-8", "utf-8"),
    ("iso-8859-1", "iso-8859-1"),
    ("iso-8859-2", "iso-8859-2"),
    ("windows-1252", "windows-1252"),
    ("cp850", "cp850"),
    ("koi8-r", "koi8-r"),
    ("gb2312", "gb2312"),
    ("shift_jis", "cp932"),
    ("euc-kr", "cp949"),
]


@SETTINGS
@given(
    text=st.text(max_size=300),
    charset=st.sampled_from(CHARSETS),
    encoding=st.sampled_from(["8bit", "base64", "quoted-printable"]),
)
def test_declared_charsets_decode_exactly(text, charset, encoding):
    charset, codec = charset
    try:
        data = text.encode(codec)
    except UnicodeEncodeError:
        assume(False)
        return
    assume(data.decode(codec) == text)  # the sender's own codec must round-trip it (cp932 '¢' does not)
    if charset == "iso-8859-1":
        # Windows' characters in that range win over C1 controls nobody writes (WHATWG's reading).
        assume(not re.search("[\x80-\x9f]", text))
    if encoding == "base64":
        body = base64.encodebytes(data)
    elif encoding == "quoted-printable":
        import quopri

        body = quopri.encodestring(data, quotetabs=True)
    else:
        assume("\r" not in text and "\n" not in text)  # 8bit lines end where the bytes say
        body = data
    raw = (
        f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n".encode() + body
    )

    converted = convert(parse_message(raw))

    got = converted.text
    if encoding == "quoted-printable" and got is not None:
        got = got.replace("\r\n", "\n")
        text = text.replace("\r\n", "\n")
    assert got == (text if text.strip() else None)


# -- nothing raises, ever -----------------------------------------------------------------------------


@SETTINGS
@given(raw=st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(raw):
    converted = convert(parse_message(raw))

    assert_safe_for_sendgrid(converted)


MIME_PIECES = [
    b"Content-Type: ",
    b"multipart/mixed; boundary=",
    b"multipart/alternative; boundary=",
    b"multipart/related; boundary=",
    b"multipart/signed; boundary=",
    b"multipart/encrypted; boundary=",
    b'"b"',
    b"b",
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b"--b",
    b"--b--",
    b"text/plain; charset=",
    b"text/html",
    b"message/rfc822",
    b"message/delivery-status",
    b"application/pkcs7-mime",
    b"Content-Transfer-Encoding: base64",
    b"Content-Transfer-Encoding: quoted-printable",
    b"Content-Disposition: ",
    b"inline",
    b"attachment; filename*0*=utf-8''%E2%9C",
    b"; filename*1*=%94%0A",
    b"name=",
    b"Content-ID: <c@x>",
    b"cid:c@x",
    b"Subject: ",
    b"From: ",
    b"Message-ID: <",
    b"=?utf-8?q?",
    b"=?x?b?",
    b"?=",
    b"=0D=0A",
    b"<a@b>",
    b"a@",
    b'"',
    b"\\",
    b";",
    b":",
    b",",
    b"@",
    b"(",
    b" ",
    b"\t",
    b"\xff",
    b"\xc3\xa9",
    b"AAAA",
    b"unknown-8bit",
    b"utf-16",
]


@SETTINGS
@given(pieces=st.lists(st.sampled_from(MIME_PIECES), max_size=80))
def test_mime_shaped_garbage_never_raises(pieces):
    converted = convert(parse_message(b"".join(pieces)))

    assert_safe_for_sendgrid(converted)


# -- signed parts travel byte for byte ----------------------------------------------------------------


@FEW
@given(
    text=st.text(min_size=1, max_size=200).filter(lambda value: value.strip() != ""),
    attachment=st.none() | st.binary(min_size=1, max_size=200),
    nested=st.booleans(),
    long_header=st.text(alphabet="abc xyz", min_size=0, max_size=300),
)
def test_signed_parts_travel_byte_for_byte(text, attachment, nested, long_header):
    inner = EmailMessage()
    inner["X-Note"] = "kept exactly"
    inner.set_content(text)
    if attachment is not None:
        inner.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="a.bin")
    signed_content = inner.as_bytes(policy=inner.policy.clone(linesep="\r\n"))
    signed_content = signed_content.replace(b"X-Note: kept exactly", b"X-Note:" + long_header.encode())
    signed = (
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";\r\n'
        b'\tmicalg=sha-256; boundary="=_sig"\r\n\r\n'
        b"--=_sig\r\n" + signed_content + b"\r\n--=_sig\r\n"
        b"Content-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"MIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n--=_sig--\r\n"
    )
    head = b"From: T <t@example.org>\r\nSubject: s\r\n"
    if nested:
        raw = (
            head
            + b'Content-Type: multipart/mixed; boundary="=_list"\r\n\r\n--=_list\r\n'
            + signed.removesuffix(b"\r\n")
            + b"\r\n--=_list\r\nContent-Type: text/plain\r\n\r\nfooter\r\n--=_list--\r\n"
        )
    else:
        raw = head + signed

    converted = convert(parse_message(raw))

    emls = [a for a in converted.attachments if a.filename == "original-message.eml"]
    assert len(emls) == 1
    if nested:
        assert emls[0].content.endswith(signed.removesuffix(b"\r\n"))
    else:
        assert emls[0].content == raw
    assert converted.text is not None
    body = converted.text.replace("\r\n", "\n").replace("\r", "\n")
    assert normalized_body(body.removesuffix("\n\nfooter" if nested else "")) == normalized_body(text)
    others = [a.content for a in converted.attachments if a.filename != "original-message.eml"]
    assert others == ([] if attachment is None else [attachment])
