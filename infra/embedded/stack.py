"""The embedded local stack: moto (AWS) and the SendGrid double on loopback, with the template's tables,
bucket, queues and rule set, and the real handlers invoked in-process. The tests, the demo and the
benchmarks all run on this one thing."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from embedded.aws import ACCOUNT, CREDENTIALS, REGION, MotoServer, client, create_resources, physical_names
from embedded.lambda_runtime import invoke_handler, restore_environment
from embedded.sendgrid_double import SendGridDouble
from embedded.template import Resolver, function_environment, template
from espmail.bootstrap import forget_clients

LOCAL_API_KEY = "SG.local-double-key"
SITE_DOMAIN = "esp.example.org"

LOCAL_PARAMETERS: dict[str, Any] = {
    "SiteDomain": SITE_DOMAIN,
    "SiteName": "Splash Local",
    "SiteUrl": "https://esp.example.org",
    "AllowedSenderDomains": [SITE_DOMAIN],
    "SupportAddress": f"support@{SITE_DOMAIN}",
    "BouncesAddress": f"bounces@{SITE_DOMAIN}",
    "UnsubscribeUrl": "https://esp.example.org/unsubscribe",
    "SentRetentionDays": 90,
    "RawMailRetentionDays": 30,
    "LogLevel": "WARNING",
    "HostedZoneId": "",
}


class EmbeddedStack:
    """Start once (per test session, per demo), ``reset()`` between uses."""

    def __init__(self, *, eml_dir: Path | None = None, parameters: Mapping[str, Any] | None = None) -> None:
        self.tpl = template()
        self.moto = MotoServer()
        self.sendgrid = SendGridDouble(api_key=LOCAL_API_KEY, eml_dir=eml_dir)
        self.parameters = {**LOCAL_PARAMETERS, **(parameters or {})}
        self.names = physical_names(self.tpl)
        self.secret_arn = ""
        self._base_env: dict[str, str] = {}
        self._saved_env: dict[str, str | None] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> EmbeddedStack:
        self.moto.start()
        self.sendgrid.start()
        self._base_env = {
            **CREDENTIALS,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.moto.endpoint,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_DEV": "false",
            "SENDGRID_HOST": self.sendgrid.host,
            "SENDGRID_TIMEOUT_SECONDS": "5",
        }
        self._set_environment(self._base_env)
        self._create()
        return self

    def stop(self) -> None:
        self.sendgrid.stop()
        self.moto.stop()
        # Leave the process as it was: another stack (or none) may come next in the same process.
        restore_environment(self._saved_env)
        self._saved_env.clear()
        forget_clients()

    def _set_environment(self, variables: Mapping[str, str]) -> None:
        for name in variables:
            self._saved_env.setdefault(name, os.environ.get(name))
        os.environ.update(variables)
        forget_clients()

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Empties every resource and the double's records: each test starts from the template alone."""
        self.moto.reset()
        self.sendgrid.reset()
        forget_clients()
        self._create()

    def _create(self) -> None:
        secrets = client("secretsmanager", self.moto.endpoint)
        self.secret_arn = secrets.create_secret(Name="espmail/sendgrid-api-key", SecretString=LOCAL_API_KEY)["ARN"]
        self.parameters["SendGridApiKeySecretArn"] = self.secret_arn
        create_resources(self.moto.endpoint, self.resolver)

    # ------------------------------------------------------------------ wiring
    @property
    def resolver(self) -> Resolver:
        return Resolver(self.tpl, self.parameters, self.names, account=ACCOUNT, region=REGION)

    @property
    def endpoint(self) -> str:
        return self.moto.endpoint

    def client(self, service: str) -> Any:
        return client(service, self.moto.endpoint)

    def function_env(self, logical_id: str | None = None) -> dict[str, str]:
        """The environment Lambda would give the function: its template variables plus the local wiring."""
        return {**function_environment(logical_id, self.resolver), **self._base_env}

    def name(self, logical_id: str) -> str:
        return str(self.resolver.ref(logical_id))

    def invoke(self, logical_id: str, event: Any, *, remaining_ms: int = 300_000) -> Any:
        """Calls the function's real handler (``Handler:`` from the template) in this process."""
        return invoke_handler(
            logical_id,
            event,
            self.function_env(logical_id),
            tpl=self.tpl,
            remaining_ms=remaining_ms,
            resolver=self.resolver,
        )

    def activate(self, logical_id: str | None = None) -> None:
        """Puts a function's environment into this process for good (the CLI and the demo use this)."""
        self._set_environment(self.function_env(logical_id))
