"""The exact source bytes of a MIME part, found by splitting the raw message as the standard library does.

The standard library does not keep a part's original bytes: serialising a parsed part again may refold
its headers or change line endings, which breaks an S/MIME or PGP signature over it. So the parts that
must travel byte for byte (signed, encrypted, attached messages) are cut out of the raw message here,
following ``email.feedparser``'s reading of boundaries (lines end in CRLF, CR or LF; the line break
before a boundary belongs to the boundary; runs of boundary lines separate only once). Each split is
checked against the parsed tree's part count; when they disagree the caller falls back to serialising.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from email.message import Message
from typing import Any

_EOL = re.compile(rb"\r\n|\r|\n")
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[\t ]")

Span = tuple[int, int]


def _lines(data: bytes, start: int, end: int) -> Iterator[Span]:
    position = start
    while position < end:
        match = _EOL.search(data, position, end)
        if match is None:
            yield position, end
            return
        yield position, match.end()
        position = match.end()


def _strip_eol(data: bytes, start: int, end: int) -> int:
    if end - start >= 2 and data[end - 2 : end] == b"\r\n":
        return end - 2
    if end > start and data[end - 1 : end] in (b"\r", b"\n"):
        return end - 1
    return end


def body_start(data: bytes, span: Span) -> int:
    """Where an entity's body begins: after the blank line, or at the first line that is no header."""
    for line_start, line_end in _lines(data, *span):
        if _HEADER_LINE.match(data, line_start, line_end):
            continue
        if _EOL.match(data, line_start, line_end):
            return line_end
        return line_start
    return span[1]


def header_fields(data: bytes, span: Span) -> list[tuple[str, bytes]]:
    """The entity's header fields as (lower-case name, exact bytes of the field with its line breaks)."""
    fields: list[tuple[str, list[bytes]]] = []
    for line_start, line_end in _lines(data, span[0], body_start(data, span)):
        line = data[line_start:line_end]
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1].append(line)
        elif b":" in line:
            name = line.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
            fields.append((name, [line]))
    return [(name, b"".join(lines)) for name, lines in fields]


def _boundary_lines(
    data: bytes, start: int, end: int, separator: bytes, boundary_line: re.Pattern[bytes]
) -> Iterator[tuple[int, int, bool]]:
    """(line start, line end, closing?) of each boundary line between ``start`` and ``end``, in order.

    Searches for the separator instead of listing every line: a part of a few megabytes is tens of
    thousands of lines, and a list of them would cost more memory than the part itself.
    """
    position = start
    while True:
        found = data.find(separator, position, end)
        if found < 0:
            return
        position = found + 1
        if found != start and data[found - 1] not in b"\r\n":
            continue  # not at the start of a line
        eol = _EOL.search(data, found, end)
        line_end = eol.end() if eol is not None else end
        match = boundary_line.match(data, found, line_end)
        if match is not None:
            yield found, line_end, bool(match.group("end"))
            position = line_end


def split_multipart(data: bytes, span: Span, boundary: str) -> list[Span] | None:
    """The spans of a multipart entity's children (headers included), or None without a boundary."""
    try:
        separator = b"--" + boundary.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return None
    boundary_line = re.compile(re.escape(separator) + rb"(?P<end>--)?[ \t]*(?:\r\n|\r|\n)?$")
    boundaries = _boundary_lines(data, body_start(data, span), span[1], separator, boundary_line)
    children: list[Span] = []
    current = next(boundaries, None)  # what comes before the first boundary is the preamble
    while current is not None and not current[2]:
        child_start = current[1]
        following = next(boundaries, None)
        while following is not None and following[0] == child_start:  # runs of boundary lines separate once
            child_start = following[1]
            following = next(boundaries, None)
        if following is None:
            children.append((child_start, span[1]))
            break
        children.append((child_start, max(child_start, _strip_eol(data, child_start, following[0]))))
        current = following
    return children


class RawSource:
    """The raw bytes of a parsed message, addressable by the path of child indices of the parsed tree."""

    def __init__(self, raw: bytes, root: Message[Any, Any]) -> None:
        self.raw = raw
        self.root = root
        self._spans: dict[tuple[int, ...], Span | None] = {(): (0, len(raw))}

    def span(self, path: Sequence[int]) -> Span | None:
        key = tuple(path)
        if key in self._spans:
            return self._spans[key]
        parent_span = self.span(key[:-1])
        parent = self._part(key[:-1])
        result: Span | None = None
        if parent_span is not None and parent is not None and parent.is_multipart():
            children = parent.get_payload()
            try:
                boundary = parent.get_boundary()
            except Exception:  # noqa: BLE001 - no usable boundary: no exact bytes, the caller falls back
                boundary = None
            if isinstance(children, list) and boundary:
                spans = split_multipart(self.raw, parent_span, boundary)
                if spans is not None and len(spans) == len(children):
                    result = spans[key[-1]]
        self._spans[key] = result
        return result

    def _part(self, path: Sequence[int]) -> Message[Any, Any] | None:
        part: Message[Any, Any] = self.root
        for index in path:
            payload = part.get_payload()
            if not isinstance(payload, list) or index >= len(payload):
                return None
            child = payload[index]
            if not isinstance(child, Message):
                return None
            part = child
        return part

    def entity(self, path: Sequence[int]) -> bytes | None:
        span = self.span(path)
        return None if span is None else self.raw[span[0] : span[1]]

    def body_span(self, path: Sequence[int]) -> Span | None:
        span = self.span(path)
        return None if span is None else (body_start(self.raw, span), span[1])

    def body(self, path: Sequence[int]) -> bytes | None:
        span = self.body_span(path)
        return None if span is None else self.raw[span[0] : span[1]]

    def header_fields(self, path: Sequence[int]) -> list[tuple[str, bytes]]:
        span = self.span(path)
        return [] if span is None else header_fields(self.raw, span)
