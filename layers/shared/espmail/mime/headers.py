"""Header values from raw text: unfolding, RFC 2047 encoded words, RFC 2045/2231 parameters.

Written for hostile input: nothing here raises, line breaks never survive into a value that may end up
in another header, and undecodable bytes fall back as :mod:`espmail.mime.charset` says.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from espmail.mime.charset import decode_text, recover_header_text

_FOLD = re.compile(r"\r\n(?=[ \t])|\r(?=[ \t])|\n(?=[ \t])")
# Anything that ends a line somewhere (str.splitlines' list) and the other C0 controls except TAB.
_LINE_BREAKS_AND_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]+")
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([QqBb])\?([^?]*)\?=")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_RFC2231_NAME = re.compile(r"^(?P<base>[^*]+)(?:\*(?P<index>[0-9]{1,6}))?(?P<extended>\*)?$")
_WHITESPACE = re.compile(r"\s+")


def unfold(value: str) -> str:
    """RFC 5322 unfolding: a line break followed by white space is removed, the white space kept."""
    return _FOLD.sub("", value)


def single_line(value: str) -> str:
    """Every run of line breaks or control characters becomes one space: safe inside another header."""
    return _LINE_BREAKS_AND_CONTROLS.sub(" ", value)


def collapse_whitespace(value: str) -> str:
    return _WHITESPACE.sub(" ", single_line(value)).strip()


def _b_decode(text: str) -> bytes | None:
    compact = "".join(text.split())
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact.encode("ascii", "replace"), validate=False)
    except (binascii.Error, ValueError):
        return None


def _q_decode(text: str) -> bytes:
    data = text.replace("_", " ").encode("utf-8", "surrogateescape")
    return _QP_ESCAPE.sub(lambda match: bytes([int(match.group(1), 16)]), data)


def decode_encoded_words(value: str, notes: list[str] | None = None, *, what: str = "header") -> str:
    """Decode RFC 2047 encoded words anywhere in ``value`` (also inside quotes, as clients do).

    White space between two encoded words disappears; adjacent words in the same charset are joined
    before decoding, so a multi-byte character split across two words survives.
    """
    if "=?" not in value:
        return value
    pieces: list[str] = []
    run_charset: str | None = None
    run_bytes = b""
    position = 0

    def flush() -> None:
        nonlocal run_charset, run_bytes
        if run_charset is not None:
            decoded = decode_text(run_bytes, run_charset, what=what)
            if decoded.note and notes is not None:
                notes.append(decoded.note)
            pieces.append(decoded.text)
        run_charset, run_bytes = None, b""

    for match in _ENCODED_WORD.finditer(value):
        between = value[position : match.start()]
        position = match.end()
        charset, encoding, text = match.group(1), match.group(2).upper(), match.group(3)
        data = _b_decode(text) if encoding == "B" else _q_decode(text)
        if data is None:
            if notes is not None:
                notes.append(f"{what}: undecodable encoded word kept as it is")
            flush()
            pieces.append(between + match.group(0))
            continue
        # White space between two encoded words is not part of the text (RFC 2047, 6.2).
        if between and not (between.isspace() and run_charset is not None):
            flush()
            pieces.append(between)
        if run_charset is not None and charset.lower() != run_charset.lower():
            flush()
        if run_charset is None:
            run_charset = charset
        run_bytes += data
    flush()
    pieces.append(value[position:])
    return "".join(pieces)


def decode_header_value(raw: str, notes: list[str] | None = None, *, what: str = "header") -> str:
    """A raw (possibly folded, 8-bit, encoded-word) header value as one line of text."""
    text = decode_encoded_words(unfold(recover_header_text(raw)), notes, what=what)
    return single_line(text).strip()


@dataclass(frozen=True, slots=True)
class ParsedParameters:
    """``value; name=value; ...`` as in Content-Type and Content-Disposition."""

    value: str  # the part before the first ';', lower-cased
    params: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        return self.params.get(name)


def _split_semicolons(value: str) -> list[str]:
    pieces: list[str] = []
    current: list[str] = []
    in_quotes = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif in_quotes and char == "\\":
            escaped = True
        elif char == '"':
            in_quotes = not in_quotes
        elif char == ";" and not in_quotes:
            pieces.append("".join(current))
            current = []
            continue
        current.append(char)
    pieces.append("".join(current))
    return pieces


def _unquote(value: str) -> tuple[str, bool]:
    value = value.strip()
    if not value.startswith('"'):
        return value, False
    inner = value[1:-1] if len(value) > 1 and value.endswith('"') else value[1:]
    # The same unescaping as the standard library: Windows paths in quotes keep their backslashes.
    return inner.replace("\\\\", "\\").replace('\\"', '"'), True


def parse_parameters(raw: str, notes: list[str] | None = None, *, what: str = "header") -> ParsedParameters:
    """Parse a parameterised header leniently, decoding RFC 2231 and (non-standard) RFC 2047 values."""
    text = unfold(recover_header_text(raw))
    pieces = _split_semicolons(text)
    value = collapse_whitespace(pieces[0]).lower()
    plain: dict[str, str] = {}
    sections: dict[str, list[tuple[int, bool, str]]] = {}
    for piece in pieces[1:]:
        name, equals, raw_value = piece.partition("=")
        name = name.strip().lower()
        if not equals or not name:
            continue
        param_value, _quoted = _unquote(raw_value)
        match = _RFC2231_NAME.match(name)
        if match and (match.group("index") is not None or match.group("extended")):
            index = int(match.group("index") or 0)
            sections.setdefault(match.group("base"), []).append((index, bool(match.group("extended")), param_value))
        elif name not in plain:
            plain[name] = param_value
    params = {
        name: single_line(decode_encoded_words(param_value, notes, what=what)) for name, param_value in plain.items()
    }
    for base, parts in sections.items():
        params[base] = single_line(_join_rfc2231(parts, notes, what=what))
    return ParsedParameters(value=value, params=params)


def _join_rfc2231(parts: list[tuple[int, bool, str]], notes: list[str] | None, *, what: str) -> str:
    parts = sorted(parts, key=lambda part: part[0])
    charset: str | None = None
    data = b""
    for position, (_index, extended, part_value) in enumerate(parts):
        if extended:
            if position == 0 and part_value.count("'") >= 2:
                charset, _language, part_value = part_value.split("'", 2)
            data += unquote_to_bytes(part_value)
        else:
            data += part_value.encode("utf-8", "surrogateescape")
    decoded = decode_text(data, charset or "utf-8", what=what)
    if decoded.note and notes is not None:
        notes.append(decoded.note)
    return decoded.text
