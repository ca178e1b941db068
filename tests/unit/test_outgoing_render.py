"""Rendering in the sandbox: ESP's variables, unknown ones empty, header values on one line, HTML with a
text alternative, and no way out of the sandbox."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from espmail.domain.mail import Address
from espmail.domain.message_requests import BodyFormat, MessageRequest, SendTo, parse_recipient_spec
from espmail.domain.people import Role, User
from espmail.outgoing.render import MessageTemplates, TemplateProblem, header_value, template_context
from espmail.settings import SiteSettings

SITE = SiteSettings(
    domain="esp.example.org",
    name="Splash",
    url="https://esp.example.org",
    allowed_sender_domains=("esp.example.org",),
    support_address="support@esp.example.org",
    bounces_address="bounces@esp.example.org",
    unsubscribe_url="https://esp.example.org/unsubscribe",
)
ADA = User("ada100", 100, "ada100@students.example.net", "Ada", "Park", frozenset({Role.STUDENT}))
NOW = datetime(2026, 5, 1, tzinfo=UTC)


def request(subject: str = "s", body: str = "b", *, public: bool = False, **variables: Any) -> MessageRequest:
    return MessageRequest(
        request_id="01JREQUEST0000000000000000",
        subject=subject,
        body=body,
        body_format=BodyFormat.TEXT,
        sender=Address("splash@esp.example.org"),
        recipients=parse_recipient_spec(["E1234:class"]),
        creator="admin_kim",
        created_at=NOW,
        not_before=NOW,
        vars=variables,
        public=public,
    )


def render(subject: str, body: str = "", fmt: BodyFormat = BodyFormat.TEXT, **variables: Any) -> Any:
    req = request(subject, body or "x", **variables)
    context = template_context(
        request=req, site=SITE, user=ADA, recipient_email=ADA.email, recipient_name=ADA.name, kind=SendTo.SELF
    )
    return MessageTemplates.compile(subject, body or "x", fmt).render(context)


def test_esp_variables_render() -> None:
    out = render(
        "{{ program.name }} for {{ user.first_name }}",
        "{{ user.first_name }} {{ user.last_name }} / {{ user.name }} / {{ user.username }} / {{ user.email }}"
        " / {{ site.name }} {{ site.url }} / {{ recipient.email }}",
        program={"name": "Splash Fall"},
    )
    assert out.subject == "Splash Fall for Ada"
    assert out.text == (
        "Ada Park / Ada Park / ada100 / ada100@students.example.net / Splash https://esp.example.org"
        " / ada100@students.example.net"
    )
    assert out.html is None


def test_the_public_url_is_esps_email_page_for_public_requests_only() -> None:
    public = request(public=True)
    context = template_context(
        request=public, site=SITE, user=ADA, recipient_email=ADA.email, recipient_name="", kind=SendTo.SELF
    )
    assert context["request"]["public_url"] == "https://esp.example.org/email/01JREQUEST0000000000000000"
    private = template_context(
        request=request(), site=SITE, user=ADA, recipient_email=ADA.email, recipient_name="", kind=SendTo.SELF
    )
    assert private["request"]["public_url"] == ""


def test_unknown_variables_render_empty_as_in_esp() -> None:
    out = render("Hi {{ user.nickname }}{{ nothing.at.all }}!", "[{{ missing }}][{{ program.date }}][{{ x['y'] }}]")
    assert out.subject == "Hi !"
    assert out.text == "[][][]"


def test_a_syntax_error_names_the_part_and_line() -> None:
    with pytest.raises(TemplateProblem, match="body template line 2"):
        MessageTemplates.compile("ok", "line one\n{% if %}", BodyFormat.TEXT)
    with pytest.raises(TemplateProblem, match="subject template"):
        MessageTemplates.compile("{{ user.name ", "ok", BodyFormat.TEXT)
    with pytest.raises(TemplateProblem, match="No filter named"):
        MessageTemplates.compile("{{ user.name|shout }}", "ok", BodyFormat.TEXT)


def test_a_subject_that_renders_with_line_breaks_is_one_line() -> None:
    out = render("Hello\n{{ program.name }}", program={"name": "Splash\r\nBcc: victim@example.com"})
    assert out.subject == "Hello Splash Bcc: victim@example.com"
    assert "\r" not in out.subject
    assert "\n" not in out.subject


def test_html_is_escaped_and_gets_a_text_alternative() -> None:
    out = render(
        "s",
        '<h1>Hi {{ user.first_name }}</h1><p>Read <a href="https://esp.example.org/c">this</a> {{ program.note }}</p>',
        BodyFormat.HTML,
        program={"note": "<script>alert(1)</script>"},
    )
    assert "<script>" not in out.html
    assert "&lt;script&gt;" in out.html
    assert "Hi Ada" in out.text
    assert "https://esp.example.org/c" in out.text
    assert "<h1>" not in out.text


@pytest.mark.parametrize(
    "escape",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ user.__init__ }}",
        "{{ user.items.__self__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ '{0.__class__}'.format(user) }}",
        "{{ ().__class__.__bases__[0].__subclasses__() }}",
    ],
)
def test_the_sandbox_refuses_attribute_escapes(escape: str) -> None:
    with pytest.raises(TemplateProblem):
        render("s", escape)


@pytest.mark.parametrize(
    "bomb", ["{{ 'x' * 100000000 }}", "{{ [1] * 100000000 }}", "{{ 2 ** 100000 }}", "{{ range(10**7)|list }}"]
)
def test_the_sandbox_refuses_huge_values(bomb: str) -> None:
    with pytest.raises(TemplateProblem):
        render("s", bomb)


def test_the_sandbox_refuses_mutation() -> None:
    with pytest.raises(TemplateProblem):
        render("s", "{{ program.items.append(1) }}{{ program.update({'a': 1}) }}", program={"items": []})


_printable = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)


@given(template=_printable, value=_printable)
def test_rendered_subjects_never_carry_line_breaks(template: str, value: str) -> None:
    """For any subject template and any variable values: a TemplateProblem, or a subject on one line."""
    try:
        out = render(template + "{{ program.name }}{{ user.first_name }}", program={"name": value})
    except TemplateProblem:
        return
    assert "\r" not in out.subject
    assert "\n" not in out.subject
    assert len(out.subject.splitlines()) <= 1


@given(_printable)
def test_header_values_are_one_line(text: str) -> None:
    value = header_value(text)
    assert len(value.splitlines()) <= 1
    assert not any(ord(c) < 32 or c in "\x7f\x85\u2028\u2029" for c in value)


@given(st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=20))
def test_any_unknown_name_renders_empty(name: str) -> None:
    if name in {
        "user",
        "recipient",
        "request",
        "site",
        "program",
        "range",
        "lipsum",
        "dict",
        "cycler",
        "joiner",
        "namespace",
        "self",
    }:
        return
    if name in {"true", "false", "none", "and", "or", "not", "in", "is", "if", "else", "for", "recursive"}:
        return
    out = render("s", f"[{{{{ {name} }}}}][{{{{ {name}.field }}}}]")
    assert out.text == "[][]"


def test_the_sandboxes_are_built_on_first_use_not_at_import() -> None:
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import jinja2
        built = []
        original = jinja2.Environment.__init__
        def counting(self, *args, **kwargs):
            built.append(type(self).__name__)
            original(self, *args, **kwargs)
        jinja2.Environment.__init__ = counting
        from espmail.outgoing import render
        from espmail.domain.message_requests import BodyFormat
        print(len(built))
        render.MessageTemplates.compile("s", "<p>b</p>", BodyFormat.HTML)
        render.MessageTemplates.compile("s", "b", BodyFormat.TEXT)
        render.MessageTemplates.compile("s", "<p>b</p>", BodyFormat.HTML)
        print(len(built))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["0", "2"]  # none at import; then one each for text and HTML, kept


def test_an_html_body_alike_for_every_recipient_is_converted_to_text_once() -> None:
    from espmail.outgoing.render import html_to_text

    templates = MessageTemplates.compile("Hi {{ user.first_name }}", "<p>Lasers at <b>10</b>.</p>", BodyFormat.HTML)
    copies = []
    html_to_text.cache_clear()
    for user in (ADA, User("ben200", 200, "ben200@students.example.net", "Ben", "Ode", frozenset({Role.STUDENT}))):
        context = template_context(
            request=request(),
            site=SITE,
            user=user,
            recipient_email=user.email,
            recipient_name=user.name,
            kind=SendTo.SELF,
        )
        copies.append(templates.render(context))
    assert [c.subject for c in copies] == ["Hi Ada", "Hi Ben"]
    assert copies[0].text == copies[1].text == "Lasers at 10.\n"
    assert (html_to_text.cache_info().misses, html_to_text.cache_info().hits) == (1, 1)
