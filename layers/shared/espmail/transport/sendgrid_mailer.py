"""The SendGrid v3 Web API adapter: the one transport for everything that leaves.

Built on the official ``sendgrid`` client (with a timeout: the client has none by default). Every failure
is translated into the project's own exceptions at this edge:

- ``RetryableSendError``: 429, 5xx, a timeout, a refused or dropped connection; ``retry_after`` carries
  ``Retry-After`` or ``X-RateLimit-Reset`` when SendGrid sent them;
- ``PermanentSendError``: any other 4xx (the message or the account is wrong; sending again won't help).

A 202 means SendGrid queued the message; its ``X-Message-Id`` is returned for joining provider events.
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import json
import socket
import threading
import time
import urllib.error
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from espmail.domain.mail import Attachment, MailMessage, Personalization, SendReceipt
from espmail.errors import MailTransportError, PermanentSendError, RetryableSendError
from espmail.observability import logger
from espmail.settings import DEFAULT_SENDGRID_HOST, DEFAULT_SENDGRID_TIMEOUT_SECONDS

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_REQUEST_BYTES = 30_000_000  # SendGrid refuses a request above 30 MB: decimal megabytes, the stricter reading
MAX_SUBSTITUTION_BYTES = 10_000  # per personalization, all tags and values together
# Headers SendGrid refuses in ``headers``: they are set through the structured fields instead.
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "To",
        "Cc",
        "Bcc",
        "From",
        "Subject",
        "Reply-To",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Received",
        "DKIM-Signature",
        "X-SG-ID",
        "X-SG-EID",
    )
)


def display_name(name: str) -> str:
    """A name SendGrid accepts: it refuses ``,`` and ``;`` in names, and no header may carry CR/LF."""
    cleaned = " ".join(name.replace(",", " ").replace(";", " ").split())
    return cleaned.strip('"')


def _address(address: Any) -> dict[str, str]:
    out = {"email": address.email.strip()}
    name = display_name(address.name or "")
    if name:
        out["name"] = name
    return out


def _clean_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        k: " ".join(str(v).splitlines())
        for k, v in headers.items()
        if k.lower() not in RESERVED_HEADERS and str(v).strip()
    }


def attachment_json(attachment: Attachment) -> dict[str, str]:
    out = {
        "content": base64.b64encode(attachment.content).decode("ascii"),
        "filename": attachment.filename or "attachment.bin",
        "type": attachment.content_type or "application/octet-stream",
        "disposition": attachment.disposition,
    }
    if attachment.disposition == "inline" and attachment.content_id:
        out["content_id"] = attachment.content_id
    return out


def substitutions_size(substitutions: Mapping[str, str]) -> int:
    """The size SendGrid's 10,000-byte limit on one personalization's substitutions is measured against
    here: compact UTF-8 JSON of tags and values (never less than their bytes alone)."""
    return len(json.dumps(substitutions, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def build_payload(message: MailMessage, personalizations: Sequence[Personalization]) -> dict[str, Any]:
    """SendGrid's ``/v3/mail/send`` body for one message and up to 1,000 personalizations."""
    if not personalizations:
        raise ValueError("a SendGrid request needs at least one personalization")
    if len(personalizations) > MAX_PERSONALIZATIONS:
        raise ValueError(f"{len(personalizations)} personalizations; SendGrid takes at most {MAX_PERSONALIZATIONS}")
    if sum(len(p.to) for p in personalizations) > MAX_RECIPIENTS:
        raise ValueError(f"more than {MAX_RECIPIENTS} recipients in one SendGrid request")
    out_personalizations = []
    for p in personalizations:
        entry: dict[str, Any] = {"to": [_address(a) for a in p.to]}
        if p.subject is not None:
            entry["subject"] = " ".join(p.subject.splitlines()) or " "
        headers = _clean_headers(p.headers)
        if headers:
            entry["headers"] = headers
        if p.custom_args:
            entry["custom_args"] = {k: str(v) for k, v in p.custom_args.items()}
        if p.substitutions:
            substitutions = {str(k): str(v) for k, v in p.substitutions.items()}
            if substitutions_size(substitutions) > MAX_SUBSTITUTION_BYTES:
                raise ValueError(f"substitutions over {MAX_SUBSTITUTION_BYTES} bytes in one personalization")
            entry["substitutions"] = substitutions
        out_personalizations.append(entry)
    content = []
    if message.text:
        content.append({"type": "text/plain", "value": message.text})
    if message.html:
        content.append({"type": "text/html", "value": message.html})
    if not content:
        content.append({"type": "text/plain", "value": " "})
    payload: dict[str, Any] = {
        "personalizations": out_personalizations,
        "from": _address(message.sender),
        "subject": " ".join(message.subject.splitlines()) or "(no subject)",
        "content": content,
    }
    if message.reply_to:
        if len(message.reply_to) == 1:
            payload["reply_to"] = _address(message.reply_to[0])
        else:
            payload["reply_to_list"] = [_address(a) for a in message.reply_to]
    headers = _clean_headers(message.headers)
    if headers:
        payload["headers"] = headers
    if message.attachments:
        payload["attachments"] = [attachment_json(a) for a in message.attachments]
    if message.categories:
        payload["categories"] = list(dict.fromkeys(message.categories))[:10]
    if message.custom_args:
        payload["custom_args"] = {k: str(v) for k, v in message.custom_args.items()}
    return payload


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    try:
        value = headers.get(name)
    except AttributeError:
        return None
    return str(value) if value is not None else None


def retry_after_seconds(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or ``X-RateLimit-Reset`` (epoch)."""
    now = time.time() if now is None else now
    retry_after = _header(headers, "Retry-After")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(retry_after)
            except (TypeError, ValueError, IndexError):
                when = None
            if when is not None:
                return max(0.0, when.timestamp() - now)
    reset = _header(headers, "X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            return None
    return None


def _error_text(body: Any) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    text = str(body or "")
    try:
        errors = json.loads(text).get("errors", [])
        messages = [str(e.get("message", "")) + (f" ({e['field']})" if e.get("field") else "") for e in errors]
        if messages:
            return "; ".join(messages)
    except (ValueError, AttributeError):
        pass
    return text[:500]


def translate_error(exc: BaseException, what: str = "SendGrid request") -> MailTransportError:
    """The project's exception for anything the sendgrid client raised."""
    from python_http_client.exceptions import HTTPError

    if isinstance(exc, HTTPError):
        status = int(getattr(exc, "status_code", 0) or 0)
        detail = _error_text(getattr(exc, "body", b""))
        message = f"{what} failed: HTTP {status}: {detail}"
        body = detail
        if status == 429 or status >= 500:
            wait = retry_after_seconds(getattr(exc, "headers", None))
            return RetryableSendError(message, status=status, body=body, retry_after=wait)
        return PermanentSendError(message, status=status, body=body)
    if isinstance(exc, socket.timeout | TimeoutError):
        return RetryableSendError(f"{what} timed out")
    if isinstance(exc, urllib.error.URLError):
        return RetryableSendError(f"{what} could not connect: {exc.reason}")
    if isinstance(exc, http.client.HTTPException | ConnectionError | OSError):
        return RetryableSendError(f"{what} lost its connection: {exc!r}")
    return RetryableSendError(f"{what} failed unexpectedly: {exc!r}")


def _receipt(response: Any) -> SendReceipt:
    """The receipt of a mail/send answer the client did not raise for (a 200 or 202 is accepted)."""
    message_id = _header(response.headers, "X-Message-Id") or ""
    if response.status_code not in (200, 202):
        raise RetryableSendError(f"SendGrid mail/send answered HTTP {response.status_code}")
    return SendReceipt(message_id=message_id)


class SendGridMailer:
    """Sends through ``/v3/mail/send``. Thread-safe: each call builds its own HTTP request."""

    def __init__(
        self,
        api_key: str,
        *,
        host: str = DEFAULT_SENDGRID_HOST,
        timeout: float = DEFAULT_SENDGRID_TIMEOUT_SECONDS,
        client: Any | None = None,
    ) -> None:
        if client is None:
            from sendgrid import SendGridAPIClient

            client = SendGridAPIClient(api_key=api_key, host=host)
        client.client.timeout = timeout
        self._client = client

    @property
    def api(self) -> Any:
        """The underlying ``python_http_client`` for other v3 endpoints (domain authentication)."""
        return self._client.client

    def send(self, message: MailMessage, personalizations: Sequence[Personalization]) -> SendReceipt:
        payload = build_payload(message, personalizations)
        return self.send_payload(payload)

    def send_payload(self, payload: dict[str, Any]) -> SendReceipt:
        try:
            response = self._client.send(payload)
        except Exception as exc:
            raise translate_error(exc, "SendGrid mail/send") from exc
        return _receipt(response)

    def send_json(self, body: bytes) -> SendReceipt:
        """``send_payload`` for a body serialised already (UTF-8 JSON), sent as it is.

        The client's ``post`` serialises its payload and then formats the whole of it into a debug
        message whether or not debug logging is on: for a request carrying a large attachment, three
        more copies of it. Here the same endpoint, headers, timeout and error translation, one copy.
        """
        import urllib.request

        from python_http_client.client import Response

        endpoint = self._client.client.mail.send
        request = urllib.request.Request(  # noqa: S310 - the configured SendGrid host, as the client's own post
            endpoint._build_url(None),
            data=body,
            headers={**endpoint.request_headers, "Content-Type": "application/json"},
            method="POST",
        )
        try:
            response = Response(
                endpoint._make_request(urllib.request.build_opener(), request, timeout=endpoint.timeout)
            )
        except Exception as exc:
            raise translate_error(exc, "SendGrid mail/send") from exc
        return _receipt(response)


class RotatingKeyMailer:
    """A ``SendGridMailer`` whose API key follows the secret: on a 401 the key is read again (``read_key(True)``)
    and, if it changed (rotated), the mailer is built anew with it and the call made once more. An unchanged
    key keeps the 401 (the key itself is bad). Thread-safe; the first caller to see a 401 rebuilds.

    ``build`` makes the mailer for a key (and may open a connection pool for it: ``close`` is then given
    every mailer built, when the owner is done)."""

    def __init__(
        self,
        read_key: Callable[[bool], str],
        build: Callable[[str], SendGridMailer],
    ) -> None:
        self._read_key = read_key
        self._build = build
        self._lock = threading.Lock()
        self._key = read_key(False)
        self._mailer = build(self._key)

    @property
    def api(self) -> Any:
        return self._mailer.api

    @property
    def key(self) -> str:
        return self._key

    def send(self, message: MailMessage, personalizations: Sequence[Personalization]) -> SendReceipt:
        return self._with_current_key(lambda mailer: mailer.send(message, personalizations))

    def send_payload(self, payload: dict[str, Any]) -> SendReceipt:
        return self._with_current_key(lambda mailer: mailer.send_payload(payload))

    def send_json(self, body: bytes) -> SendReceipt:
        return self._with_current_key(lambda mailer: mailer.send_json(body))

    def _with_current_key(self, call: Callable[[SendGridMailer], SendReceipt]) -> SendReceipt:
        with self._lock:
            mailer, key = self._mailer, self._key
        try:
            return call(mailer)
        except PermanentSendError as exc:
            if exc.status != 401:
                raise
            with self._lock:
                if self._key == key:  # nobody has read the secret again since this call began
                    fresh = self._read_key(True)
                    if fresh == key:
                        raise
                    self._key, self._mailer = fresh, self._build(fresh)
                    logger().warning("SendGrid refused the API key; the secret held a new one, now in use")
                mailer = self._mailer
        return call(mailer)
