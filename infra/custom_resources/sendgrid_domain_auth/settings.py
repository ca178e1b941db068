"""Settings of the domain authentication function, from its environment (everything else comes in the
event's properties: the domain, the zone, the secret's ARN)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

from espmail.settings import DEFAULT_SENDGRID_HOST, DEFAULT_SENDGRID_TIMEOUT_SECONDS, EnvReader


@dataclass(frozen=True, slots=True)
class DomainAuthSettings:
    sendgrid_host: str
    sendgrid_timeout_seconds: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        read = EnvReader(env)
        return cls(
            sendgrid_host=read.text("SENDGRID_HOST", DEFAULT_SENDGRID_HOST),
            sendgrid_timeout_seconds=read.number("SENDGRID_TIMEOUT_SECONDS", DEFAULT_SENDGRID_TIMEOUT_SECONDS),
        )
