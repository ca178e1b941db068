"""Bytes to text for mail bodies and headers: the declared charset when it works, a stated fallback when not.

Never raises and never returns lone surrogates, so whatever comes out can be JSON-encoded for SendGrid.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

# Labels that say "I don't know" rather than name a charset.
_UNKNOWN_LABELS = frozenset(
    {"", "unknown-8bit", "x-unknown", "unknown", "x-user-defined", "8bit", "7bit", "default", "binary", "none"}
)

# Codecs that exist in Python but are not charsets a mail part may declare (they interpret escapes or
# are not byte->text maps at all).
_REFUSED_CODECS = frozenset(
    {"idna", "punycode", "raw-unicode-escape", "unicode-escape", "undefined", "charmap", "palmos"}
)

# Labels Python does not know but mail clients send.
_EXTRA_LABELS = {
    "iso-8859-8-i": "iso8859-8",
    "iso-8859-6-i": "iso8859-6",
    "windows-874": "cp874",
    "x-mac-roman": "mac-roman",
    "x-gbk": "gbk",
    "x-sjis": "cp932",
    "x-euc-jp": "euc_jp",
    "ms932": "cp932",
    "windows-31j": "cp932",
}

# What mail clients actually mean by these labels (the WHATWG encoding standard's mapping): a superset
# that decodes everything the declared charset does, plus what Windows and Chinese, Japanese, Korean
# clients put in under the old name.
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "big5": "big5hkscs",
    "tis-620": "cp874",
    "iso8859-11": "cp874",
}

# ISO-8859 charsets whose C1 range (0x80-0x9F) Windows fills with printable characters.
_C1_SUPERSETS = {"iso8859-1": "cp1252", "iso8859-9": "cp1254"}


def _c1_table(codec: str) -> dict[int, str]:
    table: dict[int, str] = {}
    for byte in range(0x80, 0xA0):
        try:
            table[byte] = bytes([byte]).decode(codec)
        except UnicodeDecodeError:
            continue
    return table


_C1_TABLES = {name: _c1_table(windows) for name, windows in _C1_SUPERSETS.items()}

# One valid multi-byte UTF-8 sequence (RFC 3629).
_UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]"
    rb"|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}|\xed[\x80-\x9f][\x80-\xbf]"
    rb"|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)


@dataclass(frozen=True, slots=True)
class Decoded:
    text: str
    note: str | None = None  # what was tolerated, for ConvertedMail.defects


def normalize_label(declared: str | None) -> str:
    if declared is None:
        return ""
    return declared.strip().strip("\"'").strip().lower()


def codec_for(declared: str | None) -> str | None:
    """The Python codec to use for a declared charset, or None when it is unknown or not a charset."""
    label = normalize_label(declared)
    if label in _UNKNOWN_LABELS:
        return None
    label = _EXTRA_LABELS.get(label, label)
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED_CODECS:
        return None
    return _SUPERSETS.get(info.name, info.name)


def _windows_over_iso(data: bytes, iso: str) -> str:
    """ISO-8859-x with Windows' C1 characters where Windows defines them (latin-1 for the rest)."""
    return data.decode(iso).translate(_C1_TABLES[iso])


def looks_like_damaged_utf8(data: bytes) -> bool:
    """More valid multi-byte UTF-8 sequences than invalid bytes: UTF-8 with a few broken bytes."""
    valid = len(_UTF8_MULTIBYTE.findall(data))
    if not valid:
        return False
    invalid = data.decode("utf-8", "replace").count("\ufffd") - data.count(b"\xef\xbf\xbd")
    return valid > invalid


def guess_decode(data: bytes) -> tuple[str, str]:
    """Text without a usable declaration: UTF-8 if it is, else Windows-1252 (latin-1 for its 5 holes).

    Returns the text and the name of what was used.
    """
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    if looks_like_damaged_utf8(data):
        return data.decode("utf-8", "replace"), "utf-8 with invalid bytes replaced"
    return _windows_over_iso(data, "iso8859-1"), "windows-1252"


def decode_text(data: bytes, declared: str | None, *, what: str = "text") -> Decoded:
    """Decode ``data`` declared as ``declared`` (None: nothing declared, i.e. US-ASCII per RFC 2045)."""
    if not data:
        return Decoded("")
    codec = codec_for(declared) if declared is not None else "ascii"
    if codec is None:
        text, used = guess_decode(data)
        return Decoded(text, f"{what}: unknown charset {normalize_label(declared)!r}, decoded as {used}")
    if codec == "ascii":
        if data.isascii():
            return Decoded(data.decode("ascii"))
        text, used = guess_decode(data)
        label = "us-ascii" if declared is None else normalize_label(declared)
        return Decoded(text, f"{what}: 8-bit bytes in a {label} part, decoded as {used}")
    if codec in _C1_TABLES:
        return Decoded(_windows_over_iso(data, codec))
    try:
        return Decoded(data.decode(codec))
    except (UnicodeError, ValueError, LookupError, TypeError):
        pass
    label = normalize_label(declared)
    if codec == "utf-8" and looks_like_damaged_utf8(data):
        return Decoded(data.decode("utf-8", "replace"), f"{what}: invalid UTF-8 bytes replaced")
    if codec != "utf-8":
        try:
            return Decoded(data.decode("utf-8"), f"{what}: not valid {label}, decoded as utf-8")
        except UnicodeDecodeError:
            pass
    text, used = guess_decode(data)
    return Decoded(text, f"{what}: not valid {label}, decoded as {used}")


def recover_header_text(value: str) -> str:
    """A header value as parsed from bytes carries raw 8-bit bytes as surrogate escapes: decode them."""
    if value.isascii():
        return value
    try:
        data = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    return guess_decode(data)[0]
