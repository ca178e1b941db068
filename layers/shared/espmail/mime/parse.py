"""Parsing raw mail into ``EmailMessage`` without ever raising, and reading its headers safely.

``policy.default`` parses headers lazily: a malformed From or Message-ID raises (IndexError,
AttributeError, ValueError...) only when it is read. So callers read headers through
:func:`safe_header` and :func:`safe_header_all`, which work from the raw source value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from email import policy
from email._policybase import Policy
from email.feedparser import BytesFeedParser
from email.message import EmailMessage, Message
from typing import Any

from espmail.mime.headers import decode_header_value


class ParsedMessage(EmailMessage):
    """An ``EmailMessage`` that remembers the bytes it was parsed from (on the root part only).

    ``source`` lets the converter attach signed or embedded parts byte for byte; ``parse_failure``
    says why the standard parsers gave up, in which case the message is empty and only ``source``
    is meaningful.
    """

    source: bytes | None = None
    parse_failure: str | None = None


# What ``email.parser.Parser`` reads at a time. ``BytesParser.parsebytes`` first decodes the whole
# message to one str and wraps it in a StringIO (4 bytes a character): about 5x the message before the
# parser has even started. Fed in slices of the bytes, the parser sees exactly the same text.
_FEED_CHUNK = 8192


def _feed(raw: bytes, parse_policy: Policy[Any]) -> ParsedMessage:
    parser = BytesFeedParser(ParsedMessage, policy=parse_policy)
    for start in range(0, len(raw), _FEED_CHUNK):
        parser.feed(raw[start : start + _FEED_CHUNK])
    message = parser.close()
    assert isinstance(message, ParsedMessage)
    return message


def _parse_default(raw: bytes) -> ParsedMessage:
    return _feed(raw, policy.default)


def _parse_compat32(raw: bytes) -> ParsedMessage:
    return _feed(raw, policy.compat32)


Parser = Callable[[bytes], ParsedMessage]
PARSERS: tuple[Parser, ...] = (_parse_default, _parse_compat32)


def parse_message(raw: bytes, *, parsers: Sequence[Parser] = PARSERS) -> EmailMessage:
    """Parse ``raw`` with ``policy.default``; malformed input gives defects, never an exception.

    Should the standard parser itself fail, the legacy (compat32) parser is tried, and failing that an
    empty message carrying ``source`` and ``parse_failure`` is returned: the converter then attaches
    the raw message whole rather than losing it.
    """
    failures: list[str] = []
    for parser in parsers:
        try:
            message = parser(raw)
        except Exception as exc:  # noqa: BLE001 - any parser bug must not lose the message
            failures.append(f"{type(exc).__name__}: {exc}")
            continue
        message.source = raw
        return message
    message = ParsedMessage(policy=policy.default)
    message.source = raw
    message.parse_failure = "; ".join(failures) or "no parser"
    return message


def raw_header_all(message: Message[Any, Any], name: str) -> list[str]:
    """Every value of header ``name`` as it appears in the source (folded, encoded words intact)."""
    wanted = name.lower()
    values: list[str] = []
    try:
        items = message.raw_items()
        for key, value in items:
            if key.lower() == wanted:
                values.append(str(value))
    except Exception:  # noqa: BLE001 - a header object that fails to render is skipped, not fatal
        return values
    return values


def raw_header(message: Message[Any, Any], name: str) -> str | None:
    values = raw_header_all(message, name)
    return values[0] if values else None


def safe_header_all(message: Message[Any, Any], name: str, notes: list[str] | None = None) -> list[str]:
    """Every value of header ``name``: unfolded, RFC 2047 decoded, without line breaks. Never raises."""
    return [decode_header_value(value, notes, what=name) for value in raw_header_all(message, name)]


def safe_header(message: Message[Any, Any], name: str, notes: list[str] | None = None) -> str | None:
    """The first value of header ``name`` as one decoded line, or None when the header is absent.

    Works from the raw source value, so a header that ``policy.default`` cannot parse still reads (its
    encoded words decoded where possible, its raw text otherwise). Never raises.
    """
    value = raw_header(message, name)
    return None if value is None else decode_header_value(value, notes, what=name)
