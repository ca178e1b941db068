"""The project's own exceptions. Adapters translate library errors into these (``raise ... from exc``)."""

from __future__ import annotations


class EspMailError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigurationError(EspMailError):
    """A setting is missing or malformed; the message names the variable."""


class InvalidInput(EspMailError):
    """Input from a person or another system is malformed; the message says what and how to fix it."""


class NotFound(EspMailError):
    """A named item does not exist."""


class MailTransportError(EspMailError):
    """The mail provider did not accept a message."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class RetryableSendError(MailTransportError):
    """Worth trying again later: 429, 5xx, a timeout, a refused or reset connection.

    ``retry_after`` is how many seconds the provider asked us to wait (``Retry-After`` or
    ``X-RateLimit-Reset``), when it said so.
    """

    def __init__(
        self, message: str, *, status: int | None = None, body: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status, body=body)
        self.retry_after = retry_after


class PermanentSendError(MailTransportError):
    """Trying again will not help (a 4xx other than 429): the message itself or the account is wrong."""


class ConditionFailed(EspMailError):
    """A conditional write lost: someone else holds the item or it is not in the expected state."""
