"""Settings: one validated model per function, built from the environment once, at the edge.

Logic never reads ``os.environ``; a handler calls ``XSettings.from_env()`` on its first invocation and
passes the result down. A missing or malformed variable raises ``ConfigurationError`` naming it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, Self, TypeVar

from espmail.errors import ConfigurationError

DEFAULT_SENDGRID_HOST = "https://api.sendgrid.com"
DEFAULT_SENDGRID_TIMEOUT_SECONDS = 10.0
DEFAULT_RETENTION_DAYS = 90

Built = TypeVar("Built")


class EnvReader:
    """Reads typed values from an environment mapping, naming the variable in every error."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if env is None else env

    def text(self, name: str, default: str | None = None) -> str:
        value = self._env.get(name, "").strip()
        if value:
            return value
        if default is not None:
            return default
        raise ConfigurationError(f"environment variable {name} is not set (see template.yaml Globals)")

    def integer(self, name: str, default: int | None = None, *, minimum: int | None = None) -> int:
        raw = self._env.get(name, "").strip()
        if not raw:
            if default is None:
                raise ConfigurationError(f"environment variable {name} is not set (see template.yaml Globals)")
            return default
        try:
            value = int(raw)
        except ValueError as exc:
            raise ConfigurationError(f"environment variable {name}={raw!r} is not a whole number") from exc
        if minimum is not None and value < minimum:
            raise ConfigurationError(f"environment variable {name}={value} is below its minimum {minimum}")
        return value

    def number(self, name: str, default: float) -> float:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        try:
            return float(raw)
        except ValueError as exc:
            raise ConfigurationError(f"environment variable {name}={raw!r} is not a number") from exc

    def flag(self, name: str, default: bool) -> bool:
        raw = self._env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in {"1", "true", "yes", "on"}:
            return True
        if raw in {"0", "false", "no", "off"}:
            return False
        raise ConfigurationError(f"environment variable {name}={raw!r} is not true/false")

    def csv(self, name: str, default: tuple[str, ...] | None = None) -> tuple[str, ...]:
        raw = self._env.get(name, "").strip()
        if not raw:
            if default is None:
                raise ConfigurationError(f"environment variable {name} is not set (see template.yaml Globals)")
            return default
        return tuple(part.strip() for part in raw.split(",") if part.strip())


def retention_days(read: EnvReader) -> int:
    """How many days records of mail handled are kept (the tables' TTL): ``SENT_RETENTION_DAYS``."""
    return read.integer("SENT_RETENTION_DAYS", DEFAULT_RETENTION_DAYS, minimum=1)


@dataclass(frozen=True, slots=True)
class SiteSettings:
    domain: str
    name: str
    url: str
    allowed_sender_domains: tuple[str, ...]
    support_address: str
    bounces_address: str
    unsubscribe_url: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        read = EnvReader(env)
        domain = read.text("SITE_DOMAIN").lower()
        return cls(
            domain=domain,
            name=read.text("SITE_NAME", "ESP"),
            url=read.text("SITE_URL", ""),
            allowed_sender_domains=tuple(d.lower() for d in read.csv("ALLOWED_SENDER_DOMAINS", (domain,))),
            support_address=read.text("SUPPORT_ADDRESS"),
            bounces_address=read.text("BOUNCES_ADDRESS"),
            unsubscribe_url=read.text("UNSUBSCRIBE_URL", ""),
        )

    @property
    def own_addresses(self) -> frozenset[str]:
        """Addresses of the system itself: never answered, never forwarded from."""
        return frozenset({self.support_address.lower(), self.bounces_address.lower()})


@dataclass(frozen=True, slots=True)
class TableNames:
    users: str
    groups: str
    list_rules: str
    redirects: str
    message_requests: str
    outbox: str
    inbound_log: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        read = EnvReader(env)
        return cls(
            users=read.text("USERS_TABLE"),
            groups=read.text("GROUPS_TABLE"),
            list_rules=read.text("LIST_RULES_TABLE"),
            redirects=read.text("REDIRECTS_TABLE"),
            message_requests=read.text("MESSAGE_REQUESTS_TABLE"),
            outbox=read.text("OUTBOX_TABLE"),
            inbound_log=read.text("INBOUND_LOG_TABLE"),
        )


@dataclass(frozen=True, slots=True)
class SendGridSettings:
    """Where the API key lives (never the key itself) and how to reach the API."""

    api_key_secret_arn: str
    host: str
    timeout_seconds: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        read = EnvReader(env)
        return cls(
            api_key_secret_arn=read.text("SENDGRID_API_KEY_SECRET_ARN"),
            host=read.text("SENDGRID_HOST", DEFAULT_SENDGRID_HOST),
            timeout_seconds=read.number("SENDGRID_TIMEOUT_SECONDS", DEFAULT_SENDGRID_TIMEOUT_SECONDS),
        )


class _ReadRecorder(Mapping[str, str]):
    """An environment that remembers every variable looked up in it, and what it held (None: unset)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.read: dict[str, str | None] = {}

    def __getitem__(self, name: str) -> str:
        value = self._env.get(name)
        self.read[name] = value
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)


class SettingsCache(Generic[Built]):
    """Settings built from the environment on first use and kept for the life of the process; built again
    only when a variable they read has changed. Keying on the whole environment would never hit in Lambda,
    which sets some variables (``_X_AMZN_TRACE_ID``) anew for every invocation.

    ``also_keyed_on`` names variables that what is built depends on without reading them through the
    mapping (a boto3 client reads its endpoint and credentials from ``os.environ`` itself)."""

    def __init__(self, build: Callable[[Mapping[str, str]], Built], *, also_keyed_on: Iterable[str] = ()) -> None:
        self._build = build
        self._also_keyed_on = tuple(also_keyed_on)
        self._kept: tuple[tuple[tuple[str, str | None], ...], Built] | None = None

    def get(self, env: Mapping[str, str]) -> Built:
        kept = self._kept
        if kept is not None and all(env.get(name) == value for name, value in kept[0]):
            return kept[1]
        recorder = _ReadRecorder(env)
        for name in self._also_keyed_on:
            recorder.get(name)
        built = self._build(recorder)
        self._kept = (tuple(recorder.read.items()), built)
        return built
