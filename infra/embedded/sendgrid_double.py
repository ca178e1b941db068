"""A local HTTP double of the SendGrid v3 API, for the real ``sendgrid`` client (``host=double.host``).

What it does:

- ``POST /v3/mail/send``: checks the bearer key, validates the body against the request-body schema of the
  official OpenAPI description (``contracts/sendgrid/tsg_mail_v3.json``, JSON Schema 2020-12, ``$ref``s
  resolved against the same file) plus the limits SendGrid enforces that the schema does not express, and
  answers like SendGrid: ``202`` with an ``X-Message-Id``, or ``400`` / ``401`` / ``413`` with
  ``{"errors": [{"message", "field", "help"}]}``. Every accepted message is kept (``accepted``) and, when
  ``eml_dir`` is set, written as one ``<message_id>-<n>.eml`` per personalization (``n`` is the 0-based
  personalization index) for a person to open.
- ``/v3/whitelabel/domains`` (create, list, get, patch, delete, validate) per
  ``contracts/sendgrid/tsg_domain_authentication_v3.json``, with a configurable validation outcome.
- Faults, consumed in FIFO order: ``inject(Status(429, retry_after=2))``, ``Status(500)``, ``Timeout(1.0)``,
  ``Disconnect()``; per recipient with ``fail_recipient``; ``refuse_connections()`` closes the listening
  socket; ``set_latency`` delays every answer.

Where the double knowingly differs from the OpenAPI text (because SendGrid itself does):

- message-level ``custom_args`` is described as a string, but SendGrid (and the ``sendgrid`` client's
  ``Mail`` helper) use an object of string values; the double accepts the object and rejects the string
  ("Invalid type. Expected: object, given: string."), as SendGrid does. Custom-arg and header values must
  be strings at both levels.
- ``PATCH /v3/whitelabel/domains/{id}`` answers the single domain object (the description says a list).
- A body of ``max_body_bytes`` (default 30,000,000 bytes, SendGrid's "less than 30MB") or more answers
  ``413`` ("content too large"), the status the description lists for this case.
- Beyond the schema it enforces (``400``, SendGrid's wording where documented): at least one
  personalization; at most 1000 recipients (to + cc + bcc) per request; custom_args under 10,000 bytes
  (message-level merged with each personalization's, measured as compact UTF-8 JSON); substitutions at
  most 10,000 bytes per personalization (measured the same way); the reserved headers
  ``RESERVED_HEADERS``; no CR/LF in header names or values; content required unless ``template_id``;
  a subject (global or in every personalization) unless ``template_id``; ``text/plain`` first, then
  ``text/html``; an address only once per personalization; ``reply_to`` or ``reply_to_list``, not both;
  no ``;`` or ``,`` in recipient names; attachment content in base64; ``content_id`` on inline attachments.
  Categories (at most 10) and personalizations (at most 1000) come from the schema itself.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import logging
import mimetypes
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "MAIL_SEND_PATH",
    "MAX_CUSTOM_ARGS_BYTES",
    "MAX_RECIPIENTS",
    "MAX_REQUEST_BYTES",
    "MAX_SUBSTITUTIONS_BYTES",
    "RESERVED_HEADERS",
    "AcceptedMail",
    "Disconnect",
    "Fault",
    "RequestRecord",
    "SendGridDouble",
    "Status",
    "Timeout",
    "render_eml",
]

log = logging.getLogger(__name__)

DEFAULT_CONTRACTS_DIR: Final = Path(__file__).resolve().parents[2] / "contracts" / "sendgrid"
MAIL_CONTRACT: Final = "tsg_mail_v3.json"
DOMAIN_CONTRACT: Final = "tsg_domain_authentication_v3.json"

MAIL_SEND_PATH: Final = "/v3/mail/send"
DOMAINS_PATH: Final = "/v3/whitelabel/domains"
MAX_REQUEST_BYTES: Final = 30_000_000
MAX_RECIPIENTS: Final = 1000
MAX_CUSTOM_ARGS_BYTES: Final = 10_000
MAX_SUBSTITUTIONS_BYTES: Final = 10_000  # per personalization (compact UTF-8 JSON of tags and values)
# From the description of `headers` in tsg_mail_v3.json ("You may not override the following headers").
RESERVED_HEADERS: Final = frozenset(
    h.lower()
    for h in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "Content-Type",
        "Content-Transfer-Encoding",
        "To",
        "From",
        "Subject",
        "Reply-To",
        "CC",
        "BCC",
    )
)
DOUBLE_USER_ID: Final = 4_242_001
_FIRST_DOMAIN_ID: Final = 1001
_SENDGRID_CNAME_TARGET: Final = f"u{DOUBLE_USER_ID}.wl{DOUBLE_USER_ID % 1000}.sendgrid.net"
_DKIM_PUBLIC_KEY: Final = (
    "k=rsa; t=s; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDPtW5iwpXVPiH5FzJ7Nrl8USzuY9zqqzjE0D1r04xDN6qwziDn"
    "mgcFNNfMewVKN2D1O+2J9N14hRprzByFwfQW76yojh54Xu3uSbQ3JP0A7k8o8GutRF8zbFUA8n0ZH2y0cIEjMliXY4W4LwPA7m4q0Ob"
    "mvSjhd63O9d8z1XkUBwIDAQAB"
)
_EMAIL_ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+\.[^@\s<>(),;:\"\[\]]+$")


# ---------------------------------------------------------------------------------------------- faults
@dataclass(frozen=True)
class Status:
    """Answer with this HTTP status and SendGrid's error body.

    ``retry_after`` adds ``Retry-After`` (seconds); a 429 always carries ``X-RateLimit-Limit``,
    ``X-RateLimit-Remaining: 0`` and ``X-RateLimit-Reset`` (epoch seconds, now + ``retry_after`` or 1).
    ``count`` is how many matching requests the fault answers (``None``: every one until cleared).
    """

    status: int
    retry_after: int | None = None
    count: int | None = 1
    message: str | None = None

    def __post_init__(self) -> None:
        if not 400 <= self.status <= 599:
            raise ValueError(f"a fault status is 4xx or 5xx, not {self.status}")
        _check_count(self.count)


@dataclass(frozen=True)
class Timeout:
    """Hold the request ``seconds`` before answering (make it longer than the client's timeout).

    With ``deliver=False`` (default) the late answer is a 504 and nothing is kept; with ``deliver=True``
    the request is then handled normally, so a valid message is accepted although the client, having
    given up, never learns it: the ambiguous case that makes delivery at-least-once.
    """

    seconds: float
    count: int | None = 1
    deliver: bool = False

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError("seconds must not be negative")
        _check_count(self.count)


@dataclass(frozen=True)
class Disconnect:
    """Close the connection after reading the request, without any HTTP response
    (``http.client.RemoteDisconnected`` on the client side)."""

    count: int | None = 1

    def __post_init__(self) -> None:
        _check_count(self.count)


Fault = Status | Timeout | Disconnect


def _check_count(count: int | None) -> None:
    if count is not None and count < 1:
        raise ValueError("count must be at least 1, or None for every request")


@dataclass
class _ArmedFault:
    fault: Fault
    path_prefix: str | None
    remaining: int | None

    def matches(self, path: str) -> bool:
        return self.path_prefix is None or path.startswith(self.path_prefix)

    def consume(self) -> bool:
        """Counts one use; True when the fault is used up."""
        if self.remaining is None:
            return False
        self.remaining -= 1
        return self.remaining <= 0


# ---------------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class AcceptedMail:
    message_id: str
    body: dict[str, Any]
    received_at: datetime
    eml_paths: tuple[Path, ...] = ()


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    status: int | None  # None: the connection was dropped without an answer (Disconnect)
    duration: float
    started_at: float


# ---------------------------------------------------------------------------------------------- contracts
@dataclass(frozen=True)
class _Contract:
    validators: Mapping[tuple[str, str], Any]  # (METHOD, OpenAPI path template) -> Draft202012Validator
    document: Mapping[str, Any]

    def validator(self, method: str, path_template: str) -> Any:
        return self.validators[(method.upper(), path_template)]

    def require(self, *operations: tuple[str, str]) -> _Contract:
        missing = [f"{m} {p}" for m, p in operations if (m, p) not in self.validators]
        if missing:
            raise ValueError(f"the contract has no JSON request body for {', '.join(missing)}")
        return self


def _resolve_pointer(document: Mapping[str, Any], pointer: str) -> Any:
    node: Any = document
    for token in pointer.lstrip("#").lstrip("/").split("/"):
        if token:
            node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _email_format(instance: object) -> bool:
    return not isinstance(instance, str) or bool(_EMAIL_ADDRESS.match(instance))


_FORMAT_CHECKER = FormatChecker(formats=())
_FORMAT_CHECKER.checks("email")(_email_format)


def _as_sendgrid_behaves(document: dict[str, Any], schema_pointer: str) -> None:
    """Corrects, in memory, the places where the mail-send description differs from SendGrid's behaviour
    (see the module docstring). Harmless if a later description already says the same."""
    schema = _resolve_pointer(document, schema_pointer)
    properties = schema.get("properties", {})
    strings_only = {"type": "string"}
    if "custom_args" in properties:
        properties["custom_args"] = {
            "type": "object",
            "description": properties["custom_args"].get("description", ""),
            "additionalProperties": strings_only,
        }
    if isinstance(properties.get("headers"), dict):
        properties["headers"]["additionalProperties"] = strings_only
    personalization = properties.get("personalizations", {}).get("items", {}).get("properties", {})
    for name in ("custom_args", "headers"):
        if isinstance(personalization.get(name), dict):
            personalization[name]["additionalProperties"] = strings_only


@cache
def _load_contract(path: Path) -> _Contract:
    """Reads an OpenAPI 3.1 file once per process and builds one validator per request body."""
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    uri = path.resolve().as_uri()
    pointers: dict[tuple[str, str], str] = {}
    for template, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "requestBody" not in operation:
                continue
            base = f"/paths/{_escape(template)}/{method}/requestBody"
            request_body = operation["requestBody"]
            while "$ref" in request_body:
                base = request_body["$ref"].lstrip("#")
                request_body = _resolve_pointer(document, base)
            if "schema" in request_body.get("content", {}).get("application/json", {}):
                pointers[(method.upper(), template)] = f"{base}/content/application~1json/schema"
    mail_send = pointers.get(("POST", MAIL_SEND_PATH))
    if mail_send is not None:
        _as_sendgrid_behaves(document, mail_send)
    registry: Registry[Any] = Registry().with_resource(uri, DRAFT202012.create_resource(document))
    validators = {
        key: Draft202012Validator({"$ref": f"{uri}#{pointer}"}, registry=registry, format_checker=_FORMAT_CHECKER)
        for key, pointer in pointers.items()
    }
    return _Contract(validators=validators, document=document)


# ---------------------------------------------------------------------------------------------- errors
def _error(message: str, field: str | None = None) -> dict[str, Any]:
    return {"message": message, "field": field, "help": None}


def _field(path: Iterable[object]) -> str | None:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else None


_JSON_TYPES: Final = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
    (type(None), "null"),
)


def _json_type(value: object) -> str:
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), type(value).__name__)


def _schema_errors(validator: Any, body: object) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for error in validator.iter_errors(body):
        path = list(error.absolute_path)
        keyword, expected, instance = error.validator, error.validator_value, error.instance
        if keyword == "required" and isinstance(instance, dict):
            for name in expected:
                if name not in instance:
                    found.append(_error(f"The {name} parameter is required.", _field([*path, name])))
            continue
        if keyword == "type":
            kinds = expected if isinstance(expected, str) else ", ".join(expected)
            message = f"Invalid type. Expected: {kinds}, given: {_json_type(instance)}."
        elif keyword == "format" and expected == "email":
            message = "Does not contain a valid address."
        elif keyword == "maxItems":
            message = f"May contain at most {expected} items; {len(instance)} given."
        elif keyword == "minItems":
            message = f"Must contain at least {expected} items."
        elif keyword == "maxLength":
            message = f"May be at most {expected} characters long."
        elif keyword == "minLength":
            message = f"Must be at least {expected} character{'s' if expected != 1 else ''} long."
        elif keyword == "maxProperties":
            message = f"May contain at most {expected} properties."
        elif keyword == "uniqueItems":
            message = "Items must be unique."
        elif keyword == "enum":
            message = f"Must be one of: {', '.join(map(str, expected))}."
        else:
            message = error.message if len(error.message) <= 300 else f"Fails the {keyword} rule."
        found.append(_error(message, _field(path)))
    unique: dict[tuple[str, str | None], dict[str, Any]] = {}
    for item in found:
        unique.setdefault((item["message"], item["field"]), item)
    return sorted(unique.values(), key=lambda e: (e["field"] or "", e["message"]))


# ---------------------------------------------------------------------------------------------- SendGrid's rules
def _objects(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _recipients(personalization: Mapping[str, Any]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    for kind in ("to", "cc", "bcc"):
        for index, address in enumerate(_objects(personalization.get(kind))):
            yield kind, index, address


def _custom_args_size(args: Mapping[str, Any]) -> int:
    return len(json.dumps(args, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _header_errors(headers: object, where: str) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    for name, value in _mapping(headers).items():
        if name.strip().lower() in RESERVED_HEADERS:
            errors.append(_error(f"The {name} header is reserved and may not be set through headers.", where))
        if any(c in str(name) + str(value) for c in "\r\n") or not name.strip():
            errors.append(_error(f"The {name!r} header has an invalid name or value.", where))
    return errors


def _sendgrid_rule_errors(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The limits SendGrid documents that the schema does not express. Defensive about shapes: the schema
    errors are reported alongside."""
    errors: list[dict[str, Any]] = []
    personalizations = _objects(body.get("personalizations"))
    has_template = isinstance(body.get("template_id"), str) and bool(body["template_id"])
    if isinstance(body.get("personalizations"), list) and not body["personalizations"]:
        errors.append(_error("You must have at least one personalization.", "personalizations"))
    total = sum(1 for p in personalizations for _ in _recipients(p))
    if total > MAX_RECIPIENTS:
        errors.append(
            _error(
                f"There is a limit of {MAX_RECIPIENTS} total recipients (to + cc + bcc) per request.",
                "personalizations",
            )
        )
    message_args = _mapping(body.get("custom_args"))
    if _custom_args_size(message_args) >= MAX_CUSTOM_ARGS_BYTES:
        errors.append(_error(f"The custom_args must total less than {MAX_CUSTOM_ARGS_BYTES} bytes.", "custom_args"))
    errors += _header_errors(body.get("headers"), "headers")
    subject_everywhere = bool(personalizations)
    for i, personalization in enumerate(personalizations):
        where = f"personalizations.{i}"
        merged = {**message_args, **_mapping(personalization.get("custom_args"))}
        if personalization.get("custom_args") and _custom_args_size(merged) >= MAX_CUSTOM_ARGS_BYTES:
            errors.append(
                _error(
                    f"The custom_args must total less than {MAX_CUSTOM_ARGS_BYTES} bytes.",
                    f"{where}.custom_args",
                )
            )
        errors += _header_errors(personalization.get("headers"), f"{where}.headers")
        substitutions = _mapping(personalization.get("substitutions"))
        if substitutions and _custom_args_size(substitutions) > MAX_SUBSTITUTIONS_BYTES:
            errors.append(
                _error(
                    f"The total size of substitutions may not exceed {MAX_SUBSTITUTIONS_BYTES} bytes per "
                    "personalization object.",
                    f"{where}.substitutions",
                )
            )
        subject_everywhere = subject_everywhere and bool(personalization.get("subject"))
        seen: set[str] = set()
        for kind, index, address in _recipients(personalization):
            email_address = str(address.get("email", "")).lower()
            if email_address in seen:
                errors.append(
                    _error(
                        "Each unique email address in the personalizations array should only be included "
                        f"once. You have included {address.get('email')} more than once.",
                        f"{where}.{kind}",
                    )
                )
            seen.add(email_address)
            name = address.get("name")
            if isinstance(name, str) and (";" in name or "," in name):
                errors.append(_error("The name may not contain ';' or ','.", f"{where}.{kind}.{index}.name"))
    if not has_template:
        if body.get("content") in (None, []):
            errors.append(
                _error(
                    "Unless a valid template_id is provided, the content parameter is required. There "
                    "must be at least one defined content block.",
                    "content",
                )
            )
        if not body.get("subject") and not subject_everywhere:
            errors.append(
                _error(
                    "The subject is required. You can get around this requirement if you use a template "
                    "with a subject defined or if every personalization has a subject defined.",
                    "subject",
                )
            )
    types = [str(c.get("type", "")).lower() for c in _objects(body.get("content"))]
    expected_order = [t for t in ("text/plain", "text/html") if t in types]
    if types[: len(expected_order)] != expected_order:
        errors.append(
            _error(
                "If present, text/plain must be first, followed by text/html, followed by any other content.",
                "content",
            )
        )
    if "reply_to" in body and "reply_to_list" in body:
        errors.append(
            _error(
                "You can use either the reply_to property or reply_to_list property but not both.",
                "reply_to_list",
            )
        )
    for i, attachment in enumerate(_objects(body.get("attachments"))):
        content = attachment.get("content")
        if isinstance(content, str):
            try:
                base64.b64decode("".join(content.split()), validate=True)
            except (binascii.Error, ValueError):
                errors.append(_error("The attachment content must be base64 encoded.", f"attachments.{i}.content"))
        if attachment.get("disposition") == "inline" and not attachment.get("content_id"):
            errors.append(
                _error(
                    "The content_id parameter is required if the disposition is set to inline.",
                    f"attachments.{i}.content_id",
                )
            )
    return errors


# ---------------------------------------------------------------------------------------------- .eml
def _address(entry: Mapping[str, Any]) -> Address:
    return Address(display_name=str(entry.get("name") or ""), addr_spec=str(entry["email"]))


def _split_type(content_type: str | None, filename: str | None = None) -> tuple[str, str]:
    if not content_type and filename:
        content_type = mimetypes.guess_type(filename)[0]
    maintype, _, subtype = (content_type or "application/octet-stream").partition("/")
    return maintype.strip().lower() or "application", subtype.split(";")[0].strip().lower() or "octet-stream"


def render_eml(
    body: Mapping[str, Any],
    personalization_index: int,
    *,
    message_id: str | None = None,
    date: datetime | None = None,
) -> bytes:
    """The message one personalization of a mail-send body would produce, as RFC 5322 bytes (CRLF).

    Headers: From (the personalization's, else the message's), To, Cc, Bcc (it is the sender's copy),
    Reply-To, Subject (the personalization's overrides), Date, Message-ID, ``X-Message-Id`` when given,
    then the message's and the personalization's ``headers`` (the latter win; one of them named like a
    header above replaces it). Substitutions are applied
    to the subject and content. Content becomes multipart/alternative; inline attachments with a
    ``content_id`` go into multipart/related beside the HTML; the rest are attachments.
    """
    personalization: Mapping[str, Any] = body["personalizations"][personalization_index]
    substitutions = {str(k): str(v) for k, v in _mapping(personalization.get("substitutions")).items()}

    def substitute(text: str) -> str:
        for tag, value in substitutions.items():
            text = text.replace(tag, value)
        return text

    message = EmailMessage(policy=policy.SMTP)
    message["From"] = _address(personalization.get("from") or body["from"])
    for header, kind in (("To", "to"), ("Cc", "cc"), ("Bcc", "bcc")):
        addresses = [_address(a) for a in _objects(personalization.get(kind))]
        if addresses:
            message[header] = addresses
    reply_to = [_address(a) for a in _objects(body.get("reply_to_list"))]
    if isinstance(body.get("reply_to"), dict):
        reply_to = [_address(body["reply_to"])]
    if reply_to:
        message["Reply-To"] = reply_to
    subject = personalization.get("subject") or body.get("subject")
    if subject:
        message["Subject"] = substitute(str(subject))
    message["Date"] = format_datetime(date or datetime.now(UTC))
    message["Message-ID"] = make_msgid(idstring=message_id, domain="sendgrid-double.invalid")
    if message_id:
        message["X-Message-Id"] = message_id
    headers: dict[str, tuple[str, str]] = {}
    for source in (body.get("headers"), personalization.get("headers")):
        for name, value in _mapping(source).items():
            headers[name.lower()] = (name, str(value))
    for name, value in headers.values():
        del message[name]  # the request's own Date or Message-ID replaces the double's (one of each allowed)
        message[name] = value

    contents = _objects(body.get("content"))
    if not contents:
        template = {
            "template_id": body.get("template_id"),
            "dynamic_template_data": personalization.get("dynamic_template_data"),
        }
        contents = [{"type": "text/plain", "value": "SendGrid template: " + json.dumps(template, indent=2)}]
    for index, content in enumerate(contents):
        maintype, subtype = _split_type(content.get("type"))
        value = substitute(str(content.get("value", "")))
        add = message.set_content if index == 0 else message.add_alternative
        if maintype == "text":
            add(value, subtype=subtype)
        else:
            add(value.encode("utf-8"), maintype, subtype)

    html_part = next((p for p in message.walk() if p.get_content_type() == "text/html"), None)
    attachments = _objects(body.get("attachments"))
    # Inline parts first: once the message is multipart/mixed, the HTML part can still become related.
    attachments.sort(key=lambda a: not (a.get("disposition") == "inline" and a.get("content_id")))
    for attachment in attachments:
        data = base64.b64decode("".join(str(attachment["content"]).split()))
        filename = str(attachment.get("filename") or "attachment")
        maintype, subtype = _split_type(attachment.get("type"), filename)
        disposition = str(attachment.get("disposition") or "attachment")
        content_id = attachment.get("content_id")
        cid = f"<{content_id}>" if content_id else None
        if maintype == "message":
            # The email package renders message/rfc822 only from a parsed message, and no other message/*
            # type from bytes: the copy carries those as opaque bytes under their filename.
            if subtype == "rfc822":
                inner = message_from_bytes(data, policy=policy.default)
                message.add_attachment(inner, disposition=disposition, filename=filename)
                continue
            maintype, subtype = "application", "octet-stream"
        if disposition == "inline" and cid and html_part is not None:
            html_part.add_related(data, maintype, subtype, cid=cid, disposition="inline", filename=filename)
        else:
            message.add_attachment(data, maintype, subtype, cid=cid, disposition=disposition, filename=filename)
    return message.as_bytes()


# ---------------------------------------------------------------------------------------------- server
class _QuietHandler(WSGIRequestHandler):
    """The double keeps its own request log; werkzeug's per-request line would only be noise."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class _Dropped:
    """Marker: answer nothing and close the connection."""


_DROPPED: Final = _Dropped()
_Outcome = Response | _Dropped

_ROUTES: Final = Map(
    [
        Rule(MAIL_SEND_PATH, endpoint="mail_send", methods=["POST"]),
        Rule(DOMAINS_PATH, endpoint="domain_list", methods=["GET"]),
        Rule(DOMAINS_PATH, endpoint="domain_create", methods=["POST"]),
        Rule(f"{DOMAINS_PATH}/<int:domain_id>", endpoint="domain_get", methods=["GET"]),
        Rule(f"{DOMAINS_PATH}/<int:domain_id>", endpoint="domain_patch", methods=["PATCH"]),
        Rule(f"{DOMAINS_PATH}/<int:domain_id>", endpoint="domain_delete", methods=["DELETE"]),
        Rule(f"{DOMAINS_PATH}/<int:domain_id>/validate", endpoint="domain_validate", methods=["POST"]),
    ],
    strict_slashes=False,
)

_ERROR_MESSAGES: Final = {
    400: "Bad Request",
    401: "authorization required",
    403: "access forbidden",
    404: "not found",
    405: "method not allowed",
    413: "content too large",
    429: "too many requests",
    500: "internal server error",
    503: "service unavailable",
    504: "gateway timeout",
}


def _new_message_id() -> str:
    """22 URL-safe characters, the shape of SendGrid's X-Message-Id."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode("ascii")


def _json(status: int, payload: object, headers: Mapping[str, str] | None = None) -> Response:
    return Response(json.dumps(payload), status=status, headers=dict(headers or {}), content_type="application/json")


def _errors(status: int, *errors: dict[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    return _json(status, {"errors": list(errors)}, headers)


class SendGridDouble:
    """The SendGrid v3 API on ``127.0.0.1:<free port>``; point the client at ``host``.

    Thread-safe: the server answers each request on its own thread, and tests arm faults and read records
    from theirs. Records live until ``reset()``.
    """

    def __init__(
        self,
        api_key: str,
        contracts_dir: Path = DEFAULT_CONTRACTS_DIR,
        eml_dir: Path | None = None,
        latency: float = 0.0,
        *,
        max_body_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        self.api_key = api_key
        self._first_api_key = api_key
        self.contracts_dir = contracts_dir
        self.eml_dir = eml_dir
        self.max_body_bytes = max_body_bytes
        self._mail = _load_contract(contracts_dir / MAIL_CONTRACT).require(("POST", MAIL_SEND_PATH))
        self._domains_contract = _load_contract(contracts_dir / DOMAIN_CONTRACT).require(
            ("POST", DOMAINS_PATH), ("PATCH", f"{DOMAINS_PATH}/{{domain_id}}")
        )
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._latency = latency
        self._accepted: list[AcceptedMail] = []
        self._log: list[RequestRecord] = []
        self._faults: list[_ArmedFault] = []
        self._recipient_faults: dict[str, _ArmedFault] = {}
        self._domains: dict[int, dict[str, Any]] = {}
        self._validate_calls: dict[int, int] = {}
        self._next_domain_id = _FIRST_DOMAIN_ID
        self._passes_after: int | None = 1
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._started = False

    # ------------------------------------------------------------------ lifecycle
    @property
    def host(self) -> str:
        if self._port is None:
            raise RuntimeError("the SendGrid double has not been started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def port(self) -> int | None:
        return self._port

    def start(self) -> SendGridDouble:
        if self._started:
            return self
        if self.eml_dir is not None:
            self.eml_dir.mkdir(parents=True, exist_ok=True)
        self._closing.clear()
        self._serve()
        self._started = True
        return self

    def stop(self) -> None:
        """Stops serving; requests held by a Timeout or latency are released at once."""
        self._closing.set()
        self._shutdown()
        self._started = False

    def __enter__(self) -> SendGridDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def refuse_connections(self) -> None:
        """Closes the listening socket: new connections get ECONNREFUSED until ``accept_connections()``."""
        self._shutdown()

    def accept_connections(self) -> None:
        """Listens again, on the same port."""
        if self._started and self._server is None:
            self._serve()

    @property
    def refusing(self) -> bool:
        return self._started and self._server is None

    def _serve(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self._port or 0))
            listener.listen(128)
            server = make_server(
                "127.0.0.1",
                listener.getsockname()[1],
                self._wsgi,
                threaded=True,
                request_handler=_QuietHandler,
                fd=listener.fileno(),
            )
        finally:
            listener.close()  # werkzeug serves a duplicate of this descriptor
        self._server = server
        self._port = server.port
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="sendgrid-double", daemon=True
        )
        self._thread.start()

    def _shutdown(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    # ------------------------------------------------------------------ controls
    def set_latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency must not be negative")
        with self._lock:
            self._latency = seconds

    def inject(self, fault: Fault, *, path: str | None = MAIL_SEND_PATH) -> None:
        """Arms a fault for the next matching request(s), after those already armed (FIFO).

        ``path`` is a path prefix (``"/v3/whitelabel/domains"`` for every domain endpoint); ``None`` matches
        every path. Faults strike before the key is checked, like trouble in front of the API would.
        """
        with self._lock:
            self._faults.append(_ArmedFault(fault, path, fault.count))

    def fail_recipient(self, email: str, fault: Fault | None = None) -> None:
        """Every mail-send request naming ``email`` (to, cc or bcc; any case) gets ``fault`` once the body
        has passed validation. Default: a 400 naming that address, for every such request."""
        armed = fault if fault is not None else Status(400, count=None)
        with self._lock:
            self._recipient_faults[email.lower()] = _ArmedFault(armed, MAIL_SEND_PATH, armed.count)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._recipient_faults.clear()

    def domain_validation(self, passes_after: int | None = 1) -> None:
        """Validation of each domain answers valid=false until its ``passes_after``-th validate call
        (1: the first call passes); ``None``: it never passes."""
        if passes_after is not None and passes_after < 1:
            raise ValueError("passes_after must be at least 1, or None")
        with self._lock:
            self._passes_after = passes_after

    def reset(self) -> None:
        """Forgets accepted mail, the request log, faults, latency, domains and the validation setting, and
        takes its first API key back (a test may have rotated it)."""
        with self._lock:
            self.api_key = self._first_api_key
            self._accepted.clear()
            self._log.clear()
            self._faults.clear()
            self._recipient_faults.clear()
            self._domains.clear()
            self._validate_calls.clear()
            self._next_domain_id = _FIRST_DOMAIN_ID
            self._passes_after = 1
            self._latency = 0.0

    # ------------------------------------------------------------------ records
    @property
    def accepted(self) -> list[AcceptedMail]:
        with self._lock:
            return list(self._accepted)

    @property
    def requests_log(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    @property
    def domains(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(d) for d in self._domains.values()]

    # ------------------------------------------------------------------ WSGI
    def _wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started, started_at = time.monotonic(), time.time()
        request = Request(environ)

        def record(status: int | None) -> None:
            # Logged before the client can see the outcome, so a caller never finds its call missing.
            entry = RequestRecord(request.method, request.path, status, time.monotonic() - started, started_at)
            with self._lock:
                self._log.append(entry)

        try:
            outcome = self._answer(request)
        except Exception:
            record(500)  # werkzeug answers an unexpected error with a 500
            raise
        if isinstance(outcome, _Dropped):
            record(None)
            connection = environ.get("werkzeug.socket")
            if isinstance(connection, socket.socket):
                connection.shutdown(socket.SHUT_RDWR)
            start_response("500 Dropped", [("Content-Length", "0")])  # its writing fails: nobody hears it
            return []
        record(outcome.status_code)
        return outcome(environ, start_response)

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._closing.wait(seconds)

    def _answer(self, request: Request) -> _Outcome:
        raw = request.get_data(cache=True)  # read it all first: a dropped connection then ends cleanly
        with self._lock:
            latency = self._latency
        self._pause(latency)
        fault = self._take_fault(request.path)
        if fault is not None:
            answer = self._fault_answer(fault)
            if answer is not None:
                return answer
        authorization = request.headers.get("Authorization")
        if authorization is None:
            return _errors(401, _error("authorization required"))
        if authorization != f"Bearer {self.api_key}":
            return _errors(401, _error("The provided authorization grant is invalid, expired, or revoked"))
        try:
            endpoint, arguments = _ROUTES.bind_to_environ(request.environ).match()
        except MethodNotAllowed:
            return _errors(405, _error("method not allowed"))
        except NotFound:
            return _errors(404, _error("not found"))
        if endpoint == "mail_send":
            return self._mail_send(request, raw)
        handler = getattr(self, f"_{endpoint}")
        result: Response = handler(request, raw, **arguments)
        return result

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for armed in self._faults:
                if armed.matches(path):
                    if armed.consume():
                        self._faults.remove(armed)
                    return armed.fault
        return None

    def _fault_answer(self, fault: Fault, field: str | None = None, email: str | None = None) -> _Outcome | None:
        """The answer a fault gives, or None when the request should then be handled normally."""
        if isinstance(fault, Disconnect):
            return _DROPPED
        if isinstance(fault, Timeout):
            self._pause(fault.seconds)
            return None if fault.deliver else _errors(504, _error(_ERROR_MESSAGES[504]))
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        if fault.status == 429:
            headers["X-RateLimit-Limit"] = "600"
            headers["X-RateLimit-Remaining"] = "0"
            headers["X-RateLimit-Reset"] = str(int(time.time()) + (fault.retry_after or 1))
        if fault.message is not None:
            message = fault.message
        elif fault.status == 400 and email is not None:
            message = "Does not contain a valid address."
        else:
            message = _ERROR_MESSAGES.get(fault.status) or HTTPStatus(fault.status).phrase
        return _errors(fault.status, _error(message, field), headers=headers)

    # ------------------------------------------------------------------ mail send
    def _read_json(self, raw: bytes) -> tuple[Any, Response | None]:
        try:
            return json.loads(raw), None
        except (UnicodeDecodeError, ValueError):
            return None, _errors(400, _error("The request body is not valid JSON."))

    def _mail_send(self, request: Request, raw: bytes) -> _Outcome:
        if len(raw) >= self.max_body_bytes or (request.content_length or 0) >= self.max_body_bytes:
            return _errors(413, _error(_ERROR_MESSAGES[413]))
        body, problem = self._read_json(raw)
        if problem is not None:
            return problem
        errors = _schema_errors(self._mail.validator("POST", MAIL_SEND_PATH), body)
        if isinstance(body, dict):
            errors += _sendgrid_rule_errors(body)
        if errors:
            return _errors(400, *errors)
        recipient_fault = self._take_recipient_fault(body)
        if recipient_fault is not None:
            fault, field, email = recipient_fault
            answer = self._fault_answer(fault, field, email)
            if answer is not None:
                return answer
        message_id = _new_message_id()
        received_at = datetime.now(UTC)
        paths = self._write_eml(body, message_id, received_at)
        with self._lock:
            self._accepted.append(AcceptedMail(message_id, body, received_at, paths))
        return Response(b"", status=202, headers={"X-Message-Id": message_id})

    def _take_recipient_fault(self, body: Mapping[str, Any]) -> tuple[Fault, str, str] | None:
        with self._lock:
            if not self._recipient_faults:
                return None
            for i, personalization in enumerate(_objects(body.get("personalizations"))):
                for kind, index, address in _recipients(personalization):
                    email = str(address.get("email", "")).lower()
                    armed = self._recipient_faults.get(email)
                    if armed is not None:
                        if armed.consume():
                            del self._recipient_faults[email]
                        return armed.fault, f"personalizations.{i}.{kind}.{index}.email", email
        return None

    def _write_eml(self, body: dict[str, Any], message_id: str, received_at: datetime) -> tuple[Path, ...]:
        if self.eml_dir is None:
            return ()
        paths: list[Path] = []
        for index in range(len(body["personalizations"])):
            path = self.eml_dir / f"{message_id}-{index}.eml"
            try:
                data = render_eml(body, index, message_id=message_id, date=received_at)
                partial = path.with_name(f".{path.name}.partial")
                partial.write_bytes(data)
                os.replace(partial, path)
            except (ValueError, TypeError, KeyError, OSError):
                # The message stays accepted (SendGrid took it); only the convenience copy is missing.
                log.exception("could not write %s", path)
                continue
            paths.append(path)
        return tuple(paths)

    # ------------------------------------------------------------------ domain authentication
    def _domain_body(self, raw: bytes, method: str, template: str) -> tuple[Any, Response | None]:
        body, problem = self._read_json(raw or b"{}")
        if problem is not None:
            return None, problem
        errors = _schema_errors(self._domains_contract.validator(method, template), body)
        return body, (_errors(400, *errors) if errors else None)

    def _domain_list(self, request: Request, raw: bytes) -> Response:
        try:
            limit = int(request.args.get("limit", "0")) or None
            offset = int(request.args.get("offset", "0"))
        except ValueError:
            return _errors(400, _error("limit and offset must be integers", "limit"))
        if offset < 0 or (limit is not None and limit < 0):
            return _errors(400, _error("limit and offset must not be negative", "offset"))
        wanted_domain = request.args.get("domain", "").lower()
        wanted_user = request.args.get("username", "")
        with self._lock:
            found = [
                copy.deepcopy(d)
                for d in self._domains.values()
                if (not wanted_domain or d["domain"] == wanted_domain)
                and (not wanted_user or d["username"] == wanted_user)
            ]
        end = None if limit is None else offset + limit
        return _json(200, found[offset:end])

    def _domain_create(self, request: Request, raw: bytes) -> Response:
        body, problem = self._domain_body(raw, "POST", DOMAINS_PATH)
        if problem is not None:
            return problem
        domain = str(body["domain"]).strip().lower().rstrip(".")
        automatic = bool(body.get("automatic_security", False))
        with self._lock:
            domain_id = self._next_domain_id
            subdomain = str(body.get("subdomain") or f"em{1000 + domain_id % 9000}").lower()
            if any(d["domain"] == domain and d["subdomain"] == subdomain for d in self._domains.values()):
                return _errors(
                    400, _error("A domain authentication for this domain and subdomain already exists.", "domain")
                )
            self._next_domain_id += 1
            record: dict[str, Any] = {
                "id": domain_id,
                "user_id": DOUBLE_USER_ID,
                "subdomain": subdomain,
                "domain": domain,
                "username": str(body.get("username") or "espmail"),
                "ips": list(body.get("ips") or []),
                "custom_spf": bool(body.get("custom_spf", False)),
                "default": bool(body.get("default", False)),
                "legacy": False,
                "automatic_security": automatic,
                "valid": False,
                "dns": _dns_records(domain, subdomain, automatic, body.get("custom_dkim_selector")),
            }
            if record["default"]:
                for other in self._domains.values():
                    other["default"] = False
            self._domains[domain_id] = record
            return _json(201, copy.deepcopy(record))

    def _domain_get(self, request: Request, raw: bytes, domain_id: int) -> Response:
        with self._lock:
            record = self._domains.get(domain_id)
            if record is None:
                return _domain_not_found()
            return _json(200, copy.deepcopy(record))

    def _domain_patch(self, request: Request, raw: bytes, domain_id: int) -> Response:
        body, problem = self._domain_body(raw, "PATCH", f"{DOMAINS_PATH}/{{domain_id}}")
        if problem is not None:
            return problem
        with self._lock:
            record = self._domains.get(domain_id)
            if record is None:
                return _domain_not_found()
            if body.get("default"):
                for other in self._domains.values():
                    other["default"] = False
            for key in ("default", "custom_spf"):
                if key in body:
                    record[key] = bool(body[key])
            return _json(200, copy.deepcopy(record))

    def _domain_delete(self, request: Request, raw: bytes, domain_id: int) -> Response:
        with self._lock:
            if self._domains.pop(domain_id, None) is None:
                return _domain_not_found()
            self._validate_calls.pop(domain_id, None)
        return Response(b"", status=204)

    def _domain_validate(self, request: Request, raw: bytes, domain_id: int) -> Response:
        with self._lock:
            record = self._domains.get(domain_id)
            if record is None:
                return _domain_not_found()
            calls = self._validate_calls.get(domain_id, 0) + 1
            self._validate_calls[domain_id] = calls
            passes = self._passes_after is not None and calls >= self._passes_after
            results: dict[str, dict[str, Any]] = {}
            for key, dns_key in _VALIDATION_KEYS[record["automatic_security"]]:
                entry = record["dns"][dns_key]
                entry["valid"] = passes
                results[key] = {"valid": passes, "reason": None if passes else _reason(entry)}
            record["valid"] = passes
            return _json(200, {"id": domain_id, "valid": passes, "validation_results": results})


_VALIDATION_KEYS: Final = {
    True: (("mail_cname", "mail_cname"), ("dkim1", "dkim1"), ("dkim2", "dkim2")),
    False: (("mail_cname", "mail_server"), ("dkim1", "dkim"), ("spf", "subdomain_spf")),
}


def _domain_not_found() -> Response:
    return _errors(404, _error("authenticated domain not found"))


def _reason(entry: Mapping[str, Any]) -> str:
    if entry["type"] == "mx":
        return f'Expected your MX record to be "{entry["data"]}" but found no MX record for "{entry["host"]}".'
    return f'Expected {entry["type"].upper()} for "{entry["host"]}" to match "{entry["data"]}".'


def _record(kind: str, host: str, data: str) -> dict[str, Any]:
    return {"valid": False, "type": kind, "host": host, "data": data}


def _dns_records(domain: str, subdomain: str, automatic: bool, selector: object) -> dict[str, Any]:
    """The records SendGrid asks for: three CNAMEs with automated security; else MX, two SPF TXTs, DKIM TXT."""
    mail_host = f"{subdomain}.{domain}"
    if automatic:
        first = str(selector) if isinstance(selector, str) and selector else "s1"
        second = f"{first}2" if first != "s1" else "s2"
        return {
            "mail_cname": _record("cname", mail_host, _SENDGRID_CNAME_TARGET),
            "dkim1": _record("cname", f"{first}._domainkey.{domain}", f"{first}.domainkey.{_SENDGRID_CNAME_TARGET}"),
            "dkim2": _record("cname", f"{second}._domainkey.{domain}", f"{second}.domainkey.{_SENDGRID_CNAME_TARGET}"),
        }
    selector_name = str(selector) if isinstance(selector, str) and selector else "m1"
    return {
        "mail_server": _record("mx", mail_host, "mx.sendgrid.net"),
        "subdomain_spf": _record("txt", mail_host, "v=spf1 include:sendgrid.net ~all"),
        "domain_spf": _record("txt", domain, f"v=spf1 include:{mail_host} -all"),
        "dkim": _record("txt", f"{selector_name}._domainkey.{domain}", _DKIM_PUBLIC_KEY),
    }
