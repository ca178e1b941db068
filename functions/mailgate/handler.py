"""SES receipt rule -> Lambda action (``Event``): the mailgate.

The event carries headers and verdicts; the body is in S3 where the rule's S3 action stored it. A
transient failure raises: Lambda's async retries (two) and then the on-failure queue take over.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from espmail.incoming.mailgate import Mailgate

_WIRED: dict[tuple[tuple[str, str], ...], Mailgate] = {}


def _mailgate() -> Mailgate:
    """Built on the first invocation (not at import) and kept while the environment is the same."""
    environment = tuple(sorted(os.environ.items()))
    wired = _WIRED.get(environment)
    if wired is None:
        from espmail.incoming.settings import MailgateSettings
        from espmail.incoming.wiring import build_mailgate

        wired = build_mailgate(MailgateSettings.from_env())
        _WIRED.clear()
        _WIRED[environment] = wired
    return wired


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from espmail.incoming.events import parse_ses_event

    receipts = parse_ses_event(event)
    mailgate = _mailgate()
    return {"results": [mailgate.receive(receipt).as_dict() for receipt in receipts]}
