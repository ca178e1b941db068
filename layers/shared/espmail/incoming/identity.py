"""Who sent a received message: the From address, looked up in Users, counted only when authenticated.

The rule (DESIGN.md, incoming step 5):

- SES's DMARC verdict PASS: the From domain is authenticated;
- DMARC GRAY (the domain publishes no DMARC record) or no DMARC verdict in the event at all: the From
  domain is authenticated by an SPF PASS for an envelope (MAIL FROM) domain *aligned* with it, or by a
  DKIM PASS when every ``DKIM-Signature`` of the message has a signing domain (``d=``) aligned with it.
  SES gives one DKIM verdict for the whole message; with an unaligned signature present we cannot tell
  which signature passed, so such a message does not count (SPF may still authenticate it);
- anything else (DMARC FAIL, a failed or disabled check): not authenticated.

Alignment is DMARC's relaxed alignment: both domains have the same *organizational domain*. The
organizational domain here is the registrable domain by a small public-suffix approach: the last two
labels, or the last three when the last two form a known multi-label public suffix (``co.uk``,
``edu.au``...; see ``MULTI_LABEL_SUFFIXES``). The shortcut is permissive for a multi-label suffix missing
from that list: two organizations under it look like one (``a.co.xx`` and ``b.co.xx`` would align), which
matters only for a From domain with no DMARC record. Extend the list for the countries the program's
senders write from (or swap in a full public-suffix list).

An unauthenticated From is an unknown sender, whoever it names: no account, no notice, no alias. So is
a From that does not name exactly one sender: several From headers, or one naming several addresses.
SES gives one DMARC verdict per message, for one From domain, and we cannot tell which: the verdict may
concern another address than the one we would take (see :func:`from_ambiguity`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.utils import getaddresses
from typing import Protocol

from espmail.domain.people import User
from espmail.incoming.events import Verdict, Verdicts

# Public suffixes of two labels that mail from schools, universities and families commonly uses.
MULTI_LABEL_SUFFIXES = frozenset(
    f"{second}.{tld}"
    for tld, seconds in {
        "uk": ("ac", "co", "gov", "ltd", "me", "net", "nhs", "org", "plc", "police", "sch"),
        "au": ("asn", "com", "edu", "gov", "id", "net", "org"),
        "nz": ("ac", "co", "geek", "gen", "govt", "iwi", "kiwi", "maori", "net", "org", "school"),
        "jp": ("ac", "ad", "co", "ed", "go", "gr", "lg", "ne", "or"),
        "kr": ("ac", "co", "go", "ne", "or", "re"),
        "in": ("ac", "co", "edu", "firm", "gen", "gov", "ind", "net", "org", "res"),
        "br": ("com", "edu", "gov", "net", "org"),
        "cn": ("ac", "com", "edu", "gov", "net", "org"),
        "hk": ("com", "edu", "gov", "net", "org"),
        "sg": ("com", "edu", "gov", "net", "org"),
        "tw": ("com", "edu", "gov", "net", "org"),
        "za": ("ac", "co", "edu", "gov", "net", "org"),
        "il": ("ac", "co", "gov", "k12", "net", "org"),
        "mx": ("com", "edu", "gob", "net", "org"),
        "ar": ("com", "edu", "gob", "net", "org"),
        "tr": ("com", "edu", "gov", "net", "org"),
        "ca": ("ab", "bc", "mb", "nb", "nf", "nl", "ns", "nt", "nu", "on", "pe", "qc", "sk", "yk"),
        "us": ("k12", "lib"),
    }.items()
    for second in seconds
)


def organizational_domain(domain: str) -> str:
    labels = [label for label in domain.strip().strip(".").lower().split(".") if label]
    if len(labels) <= 2:
        return ".".join(labels)
    keep = 3 if ".".join(labels[-2:]) in MULTI_LABEL_SUFFIXES else 2
    return ".".join(labels[-keep:])


def aligned(domain: str, from_domain: str) -> bool:
    """DMARC relaxed alignment: the same organizational domain."""
    if not domain or not from_domain:
        return False
    return organizational_domain(domain) == organizational_domain(from_domain)


def domain_of(address: str) -> str:
    _, at, domain = address.strip().strip("<>").rpartition("@")
    return domain.strip().strip(".").lower() if at else ""


def within(domain: str, site_domain: str) -> bool:
    """``domain`` is the site's domain or one of its subdomains (mail there would come back to us)."""
    return domain == site_domain or domain.endswith("." + site_domain)


def dkim_signing_domains(signatures: Iterable[str]) -> tuple[str, ...]:
    """The ``d=`` tag of each ``DKIM-Signature`` value (tags are ``name=value`` separated by ``;``)."""
    domains: list[str] = []
    for signature in signatures:
        found = ""
        for tag in signature.split(";"):
            name, eq, value = tag.partition("=")
            if eq and "".join(name.split()).lower() == "d":
                found = "".join(value.split()).strip(".").lower()
                break
        domains.append(found)
    return tuple(domains)


@dataclass(frozen=True, slots=True)
class Authentication:
    authenticated: bool
    reason: str


def authenticate_from(
    from_domain: str, verdicts: Verdicts, *, envelope_sender: str, dkim_domains: Sequence[str]
) -> Authentication:
    """Whether the From domain is authenticated by SES's verdicts (see the module docstring)."""
    if not from_domain:
        return Authentication(False, "no usable From address")
    dmarc = verdicts.dmarc
    if dmarc is Verdict.PASS:
        return Authentication(True, f"DMARC pass for {from_domain}")
    if dmarc is Verdict.FAIL:
        policy = f" (policy {verdicts.dmarc_policy})" if verdicts.dmarc_policy else ""
        return Authentication(False, f"DMARC fail for {from_domain}{policy}: the From is forged or unaligned")
    if dmarc not in (Verdict.GRAY, Verdict.ABSENT):
        return Authentication(False, f"DMARC check {dmarc.value} for {from_domain}")
    envelope_domain = domain_of(envelope_sender)
    if verdicts.spf is Verdict.PASS and aligned(envelope_domain, from_domain):
        return Authentication(True, f"no DMARC; SPF pass for the aligned envelope domain {envelope_domain}")
    if verdicts.dkim is Verdict.PASS and dkim_domains and all(aligned(d, from_domain) for d in dkim_domains):
        return Authentication(True, f"no DMARC; DKIM pass signed by the aligned domain {dkim_domains[0]}")
    why: list[str] = []
    if verdicts.spf is Verdict.PASS:
        why.append(f"SPF passed for the unaligned envelope domain {envelope_domain or '(none)'}")
    else:
        why.append(f"SPF {verdicts.spf.value}")
    if verdicts.dkim is Verdict.PASS:
        signers = ", ".join(d or "(no d=)" for d in dkim_domains) or "(no signature)"
        why.append(f"DKIM passed but not only for aligned domains ({signers})")
    else:
        why.append(f"DKIM {verdicts.dkim.value}")
    return Authentication(False, f"no DMARC for {from_domain} and no aligned pass: " + "; ".join(why))


def from_ambiguity(from_headers: Sequence[str]) -> str:
    """Why the From headers (their raw values) do not name one sender; ``""`` when they do (or are absent).

    More than one From header, or one From naming more than one address (the same address twice is
    still one), makes the sender ambiguous: whichever address we took, the authentication verdict
    might concern the other one.
    """
    if len(from_headers) > 1:
        return f"the message has {len(from_headers)} From headers"
    unfolded = [" ".join(value.split()) for value in from_headers]
    addresses = dict.fromkeys(email.strip().lower() for _, email in getaddresses(unfolded) if "@" in email)
    if len(addresses) > 1:
        shown = ", ".join(a[:80] for a in list(addresses)[:3])
        return f"the From names {len(addresses)} addresses ({shown})"
    return ""


class SenderDirectory(Protocol):
    def find_by_email(self, email: str) -> list[User]: ...


@dataclass(frozen=True, slots=True)
class Sender:
    """The sender as the mailgate sees it. ``account`` is set only for an authenticated, registered From."""

    address: str
    name: str
    account: User | None
    registered: bool
    authenticated: bool
    reason: str

    @property
    def known(self) -> bool:
        return self.account is not None

    @property
    def is_staff(self) -> bool:
        return self.account is not None and self.account.is_staff


def choose_account(candidates: Sequence[User]) -> User | None:
    """Among accounts sharing an address: active ones only; admin, then teacher, then the lowest id."""
    active = [user for user in candidates if user.is_active]
    return min(active, key=User.precedence) if active else None


def identify_sender(
    from_address: str,
    from_name: str,
    verdicts: Verdicts,
    *,
    envelope_sender: str,
    dkim_signatures: Iterable[str],
    users: SenderDirectory,
    from_headers: Sequence[str] | None = None,
) -> Sender:
    """The sender of a message; with ``from_headers`` (the raw From values), an ambiguous From (see
    :func:`from_ambiguity`) is an unknown sender whatever the verdicts say."""
    address = from_address.strip()
    ambiguity = from_ambiguity(from_headers) if from_headers is not None else ""
    if ambiguity:
        return Sender(address, from_name, None, False, False, f"the From is not one sender: {ambiguity}")
    auth = authenticate_from(
        domain_of(address),
        verdicts,
        envelope_sender=envelope_sender,
        dkim_domains=dkim_signing_domains(dkim_signatures),
    )
    account = choose_account(users.find_by_email(address)) if address and "@" in address else None
    if account is None:
        reason = f"{address or 'the From address'} is not a registered account ({auth.reason})"
        return Sender(address, from_name, None, False, auth.authenticated, reason)
    if not auth.authenticated:
        return Sender(address, from_name, None, True, False, f"{address} is registered but {auth.reason}")
    return Sender(address, from_name, account, True, True, f"{account.username}: {auth.reason}")
