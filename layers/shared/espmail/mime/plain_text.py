"""The plain-text alternative of an HTML body, as a person reads it in a text-only mail program.

Plain text, not Markdown: no ``**bold**``, no backticks, no ``# headings``, no ``[text](url)`` and no
backslash escapes. Paragraphs and headings are separated by a blank line, ``<br>`` breaks the line,
list items start with ``- `` (``1. `` in a numbered list), a link whose text is not its address reads
``text (https://...)``, a quotation is marked ``> `` as mail programs do, ``<pre>`` keeps its lines, and
table cells are separated by two spaces, an image is its ``alt`` text. Scripts, styles and the head leave
nothing behind.
Built on the standard library's HTML parser, which never raises on malformed HTML.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCKS = frozenset(
    {
        *("address", "article", "aside", "blockquote", "center", "dd", "details", "dialog", "div", "dl", "dt"),
        *("fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header"),
        *("hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "thead", "tfoot"),
        *("tr", "ul"),
    }
)
_SKIPPED = frozenset({"script", "style", "head", "title", "template", "noscript"})
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0]+")
_BLANK_RUNS = re.compile(r"\n{3,}")


class _Converter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []  # finished lines
        self.line = ""  # the line being written
        self.skip = 0
        self.pre = 0
        self.quote = 0
        self.lists: list[list[int]] = []  # one [next number] per open list; [0] for a bulleted one
        self.links: list[str] = []  # hrefs of the open <a> elements
        self.link_text: list[str] = []
        self.cell = False

    # ---------------------------------------------------------------- writing
    def _prefix(self) -> str:
        return "> " * self.quote

    def _break(self, blank: bool = False) -> None:
        if self.line.strip():
            self.lines.append(self._prefix() + self.line.rstrip())
        self.line = ""
        if blank and self.lines and self.lines[-1] != "":
            self.lines.append("")

    def _write(self, text: str) -> None:
        if self.link_text:
            self.link_text[-1] += text
        if self.pre:
            parts = text.split("\n")
            for number, part in enumerate(parts):
                if number:
                    self.lines.append(self._prefix() + self.line.rstrip())
                    self.line = ""
                self.line += part
            return
        text = _SPACES.sub(" ", text)
        if not self.line or self.line.endswith(" "):
            text = text.lstrip()
        self.line += text

    # ---------------------------------------------------------------- parsing
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self.skip += 1
            return
        if self.skip:
            return
        if tag == "br":
            self._break()
            return
        if tag in ("td", "th"):
            if self.cell:
                self.line = self.line.rstrip() + "  "
            self.cell = True
            return
        if tag in _BLOCKS:
            self._break(blank=tag not in ("li", "tr", "dt", "dd", "div") and not self.lists)
        if tag == "tr":
            self.cell = False
        elif tag == "blockquote":
            self.quote += 1
        elif tag == "pre":
            self.pre += 1
        elif tag in ("ul", "ol"):
            self.lists.append([1 if tag == "ol" else 0])
        elif tag == "li":
            marker = "- "
            if self.lists and self.lists[-1][0]:
                marker = f"{self.lists[-1][0]}. "
                self.lists[-1][0] += 1
            self.line = "  " * max(0, len(self.lists) - 1) + marker
        elif tag == "a":
            self.links.append(dict(attrs).get("href") or "")
            self.link_text.append("")
        elif tag == "hr":
            self._break(blank=True)
        elif tag == "img":
            alt = " ".join((dict(attrs).get("alt") or "").split())
            if alt:
                self._write(f" {alt} " if self.line else f"{alt} ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            return
        self.handle_starttag(tag, attrs)
        if tag not in ("br", "hr", "img"):
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self.skip = max(0, self.skip - 1)
            return
        if self.skip:
            return
        if tag == "a" and self.links:
            href, text = self.links.pop(), self.link_text.pop().strip()
            if self.link_text:
                self.link_text[-1] += text
            shown = href.removeprefix("mailto:")
            if href and not href.startswith("#") and shown != text and href != text:
                self._write(f" ({shown})" if text else shown)
            return
        if tag in ("td", "th"):
            return
        if tag in _BLOCKS:
            self._break(blank=tag not in ("li", "tr", "dt", "dd", "div") and not self.lists)
        if tag == "blockquote":
            self.quote = max(0, self.quote - 1)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
            if not self.lists:
                self._break(blank=True)

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self._write(data)

    def text(self) -> str:
        self._break()
        return _BLANK_RUNS.sub("\n\n", "\n".join(self.lines)).strip()


def html_to_plain_text(html: str) -> str:
    """The text of ``html`` as plain text (see the module docstring); ``""`` when there is none."""
    converter = _Converter()
    converter.feed(html)
    converter.close()
    return converter.text()
