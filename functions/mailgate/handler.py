"""SES receipt rule -> Lambda action (``Event``): the mailgate.

The event carries headers and verdicts; the body is in S3 where the rule's S3 action stored it. A
transient failure raises: Lambda's async retries (two) and then the on-failure queue take over.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from espmail.incoming.mailgate import Mailgate
    from espmail.settings import SettingsCache

# What the mailgate's boto3 clients read from the environment, besides the settings themselves.
CLIENT_ENVIRONMENT = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


def _build(env: Mapping[str, str]) -> Mailgate:
    from espmail.incoming.settings import MailgateSettings
    from espmail.incoming.wiring import build_mailgate

    return build_mailgate(MailgateSettings.from_env(env))


@cache
def _cached_mailgate() -> SettingsCache[Mailgate]:
    from espmail.settings import SettingsCache

    return SettingsCache(_build, also_keyed_on=CLIENT_ENVIRONMENT)


def _mailgate() -> Mailgate:
    """Built on the first invocation (not at import) and kept while what it was built from is the same:
    the variables its settings read and those its clients read. Nothing else counts: Lambda sets variables
    such as ``_X_AMZN_TRACE_ID`` anew for every invocation, and a rebuild costs new clients and connections."""
    return _cached_mailgate().get(os.environ)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from espmail.incoming.events import parse_ses_event

    receipts = parse_ses_event(event)
    mailgate = _mailgate()
    return {"results": [mailgate.receive(receipt).as_dict() for receipt in receipts]}
