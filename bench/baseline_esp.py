"""ESP's ``esp/esp/dbmail`` algorithm, followed literally on DynamoDB, as the benchmark's baseline.

ESP-Website (``dbmail/models.py`` and ``dbmail/cronmail.py``) does, for one message request:

- ``MessageRequest.process()``: for each recipient user, render the subject and the body (a template
  compiled per call: ``Template(text).render(context)``), then for each address of the ``sendto`` function
  ``TextOfEmail.objects.create(...)`` and ``EmailRequest.objects.create(...)``: two single-row INSERTs per
  email; finally ``self.processed = True; self.save()``.
- ``send_email_requests()``: ``count()`` the unsent ``TextOfEmail`` rows, then per batch of 1,000 select
  the unsent rows again and, one after the other, ``mailtxt.send()``: look up the email's request
  (``emailrequest_set.count()``, ``emailrequest_set.all()[0].msgreq``) for its extra headers, send one
  message through the mail backend, and ``save()`` the row with ``sent`` set; then ``time.sleep(EMAILTIMEOUT)``
  (1.5 s when unset).

Here every INSERT / ``save()`` is one ``PutItem``, every "unsent rows" selection is a ``Scan`` with a filter
(DynamoDB has no other way to find rows by a non-key attribute without an index ESP never had), the
per-email look-ups are a ``Query`` on the email-request table and a ``GetItem`` on the request, and the
mail backend is the real ``sendgrid`` client, one ``/v3/mail/send`` call per email. In the baseline's
favour: ``EMAILTIMEOUT`` is 0 (ESP's default would add 1.5 s per email), the request's template variables
are held in memory (ESP reads its ``MessageVars`` rows for every render), and recipients are resolved with
this project's own batched reads.

The bench runs the sending on a sample of the request (one sequential call per email makes 10,000 take
over ten minutes), on tables as large as the whole request's: ``prefill`` writes, untimed, the rows the
processing of the other recipients would have written (the same items, through BatchWriteItem), since
what a DynamoDB request costs on the local stack grows with the table it reads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from espmail.domain.people import User

BATCH_SIZE = 1000  # send_email_requests' batch
EMAIL_RETRIES = 2  # settings.EMAILRETRIES default: 3 tries in all

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


@dataclass(frozen=True)
class EspTables:
    message_requests: str = "EspBenchMessageRequest"
    text_of_email: str = "EspBenchTextOfEmail"
    email_request: str = "EspBenchEmailRequest"


def create_esp_tables(dynamodb_client: Any, tables: EspTables | None = None) -> EspTables:
    """ESP's three tables, keyed by their integer ids (``EmailRequest`` by its ``textofemail`` foreign key,
    the index ``emailrequest_set`` uses)."""
    tables = tables or EspTables()
    existing = set(dynamodb_client.list_tables().get("TableNames", []))
    for name, key in (
        (tables.message_requests, "id"),
        (tables.text_of_email, "id"),
        (tables.email_request, "textofemail_id"),
    ):
        if name in existing:
            continue
        dynamodb_client.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "N"}],
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    return tables


def _typed(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in item.items() if v is not None}


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def _address(name: str, email: str) -> str:
    """``ESPUser.email_sendto_address``: ``"Name" <email>``."""
    return f'"{name}" <{email}>' if name else email


def _text_of_email(
    text_id: int, name: str, email: str, request: Mapping[str, Any], subject: str, msgtext: str
) -> dict[str, Any]:
    """The ``TextOfEmail`` row of one rendered email, unsent."""
    return {
        "id": text_id,
        "send_to": _address(name, email),
        "send_from": str(request["sender"]),
        "subject": subject,
        "msgtext": msgtext,
        "created_at": request["created_at"],
        "tries": 0,
    }


def _email_request(text_id: int, username: str, request_id: int) -> dict[str, Any]:
    """The ``EmailRequest`` row linking an email to its user and request."""
    return {"textofemail_id": text_id, "target": username, "msgreq": request_id}


def sendto_self(user: User) -> list[tuple[str, str]]:
    """ESP's default ``sendto`` function: the user's own address."""
    return [(user.name, user.email)]


@dataclass
class EspRunStats:
    processed_requests: int = 0
    emails_created: int = 0
    emails_sent: int = 0
    errors: list[str] = field(default_factory=list)


class EspDbmail:
    """``MessageRequest`` -> ``TextOfEmail`` + ``EmailRequest`` -> one sequential send per email."""

    def __init__(
        self,
        dynamodb_client: Any,
        sendgrid_client: Any,
        tables: EspTables,
        *,
        email_timeout: float = 0.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = dynamodb_client
        self._sendgrid = sendgrid_client
        self.tables = tables
        self.email_timeout = email_timeout
        self._now = now
        self._recipients: dict[int, Callable[[], Iterable[User]]] = {}
        self._next_id = {tables.message_requests: 1, tables.text_of_email: 1}
        self.stats = EspRunStats()

    def _id(self, table: str) -> int:
        value = self._next_id[table]
        self._next_id[table] = value + 1
        return value

    # ------------------------------------------------------------------ creation
    def create_request(
        self,
        *,
        subject: str,
        msgtext: str,
        sender: str,
        recipients: Callable[[], Iterable[User]],
        context: Mapping[str, Any] | None = None,
        special_headers: Mapping[str, str] | None = None,
    ) -> int:
        """``MessageRequest.createRequest(...)``; ``recipients`` stands for the pickled query filter."""
        request_id = self._id(self.tables.message_requests)
        self._recipients[request_id] = recipients
        self._context = dict(context or {})
        item = {
            "id": request_id,
            "subject": subject,
            "msgtext": msgtext,
            "sender": sender,
            "special_headers": dict(special_headers or {}),
            "sendto_fn_name": "",
            "created_at": self._now().isoformat(),
            "processed": False,
        }
        self._db.put_item(TableName=self.tables.message_requests, Item=_typed(item))
        return request_id

    # ------------------------------------------------------------------ process (cronmail.process_messages)
    def process_messages(self) -> int:
        """Every unprocessed request, processed in turn."""
        requests = []
        for page in self._db.get_paginator("scan").paginate(
            TableName=self.tables.message_requests,
            FilterExpression="#processed = :false",
            ExpressionAttributeNames={"#processed": "processed"},
            ExpressionAttributeValues={":false": {"BOOL": False}},
        ):
            requests += [_plain(i) for i in page.get("Items", [])]
        for request in requests:
            self.process(request)
        return len(requests)

    def _render(self, text: str, user: User, request: Mapping[str, Any]) -> str:
        """``parseSmartText``: the template is compiled anew for every call, as ESP's ``Template(text)``."""
        return str(self._template(text).render(self._context_for(user, request)))

    def _context_for(self, user: User, request: Mapping[str, Any]) -> dict[str, Any]:
        return {
            **self._context,
            "user": {
                "first_name": user.first_name,
                "last_name": user.last_name,
                "name": user.name,
                "username": user.username,
                "email": user.email,
            },
            "request": {"public_url": f"https://esp.example.org/email/{request['id']}"},
        }

    def prefill(self, request_id: int, users: Iterable[User], *, first_id: int) -> int:
        """The rows ``process`` would write for ``users`` (ids from ``first_id``), written in batches as
        set-up, not as ESP writes them; returns how many emails. ``send_email_requests`` finds them unsent
        after the rows ``process`` writes (lower ids come first in the scan)."""
        request = self._request(request_id)
        subject = self._template(str(request["subject"]))
        body = self._template(str(request["msgtext"]))
        rows: list[dict[str, Any]] = []
        links: list[dict[str, Any]] = []
        text_id = first_id
        for user in dict.fromkeys(users):
            context = self._context_for(user, request)
            for name, email in sendto_self(user):
                rows.append(
                    _text_of_email(text_id, name, email, request, subject.render(context), body.render(context))
                )
                links.append(_email_request(text_id, user.username, request_id))
                text_id += 1
        for table, items in ((self.tables.text_of_email, rows), (self.tables.email_request, links)):
            for start in range(0, len(items), 25):
                pending = [{"PutRequest": {"Item": _typed(item)}} for item in items[start : start + 25]]
                while pending:
                    answer = self._db.batch_write_item(RequestItems={table: pending})
                    pending = answer.get("UnprocessedItems", {}).get(table, [])
        return len(rows)

    def _request(self, request_id: int) -> dict[str, Any]:
        item = self._db.get_item(
            TableName=self.tables.message_requests, Key={"id": {"N": str(request_id)}}, ConsistentRead=True
        )["Item"]
        return _plain(item)

    @staticmethod
    def _template(text: str) -> Any:
        from jinja2.sandbox import SandboxedEnvironment

        return SandboxedEnvironment(autoescape=False).from_string(text)

    def process(self, request: Mapping[str, Any]) -> None:
        request_id = int(request["id"])
        users = list(dict.fromkeys(self._recipients[request_id]()))  # .distinct()
        for user in users:
            subject = self._render(str(request["subject"]), user, request)
            msgtext = self._render(str(request["msgtext"]), user, request)
            for name, email in sendto_self(user):
                text_id = self._id(self.tables.text_of_email)
                self._db.put_item(
                    TableName=self.tables.text_of_email,
                    Item=_typed(_text_of_email(text_id, name, email, request, subject, msgtext)),
                )
                self._db.put_item(
                    TableName=self.tables.email_request,
                    Item=_typed(_email_request(text_id, user.username, request_id)),
                )
                self.stats.emails_created += 1
        self._db.put_item(TableName=self.tables.message_requests, Item=_typed({**request, "processed": True}))
        self.stats.processed_requests += 1

    # ------------------------------------------------------------------ send (cronmail.send_email_requests)
    def _unsent_filter(self) -> dict[str, Any]:
        return {
            "TableName": self.tables.text_of_email,
            "FilterExpression": "attribute_not_exists(#sent) AND #tries <= :retries",
            "ExpressionAttributeNames": {"#sent": "sent", "#tries": "tries"},
            "ExpressionAttributeValues": {":retries": {"N": str(EMAIL_RETRIES)}},
        }

    def count_unsent(self) -> int:
        """``mailtxts.count()``: a counting scan."""
        pages = self._db.get_paginator("scan").paginate(**self._unsent_filter(), Select="COUNT")
        return sum(int(page.get("Count", 0)) for page in pages)

    def unsent(self, limit: int) -> Iterator[dict[str, Any]]:
        """``mailtxts[:limit].iterator()``: a filtered scan, stopped after ``limit`` rows."""
        found = 0
        for page in self._db.get_paginator("scan").paginate(**self._unsent_filter()):
            for item in page.get("Items", []):
                yield _plain(item)
                found += 1
                if found >= limit:
                    return

    def send_email_requests(self, limit: int | None = None) -> int:
        """Sends what is unsent; with ``limit``, stops after that many emails (the bench's sample)."""
        count = self.count_unsent()
        sent = 0
        tried = 0
        for _ in range(math.ceil(count / BATCH_SIZE)):
            for mailtxt in list(self.unsent(BATCH_SIZE)):
                if limit is not None and tried >= limit:
                    break
                tried += 1
                error = self.send(mailtxt)
                if error is None:
                    sent += 1
                else:
                    self.stats.errors.append(f"{mailtxt['send_to']}: {error}")
                if self.email_timeout:
                    time.sleep(self.email_timeout)
            if limit is not None and tried >= limit:
                break
        self.stats.emails_sent += sent
        return sent

    def send(self, mailtxt: dict[str, Any]) -> str | None:
        """``TextOfEmail.send()``: the request's headers, one mail backend call, ``save()``."""
        from sendgrid.helpers.mail import Header, Mail

        text_id = {"N": str(int(mailtxt["id"]))}
        count = self._db.query(
            TableName=self.tables.email_request,
            KeyConditionExpression="textofemail_id = :id",
            ExpressionAttributeValues={":id": text_id},
            Select="COUNT",
        )["Count"]
        extra_headers: dict[str, str] = {}
        if count > 0:
            first = self._db.query(
                TableName=self.tables.email_request,
                KeyConditionExpression="textofemail_id = :id",
                ExpressionAttributeValues={":id": text_id},
                Limit=1,
            )["Items"][0]
            parent = self._db.get_item(
                TableName=self.tables.message_requests, Key={"id": first["msgreq"]}, ConsistentRead=True
            ).get("Item")
            if parent is not None:
                extra_headers = dict(_plain(parent).get("special_headers") or {})
        msgtext = str(mailtxt["msgtext"])
        is_html = "<html>" in msgtext
        message = Mail(
            from_email=str(mailtxt["send_from"]).strip(),
            to_emails=str(mailtxt["send_to"]),
            subject=str(mailtxt["subject"]),
            plain_text_content=None if is_html else msgtext,
            html_content=msgtext if is_html else None,
        )
        for name, value in extra_headers.items():
            message.add_header(Header(name, value))
        now = self._now().isoformat()
        try:
            self._sendgrid.send(message)
        except Exception as exc:  # ESP records any backend failure on the row and goes on
            mailtxt["tries"] = int(mailtxt.get("tries", 0)) + 1
            self._db.put_item(TableName=self.tables.text_of_email, Item=_typed(mailtxt))
            return repr(exc)
        mailtxt["sent"] = now
        self._db.put_item(TableName=self.tables.text_of_email, Item=_typed(mailtxt))
        return None
