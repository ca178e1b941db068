"""``espmail deploy-check``: what would make the first ``sam deploy`` fail in this account and region, said
before CloudFormation says it in its own words (and rolls everything back).

It looks, with your usual AWS credentials, at:
- the region: SES receives mail only in some (the template's ``Rules`` list them; CloudFormation refuses
  the others too);
- an SES identity for the site domain that already exists (``AWS::SES::EmailIdentity`` cannot adopt it);
- an MX record for the site domain already in the hosted zone (``AWS::Route53::RecordSet`` cannot adopt it);
- another active receipt rule set (the deploy stops unless ``AllowReplaceActiveRuleSet=true``);
- the API key secret: a complete ARN, and whether a customer managed key encrypts it (then
  ``SendGridApiKeyKmsKeyArn`` must name that key).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from embedded.template import template

AWS_MANAGED_SECRETS_KEY = "alias/aws/secretsmanager"


@dataclass(frozen=True)
class Finding:
    blocking: bool
    what: str
    do: str

    def __str__(self) -> str:
        return f"{'problem' if self.blocking else 'note'}: {self.what}\n  do: {self.do}"


def receiving_regions(tpl: Any | None = None) -> list[str]:
    """The regions the template's ``SesReceivesMailInThisRegion`` rule accepts."""
    rule = (tpl or template())["Rules"]["SesReceivesMailInThisRegion"]
    regions, _region = rule["Assertions"][0]["Assert"]["Fn::Contains"]
    return [str(r) for r in regions]


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", {}) or {}
    return str(response.get("Error", {}).get("Code", ""))


def check(
    client: Callable[[str], Any],
    region: str,
    domain: str,
    hosted_zone_id: str = "",
    secret_arn: str = "",
    kms_key_arn: str = "",
) -> list[Finding]:
    findings: list[Finding] = []
    regions = receiving_regions()
    if region not in regions:
        findings.append(
            Finding(True, f"SES does not receive mail in {region}", f"deploy in one of: {', '.join(regions)}")
        )
        return findings
    try:
        client("sesv2").get_email_identity(EmailIdentity=domain)
    except Exception as exc:  # noqa: BLE001 - NotFoundException is the good answer; others are reported
        if _code(exc) != "NotFoundException":
            findings.append(Finding(True, f"cannot read SES identities in {region}: {exc}", "check your credentials"))
    else:
        findings.append(
            Finding(
                True,
                f"SES in {region} already has an identity for {domain} (made by hand or by another stack); the "
                "stack's SiteEmailIdentity would fail with 'already exists'",
                f"if nothing else sends or receives through it: aws sesv2 delete-email-identity --email-identity "
                f"{domain} --region {region}; otherwise deploy this stack for another domain or region",
            )
        )
    if hosted_zone_id:
        answer = client("route53").list_resource_record_sets(
            HostedZoneId=hosted_zone_id, StartRecordName=domain, StartRecordType="MX", MaxItems="1"
        )
        for record in answer.get("ResourceRecordSets", []):
            if record["Name"].rstrip(".").lower() == domain.lower() and record["Type"] == "MX":
                values = ", ".join(r["Value"] for r in record.get("ResourceRecords", []))
                findings.append(
                    Finding(
                        True,
                        f"the zone {hosted_zone_id} already has an MX record for {domain} ({values}); the "
                        "stack's SiteInboundMxRecord would fail with 'it already exists'",
                        "delete that MX record when the domain's mail may go to SES (all of it will), or deploy "
                        "with HostedZoneId empty and enter the records by hand",
                    )
                )
    active = client("ses").describe_active_receipt_rule_set().get("Metadata", {}).get("Name")
    if active:
        findings.append(
            Finding(
                False,
                f"the receipt rule set {active} is active in {region}; only one can be",
                "the deploy stops with its name unless AllowReplaceActiveRuleSet=true (then that set's mail stops "
                "being handled)",
            )
        )
    if secret_arn:
        findings += _secret_findings(client, secret_arn, kms_key_arn)
    return findings


def _secret_findings(client: Callable[[str], Any], secret_arn: str, kms_key_arn: str) -> list[Finding]:
    try:
        secret = client("secretsmanager").describe_secret(SecretId=secret_arn)
    except Exception as exc:  # noqa: BLE001 - reported as it is
        return [Finding(True, f"cannot read the secret {secret_arn}: {exc}", "create it first (README, step 1)")]
    findings = []
    if secret["ARN"] != secret_arn:
        findings.append(
            Finding(
                True,
                f"{secret_arn} is not the secret's complete ARN; IAM would grant nothing for it",
                f"pass SendGridApiKeySecretArn={secret['ARN']}",
            )
        )
    key = str(secret.get("KmsKeyId") or "")
    if key and key != AWS_MANAGED_SECRETS_KEY and key.rsplit("/", 1)[-1] != kms_key_arn.rsplit("/", 1)[-1]:
        findings.append(
            Finding(
                True,
                f"the secret is encrypted with the customer managed key {key}",
                f"pass SendGridApiKeyKmsKeyArn=<that key's ARN> (aws kms describe-key --key-id {key} --query "
                "KeyMetadata.Arn) so the functions may decrypt it",
            )
        )
    return findings


@click.command("deploy-check")
@click.option("--region", required=True, envvar="AWS_REGION", help="The region you will deploy in.")
@click.option("--site-domain", required=True, help="The SiteDomain parameter.")
@click.option("--hosted-zone-id", default="", help="The HostedZoneId parameter (empty: DNS is elsewhere).")
@click.option("--secret-arn", default="", help="The SendGridApiKeySecretArn parameter.")
@click.option("--kms-key-arn", default="", help="The SendGridApiKeyKmsKeyArn parameter, if any.")
def deploy_check(region: str, site_domain: str, hosted_zone_id: str, secret_arn: str, kms_key_arn: str) -> None:
    """Say what would make the first `sam deploy` fail here, and what to do (exit 1 if anything would)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    def client(service: str) -> Any:
        return boto3.client(service, region_name=region)  # type: ignore[call-overload]

    try:
        findings = check(client, region, site_domain.lower(), hosted_zone_id, secret_arn, kms_key_arn)
    except (BotoCoreError, ClientError) as exc:
        click.echo(f"error: cannot look at {region} with these AWS credentials: {exc}", err=True)
        raise SystemExit(2) from exc
    for finding in findings:
        click.echo(str(finding))
    if not findings:
        click.echo(f"nothing in {region} stands in the way of deploying {site_domain}")
    raise SystemExit(1 if any(f.blocking for f in findings) else 0)
