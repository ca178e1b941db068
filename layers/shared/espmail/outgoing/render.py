"""Rendering a message request for one recipient, in Jinja2's sandbox, with ESP's variables.

- ``{{ user.first_name }}``, ``last_name``, ``name``, ``username``, ``email``; ``{{ recipient.email }}``
  (the address this copy goes to: the user, a guardian or an emergency contact), ``recipient.name``,
  ``recipient.kind``; the request's own vars (``{{ program.name }}``...); ``{{ request.public_url }}``,
  ``request.id``; ``{{ site.name }}``, ``site.url``, ``site.domain``, ``site.support_address``.
- An unknown variable renders empty, as in ESP (``{{ user.nickname }}``, ``{{ nothing.at.all }}``).
- The sandbox refuses attribute escapes (``{{ ''.__class__ }}``) with an error rather than rendering them
  empty, so a request that tries fails visibly; huge repetitions (``'x' * 10**9``) are refused too.
- Header values (the subject) never carry CR, LF or any other line break: they are folded into spaces.
- An HTML body is rendered with autoescaping and gets a plain-text alternative that reads as plain text
  (``espmail.mime.plain_text``: no Markdown marks).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from jinja2 import ChainableUndefined, TemplateError, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from espmail.domain.message_requests import BodyFormat, MessageRequest, SendTo
from espmail.errors import InvalidInput

if TYPE_CHECKING:
    from jinja2 import Template
    from jinja2.runtime import Context

    from espmail.domain.people import User
    from espmail.settings import SiteSettings

MAX_RENDERED_CHARS = 180_000  # per part; an outbox row holds text + html under DynamoDB's 400 KB
MAX_SUBJECT_CHARS = 900
MAX_REPEAT = 1_000_000  # largest string or list a template may build with * (characters or items)
MAX_EXPONENT = 128
# Everything Python's str.splitlines() treats as a line boundary, plus the other C0 controls and DEL.
_LINE_BREAKS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]+")
_SPACES = re.compile(r"[ \t]+")
_RENDER_ERRORS = (TemplateError, ArithmeticError, TypeError, ValueError, LookupError, RecursionError)


class TemplateProblem(InvalidInput):
    """A subject or body template that cannot be compiled or rendered; the message says where."""


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, stricter: unsafe attributes raise, and ``*`` / ``**`` are bounded."""

    intercepted_binops = frozenset({"*", "**"})

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"templates may not use the attribute {attribute!r} of {type(obj).__name__} values")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is too large for a template")
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                sized = isinstance(sequence, str | list | tuple) and isinstance(times, int)
                if sized and len(sequence) * times > MAX_REPEAT:
                    raise SecurityError("a template may not build a value that large with *")
        return super().call_binop(context, operator, left, right)


def _finalize(value: Any) -> Any:
    return "" if value is None else value


@cache
def _sandbox(body_format: BodyFormat) -> _Sandbox:
    """The environment templates of this format compile in: built on first use, then kept."""
    autoescape = body_format is BodyFormat.HTML
    return _Sandbox(undefined=ChainableUndefined, autoescape=autoescape, keep_trailing_newline=True, finalize=_finalize)


def header_value(text: str, limit: int = MAX_SUBJECT_CHARS) -> str:
    """One line: every line break and control character becomes a space, runs of spaces become one."""
    single = _SPACES.sub(" ", _LINE_BREAKS.sub(" ", text)).strip()
    return single[:limit].rstrip()


@lru_cache(maxsize=1)
def html_to_text(html: str) -> str:
    """The plain-text alternative of an HTML body. The last one is kept: the copies of a request whose body
    is the same for every recipient are converted once, not once each (milliseconds a copy)."""
    from espmail.mime.plain_text import html_to_plain_text

    return html_to_plain_text(html) + "\n"


def _where(part: str, exc: BaseException) -> str:
    line = getattr(exc, "lineno", None)
    place = f"{part} template line {line}" if line else f"{part} template"
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{place}: {message}"


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    subject: str
    text: str
    html: str | None = None


@dataclass(frozen=True, slots=True)
class MessageTemplates:
    """The compiled subject and body of one request; compile once, render per recipient."""

    subject: Template
    body: Template
    body_format: BodyFormat

    @classmethod
    def compile(cls, subject: str, body: str, body_format: BodyFormat) -> MessageTemplates:
        try:
            subject_template = _sandbox(BodyFormat.TEXT).from_string(subject)
        except TemplateSyntaxError as exc:
            raise TemplateProblem(_where("subject", exc)) from exc
        try:
            body_template = _sandbox(body_format).from_string(body)
        except TemplateSyntaxError as exc:
            raise TemplateProblem(_where("body", exc)) from exc
        return cls(subject_template, body_template, body_format)

    @classmethod
    def of(cls, request: MessageRequest) -> MessageTemplates:
        return cls.compile(request.subject, request.body, request.body_format)

    def render(self, context: Mapping[str, Any]) -> RenderedMessage:
        subject = header_value(self._render("subject", self.subject, context))
        body = self._render("body", self.body, context).replace("\r\n", "\n").replace("\r", "\n")
        if self.body_format is BodyFormat.HTML:
            return RenderedMessage(subject=subject, text=html_to_text(body), html=body)
        return RenderedMessage(subject=subject, text=body)

    @staticmethod
    def _render(part: str, template: Template, context: Mapping[str, Any]) -> str:
        try:
            out = template.render(context)
        except _RENDER_ERRORS as exc:
            raise TemplateProblem(_where(part, exc)) from exc
        if len(out) > MAX_RENDERED_CHARS:
            raise TemplateProblem(
                f"{part} template renders to {len(out)} characters; the limit is {MAX_RENDERED_CHARS}"
            )
        return out


def public_url(request_id: str, site: SiteSettings, public: bool) -> str:
    """ESP's ``/email/<id>`` page for public requests; empty for others."""
    if not public or not site.url:
        return ""
    return f"{site.url.rstrip('/')}/email/{request_id}"


def template_context(
    *,
    request: MessageRequest,
    site: SiteSettings,
    user: User,
    recipient_email: str,
    recipient_name: str,
    kind: SendTo,
) -> dict[str, Any]:
    context: dict[str, Any] = dict(request.vars)
    context["user"] = {
        "first_name": user.first_name,
        "last_name": user.last_name,
        "name": user.name,
        "username": user.username,
        "email": user.email,
    }
    context["recipient"] = {"email": recipient_email, "name": recipient_name, "kind": kind.value}
    context["request"] = {
        "id": request.request_id,
        "public_url": public_url(request.request_id, site, request.public),
    }
    context["site"] = {
        "name": site.name,
        "url": site.url,
        "domain": site.domain,
        "support_address": site.support_address,
    }
    return context
