"""The DNS records SendGrid asks for, and how each is written in Route53.

SendGrid's ``dns`` object names each record (``mail_cname``, ``dkim1``, ``dkim2`` with automated security;
``mail_server``, ``subdomain_spf``, ``domain_spf``, ``dkim`` without) and gives its type, host and data.
Route53 wants: names as given (fully qualified); CNAME data as given; MX data with a priority ("10 host");
TXT data in double quotes, with ``"`` and ``\\`` escaped and split into strings of at most 255 bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

MAX_TXT_STRING_BYTES: Final = 255
MX_PRIORITY: Final = 10
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_MX_WITH_PRIORITY = re.compile(r"^\d+\s+\S+$")


@dataclass(frozen=True, slots=True)
class DnsRecord:
    key: str  # SendGrid's name for it: mail_cname, dkim1, ...
    type: str  # CNAME, MX or TXT
    host: str  # fully qualified, no trailing dot
    data: str  # as SendGrid gives it

    @property
    def name(self) -> str:
        return normal_name(self.host)

    @property
    def route53_value(self) -> str:
        if self.type == "MX":
            return self.data.strip() if _MX_WITH_PRIORITY.match(self.data.strip()) else f"{MX_PRIORITY} {self.data}"
        if self.type == "TXT":
            return quote_txt(self.data)
        return self.data

    def as_text(self) -> str:
        return f"{self.host} {self.type} {self.data}"

    def as_json(self) -> dict[str, str]:
        return {"type": self.type, "host": self.host, "data": self.data}


def normal_name(name: str) -> str:
    """A DNS name as compared here: lower case, no trailing dot."""
    return name.strip().rstrip(".").lower()


def normal_value(record_type: str, value: str) -> str:
    """A Route53 value in a form two spellings of the same data compare equal in."""
    if record_type == "TXT":
        return unquote_txt(value)
    if record_type == "MX":
        priority, _, host = value.strip().partition(" ")
        return f"{priority} {normal_name(host)}"
    return normal_name(value)


def quote_txt(text: str) -> str:
    """TXT data as Route53 wants it: quoted strings of at most 255 bytes each, separated by spaces."""
    chunks: list[str] = []
    current, size = "", 0
    for char in text:
        width = len(char.encode("utf-8"))
        if size + width > MAX_TXT_STRING_BYTES:
            chunks.append(current)
            current, size = "", 0
        current += char
        size += width
    chunks.append(current)
    return " ".join('"' + chunk.replace("\\", "\\\\").replace('"', '\\"') + '"' for chunk in chunks)


def unquote_txt(value: str) -> str:
    """The text of a Route53 TXT value (its quoted strings joined); a bare value is returned as it is."""
    strings = _QUOTED.findall(value)
    if not strings:
        return value.strip()
    return "".join(re.sub(r"\\(.)", r"\1", s) for s in strings)


def records_of(domain: Mapping[str, Any]) -> tuple[DnsRecord, ...]:
    """The records of a SendGrid authenticated domain, in SendGrid's key order."""
    dns = domain.get("dns")
    if not isinstance(dns, Mapping):
        return ()
    found: list[DnsRecord] = []
    for key, entry in dns.items():
        if not isinstance(entry, Mapping) or not entry.get("host") or not entry.get("data"):
            continue
        found.append(
            DnsRecord(
                key=str(key),
                type=str(entry.get("type", "")).upper(),
                host=normal_name(str(entry["host"])),
                data=str(entry["data"]).strip(),
            )
        )
    return tuple(found)


def records_json(records: Iterable[DnsRecord]) -> str:
    return json.dumps([r.as_json() for r in records], separators=(",", ":"))


def attribute_name(key: str) -> str:
    """``mail_cname`` -> ``MailCname``: SendGrid's record name as a CloudFormation attribute name."""
    return "".join(part[:1].upper() + part[1:] for part in key.split("_") if part)
