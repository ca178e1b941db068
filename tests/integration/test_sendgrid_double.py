"""The SendGrid double over real HTTP, driven by the real ``sendgrid`` client."""

from __future__ import annotations

import base64
import copy
import json
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError

import pytest
from jsonschema import Draft202012Validator
from python_http_client.exceptions import (
    BadRequestsError,
    InternalServerError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
)
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Category, CustomArg, Header, Mail

from embedded.sendgrid_double import (
    DEFAULT_CONTRACTS_DIR,
    MAX_REQUEST_BYTES,
    AcceptedMail,
    Disconnect,
    SendGridDouble,
    Status,
    Timeout,
    render_eml,
)

KEY = "SG.test-double-key"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\nfake pdf bytes\x00\x01\x02"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR fake png"


@pytest.fixture
def double(tmp_path: Path) -> Iterator[SendGridDouble]:
    with SendGridDouble(api_key=KEY, eml_dir=tmp_path / "eml") as running:
        yield running


def client_for(double: SendGridDouble, *, key: str = KEY, timeout: float = 5.0) -> SendGridAPIClient:
    client = SendGridAPIClient(api_key=key, host=double.host)
    client.client.timeout = timeout
    return client


@pytest.fixture
def sg(double: SendGridDouble) -> SendGridAPIClient:
    return client_for(double)


def body(**overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "personalizations": [{"to": [{"email": "ada@example.org", "name": "Ada"}]}],
        "from": {"email": "news@esp.example.org", "name": "ESP"},
        "subject": "Hello",
        "content": [{"type": "text/plain", "value": "Hi"}, {"type": "text/html", "value": "<p>Hi</p>"}],
    }
    message.update(overrides)
    return message


def send(sg: SendGridAPIClient, message: dict[str, Any]) -> Any:
    return sg.client.mail.send.post(request_body=message)


def errors_of(exc: pytest.ExceptionInfo[Any]) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = json.loads(exc.value.body)["errors"]
    for error in errors:
        assert set(error) == {"message", "field", "help"}
    return errors


def fields_of(exc: pytest.ExceptionInfo[Any]) -> set[str | None]:
    return {e["field"] for e in errors_of(exc)}


# ---------------------------------------------------------------------------------------------- mail send
def test_a_conforming_message_is_accepted_with_a_message_id_and_kept(
    double: SendGridDouble, sg: SendGridAPIClient
) -> None:
    # Given a message built with the client's own helper, message-level custom_args included
    mail = Mail(
        from_email="news@esp.example.org",
        to_emails="ada@example.org",
        subject="Hello",
        plain_text_content="Hi",
        html_content="<p>Hi</p>",
    )
    mail.custom_arg = CustomArg("request_id", "r-1")
    mail.category = Category("digest")
    mail.header = Header("List-Unsubscribe", "<https://esp.example.org/u/1>")

    # When it is sent
    response = sg.send(mail)

    # Then SendGrid's answer comes back and the double keeps what it accepted
    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert len(message_id) == 22
    [kept] = double.accepted
    assert isinstance(kept, AcceptedMail)
    assert kept.message_id == message_id
    assert kept.body == mail.get()
    assert kept.received_at.tzinfo is not None


def test_concurrent_sends_are_all_kept_with_unique_ids(double: SendGridDouble, sg: SendGridAPIClient) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda i: send(sg, body(subject=f"n{i}")), range(24)))

    ids = {r.headers["X-Message-Id"] for r in responses}
    assert len(ids) == 24
    assert all(len(i) == 22 for i in ids)
    assert {m.message_id for m in double.accepted} == ids
    assert Counter((r.method, r.path, r.status) for r in double.requests_log) == {("POST", "/v3/mail/send", 202): 24}


@pytest.mark.parametrize(
    ("breakage", "field"),
    [
        pytest.param(lambda b: b.pop("personalizations"), "personalizations", id="personalizations-missing"),
        pytest.param(lambda b: b["content"][0].pop("value"), "content.0.value", id="content-without-value"),
        pytest.param(lambda b: b["content"][0].update(value=""), "content.0.value", id="content-empty"),
        pytest.param(lambda b: b.pop("from"), "from", id="from-missing"),
        pytest.param(
            lambda b: b["personalizations"][0]["to"][0].update(email="not-an-address"),
            "personalizations.0.to.0.email",
            id="bad-address",
        ),
        pytest.param(lambda b: b.update(custom_args="text"), "custom_args", id="custom-args-string"),
        pytest.param(
            lambda b: b["personalizations"][0].update(custom_args={"n": 1}),
            "personalizations.0.custom_args.n",
            id="custom-arg-not-string",
        ),
        pytest.param(lambda b: b.update(attachments=[{"content": "eA=="}]), "attachments.0.filename", id="no-filename"),
        pytest.param(
            lambda b: b.update(attachments=[{"content": "eA==", "filename": "a", "disposition": "x"}]),
            "attachments.0.disposition",
            id="bad-disposition",
        ),
    ],
)
def test_a_body_breaking_the_schema_is_refused_naming_the_field(
    double: SendGridDouble, sg: SendGridAPIClient, breakage: Callable[[dict[str, Any]], object], field: str
) -> None:
    message = body()
    breakage(message)

    with pytest.raises(BadRequestsError) as exc:
        send(sg, message)

    assert exc.value.status_code == 400
    assert field in fields_of(exc)
    assert double.accepted == []


def many(n: int) -> list[dict[str, str]]:
    return [{"email": f"r{i}@example.org"} for i in range(n)]


@pytest.mark.parametrize(
    ("breakage", "field"),
    [
        pytest.param(
            lambda b: b.update(personalizations=[{"to": [a]} for a in many(1001)]),
            "personalizations",
            id="1001-personalizations",
        ),
        pytest.param(lambda b: b.update(personalizations=[]), "personalizations", id="no-personalization"),
        pytest.param(
            lambda b: b.update(personalizations=[{"to": many(600), "bcc": many(1001)[600:]}]),
            "personalizations",
            id="1001-recipients",
        ),
        pytest.param(lambda b: b.update(categories=[f"c{i}" for i in range(11)]), "categories", id="11-categories"),
        pytest.param(
            lambda b: b["personalizations"][0].update(custom_args={"k": "v" * 10_000}),
            "personalizations.0.custom_args",
            id="custom-args-10000-bytes",
        ),
        pytest.param(
            lambda b: b.update(custom_args={f"k{i}": "v" * 100 for i in range(100)}),
            "custom_args",
            id="message-custom-args-10000-bytes",
        ),
        pytest.param(lambda b: b.update(headers={"Reply-To": "x@example.org"}), "headers", id="reserved-header"),
        pytest.param(
            lambda b: b["personalizations"][0].update(headers={"content-type": "text/plain"}),
            "personalizations.0.headers",
            id="reserved-header-any-case",
        ),
        pytest.param(lambda b: b.update(headers={"X-A": "1\r\nBcc: x@y.z"}), "headers", id="header-crlf"),
        pytest.param(
            lambda b: b["personalizations"][0].update(cc=[{"email": "ADA@example.org"}]),
            "personalizations.0.cc",
            id="address-twice",
        ),
        pytest.param(
            lambda b: b["personalizations"][0]["to"][0].update(name="Lovelace, Ada"),
            "personalizations.0.to.0.name",
            id="comma-in-name",
        ),
        pytest.param(lambda b: b.pop("content"), "content", id="no-content-no-template"),
        pytest.param(lambda b: b.pop("subject"), "subject", id="no-subject"),
        pytest.param(lambda b: b["content"].reverse(), "content", id="html-before-plain"),
        pytest.param(
            lambda b: b.update(reply_to={"email": "a@example.org"}, reply_to_list=[{"email": "b@example.org"}]),
            "reply_to_list",
            id="reply-to-and-list",
        ),
        pytest.param(
            lambda b: b.update(attachments=[{"content": "not base64!", "filename": "a.txt"}]),
            "attachments.0.content",
            id="attachment-not-base64",
        ),
        pytest.param(
            lambda b: b.update(attachments=[{"content": "eA==", "filename": "a.png", "disposition": "inline"}]),
            "attachments.0.content_id",
            id="inline-without-content-id",
        ),
    ],
)
def test_sendgrid_limits_beyond_the_schema_are_enforced(
    double: SendGridDouble, sg: SendGridAPIClient, breakage: Callable[[dict[str, Any]], object], field: str
) -> None:
    message = body()
    breakage(message)

    with pytest.raises(BadRequestsError) as exc:
        send(sg, message)

    assert field in fields_of(exc)
    assert double.accepted == []


def test_the_limits_themselves_are_accepted() -> None:
    message = body(
        personalizations=[{"to": [a], "subject": "s"} for a in many(1000)],
        categories=[f"c{i}" for i in range(10)],
        custom_args={"k": "v" * 9_000},
        headers={"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        template_id="d-123",
    )
    message.pop("content")
    message.pop("subject")

    with SendGridDouble(api_key=KEY) as no_eml:  # a thousand .eml files would only cost time here
        assert send(client_for(no_eml), message).status_code == 202


def test_a_body_of_the_size_limit_is_refused_with_413(tmp_path: Path) -> None:
    assert MAX_REQUEST_BYTES == 30_000_000
    with SendGridDouble(api_key=KEY, max_body_bytes=4_000) as small:
        sg = client_for(small)
        attachment = {"content": base64.b64encode(b"x" * 3_000).decode(), "filename": "x.bin"}

        with pytest.raises(PayloadTooLargeError) as exc:
            send(sg, body(attachments=[attachment]))

        assert errors_of(exc) == [{"message": "content too large", "field": None, "help": None}]
        assert small.accepted == []


def test_a_body_that_is_not_json_is_refused(double: SendGridDouble) -> None:
    request = urllib.request.Request(
        f"{double.host}/v3/mail/send",
        data=b"{not json",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(HTTPError) as exc:
        urllib.request.urlopen(request, timeout=5)
    assert exc.value.code == 400


def test_a_wrong_key_is_refused_with_401(double: SendGridDouble) -> None:
    with pytest.raises(UnauthorizedError) as exc:
        send(client_for(double, key="SG.wrong"), body())

    [error] = errors_of(exc)
    assert error["field"] is None
    assert double.accepted == []


def test_a_missing_key_is_refused_with_401(double: SendGridDouble) -> None:
    request = urllib.request.Request(f"{double.host}/v3/mail/send", data=json.dumps(body()).encode(), method="POST")
    with pytest.raises(HTTPError) as exc:
        urllib.request.urlopen(request, timeout=5)
    assert exc.value.code == 401
    assert json.loads(exc.value.read())["errors"][0]["message"] == "authorization required"


def test_unknown_paths_and_methods_answer_in_the_error_shape(sg: SendGridAPIClient) -> None:
    with pytest.raises(NotFoundError) as missing:
        sg.client.mail.batch.get()
    with pytest.raises(MethodNotAllowedError) as wrong_method:
        sg.client.mail.send.get()

    assert errors_of(missing)[0]["message"] == "not found"
    assert errors_of(wrong_method)[0]["message"] == "method not allowed"


# ---------------------------------------------------------------------------------------------- faults
def test_429_carries_retry_after_and_rate_limit_reset(double: SendGridDouble, sg: SendGridAPIClient) -> None:
    double.inject(Status(429, retry_after=2))

    before = int(time.time())
    with pytest.raises(TooManyRequestsError) as exc:
        send(sg, body())

    assert exc.value.headers["Retry-After"] == "2"
    assert before + 2 <= int(exc.value.headers["X-RateLimit-Reset"]) <= int(time.time()) + 2
    assert exc.value.headers["X-RateLimit-Remaining"] == "0"
    assert errors_of(exc)[0]["message"] == "too many requests"
    assert send(sg, body()).status_code == 202  # the fault is used up


def test_429_without_retry_after_still_says_when_the_limit_resets(
    double: SendGridDouble, sg: SendGridAPIClient
) -> None:
    double.inject(Status(429))

    with pytest.raises(TooManyRequestsError) as exc:
        send(sg, body())

    assert exc.value.headers["Retry-After"] is None
    assert int(exc.value.headers["X-RateLimit-Reset"]) >= int(time.time())


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, InternalServerError), (503, ServiceUnavailableError), (400, BadRequestsError)],
)
def test_injected_statuses_reach_the_client(
    double: SendGridDouble, sg: SendGridAPIClient, status: int, error: type[Exception]
) -> None:
    double.inject(Status(status))

    with pytest.raises(error) as exc:
        send(sg, body())

    assert exc.value.status_code == status  # type: ignore[attr-defined]
    assert errors_of(exc)[0]["message"]
    assert double.accepted == []


def test_faults_are_consumed_in_order_and_by_count(double: SendGridDouble, sg: SendGridAPIClient) -> None:
    double.inject(Status(500, count=2))
    double.inject(Status(503))

    outcomes = []
    for _ in range(4):
        try:
            outcomes.append(send(sg, body()).status_code)
        except (InternalServerError, ServiceUnavailableError) as exc:
            outcomes.append(exc.status_code)

    assert outcomes == [500, 500, 503, 202]
    assert [r.status for r in double.requests_log] == [500, 500, 503, 202]


def test_a_timeout_leaves_the_client_waiting_past_its_timeout(double: SendGridDouble) -> None:
    sg = client_for(double, timeout=0.3)
    double.inject(Timeout(0.8))

    started = time.monotonic()
    with pytest.raises((TimeoutError, URLError)) as exc:
        send(sg, body())

    assert time.monotonic() - started < 0.8
    if isinstance(exc.value, URLError):
        assert isinstance(exc.value.reason, TimeoutError)
    time.sleep(0.7)
    assert double.accepted == []
    assert [r.status for r in double.requests_log] == [504]


def test_a_timeout_that_delivers_keeps_the_message_the_client_never_heard_of(double: SendGridDouble) -> None:
    sg = client_for(double, timeout=0.3)
    double.inject(Timeout(0.6, deliver=True))

    with pytest.raises((TimeoutError, URLError)):
        send(sg, body())

    deadline = time.monotonic() + 3
    while not double.accepted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(double.accepted) == 1


def test_a_disconnect_closes_the_connection_without_an_answer(double: SendGridDouble, sg: SendGridAPIClient) -> None:
    double.inject(Disconnect())

    with pytest.raises(ConnectionError):  # http.client.RemoteDisconnected
        send(sg, body())

    assert double.accepted == []
    assert [r.status for r in double.requests_log] == [None]
    assert send(sg, body()).status_code == 202


def test_refused_connections_then_accepted_again_on_the_same_port(
    double: SendGridDouble, sg: SendGridAPIClient
) -> None:
    host = double.host
    double.refuse_connections()

    with pytest.raises(URLError) as exc:
        send(sg, body())

    assert isinstance(exc.value.reason, ConnectionRefusedError)
    double.accept_connections()
    assert double.host == host
    assert send(sg, body()).status_code == 202


def test_one_failing_recipient_fails_only_its_own_row(double: SendGridDouble, sg: SendGridAPIClient) -> None:
    double.fail_recipient("Bad@Example.org")
    rows = ["ok1@example.org", "bad@example.org", "ok2@example.org"]

    outcomes: dict[str, Any] = {}
    for address in rows:
        try:
            outcomes[address] = send(sg, body(personalizations=[{"to": [{"email": address}]}])).status_code
        except BadRequestsError as exc:
            outcomes[address] = json.loads(exc.body)["errors"]

    assert outcomes["ok1@example.org"] == outcomes["ok2@example.org"] == 202
    assert outcomes["bad@example.org"] == [
        {"message": "Does not contain a valid address.", "field": "personalizations.0.to.0.email", "help": None}
    ]
    assert len(double.accepted) == 2


def test_a_recipient_fault_can_be_transient(double: SendGridDouble, sg: SendGridAPIClient) -> None:
    double.fail_recipient("slow@example.org", Status(503, count=1))
    message = body(personalizations=[{"to": [{"email": "a@example.org"}], "cc": [{"email": "slow@example.org"}]}])

    with pytest.raises(ServiceUnavailableError):
        send(sg, message)
    assert send(sg, message).status_code == 202


def test_latency_delays_every_answer(double: SendGridDouble, sg: SendGridAPIClient) -> None:
    double.set_latency(0.2)

    started = time.monotonic()
    send(sg, body())

    assert time.monotonic() - started >= 0.2
    assert double.requests_log[0].duration >= 0.2


def test_faults_can_target_any_path(double: SendGridDouble, sg: SendGridAPIClient) -> None:
    double.inject(Status(503), path="/v3/whitelabel/domains")
    double.inject(Status(500), path=None)

    with pytest.raises(InternalServerError):
        send(sg, body())  # the first armed fault that matches the path strikes
    with pytest.raises(ServiceUnavailableError):
        sg.client.whitelabel.domains.get()
    assert send(sg, body()).status_code == 202


# ---------------------------------------------------------------------------------------------- .eml
def rich_body() -> dict[str, Any]:
    return body(
        personalizations=[
            {
                "to": [{"email": "ada@example.org", "name": "Ada Lovelace"}],
                "cc": [{"email": "charles@example.org"}],
                "subject": "For -name-",
                "headers": {"X-Row": "1"},
                "substitutions": {"-name-": "Ada"},
            },
            {"to": [{"email": "grace@example.org"}]},
        ],
        reply_to={"email": "ada.bot@esp.example.org", "name": "Ada's alias"},
        subject="Global subject",
        headers={"List-Unsubscribe": "<https://esp.example.org/u>", "X-Row": "message"},
        content=[
            {"type": "text/plain", "value": "Hello -name-"},
            {"type": "text/html", "value": '<p>Hello -name- <img src="cid:logo"></p>'},
        ],
        attachments=[
            {"content": base64.b64encode(PDF).decode(), "filename": "report.pdf", "type": "application/pdf"},
            {
                "content": base64.b64encode(PNG).decode(),
                "filename": "logo.png",
                "type": "image/png",
                "disposition": "inline",
                "content_id": "logo",
            },
        ],
    )


def test_each_personalization_is_written_as_an_eml_a_person_can_open(
    double: SendGridDouble, sg: SendGridAPIClient, tmp_path: Path
) -> None:
    message_id = send(sg, rich_body()).headers["X-Message-Id"]

    eml_dir = tmp_path / "eml"
    assert sorted(p.name for p in eml_dir.iterdir()) == [f"{message_id}-0.eml", f"{message_id}-1.eml"]
    assert double.accepted[0].eml_paths == (eml_dir / f"{message_id}-0.eml", eml_dir / f"{message_id}-1.eml")
    first = message_from_bytes((eml_dir / f"{message_id}-0.eml").read_bytes(), policy=policy.default)
    second = message_from_bytes((eml_dir / f"{message_id}-1.eml").read_bytes(), policy=policy.default)
    assert isinstance(first, EmailMessage)
    assert isinstance(second, EmailMessage)

    assert first["From"] == "ESP <news@esp.example.org>"
    assert first["To"] == "Ada Lovelace <ada@example.org>"
    assert first["Cc"] == "charles@example.org"
    assert first["Reply-To"] == "Ada's alias <ada.bot@esp.example.org>"
    assert first["Subject"] == "For Ada"
    assert first["X-Row"] == "1"
    assert first["List-Unsubscribe"] == "<https://esp.example.org/u>"
    assert first["X-Message-Id"] == message_id
    assert second["Subject"] == "Global subject"
    assert second["To"] == "grace@example.org"

    text = first.get_body(preferencelist=("plain",))
    html = first.get_body(preferencelist=("html",))
    assert text is not None
    assert text.get_content().strip() == "Hello Ada"
    assert html is not None
    assert 'src="cid:logo"' in html.get_content()
    parts = {p.get_filename(): p for p in first.walk() if p.get_filename()}
    assert parts["report.pdf"].get_payload(decode=True) == PDF
    assert parts["report.pdf"].get_content_disposition() == "attachment"
    assert parts["logo.png"].get_payload(decode=True) == PNG
    assert parts["logo.png"].get_content_disposition() == "inline"
    assert parts["logo.png"]["Content-ID"] == "<logo>"


def test_a_request_that_sets_message_id_and_date_still_gets_its_eml_with_them(
    double: SendGridDouble, sg: SendGridAPIClient
) -> None:
    message_id = send(
        sg,
        body(headers={"Message-ID": "<own@esp.example.org>", "Date": "Fri, 01 May 2026 18:00:00 +0000"}),
    ).headers["X-Message-Id"]

    [kept] = double.accepted
    assert [p.name for p in kept.eml_paths] == [f"{message_id}-0.eml"]
    written = message_from_bytes(kept.eml_paths[0].read_bytes(), policy=policy.default)
    assert written.get_all("Message-ID") == ["<own@esp.example.org>"]
    assert written.get_all("Date") == ["Fri, 01 May 2026 18:00:00 +0000"]
    assert written["X-Message-Id"] == message_id


def test_render_eml_is_usable_without_a_server() -> None:
    message = body(
        content=[{"type": "text/html", "value": "<b>only html</b>"}],
        attachments=[
            {"content": base64.b64encode(b"a,b\n1,2\n").decode(), "filename": "data.csv"},
            {
                "content": base64.b64encode(PNG).decode(),
                "filename": "i.png",
                "disposition": "inline",
                "content_id": "i",
            },
        ],
    )

    parsed = message_from_bytes(render_eml(message, 0), policy=policy.default)

    parts = {p.get_filename(): p for p in parsed.walk() if p.get_filename()}
    assert parts["data.csv"].get_content_type() == "text/csv"
    assert parts["data.csv"].get_payload(decode=True) == b"a,b\n1,2\n"
    assert parts["i.png"]["Content-ID"] == "<i>"
    assert any(p.get_content_type() == "multipart/related" for p in parsed.walk())


# ---------------------------------------------------------------------------------------------- domains
def response_validator(schema_name: str) -> Any:
    document = json.loads((DEFAULT_CONTRACTS_DIR / "tsg_domain_authentication_v3.json").read_text())
    registry: Registry[Any] = Registry().with_resource("urn:domains", DRAFT202012.create_resource(document))
    return Draft202012Validator({"$ref": f"urn:domains#/components/schemas/{schema_name}"}, registry=registry)


def create_domain(sg: SendGridAPIClient, **fields: Any) -> dict[str, Any]:
    response = sg.client.whitelabel.domains.post(request_body={"domain": "esp.example.org", **fields})
    assert response.status_code == 201
    created: dict[str, Any] = json.loads(response.body)
    return created


def test_domain_authentication_with_automated_security(sg: SendGridAPIClient) -> None:
    created = create_domain(sg, automatic_security=True, subdomain="em7", default=True)

    response_validator("AuthenticatedDomain").validate(created)
    assert created["valid"] is False
    assert created["dns"]["mail_cname"]["host"] == "em7.esp.example.org"
    assert created["dns"]["mail_cname"]["type"] == "cname"
    assert created["dns"]["mail_cname"]["data"].endswith(".sendgrid.net")
    assert created["dns"]["dkim1"]["host"] == "s1._domainkey.esp.example.org"
    assert created["dns"]["dkim2"]["host"] == "s2._domainkey.esp.example.org"

    domains = sg.client.whitelabel.domains
    assert json.loads(domains._(created["id"]).get().body) == created
    patched = json.loads(domains._(created["id"]).patch(request_body={"custom_spf": True}).body)
    assert patched["custom_spf"] is True
    assert domains._(created["id"]).delete().status_code == 204
    with pytest.raises(NotFoundError):
        domains._(created["id"]).get()
    with pytest.raises(NotFoundError):
        domains._(created["id"]).delete()


def test_domain_authentication_with_manual_security_gives_mx_and_txt_records(sg: SendGridAPIClient) -> None:
    created = create_domain(sg, automatic_security=False, subdomain="mail")

    response_validator("AuthenticatedDomainSpf").validate(created)
    dns = created["dns"]
    assert (dns["mail_server"]["type"], dns["mail_server"]["data"]) == ("mx", "mx.sendgrid.net")
    assert dns["subdomain_spf"]["type"] == "txt"
    assert dns["subdomain_spf"]["data"].startswith("v=spf1 include:sendgrid.net")
    assert dns["dkim"]["type"] == "txt"
    assert dns["dkim"]["data"].startswith("k=rsa; t=s; p=")


def test_listing_domains_filters_and_pages(sg: SendGridAPIClient) -> None:
    first = create_domain(sg, automatic_security=True, subdomain="a")
    create_domain(sg, automatic_security=True, subdomain="b")
    other = create_domain(sg, domain="other.example.net", automatic_security=True)
    domains = sg.client.whitelabel.domains

    assert [d["id"] for d in json.loads(domains.get(query_params={"domain": "other.example.net"}).body)] == [
        other["id"]
    ]
    assert len(json.loads(domains.get().body)) == 3
    assert [d["id"] for d in json.loads(domains.get(query_params={"limit": 1}).body)] == [first["id"]]
    assert len(json.loads(domains.get(query_params={"limit": 5, "offset": 2}).body)) == 1


def test_creating_the_same_domain_and_subdomain_twice_is_refused(sg: SendGridAPIClient) -> None:
    create_domain(sg, subdomain="em1")
    with pytest.raises(BadRequestsError):
        create_domain(sg, subdomain="em1")


@pytest.mark.parametrize(
    ("request_body", "field"),
    [({"subdomain": "x"}, "domain"), ({"domain": 42}, "domain"), ({"domain": "a.b", "ips": "1.2.3.4"}, "ips")],
)
def test_a_domain_body_breaking_the_schema_is_refused(
    sg: SendGridAPIClient, request_body: dict[str, Any], field: str
) -> None:
    with pytest.raises(BadRequestsError) as exc:
        sg.client.whitelabel.domains.post(request_body=request_body)
    assert field in fields_of(exc)


def test_validation_passes_on_the_third_try(double: SendGridDouble, sg: SendGridAPIClient) -> None:
    double.domain_validation(passes_after=3)
    created = create_domain(sg, automatic_security=True, subdomain="em123")
    validate = sg.client.whitelabel.domains._(created["id"]).validate

    answers = [json.loads(validate.post().body) for _ in range(3)]

    assert [a["valid"] for a in answers] == [False, False, True]
    cname = created["dns"]["mail_cname"]
    assert answers[0]["id"] == created["id"]
    assert answers[0]["validation_results"]["mail_cname"] == {
        "valid": False,
        "reason": f'Expected CNAME for "em123.esp.example.org" to match "{cname["data"]}".',
    }
    assert set(answers[0]["validation_results"]) == {"mail_cname", "dkim1", "dkim2"}
    assert all(r == {"valid": True, "reason": None} for r in answers[2]["validation_results"].values())
    after = json.loads(sg.client.whitelabel.domains._(created["id"]).get().body)
    assert after["valid"] is True
    assert all(record["valid"] for record in after["dns"].values())


def test_validation_that_never_passes(double: SendGridDouble, sg: SendGridAPIClient) -> None:
    double.domain_validation(passes_after=None)
    created = create_domain(sg, automatic_security=True)

    answers = [json.loads(sg.client.whitelabel.domains._(created["id"]).validate.post().body) for _ in range(4)]

    assert not any(a["valid"] for a in answers)
    with pytest.raises(NotFoundError):
        sg.client.whitelabel.domains._(999_999).validate.post()


# ---------------------------------------------------------------------------------------------- records
def test_request_log_counts_calls_and_reset_forgets_everything(double: SendGridDouble, sg: SendGridAPIClient) -> None:
    send(sg, body())
    send(sg, body())
    create_domain(sg)
    sg.client.whitelabel.domains.get()
    double.inject(Status(500, count=None))
    double.set_latency(0.01)

    counts = Counter((r.method, r.path) for r in double.requests_log)
    assert counts == {
        ("POST", "/v3/mail/send"): 2,
        ("POST", "/v3/whitelabel/domains"): 1,
        ("GET", "/v3/whitelabel/domains"): 1,
    }

    double.reset()

    assert double.accepted == []
    assert double.requests_log == []
    assert double.domains == []
    assert send(sg, body()).status_code == 202  # the fault went too
    assert json.loads(sg.client.whitelabel.domains.get().body) == []


def test_accepted_is_a_copy(double: SendGridDouble, sg: SendGridAPIClient) -> None:
    send(sg, body())
    snapshot = double.accepted
    snapshot.clear()
    assert len(double.accepted) == 1
    assert copy.deepcopy(double.accepted[0].body) == body()


@pytest.mark.parametrize(
    "make",
    [lambda: Status(200), lambda: Status(500, count=0), lambda: Timeout(-1), lambda: Disconnect(count=0)],
)
def test_nonsense_faults_are_refused_when_armed(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        make()
