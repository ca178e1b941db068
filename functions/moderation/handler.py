"""EventBridge schedule -> the moderation expiry: held posts past their time are marked expired and their
senders told once (see ``espmail.incoming.moderation``)."""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from espmail.incoming.moderation import Moderation
    from espmail.settings import SettingsCache


# What its boto3 clients read from the environment themselves, besides the settings.
CLIENT_ENVIRONMENT = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_PROFILE")


def _build(env: Any) -> Moderation:
    from espmail.incoming.settings import MailgateSettings
    from espmail.incoming.wiring import build_moderation

    return build_moderation(MailgateSettings.from_env(env))


@cache
def _cached_moderation() -> SettingsCache[Moderation]:
    from espmail.settings import SettingsCache

    return SettingsCache(_build, also_keyed_on=CLIENT_ENVIRONMENT)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from espmail.outgoing.schedule import parse_scheduled_event

    parse_scheduled_event(event)
    results = _cached_moderation().get(os.environ).expire_due()
    return {"expired": len(results), "lists": [r.address for r in results]}
