"""A mail message as this system hands it to a transport, independent of SendGrid's JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Address:
    email: str
    name: str = ""

    def __str__(self) -> str:
        return f'"{self.name}" <{self.email}>' if self.name else self.email


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes
    disposition: Literal["attachment", "inline"] = "attachment"
    content_id: str | None = None


@dataclass(frozen=True, slots=True)
class Personalization:
    """One envelope of a message: its recipients and what is particular to them."""

    to: tuple[Address, ...]
    headers: Mapping[str, str] = field(default_factory=dict)
    custom_args: Mapping[str, str] = field(default_factory=dict)
    subject: str | None = None
    substitutions: Mapping[str, str] = field(default_factory=dict)  # tag -> value, in subject and content


@dataclass(frozen=True, slots=True)
class MailMessage:
    """What is common to every personalization of one provider call."""

    sender: Address
    subject: str
    text: str | None = None
    html: str | None = None
    reply_to: tuple[Address, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()
    categories: tuple[str, ...] = ()
    custom_args: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendReceipt:
    """The provider accepted the message (202: queued, not delivered)."""

    message_id: str
