"""What people (the ``espmail`` CLI, the website) do with message requests: create one (validated, with
every problem named at once), look at them, cancel one, retry its failed rows, preview how it renders.

Build it with ``espmail.outgoing.wiring.request_service(site, tables)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from espmail.domain.mail import Address
from espmail.domain.message_requests import (
    DEFAULT_PRIORITY,
    BodyFormat,
    InvalidAddress,
    MessageRequest,
    RequestStatus,
    SendTo,
    looks_like_html,
    new_request_id,
    parse_address,
    parse_recipient_spec,
    parse_sendto,
    request_problems,
)
from espmail.domain.outbox import OutboxRow
from espmail.domain.recipients import Directory
from espmail.errors import ConditionFailed, InvalidInput
from espmail.outgoing.recipients import Position, UnknownGroup, addresses_of, pages, plan_parts
from espmail.outgoing.render import MessageTemplates, TemplateProblem, template_context
from espmail.settings import SiteSettings
from espmail.storage.message_requests import MessageRequestRepository
from espmail.storage.outbox import OutboxRepository
from espmail.storage.users import UserRepository

CANCELLABLE = (RequestStatus.PENDING, RequestStatus.EXPANDING, RequestStatus.EXPANDED)
RETRYABLE = (RequestStatus.SENT_WITH_FAILURES, RequestStatus.FAILED)


@dataclass(frozen=True, slots=True)
class Preview:
    """One recipient's copy, rendered exactly as the expander would, without writing anything."""

    to: Address
    username: str
    kind: SendTo
    subject: str
    text: str
    html: str | None


class MessageRequestService:
    def __init__(
        self,
        site: SiteSettings,
        requests: MessageRequestRepository,
        outbox: OutboxRepository,
        directory: Directory,
        users: UserRepository,
        *,
        retention: timedelta = timedelta(days=90),
    ) -> None:
        self._site = site
        self._requests = requests
        self._outbox = outbox
        self._directory = directory
        self._users = users
        self._retention = retention

    def create_request(
        self,
        *,
        subject: str,
        body: str,
        sender: str | Address,
        recipients: Iterable[str] | str,
        creator: str,
        reply_to: str | Address | None = None,
        headers: Mapping[str, str] | None = None,
        sendto: str | Iterable[str | SendTo] = "self",
        template_vars: Mapping[str, Any] | None = None,
        not_before: datetime | None = None,
        priority: int = DEFAULT_PRIORITY,
        public: bool = False,
        body_format: BodyFormat | str | None = None,
        now: datetime | None = None,
    ) -> MessageRequest:
        """Validates and stores a new pending request; raises ``InvalidInput`` listing every problem
        (a From off the allowed domains, a template that does not compile, an unknown group...)."""
        now = now or datetime.now(UTC)
        problems: list[str] = []

        def read(what: str, parse: Any, value: Any) -> Any:
            try:
                return parse(value)
            except InvalidAddress as exc:  # it does not know which field it was given for
                problems.append(f"{what}: {exc}")
            except InvalidInput as exc:  # recipient specs and sendto name what they could not read
                problems.append(str(exc))
            return None

        parsed_sender = read("From", parse_address, sender)
        parsed_reply_to = read("Reply-To", parse_address, reply_to) if reply_to else None
        spec = read("recipients", parse_recipient_spec, recipients)
        parsed_sendto = read("sendto", parse_sendto, sendto)
        if body_format is None:
            fmt = BodyFormat.HTML if looks_like_html(body) else BodyFormat.TEXT
        elif str(body_format) in BodyFormat._value2member_map_:
            fmt = BodyFormat(str(body_format))
        else:
            problems.append(f"body format {body_format!r} is not text or html")
            fmt = BodyFormat.TEXT
        if parsed_sender is None or spec is None or parsed_sendto is None:
            raise InvalidInput("; ".join(problems))
        when = not_before or now
        if when.tzinfo is None:
            problems.append("not_before must carry a time zone (e.g. 2026-05-01T18:00:00+00:00)")
            when = when.replace(tzinfo=UTC)
        request = MessageRequest(
            request_id=new_request_id(now.timestamp()),
            subject=subject,
            body=body,
            body_format=fmt,
            sender=parsed_sender,
            reply_to=parsed_reply_to,
            headers=MappingProxyType(dict(headers or {})),
            recipients=spec,
            sendto=parsed_sendto,
            vars=MappingProxyType(dict(template_vars or {})),
            creator=creator,
            created_at=now,
            not_before=when,
            priority=priority,
            public=public,
        )
        problems += request_problems(request, self._site.allowed_sender_domains)
        try:
            MessageTemplates.of(request)
        except TemplateProblem as exc:
            problems.append(str(exc))
        try:
            plan_parts(request.recipients, self._directory)
        except UnknownGroup as exc:
            problems.append(str(exc))
        if creator.strip() and self._users.get(creator) is None:
            problems.append(f"creator {creator!r} is not a user (the failure notice goes to the creator)")
        if problems:
            raise InvalidInput("; ".join(problems))
        self._requests.add(request)
        return request

    def get_request(self, request_id: str) -> MessageRequest:
        return self._requests.require(request_id)

    def list_requests(self, limit: int = 50, status: RequestStatus | None = None) -> list[MessageRequest]:
        return self._requests.recent(limit, status)

    def rows(self, request_id: str) -> list[OutboxRow]:
        """Every outbox row of a request (recipients and the failure notice)."""
        return list(self._outbox.rows_of(request_id))

    def cancel(self, request_id: str, now: datetime | None = None) -> MessageRequest:
        """Stops a request that is not final yet: nothing more is expanded, queued rows are cancelled, and
        a sender that already claimed a row cancels it instead of sending it."""
        now = now or datetime.now(UTC)
        request = self._requests.require(request_id)
        if request.is_final:
            raise InvalidInput(f"message request {request_id} is already {request.status.value}; nothing to cancel")
        if not self._requests.end(request_id, RequestStatus.CANCELLED, "cancelled", now, expect=CANCELLABLE):
            current = self._requests.require(request_id)
            raise InvalidInput(f"message request {request_id} became {current.status.value}; nothing to cancel")
        self._outbox.cancel_queued(request_id, "request cancelled", now + self._retention)
        return self._requests.require(request_id)

    def retry_failed(self, request_id: str, now: datetime | None = None) -> int:
        """Queues the failed rows of a finished request again (fresh tries); returns how many."""
        now = now or datetime.now(UTC)
        request = self._requests.require(request_id)
        if request.status not in RETRYABLE or request.expanded_at is None:
            raise InvalidInput(
                f"message request {request_id} is {request.status.value}; only an expanded request that finished "
                "with failed rows can be retried"
            )
        requeued = self._outbox.requeue_failed(request_id, now)
        if requeued == 0:
            raise InvalidInput(f"message request {request_id} has no failed rows")
        try:
            self._requests.reopen(request_id, now, check_at=now)
        except ConditionFailed as exc:
            raise InvalidInput(str(exc)) from exc
        return requeued

    def preview(self, request_id: str, limit: int = 5) -> list[Preview]:
        return self.render_preview(self._requests.require(request_id), limit)

    def render_preview(self, request: MessageRequest, limit: int = 5) -> list[Preview]:
        """The first ``limit`` copies of a request (stored or a draft), rendered; nothing is written."""
        templates = MessageTemplates.of(request)
        parts = plan_parts(request.recipients, self._directory)
        previews: list[Preview] = []
        seen: set[str] = set()
        for page in pages(parts, self._directory, Position(), max(1, limit)):
            for user in page.users:
                recipients, _, _ = addresses_of(user, request.sendto)
                for recipient in recipients:
                    if recipient.address_key in seen:
                        continue
                    seen.add(recipient.address_key)
                    context = template_context(
                        request=request,
                        site=self._site,
                        user=user,
                        recipient_email=recipient.email,
                        recipient_name=recipient.name,
                        kind=recipient.kind,
                    )
                    rendered = templates.render(context)
                    previews.append(
                        Preview(
                            to=Address(recipient.email, recipient.name),
                            username=user.username,
                            kind=recipient.kind,
                            subject=rendered.subject,
                            text=rendered.text,
                            html=rendered.html,
                        )
                    )
                    if len(previews) >= limit:
                        return previews
            if page.done:
                break
        return previews
