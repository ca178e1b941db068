"""``Custom::SendGridDomainAuthentication``: SendGrid domain authentication with its DNS records in Route53.

Properties (CloudFormation passes every value as a string):

- ``Domain`` (required): the domain mail is sent from, e.g. ``esp.example.org``.
- ``Subdomain`` (optional): SendGrid's return-path subdomain; empty lets SendGrid choose (``em1234``).
- ``CustomDkimSelector`` (optional): the DKIM selector instead of SendGrid's ``s1``/``s2``.
- ``HostedZoneId`` (optional): the Route53 zone to write the records into; empty when DNS is elsewhere.
- ``ApiKeySecretArn`` (required): the Secrets Manager secret holding the API key (never the key itself:
  a property value that looks like a SendGrid key is refused).
- ``RetainOnDelete`` (optional, ``false``): on Delete, keep the SendGrid domain and its DNS records.
- ``ValidationTimeoutMinutes`` (optional, 30, at most 55): how long to keep asking SendGrid to validate.

Physical id: ``sendgrid-domain/<SendGrid domain id>/<mail host>`` (``sendgrid-domain/1001/em.esp.example.org``).

Attributes: ``DomainId``; ``Valid`` (``true``, ``false``: records written but SendGrid could not validate
them within the limit, or ``pending``: no hosted zone, a person has to enter the records); ``Records``
(compact JSON list of ``{type, host, data}``); ``RecordsText`` (``host TYPE data; ...``, for people);
``ValidationReasons`` (SendGrid's words per record, ``key: reason; ...``, or ``all records valid``);
``MailHost``; and one attribute per record named after SendGrid's key (``MailCname``, ``Dkim1``,
``Dkim2``; ``MailServer``, ``SubdomainSpf``, ``DomainSpf``, ``Dkim`` without automated security), each
``host TYPE data``.

Create: look the domain up in SendGrid and reuse a matching authentication (so a retried Create makes no
second one), else create one with automated security; UPSERT exactly its records; wait for INSYNC; ask
SendGrid to validate with back-off. When DNS is slow the wait goes on in a new invocation of this function
(asynchronous, carrying the original event and the polling state under ``EspMailPolling``), and only the
last invocation answers CloudFormation. Validation that has not passed when ``ValidationTimeoutMinutes``
runs out is SUCCESS with ``Valid=false`` and SendGrid's reasons: the records are right and in place, what
is missing is outside the stack (delegation of the zone, propagation), and a FAILED would roll back the
whole stack, deleting the SendGrid domain and its records so the next deploy starts the same wait again.

Update: a changed ``Domain``, ``Subdomain`` or ``CustomDkimSelector`` makes (or reuses) another
authentication, with a new physical id; CloudFormation then deletes the old one. (SendGrid cannot change
the selector of an existing authentication, so it counts as a new one too.) Anything else is updated in
place: records rewritten (and taken out of the old zone when ``HostedZoneId`` changed), validated again.

Delete: unless ``RetainOnDelete``, remove the records (read back from SendGrid; when SendGrid has
forgotten the domain, the CNAMEs at its names that still point into SendGrid) except values another
authentication of the same domain still uses, then delete the SendGrid domain. What is already gone
counts as done.

Every failure answers FAILED with a reason naming what was being done and what SendGrid or Route53 said.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final, Self, TypeVar

from cfn_response import (
    HANDED_OFF,
    Answer,
    CustomResourceRequest,
    HandedOff,
    Responder,
    ResponseSender,
    answer_custom_resource,
    put_response,
)
from espmail.errors import EspMailError, InvalidInput, NotFound, PermanentSendError, RetryableSendError
from espmail.observability import logger
from sendgrid_domain_auth.records import DnsRecord, attribute_name, normal_name, records_json, records_of
from sendgrid_domain_auth.route53_zone import HostedZone, zone_id_of
from sendgrid_domain_auth.sendgrid_domains import SendGridDomains, Validation

_T = TypeVar("_T")

POLLING_KEY: Final = "EspMailPolling"
PHYSICAL_ID_PREFIX: Final = "sendgrid-domain"
DEFAULT_VALIDATION_MINUTES: Final = 30
MAX_VALIDATION_MINUTES: Final = 55
ALL_VALID: Final = "all records valid"

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ZONE_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$")
_KNOWN_PROPERTIES: Final = frozenset(
    {
        "ServiceToken",
        "ServiceTimeout",
        "Domain",
        "Subdomain",
        "CustomDkimSelector",
        "HostedZoneId",
        "ApiKeySecretArn",
        "RetainOnDelete",
        "ValidationTimeoutMinutes",
    }
)


class PollingHandOffFailed(EspMailError):
    """The function could not start the invocation that would go on waiting for validation."""


def _flag(properties: Mapping[str, Any], name: str) -> bool:
    raw = str(properties.get(name, "false")).strip().lower()
    if raw in {"true", "yes", "1"}:
        return True
    if raw in {"false", "no", "0", ""}:
        return False
    raise InvalidInput(f"property {name}={raw!r} is not true or false")


@dataclass(frozen=True, slots=True)
class DomainAuthProperties:
    domain: str
    subdomain: str
    dkim_selector: str
    hosted_zone_id: str
    api_key_secret_arn: str
    retain_on_delete: bool
    validation_timeout_minutes: int

    @classmethod
    def parse(cls, properties: Mapping[str, Any]) -> Self:
        for name, value in properties.items():
            if isinstance(value, str) and value.strip().startswith("SG."):
                raise InvalidInput(
                    f"property {name} holds what looks like a SendGrid API key; never put the key in a template "
                    "or parameter: store it in Secrets Manager and pass the secret's ARN as ApiKeySecretArn"
                )
        unknown = sorted(set(properties) - _KNOWN_PROPERTIES)
        if unknown:
            raise InvalidInput(
                f"unknown properties {', '.join(unknown)}; known: {', '.join(sorted(_KNOWN_PROPERTIES - {'ServiceToken'}))}"
            )
        domain = normal_name(str(properties.get("Domain", "")))
        if not _DOMAIN.match(domain):
            raise InvalidInput(f"property Domain={domain!r} is not a domain name such as esp.example.org")
        subdomain = str(properties.get("Subdomain", "")).strip().lower()
        if subdomain and not _LABEL.match(subdomain):
            raise InvalidInput(f"property Subdomain={subdomain!r} is not a single DNS label such as em")
        selector = str(properties.get("CustomDkimSelector", "")).strip().lower()
        if selector and not _LABEL.match(selector):
            raise InvalidInput(f"property CustomDkimSelector={selector!r} is not a DNS label such as abc")
        zone = zone_id_of(str(properties.get("HostedZoneId", "")))
        if zone and not _ZONE_ID.match(zone):
            raise InvalidInput(f"property HostedZoneId={zone!r} is not a Route53 hosted zone id such as Z0123456789AB")
        secret = str(properties.get("ApiKeySecretArn", "")).strip()
        if not _SECRET_ARN.match(secret):
            raise InvalidInput(
                "property ApiKeySecretArn must be the ARN of the Secrets Manager secret that holds the SendGrid "
                f"API key, not {secret[:80]!r}"
            )
        raw_minutes = str(properties.get("ValidationTimeoutMinutes", DEFAULT_VALIDATION_MINUTES)).strip()
        try:
            minutes = int(raw_minutes)
        except ValueError as exc:
            raise InvalidInput(f"property ValidationTimeoutMinutes={raw_minutes!r} is not a whole number") from exc
        if not 0 <= minutes <= MAX_VALIDATION_MINUTES:
            raise InvalidInput(
                f"property ValidationTimeoutMinutes={minutes} must be 0 to {MAX_VALIDATION_MINUTES} "
                "(CloudFormation waits at most an hour for a custom resource)"
            )
        return cls(
            domain=domain,
            subdomain=subdomain,
            dkim_selector=selector,
            hosted_zone_id=zone,
            api_key_secret_arn=secret,
            retain_on_delete=_flag(properties, "RetainOnDelete"),
            validation_timeout_minutes=minutes,
        )

    @property
    def identity(self) -> tuple[str, str, str]:
        """What SendGrid cannot change on an existing authentication: a change means a new one."""
        return (self.domain, self.subdomain, self.dkim_selector)

    def dkim_hosts(self) -> tuple[str, str]:
        first = self.dkim_selector or "s1"
        second = f"{first}2" if self.dkim_selector else "s2"
        return (f"{first}._domainkey.{self.domain}", f"{second}._domainkey.{self.domain}")


@dataclass(frozen=True, slots=True)
class DomainAuthId:
    """The physical id: which SendGrid domain, and its mail host (for Delete when SendGrid forgot it)."""

    domain_id: int
    mail_host: str

    def __str__(self) -> str:
        return f"{PHYSICAL_ID_PREFIX}/{self.domain_id}/{self.mail_host}"

    @classmethod
    def of(cls, domain: Mapping[str, Any]) -> Self:
        return cls(int(domain["id"]), normal_name(f"{domain.get('subdomain', '')}.{domain.get('domain', '')}"))

    @classmethod
    def parse(cls, text: str | None) -> Self | None:
        prefix, _, rest = (text or "").partition("/")
        number, _, host = rest.partition("/")
        if prefix != PHYSICAL_ID_PREFIX or not number.isdigit() or not host:
            return None
        return cls(int(number), host)


@dataclass(frozen=True, slots=True)
class Timing:
    first_backoff_seconds: float = 5.0
    max_backoff_seconds: float = 60.0
    insync_poll_seconds: float = 2.0
    max_insync_poll_seconds: float = 10.0
    run_reserve_seconds: float = 30.0  # kept back in each run for a last call, the answer or the hand-off
    max_invocations: int = 30
    sendgrid_attempts: int = 4
    max_retry_after_seconds: float = 30.0

    def backoff(self, validations: int) -> float:
        """The wait after the n-th unsuccessful validation: 5, 10, 20, 40, 60, 60... seconds."""
        return float(min(self.max_backoff_seconds, self.first_backoff_seconds * 2 ** max(0, validations - 1)))


@dataclass(frozen=True)
class Wiring:
    """What the resource works with. The handler builds it from real clients; tests hand in their own."""

    sendgrid: Callable[[str], SendGridDomains]  # API key secret ARN -> that account's domains
    zone: Callable[[str], HostedZone]  # hosted zone id -> the zone
    invoke_again: Callable[[Mapping[str, Any]], None]  # starts this function asynchronously with the event
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    timing: Timing = field(default_factory=Timing)


@dataclass(frozen=True, slots=True)
class PollingState:
    """Carried from one invocation to the next under ``EspMailPolling`` in the event."""

    invocation: int  # 1 for the run CloudFormation started, then 2, 3...
    deadline: float  # epoch seconds after which no more validation is tried
    domain_id: int | None = None
    physical_id: str | None = None
    change_id: str | None = None
    in_sync: bool = False
    validations: int = 0
    next_try_at: float = 0.0

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> Self | None:
        raw = event.get(POLLING_KEY)
        if not isinstance(raw, Mapping):
            return None
        try:
            return cls(
                invocation=int(raw["invocation"]),
                deadline=float(raw["deadline"]),
                domain_id=None if raw.get("domain_id") is None else int(raw["domain_id"]),
                physical_id=raw.get("physical_id"),
                change_id=raw.get("change_id"),
                in_sync=bool(raw.get("in_sync", False)),
                validations=int(raw.get("validations", 0)),
                next_try_at=float(raw.get("next_try_at", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"the event's {POLLING_KEY} is malformed: {exc}") from exc


def _describe(exc: Exception, doing: str, props: DomainAuthProperties | None) -> str:
    """The reason CloudFormation shows: what was being done, what went wrong, what a person can do."""
    if isinstance(exc, PermanentSendError) and exc.status in (401, 403):
        secret = props.api_key_secret_arn if props else "ApiKeySecretArn"
        return (
            f"{doing}: {exc}. SendGrid refused the API key stored in {secret}: put a key with the "
            "'Sender Authentication' (whitelabel) scope in that secret"
        )
    if isinstance(exc, RetryableSendError):
        return f"{doing}: {exc}. SendGrid kept failing after several tries; deploy again later"
    return f"{doing}: {exc}"


class DomainAuthentication:
    """One invocation's work on one event."""

    def __init__(self, request: CustomResourceRequest, responder: Responder, context: Any, wiring: Wiring) -> None:
        self.request = request
        self.responder = responder
        self.wiring = wiring
        self.timing = wiring.timing
        remaining = float(context.get_remaining_time_in_millis()) / 1000.0 if context is not None else 900.0
        self.run_deadline = wiring.clock() + remaining - self.timing.run_reserve_seconds
        self.props: DomainAuthProperties | None = None
        self.log = logger()

    # ------------------------------------------------------------------ plumbing
    def doing(self, what: str) -> None:
        self.responder.doing = what
        self.log.debug(what)

    def retrying(self, call: Callable[[], _T]) -> _T:
        """``call`` again after a 429, 5xx or connection trouble, honouring SendGrid's Retry-After, while
        attempts and this run's time last."""
        attempt = 1
        while True:
            try:
                return call()
            except RetryableSendError as exc:
                wait = min(
                    self.timing.max_retry_after_seconds,
                    exc.retry_after if exc.retry_after is not None else 2.0 ** (attempt - 1),
                )
                if attempt >= self.timing.sendgrid_attempts or self.wiring.clock() + wait > self.run_deadline:
                    raise
                self.log.warning(
                    "SendGrid failed; trying again",
                    extra={"attempt": attempt, "wait_seconds": wait, "error": str(exc), "doing": self.responder.doing},
                )
                self.wiring.sleep(wait)
                attempt += 1

    def run(self) -> Answer | HandedOff:
        try:
            if self.request.request_type == "Delete":
                return self.delete()
            self.props = DomainAuthProperties.parse(self.request.properties)
            return self.converge(self.props)
        except EspMailError as exc:
            self.log.exception("SendGrid domain authentication failed", extra={"doing": self.responder.doing})
            return Answer.failed(self.responder.physical_id, _describe(exc, self.responder.doing, self.props))

    # ------------------------------------------------------------------ Create / Update
    def converge(self, props: DomainAuthProperties) -> Answer | HandedOff:
        clock = self.wiring.clock
        state = PollingState.of(self.request.event) or PollingState(
            invocation=1, deadline=clock() + props.validation_timeout_minutes * 60
        )
        if self.request.request_type == "Create" and state.physical_id:
            self.responder.physical_id = state.physical_id
        self.doing(f"reading the SendGrid API key from {props.api_key_secret_arn}")
        sendgrid = self.wiring.sendgrid(props.api_key_secret_arn)
        if state.domain_id is None:
            domain = self.first_run(props, sendgrid)
            state = replace(state, domain_id=int(domain["id"]), physical_id=self.physical_id_for(domain))
        else:
            domain_id = state.domain_id
            self.doing(f"reading SendGrid domain authentication {domain_id}")
            found = self.retrying(lambda: sendgrid.get(domain_id))
            if found is None:
                raise NotFound(
                    f"SendGrid domain authentication {domain_id} for {props.domain} disappeared while waiting for "
                    "validation; deploy again to create it anew"
                )
            domain = found
        physical_id = state.physical_id or self.physical_id_for(domain)
        records = records_of(domain)
        domain_id = int(domain["id"])

        if not props.hosted_zone_id:
            self.doing(f"asking SendGrid to validate domain authentication {domain_id} (DNS kept elsewhere)")
            validation = self.retrying(lambda: sendgrid.validate(domain_id))
            valid = "true" if validation.valid else "pending"
            reason = (
                "records valid"
                if validation.valid
                else f"no HostedZoneId: enter these records at the DNS provider of {props.domain}: "
                + "; ".join(r.as_text() for r in records)
            )
            return self.success(physical_id, domain, records, valid, validation, reason)

        zone = self.wiring.zone(props.hosted_zone_id)
        if not state.in_sync:
            if state.change_id is None:
                self.doing(f"writing {len(records)} SendGrid records into hosted zone {zone.zone_id}")
                state = replace(state, change_id=zone.upsert(records, f"SendGrid domain authentication {domain_id}"))
            if state.change_id is not None and not self.wait_in_sync(zone, state.change_id, state.deadline):
                if clock() >= state.deadline:
                    raise EspMailError(
                        f"Route53 change {state.change_id} to hosted zone {zone.zone_id} was not INSYNC after "
                        f"{props.validation_timeout_minutes} minutes"
                    )
                return self.hand_off(state)
            state = replace(state, in_sync=True)

        while True:
            if state.next_try_at > clock():
                self.wiring.sleep(state.next_try_at - clock())
            self.doing(f"asking SendGrid to validate domain authentication {domain_id} (try {state.validations + 1})")
            validation = self.retrying(lambda: sendgrid.validate(domain_id))
            state = replace(state, validations=state.validations + 1)
            if validation.valid:
                return self.success(physical_id, domain, records, "true", validation, "records written and valid")
            delay = self.timing.backoff(state.validations)
            self.log.info(
                "SendGrid has not validated the records yet",
                extra={"domain_id": domain_id, "validations": state.validations, "reasons": dict(validation.reasons)},
            )
            if clock() + delay > state.deadline or (
                clock() + delay > self.run_deadline and state.invocation >= self.timing.max_invocations
            ):
                self.log.warning(
                    "SendGrid did not validate the records within the limit; answering Valid=false",
                    extra={"domain_id": domain_id, "reasons": dict(validation.reasons)},
                )
                return self.success(
                    physical_id,
                    domain,
                    records,
                    "false",
                    validation,
                    f"records written; SendGrid could not validate them within {props.validation_timeout_minutes} "
                    "minutes (see ValidationReasons); once DNS has caught up, press Verify in SendGrid's Sender "
                    "Authentication page or update the stack",
                )
            state = replace(state, next_try_at=clock() + delay)
            if state.next_try_at > self.run_deadline:
                return self.hand_off(state)

    def first_run(self, props: DomainAuthProperties, sendgrid: SendGridDomains) -> dict[str, Any]:
        """The SendGrid domain this event is about, found or made; on an Update in place, records moved
        out of a zone the resource no longer uses."""
        request = self.request
        old_id = DomainAuthId.parse(request.physical_resource_id) if request.request_type == "Update" else None
        old_props: DomainAuthProperties | None = None
        if request.request_type == "Update":
            try:
                old_props = DomainAuthProperties.parse(request.old_properties)
            except InvalidInput:
                old_props = None
        in_place = old_id is not None and old_props is not None and old_props.identity == props.identity
        domain: dict[str, Any] | None = None
        if in_place and old_id is not None:
            self.doing(f"reading SendGrid domain authentication {old_id.domain_id}")
            domain = self.retrying(lambda: sendgrid.get(old_id.domain_id))
            if domain is None:
                self.log.warning(
                    "the SendGrid domain authentication is gone; making it again", extra={"domain_id": old_id.domain_id}
                )
        if domain is None:
            domain = self.retrying(lambda: self.find_or_create(props, sendgrid))
        if request.request_type == "Create":
            self.responder.physical_id = self.physical_id_for(domain)  # a rollback Delete then cleans it up
        if (
            in_place
            and old_props is not None
            and old_props.hosted_zone_id
            and old_props.hosted_zone_id != props.hosted_zone_id
        ):
            self.doing(f"removing SendGrid's records from the previous hosted zone {old_props.hosted_zone_id}")
            keep = self.records_of_others(sendgrid, props.domain, int(domain["id"]))
            self.wiring.zone(old_props.hosted_zone_id).remove(records_of(domain), keep)
        return domain

    def physical_id_for(self, domain: Mapping[str, Any]) -> str:
        """The new id, or the old one when the event is an Update that lands on the same SendGrid domain
        (a new id would make CloudFormation delete the domain the resource is still using)."""
        old = DomainAuthId.parse(self.request.physical_resource_id)
        if old is not None and old.domain_id == int(domain["id"]) and self.request.physical_resource_id:
            return self.request.physical_resource_id
        return str(DomainAuthId.of(domain))

    def find_or_create(self, props: DomainAuthProperties, sendgrid: SendGridDomains) -> dict[str, Any]:
        self.doing(f"looking up SendGrid domain authentication for {props.domain}")
        candidates = [d for d in sendgrid.find(props.domain) if self.matches(d, props)]
        if candidates:
            chosen = min(candidates, key=lambda d: (not d.get("valid"), int(d["id"])))
            self.log.info(
                "reusing SendGrid domain authentication",
                extra={"domain_id": chosen["id"], "domain": props.domain, "subdomain": chosen.get("subdomain")},
            )
            return chosen
        self.doing(f"creating SendGrid domain authentication for {props.domain}")
        created = sendgrid.create(props.domain, subdomain=props.subdomain, dkim_selector=props.dkim_selector)
        self.log.info(
            "created SendGrid domain authentication",
            extra={"domain_id": created["id"], "domain": props.domain, "subdomain": created.get("subdomain")},
        )
        return created

    @staticmethod
    def matches(domain: Mapping[str, Any], props: DomainAuthProperties) -> bool:
        if props.subdomain and str(domain.get("subdomain", "")).lower() != props.subdomain:
            return False
        if props.dkim_selector:
            hosts = {r.name for r in records_of(domain) if r.key.startswith("dkim")}
            return props.dkim_hosts()[0] in hosts
        return True

    def wait_in_sync(self, zone: HostedZone, change_id: str, deadline: float) -> bool:
        clock, delay = self.wiring.clock, self.timing.insync_poll_seconds
        while True:
            self.doing(f"waiting for Route53 change {change_id} in hosted zone {zone.zone_id} to be INSYNC")
            if zone.in_sync(change_id):
                return True
            if clock() + delay > min(self.run_deadline, deadline):
                return False
            self.wiring.sleep(delay)
            delay = min(self.timing.max_insync_poll_seconds, delay * 1.5)

    def hand_off(self, state: PollingState) -> Answer | HandedOff:
        following = replace(state, invocation=state.invocation + 1)
        payload = {**self.request.event, POLLING_KEY: asdict(following)}
        self.doing("starting the next invocation to go on waiting for validation")
        if self.responder.hand_off(lambda: self.wiring.invoke_again(payload)):
            self.log.info(
                "validation goes on in another invocation",
                extra={"invocation": following.invocation, "domain_id": state.domain_id},
            )
        return HANDED_OFF

    def success(
        self,
        physical_id: str,
        domain: Mapping[str, Any],
        records: tuple[DnsRecord, ...],
        valid: str,
        validation: Validation,
        reason: str,
    ) -> Answer:
        data = {
            "DomainId": str(domain["id"]),
            "Valid": valid,
            "MailHost": DomainAuthId.of(domain).mail_host,
            "Records": records_json(records),
            "RecordsText": "; ".join(r.as_text() for r in records),
            "ValidationReasons": validation.reasons_text() or ALL_VALID,
        }
        for record in records:
            data.setdefault(attribute_name(record.key), record.as_text())
        return Answer.success(physical_id, data, reason)

    # ------------------------------------------------------------------ Delete
    def records_of_others(self, sendgrid: SendGridDomains, domain: str, domain_id: int) -> list[DnsRecord]:
        """Records other authentications of the same domain use (DKIM CNAMEs are shared between them)."""
        others = self.retrying(lambda: sendgrid.find(domain))
        return [r for other in others if int(other["id"]) != domain_id for r in records_of(other)]

    def delete(self) -> Answer:
        physical_id = self.request.physical_resource_id or ""
        target = DomainAuthId.parse(physical_id)
        if target is None:  # e.g. the rollback of a Create that failed before it made anything
            self.log.info("nothing was created under this physical id", extra={"physical_id": physical_id})
            return Answer.success(physical_id or self.request.placeholder_physical_id, reason="nothing to delete")
        self.props = props = DomainAuthProperties.parse(self.request.properties)
        if props.retain_on_delete:
            self.log.info(
                "RetainOnDelete: keeping the SendGrid domain and its records", extra={"domain_id": target.domain_id}
            )
            return Answer.success(physical_id, reason="retained (RetainOnDelete)")
        self.doing(f"reading the SendGrid API key from {props.api_key_secret_arn}")
        sendgrid = self.wiring.sendgrid(props.api_key_secret_arn)
        self.doing(f"reading SendGrid domain authentication {target.domain_id}")
        domain = self.retrying(lambda: sendgrid.get(target.domain_id))
        domain_name = normal_name(str(domain["domain"])) if domain else props.domain
        if props.hosted_zone_id:
            zone = self.wiring.zone(props.hosted_zone_id)
            self.doing(f"removing SendGrid's records from hosted zone {zone.zone_id}")
            records: list[DnsRecord] = (
                list(records_of(domain))
                if domain is not None
                else zone.sendgrid_cnames([target.mail_host, *props.dkim_hosts()])
            )
            keep = self.records_of_others(sendgrid, domain_name, target.domain_id)
            zone.remove(records, keep)
        if domain is not None:
            self.doing(f"deleting SendGrid domain authentication {target.domain_id}")
            deleted = self.retrying(lambda: sendgrid.delete(target.domain_id))
            self.log.info(
                "deleted SendGrid domain authentication" if deleted else "SendGrid had already deleted it",
                extra={"domain_id": target.domain_id},
            )
        else:
            self.log.info("SendGrid no longer knows the domain authentication", extra={"domain_id": target.domain_id})
        return Answer.success(physical_id, reason="deleted")


def run_domain_authentication(
    event: Any, context: Any, wiring: Wiring, *, sender: ResponseSender = put_response
) -> Answer | None:
    """Handles one CloudFormation event (or one polling continuation of it) and answers CloudFormation
    unless the work was handed on to another invocation."""
    return answer_custom_resource(
        event,
        context,
        lambda request, responder: DomainAuthentication(request, responder, context, wiring).run(),
        sender=sender,
    )
