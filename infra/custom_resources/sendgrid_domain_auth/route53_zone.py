"""The Route53 adapter: writes and removes SendGrid's records in one hosted zone, and waits for INSYNC.

- ``upsert`` writes exactly the records given, in one change batch. A CNAME replaces what was at its name
  (DNS allows nothing else); TXT and MX records are merged with the other values already at that name
  (an apex TXT usually holds other verifications), except that a second SPF policy is refused: two
  ``v=spf1`` records make SPF fail for the whole domain.
- ``remove`` takes out only values it would have written and that are still there (re-read first, so a
  record already gone, or changed by a person since, is left alone); values in ``keep`` stay. A zone
  that no longer exists has nothing left to remove.
- Every Route53 error becomes ``DnsChangeRefused`` naming the zone and Route53's code and words.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from espmail.errors import EspMailError
from espmail.observability import logger
from sendgrid_domain_auth.records import DnsRecord, normal_name, normal_value

if TYPE_CHECKING:
    from mypy_boto3_route53 import Route53Client

DEFAULT_TTL: Final = 300
SENDGRID_TARGET_SUFFIX: Final = ".sendgrid.net"


class DnsChangeRefused(EspMailError):
    """Route53 did not read or change the zone; ``code`` is Route53's error code when it gave one."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def zone_id_of(text: str) -> str:
    """``Z123`` from ``Z123`` or ``/hostedzone/Z123`` (what ``Ref`` and the API each give)."""
    return text.strip().rsplit("/", 1)[-1]


def _grouped(records: Iterable[DnsRecord]) -> dict[tuple[str, str], list[DnsRecord]]:
    groups: dict[tuple[str, str], list[DnsRecord]] = {}
    for record in records:
        groups.setdefault((record.name, record.type), []).append(record)
    return groups


def _is_spf(record_type: str, value: str) -> bool:
    return record_type == "TXT" and normal_value("TXT", value).lower().startswith("v=spf1")


class HostedZone:
    def __init__(self, zone_id: str, client: Route53Client | Any, *, ttl: int = DEFAULT_TTL) -> None:
        self.zone_id = zone_id_of(zone_id)
        self._client: Any = client
        self.ttl = ttl

    def _refused(self, exc: ClientError | BotoCoreError, doing: str) -> DnsChangeRefused:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code, message = str(error.get("Code", "")), str(error.get("Message", ""))
            return DnsChangeRefused(
                f"Route53 refused to {doing} in hosted zone {self.zone_id}: {code}: {message}", code
            )
        return DnsChangeRefused(f"Route53 could not be reached to {doing} in hosted zone {self.zone_id}: {exc}")

    def current(self, name: str, record_type: str) -> dict[str, Any] | None:
        """The record set at ``name`` of ``record_type``, as Route53 holds it, or None."""
        try:
            answer = self._client.list_resource_record_sets(
                HostedZoneId=self.zone_id,
                StartRecordName=normal_name(name) + ".",
                StartRecordType=record_type,
                MaxItems="1",
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._refused(exc, f"list the {record_type} records of {name}") from exc
        for found in answer.get("ResourceRecordSets", []):
            if normal_name(found["Name"]) == normal_name(name) and found["Type"] == record_type:
                return dict(found)
        return None

    def _record_set(self, name: str, record_type: str, values: Sequence[str], ttl: int) -> dict[str, Any]:
        return {
            "Name": normal_name(name) + ".",
            "Type": record_type,
            "TTL": ttl,
            "ResourceRecords": [{"Value": v} for v in values],
        }

    def _change(self, changes: list[dict[str, Any]], comment: str, doing: str) -> str | None:
        if not changes:
            return None
        try:
            answer = self._client.change_resource_record_sets(
                HostedZoneId=self.zone_id, ChangeBatch={"Comment": comment[:256], "Changes": changes}
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._refused(exc, doing) from exc
        change_id = str(answer["ChangeInfo"]["Id"])
        logger().info(
            "Route53 change submitted",
            extra={"hosted_zone_id": self.zone_id, "change_id": change_id, "changes": len(changes), "doing": doing},
        )
        return change_id

    def upsert(self, records: Iterable[DnsRecord], comment: str = "SendGrid domain authentication") -> str | None:
        """Writes the records; returns the change id to wait on (None when there was nothing to write)."""
        changes: list[dict[str, Any]] = []
        for (name, record_type), group in _grouped(records).items():
            ours = list(dict.fromkeys(r.route53_value for r in group))
            values, ttl = ours, self.ttl
            if record_type in ("TXT", "MX"):
                existing = self.current(name, record_type)
                if existing is not None and existing.get("ResourceRecords"):
                    mine = {normal_value(record_type, v) for v in ours}
                    others = [
                        str(v["Value"])
                        for v in existing["ResourceRecords"]
                        if normal_value(record_type, str(v["Value"])) not in mine
                    ]
                    clash = next((v for v in others if _is_spf(record_type, v)), None)
                    if clash is not None and any(_is_spf(record_type, v) for v in ours):
                        raise DnsChangeRefused(
                            f"{name} already publishes the SPF policy {normal_value('TXT', clash)!r}; SendGrid asks "
                            f"for {normal_value('TXT', ours[0])!r} there, and two SPF policies make SPF fail. "
                            "Merge SendGrid's include into the existing policy by hand, or authenticate the "
                            "domain with automated security (CNAME records only).",
                            "SpfConflict",
                        )
                    values = others + ours
            changes.append({"Action": "UPSERT", "ResourceRecordSet": self._record_set(name, record_type, values, ttl)})
        return self._change(changes, comment, "write SendGrid's DNS records")

    def _removal_plan(self, records: Iterable[DnsRecord], keep: set[tuple[str, str, str]]) -> list[dict[str, Any]]:
        changes: list[dict[str, Any]] = []
        for (name, record_type), group in _grouped(records).items():
            ours = {normal_value(record_type, r.route53_value) for r in group} - {
                value for kept_name, kept_type, value in keep if (kept_name, kept_type) == (name, record_type)
            }
            existing = self.current(name, record_type)
            if not ours or existing is None or not existing.get("ResourceRecords"):
                continue
            values = [str(v["Value"]) for v in existing["ResourceRecords"]]
            remaining = [v for v in values if normal_value(record_type, v) not in ours]
            if len(remaining) == len(values):
                logger().info(
                    "record no longer holds the value written; left alone",
                    extra={"name": name, "type": record_type, "hosted_zone_id": self.zone_id},
                )
                continue
            if remaining:
                ttl = int(existing.get("TTL", self.ttl))
                changes.append(
                    {"Action": "UPSERT", "ResourceRecordSet": self._record_set(name, record_type, remaining, ttl)}
                )
            else:
                changes.append({"Action": "DELETE", "ResourceRecordSet": existing})
        return changes

    def remove(
        self,
        records: Iterable[DnsRecord],
        keep: Iterable[DnsRecord] = (),
        comment: str = "SendGrid domain authentication removed",
    ) -> str | None:
        """Removes the records' values where they still are; a value also in ``keep`` stays."""
        wanted = list(records)
        kept = {(r.name, r.type, normal_value(r.type, r.route53_value)) for r in keep}
        try:
            return self._change(self._removal_plan(wanted, kept), comment, "remove SendGrid's DNS records")
        except DnsChangeRefused as exc:
            if exc.code == "NoSuchHostedZone":  # the zone went first: its records went with it
                logger().warning(
                    "hosted zone no longer exists; nothing to remove", extra={"hosted_zone_id": self.zone_id}
                )
                return None
            if exc.code != "InvalidChangeBatch":
                raise
            # The zone changed between reading and deleting (another writer): read again and retry once.
            logger().warning("Route53 change batch out of date; reading the zone again", extra={"error": str(exc)})
            return self._change(self._removal_plan(wanted, kept), comment, "remove SendGrid's DNS records")

    def in_sync(self, change_id: str) -> bool:
        try:
            answer = self._client.get_change(Id=change_id)
        except (ClientError, BotoCoreError) as exc:
            raise self._refused(exc, f"read the status of change {change_id}") from exc
        return str(answer["ChangeInfo"]["Status"]) == "INSYNC"

    def sendgrid_cnames(self, names: Iterable[str]) -> list[DnsRecord]:
        """The CNAMEs at ``names`` that point into SendGrid: what is left to remove when SendGrid has
        already forgotten the domain and its record list with it."""
        found: list[DnsRecord] = []
        for name in dict.fromkeys(normal_name(n) for n in names):
            existing = self.current(name, "CNAME")
            for value in (existing or {}).get("ResourceRecords", []):
                target = normal_name(str(value["Value"]))
                if target.endswith(SENDGRID_TARGET_SUFFIX):
                    found.append(DnsRecord(key="leftover", type="CNAME", host=name, data=target))
        return found
