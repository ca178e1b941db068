"""Inbound MIME to the shape SendGrid carries: text, HTML, attachments (inline images with their ids).

The rules, in the order the tree is walked:

- the body is the text/plain and text/html parts that are not attachments (no filename, disposition
  absent or inline) and not blank. ``multipart/alternative`` contributes its first plain and first HTML
  version; ``multipart/related`` its root (the ``start`` part, else the first); ``multipart/mixed``
  (and any other multipart) every body part in order, plain parts joined by blank lines, HTML parts
  likewise. When some body parts are HTML and some only plain, the plain ones join the HTML escaped
  in a ``<pre>``, and ``text`` is left None for the caller to derive from the complete HTML;
- every other leaf becomes an :class:`Attachment` with exactly its decoded bytes, a filename (decoded
  RFC 2231 / RFC 2047; generated from the content type when missing), disposition ``inline`` when it has
  a Content-ID and is either marked inline or referenced by ``cid:`` from the HTML;
- message/* parts (forwarded mail, delivery reports) are attached as they are: ``.eml`` for a message;
- what SendGrid cannot carry structurally (multipart/signed, multipart/encrypted, PKCS #7) is attached
  whole, byte for byte from the source, as ``original-message.eml``; a signed part's readable content
  is also taken as body and attachments;
- an empty attachment is left out (SendGrid refuses empty content) and said so in ``defects``.
"""

from __future__ import annotations

import base64
import binascii
import html as html_lib
import mimetypes
import quopri
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, Message
from email.utils import getaddresses
from functools import cache
from typing import Any, Literal, TypeAlias
from urllib.parse import unquote

from espmail.domain.mail import Address, Attachment
from espmail.mime.charset import decode_text, recover_header_text
from espmail.mime.headers import (
    ParsedParameters,
    collapse_whitespace,
    decode_encoded_words,
    decode_header_value,
    parse_parameters,
    single_line,
    unfold,
)
from espmail.mime.parse import ParsedMessage, raw_header, safe_header
from espmail.mime.rawparts import RawSource

Part: TypeAlias = "Message[Any, Any]"
Path: TypeAlias = tuple[int, ...]

OPAQUE_FILENAME = "original-message"
_OPAQUE_LEAF_TYPES = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
_BODY_TYPES = frozenset({"text/plain", "text/html"})
_KNOWN_CTES = frozenset(
    {"", "7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "uuencode", "uue", "x-uue"}
)
_CONTENT_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")
_CID_REFERENCE = re.compile(r"cid:([^\s\"'<>()]+)", re.IGNORECASE)
_UNSAFE_FILENAME_CHARS = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]+')
_EOL = re.compile(rb"\r\n|\r|\n")
# Base64 the standard library would decode without a defect: the alphabet, line breaks, and at most
# two '=' of padding at the end (a length that is a multiple of 4 is checked apart).
_CLEAN_BASE64 = re.compile(rb"[A-Za-z0-9+/\r\n]*(?:=[\r\n]*){0,2}")
# Compared at each end of a part's text and its source bytes before the source is decoded directly.
_SAMPLE_CHARS = 256
# Starts with a literal '<' so that searching a long header stays linear.
_ANGLE_ADDRESS = re.compile(r"<\s*(?P<email>[^<>\s@]+@[^<>\s]+?)\s*>")
# Deeper than this, a subtree travels whole: no real client nests so, and recursion must stay bounded.
_MAX_DEPTH = 60
_ROOT_FIELDS_FOR_EML = ("from", "to", "cc", "reply-to", "date", "subject", "message-id")
# Re-serialising (only when the source bytes are not at hand) changes as little as the library allows.
_FAITHFUL = policy.default.clone(refold_source="none", linesep="\r\n")
_EXTENSIONS = {
    "text/plain": ".txt",
    "text/html": ".html",
    "text/calendar": ".ics",
    "text/watch-html": ".html",
    "text/csv": ".csv",
    "text/rfc822-headers": ".txt",
    "message/rfc822": ".eml",
    "message/global": ".eml",
    "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt",
    "application/octet-stream": ".bin",
    "application/pdf": ".pdf",
    "application/pkcs7-signature": ".p7s",
    "application/x-pkcs7-signature": ".p7s",
    "application/pkcs7-mime": ".p7m",
    "application/pgp-signature": ".asc",
    "application/pgp-encrypted": ".asc",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
}


@dataclass(frozen=True, slots=True)
class ConvertedMail:
    """A received message in SendGrid's terms. ``defects`` says, for people, what was tolerated."""

    subject: str
    text: str | None
    html: str | None
    attachments: tuple[Attachment, ...]
    message_id: str | None
    in_reply_to: str | None
    references: str | None
    from_address: Address | None
    size: int
    defects: tuple[str, ...]

    @property
    def has_body(self) -> bool:
        return self.text is not None or self.html is not None

    @property
    def inline_attachments(self) -> tuple[Attachment, ...]:
        return tuple(item for item in self.attachments if item.disposition == "inline")

    @property
    def attachment_bytes(self) -> int:
        return sum(len(item.content) for item in self.attachments)


@dataclass(frozen=True, slots=True)
class _Segment:
    text: str | None
    html: str | None


@dataclass(frozen=True, slots=True)
class _Pending:
    content: bytes
    content_type: str
    filename: str | None
    disposition: str
    content_id: str | None
    opaque: bool = False  # a part SendGrid cannot carry, attached whole


@dataclass(frozen=True, slots=True)
class _PartInfo:
    content_type: str
    disposition: str  # "" when absent
    filename: str | None
    charset: str | None
    content_id: str | None

    @property
    def is_body(self) -> bool:
        return self.content_type in _BODY_TYPES and self.disposition in ("", "inline") and self.filename is None


def convert(message: EmailMessage, *, raw: bytes | None = None) -> ConvertedMail:
    """Convert a parsed message (see :func:`espmail.mime.parse_message`). Never raises.

    ``raw`` is the source the message was parsed from; messages from ``parse_message`` carry it
    already. With it, signed, encrypted and attached messages travel byte for byte and ``size`` is
    exact; without it they are serialised again (noted in ``defects``).
    """
    if raw is None and isinstance(message, ParsedMessage):
        raw = message.source
    notes: list[str] = []
    subject = safe_header(message, "subject", notes) or ""
    if isinstance(message, ParsedMessage) and message.parse_failure is not None:
        return ConvertedMail(
            subject=subject,
            text=None,
            html=None,
            attachments=((Attachment(f"{OPAQUE_FILENAME}.eml", "message/rfc822", raw),) if raw else ()),
            message_id=None,
            in_reply_to=None,
            references=None,
            from_address=None,
            size=len(raw or b""),
            defects=(f"message could not be parsed ({message.parse_failure}); attached whole",),
        )
    walker = _Walker(message, raw)
    try:
        segments = walker.walk(message, (), as_attachments=False)
    except Exception as exc:  # noqa: BLE001 - a bug here must not lose the message: it travels whole
        walker.notes.append(f"conversion failed ({type(exc).__name__}: {exc}); message attached whole")
        segments = []
        walker.attachments = [
            _Pending(raw or _serialise(message), "message/rfc822", None, "attachment", None, opaque=True)
        ]
    text, html = _combine(segments)
    attachments = _finish_attachments(walker.attachments, html)
    return ConvertedMail(
        subject=subject,
        text=text,
        html=html,
        attachments=attachments,
        message_id=_identifier(message, "message-id", notes),
        in_reply_to=_identifier(message, "in-reply-to", notes),
        references=_identifier(message, "references", notes),
        from_address=from_address(message, notes),
        size=len(raw) if raw is not None else _serialised_size(message),
        defects=tuple(dict.fromkeys(_printable(note) for note in [*walker.notes, *notes])),
    )


def from_address(message: Part, notes: list[str] | None = None) -> Address | None:
    """The first From address with its display name, or None. Never raises.

    The standard library's reading wins when it found nothing wrong; otherwise the first
    ``name <local@domain>`` in the header (what mail clients show), then whatever the library made of it.
    """
    raw = raw_header(message, "from")
    if raw is None:
        if notes is not None:
            notes.append("no From header")
        return None
    strict, clean = _library_addresses(message)
    candidates = strict if clean else []
    if not candidates:
        text = unfold(recover_header_text(raw))
        match = _ANGLE_ADDRESS.search(text)
        if match:
            name = text[: match.start()].rpartition(",")[2].strip().strip('"').replace('\\"', '"')
            candidates = [(decode_encoded_words(name, notes, what="from"), match.group("email"))]
    if not candidates:
        candidates = strict or [
            (decode_encoded_words(name, notes, what="from"), email)
            for name, email in getaddresses([unfold(recover_header_text(raw))])
        ]
    candidates = [(name, email.strip()) for name, email in candidates if _plausible_address(email.strip())]
    if not candidates:
        if notes is not None:
            notes.append("from: no usable address")
        return None
    if len(candidates) > 1 and notes is not None:
        notes.append("from: several addresses, the first one used")
    name, email = candidates[0]
    return Address(email=email, name=collapse_whitespace(name))


def _library_addresses(message: Part) -> tuple[list[tuple[str, str]], bool]:
    """(display name, address) pairs as policy.default reads From, and whether it read them cleanly."""
    try:
        header = message["from"]
        pairs = [(str(address.display_name), str(address.addr_spec)) for address in getattr(header, "addresses", ())]
        clean = not getattr(header, "defects", ())
    except Exception:  # noqa: BLE001 - policy.default raises on some malformed address lists
        return [], False
    if any(_has_surrogates(name + email) for name, email in pairs):
        return [], False
    return pairs, clean


def sanitize_filename(name: str) -> str | None:
    """A filename as it may travel: no line breaks or control characters, no surrounding white space."""
    cleaned = single_line(name).strip()
    return cleaned or None


def referenced_content_ids(html: str | None) -> frozenset[str]:
    """The content ids the HTML refers to with ``cid:`` URLs, lower-cased."""
    if not html or "cid:" not in html.lower():
        return frozenset()
    return frozenset(unquote(match.group(1)).strip("<>").lower() for match in _CID_REFERENCE.finditer(html))


def _printable(note: str) -> str:
    return single_line(note).encode("utf-8", "replace").decode("utf-8")


def _has_surrogates(value: str) -> bool:
    return not value.isascii() and any("\ud800" <= char <= "\udfff" for char in value)


def _plausible_address(email: str) -> bool:
    return bool(email) and not any(char.isspace() or ord(char) < 32 or char in "<>" for char in email)


def _identifier(message: Part, name: str, notes: list[str]) -> str | None:
    value = safe_header(message, name, notes)
    if value is None:
        return None
    return collapse_whitespace(value) or None


def _serialised_size(message: Part) -> int:
    try:
        return len(message.as_bytes())
    except Exception:  # noqa: BLE001 - policy.default fails to serialise some malformed headers
        return 0


def _section(path: Path) -> str:
    return "message" if not path else "part " + ".".join(str(index + 1) for index in path)


def _join_text(texts: Sequence[str]) -> str:
    """Texts one after the other with a blank line between, in the line endings they already use."""
    pieces: list[str] = []
    for text in texts:
        if pieces:
            previous = pieces[-1]
            eol = "\r\n" if "\r\n" in previous[-200:] else "\n"
            pieces.append(("" if previous.endswith("\n") else eol) + eol)
        pieces.append(text)
    return "".join(pieces)


def _text_as_html(text: str) -> str:
    return f'<pre style="white-space: pre-wrap">{html_lib.escape(text)}</pre>'


def _combine(segments: Sequence[_Segment]) -> tuple[str | None, str | None]:
    if not segments:
        return None, None
    if all(segment.html is None for segment in segments):
        return _join_text([segment.text for segment in segments if segment.text]) or None, None
    html = "\n".join(
        segment.html if segment.html is not None else _text_as_html(segment.text or "") for segment in segments
    )
    texts = [segment.text for segment in segments]
    if all(text is not None for text in texts):
        return _join_text([text for text in texts if text is not None]), html
    return None, html


@cache
def _mime_types() -> mimetypes.MimeTypes:
    return mimetypes.MimeTypes()  # the built-in table only, not the host's /etc/mime.types


def extension_for(content_type: str) -> str:
    if content_type in _EXTENSIONS:
        return _EXTENSIONS[content_type]
    guessed = _mime_types().guess_extension(content_type, strict=False)
    if guessed:
        return guessed
    return ".txt" if content_type.startswith("text/") else ".bin"


def _finish_attachments(pending: Sequence[_Pending], html: str | None) -> tuple[Attachment, ...]:
    referenced = referenced_content_ids(html)
    attachments: list[Attachment] = []
    opaque_count = 0
    for number, item in enumerate(pending, start=1):
        if item.opaque:
            opaque_count += 1
            suffix = "" if opaque_count == 1 else f"-{opaque_count}"
            attachments.append(Attachment(f"{OPAQUE_FILENAME}{suffix}.eml", "message/rfc822", item.content))
            continue
        inline = item.content_id is not None and (item.disposition == "inline" or item.content_id.lower() in referenced)
        disposition: Literal["attachment", "inline"] = "inline" if inline else "attachment"
        filename = item.filename or f"attachment-{number}{extension_for(item.content_type)}"
        attachments.append(Attachment(filename, item.content_type, item.content, disposition, item.content_id))
    return tuple(attachments)


def _decode_transfer_encoding(data: bytes, encoding: str) -> bytes:
    if encoding == "base64":
        compact = b"".join(data.split())
        try:
            return base64.b64decode(compact + b"=" * (-len(compact) % 4))
        except (binascii.Error, ValueError):
            return data
    if encoding == "quoted-printable":
        return quopri.decodestring(data)
    return data


class _Walker:
    def __init__(self, root: Part, raw: bytes | None) -> None:
        self.root = root
        self.raw = RawSource(raw, root) if raw is not None else None
        self.notes: list[str] = []
        self.attachments: list[_Pending] = []

    # -- the tree -----------------------------------------------------------------------------------

    def walk(self, part: Part, path: Path, *, as_attachments: bool) -> list[_Segment]:
        if len(path) > _MAX_DEPTH:
            self.notes.append(f"{_section(path)}: nested too deeply, attached whole")
            self._attach_opaque(part, path)
            return []
        self._record_defects(part, path)
        info = self._info(part, path)
        payload = self._payload(part, path)
        if isinstance(payload, list):
            maintype, _, subtype = info.content_type.partition("/")
            if maintype == "message":
                self._attach_message(part, path, info, payload)
                return []
            if subtype == "signed":
                return self._signed(part, path, payload, as_attachments=as_attachments)
            if subtype == "encrypted":
                self._attach_opaque(part, path)
                return []
            if subtype == "alternative" and not as_attachments:
                return self._alternative(part, path, payload)
            if subtype == "related" and not as_attachments:
                return self._related(part, path, payload)
            segments: list[_Segment] = []
            for index, child in enumerate(payload):
                segments += self.walk(child, (*path, index), as_attachments=as_attachments)
            return segments
        if info.content_type in _OPAQUE_LEAF_TYPES:
            self._attach_opaque(part, path)
            return []
        if info.content_type.startswith("multipart/"):
            self.notes.append(f"{_section(path)}: {info.content_type} without parts, read as text/plain")
            info = _PartInfo("text/plain", info.disposition, info.filename, info.charset, info.content_id)
        if info.is_body and not as_attachments:
            segment = self._body(part, path, info)
            return [segment] if segment is not None else []
        self._attach_leaf(part, path, info)
        return []

    def _alternative(self, part: Part, path: Path, children: list[Part]) -> list[_Segment]:
        text: str | None = None
        html: str | None = None
        for index, child in enumerate(children):
            child_path = (*path, index)
            info = self._info(child, child_path)
            child_payload = self._payload(child, child_path)
            if not isinstance(child_payload, list) and info.is_body:
                wanted = (info.content_type == "text/plain" and text is None) or (
                    info.content_type == "text/html" and html is None
                )
                if wanted:
                    self._record_defects(child, child_path)
                    segment = self._body(child, child_path, info)
                    if segment is not None:
                        text = segment.text if segment.text is not None else text
                        html = segment.html if segment.html is not None else html
                    continue
            elif isinstance(child_payload, list) and info.content_type.startswith("multipart/"):
                notes_mark, attachments_mark = len(self.notes), len(self.attachments)
                child_text, child_html = _combine(self.walk(child, child_path, as_attachments=False))
                usable = (child_text is not None or child_html is not None) and (
                    (child_text is None or text is None) and (child_html is None or html is None)
                )
                if usable:
                    text = child_text if child_text is not None else text
                    html = child_html if child_html is not None else html
                    continue
                del self.notes[notes_mark:], self.attachments[attachments_mark:]
            self.walk(child, child_path, as_attachments=True)
        return [_Segment(text, html)] if text is not None or html is not None else []

    def _related(self, part: Part, path: Path, children: list[Part]) -> list[_Segment]:
        start = self._params(part, "content-type").get("start")
        root_index = 0
        if start:
            wanted = start.strip().strip("<>").strip()
            for index, child in enumerate(children):
                if self._info(child, (*path, index)).content_id == wanted:
                    root_index = index
                    break
        segments: list[_Segment] = []
        for index, child in enumerate(children):
            child_segments = self.walk(child, (*path, index), as_attachments=index != root_index)
            segments += child_segments
        return segments

    def _signed(self, part: Part, path: Path, children: list[Part], *, as_attachments: bool) -> list[_Segment]:
        segments: list[_Segment] = []
        if children and not as_attachments:
            segments = self.walk(children[0], (*path, 0), as_attachments=False)
        self._attach_opaque(part, path)
        return segments

    # -- leaves -------------------------------------------------------------------------------------

    def _body(self, part: Part, path: Path, info: _PartInfo) -> _Segment | None:
        data = self._decoded(part, path)
        decoded = decode_text(data, info.charset, what=_section(path))
        if decoded.note:
            self.notes.append(decoded.note)
        if not decoded.text.strip():
            if data:
                self.notes.append(f"{_section(path)}: blank {info.content_type} part left out")
            return None
        if info.content_type == "text/html":
            return _Segment(None, decoded.text)
        return _Segment(decoded.text, None)

    def _attach_leaf(self, part: Part, path: Path, info: _PartInfo) -> None:
        self._add(path, self._decoded(part, path), info.content_type, info.filename, info)

    def _attach_message(self, part: Part, path: Path, info: _PartInfo, payload: list[Part]) -> None:
        content = self._message_bytes(part, path, info, payload)
        filename = info.filename
        if filename is None and info.content_type in ("message/rfc822", "message/global") and payload:
            subject = safe_header(payload[0], "subject")
            base = _UNSAFE_FILENAME_CHARS.sub("_", subject or "").strip(" ._")[:80].strip(" ._")
            filename = f"{base or 'forwarded-message'}.eml"
        elif filename is None and info.content_type != "message/rfc822":
            filename = info.content_type.partition("/")[2] + extension_for(info.content_type)
        self._add(path, content, info.content_type, filename, info)

    def _attach_opaque(self, part: Part, path: Path) -> None:
        content = self._opaque_bytes(part, path)
        self.attachments.append(_Pending(content, "message/rfc822", None, "attachment", None, opaque=True))

    def _add(self, path: Path, content: bytes, content_type: str, filename: str | None, info: _PartInfo) -> None:
        if not content:
            name = f" {filename!r}" if filename else ""
            self.notes.append(f"{_section(path)}: empty {content_type} attachment{name} left out")
            return
        self.attachments.append(_Pending(content, content_type, filename, info.disposition, info.content_id))

    # -- bytes --------------------------------------------------------------------------------------

    def _decoded(self, part: Part, path: Path) -> bytes:
        encoding = (self._params(part, "content-transfer-encoding").value or "").strip()
        if encoding not in _KNOWN_CTES:
            self.notes.append(f"{_section(path)}: unknown Content-Transfer-Encoding {encoding!r}, taken as is")
        if encoding == "base64":
            direct = self._base64_from_source(part, path)
            if direct is not None:
                self._record_defects(part, path)
                return direct
        try:
            data = part.get_payload(decode=True)
        except Exception:  # noqa: BLE001 - fall back to the undecoded payload below
            self.notes.append(f"{_section(path)}: content could not be decoded, taken as is")
            data = None
        finally:
            self._record_defects(part, path)
        if isinstance(data, bytes):
            return data
        payload = self._payload(part, path)
        if isinstance(payload, bytes):
            return payload
        if isinstance(payload, str):
            return _to_bytes(payload)
        return b""

    def _base64_from_source(self, part: Part, path: Path) -> bytes | None:
        """The part's base64 content decoded straight from the source bytes, or None to let the standard
        library decode it (no source, the part's text not found there, or content it would flag).

        ``get_payload(decode=True)`` encodes the parsed text back to bytes, splits it into lines, joins
        them and decodes: about four times an attachment's size at once. Decoding the source's bytes in
        place costs only the result. Taken only where the library would return exactly the same bytes:
        the part's text is this span of the source, and it is clean base64 (the alphabet and line
        breaks, padding at the end only, a whole number of 4-character groups), which the library
        decodes strictly without a defect.
        """
        if self.raw is None:
            return None
        try:
            payload = part.get_payload()
            encoding = str(part.get("content-transfer-encoding", "")).lower()
        except Exception:  # noqa: BLE001 - the library's own path records what is wrong
            return None
        span = self.raw.body_span(path)
        if not isinstance(payload, str) or encoding != "base64" or span is None:
            return None
        source, (start, end) = self.raw.raw, span
        if end - start != len(payload) or not payload.isascii():
            return None
        sample = min(_SAMPLE_CHARS, len(payload))
        if source[start : start + sample] != payload[:sample].encode("ascii") or source[end - sample : end] != payload[
            len(payload) - sample :
        ].encode("ascii"):
            return None
        content = memoryview(source)[start:end]
        digits = (end - start) - source.count(b"\n", start, end) - source.count(b"\r", start, end)
        if digits % 4 or _CLEAN_BASE64.fullmatch(content) is None:
            return None
        try:
            return binascii.a2b_base64(content)
        except (binascii.Error, ValueError):
            return None

    def _message_bytes(self, part: Part, path: Path, info: _PartInfo, payload: list[Part]) -> bytes:
        body = self.raw.body(path) if self.raw is not None else None
        if body is not None:
            encoding = self._params(part, "content-transfer-encoding").value
            return _decode_transfer_encoding(body, encoding)
        self.notes.append(f"{_section(path)}: {info.content_type} serialised again (source bytes not at hand)")
        separator = b"\r\n" if info.content_type == "message/delivery-status" else b""
        return separator.join(_serialise(item) for item in payload)

    def _opaque_bytes(self, part: Part, path: Path) -> bytes:
        entity = self.raw.entity(path) if self.raw is not None else None
        root_fields: list[tuple[str, bytes]]
        if entity is not None and self.raw is not None:
            root_fields = self.raw.header_fields(()) if path else []
        else:
            self.notes.append(
                f"{_section(path)}: {_safe_content_type(part)} serialised again "
                "(source bytes not at hand); a signature over it may no longer verify"
            )
            entity = _serialise(part)
            root_fields = [(name.lower(), _to_bytes(f"{name}: {value}\r\n")) for name, value in _raw_items(self.root)]
        if not path:
            return entity
        # A part on its own is no message: give it the root's From, Subject, Date... so that a mail
        # client opens the .eml as the message it was. The part's own bytes follow unchanged.
        eol_match = _EOL.search(entity)
        eol = eol_match.group(0) if eol_match else b"\r\n"
        prefix = b"".join(
            _EOL.sub(eol, field.rstrip(b"\r\n")) + eol for name, field in root_fields if name in _ROOT_FIELDS_FOR_EML
        )
        if not re.search(rb"(?im)^mime-version:", entity.split(eol + eol, 1)[0]):
            prefix += b"MIME-Version: 1.0" + eol
        return prefix + entity

    # -- headers ------------------------------------------------------------------------------------

    def _params(self, part: Part, header: str) -> ParsedParameters:
        return parse_parameters(raw_header(part, header) or "", self.notes, what=header)

    def _info(self, part: Part, path: Path) -> _PartInfo:
        where = _section(path)
        content_type = _safe_content_type(part)
        content_type_params = parse_parameters(raw_header(part, "content-type") or "", self.notes, what=where)
        disposition = parse_parameters(raw_header(part, "content-disposition") or "", self.notes, what=where)
        filename = disposition.get("filename") or content_type_params.get("name")
        content_id = decode_header_value(raw_header(part, "content-id") or "").strip().strip("<>").strip()
        return _PartInfo(
            content_type=content_type,
            disposition=disposition.value,
            filename=sanitize_filename(filename) if filename is not None else None,
            charset=content_type_params.get("charset"),
            content_id=content_id or None,
        )

    def _payload(self, part: Part, path: Path) -> Any:
        try:
            return part.get_payload()
        except Exception:  # noqa: BLE001 - treat as empty
            self.notes.append(f"{_section(path)}: content unreadable")
            return None

    def _record_defects(self, part: Part, path: Path) -> None:
        for defect in getattr(part, "defects", ()):
            self.notes.append(f"{_section(path)}: {_describe_defect(defect)}")


def _to_bytes(text: str) -> bytes:
    """Text that may carry raw 8-bit bytes as surrogate escapes, back to bytes."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _raw_items(part: Part) -> list[tuple[str, str]]:
    try:
        return [(str(name), str(value)) for name, value in part.raw_items()]
    except Exception:  # noqa: BLE001 - a header that cannot be rendered is left out
        return []


def _safe_content_type(part: Part) -> str:
    try:
        content_type = str(part.get_content_type())
    except Exception:  # noqa: BLE001 - read it from the raw header instead
        content_type = parse_parameters(raw_header(part, "content-type") or "").value or "text/plain"
    return content_type if _CONTENT_TYPE.fullmatch(content_type) else "application/octet-stream"


def _serialise(part: Part) -> bytes:
    for serialiser_policy in (_FAITHFUL, policy.compat32):
        try:
            return part.as_bytes(policy=serialiser_policy)
        except Exception:  # noqa: BLE001, S112 - try the next, more lenient serialiser
            continue
    try:
        return _to_bytes(str(part.get_payload()))
    except Exception:  # noqa: BLE001 - nothing left to try
        return b""


_DEFECT_TEXT = {
    "NoBoundaryInMultipartDefect": "multipart without a boundary",
    "StartBoundaryNotFoundDefect": "the multipart's first boundary is missing",
    "CloseBoundaryNotFoundDefect": "the multipart's closing boundary is missing",
    "FirstHeaderLineIsContinuationDefect": "the first header line is a continuation line",
    "MisplacedEnvelopeHeaderDefect": "a 'From ' envelope line among the headers",
    "MissingHeaderBodySeparatorDefect": "a malformed header line; the rest read as body",
    "MultipartInvariantViolationDefect": "multipart content type without parts",
    "InvalidMultipartContentTransferEncodingDefect": "a multipart with a transfer encoding",
    "UndecodableBytesDefect": "undecodable bytes",
    "InvalidBase64PaddingDefect": "base64 content with bad padding",
    "InvalidBase64CharactersDefect": "base64 content with invalid characters",
    "InvalidBase64LengthDefect": "base64 content of an invalid length",
}


def _describe_defect(defect: object) -> str:
    name = type(defect).__name__
    known = _DEFECT_TEXT.get(name)
    if known:
        return known
    detail = str(defect)
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", name.removesuffix("Defect")).lower()
    return f"{words}: {detail}" if detail and detail != name else words
