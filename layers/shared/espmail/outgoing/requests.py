"""Message requests live in ``espmail.domain.message_requests``; these names stay importable from here for
the ``espmail`` CLI (``infra/espmail_cli``), which imports them from this module."""

from espmail.domain.message_requests import DEFAULT_PRIORITY, MessageRequest, RequestStatus, sendto_text

__all__ = ["DEFAULT_PRIORITY", "MessageRequest", "RequestStatus", "sendto_text"]
