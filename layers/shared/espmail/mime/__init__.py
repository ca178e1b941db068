"""Inbound MIME to SendGrid's structured shape (DESIGN.md, incoming pipeline steps 3, 9 and 10).

Pure standard library: ``parse_message`` never raises, ``convert`` never raises, and nothing a sender
wrote is lost silently (what could not travel as it was is attached whole or named in ``defects``).
"""

from espmail.mime.convert import (
    OPAQUE_FILENAME,
    ConvertedMail,
    convert,
    extension_for,
    from_address,
    referenced_content_ids,
    sanitize_filename,
)
from espmail.mime.parse import ParsedMessage, parse_message, raw_header, safe_header, safe_header_all
from espmail.mime.sendgrid_shape import estimate_sendgrid_size, to_sendgrid_attachments
from espmail.transport.sendgrid_mailer import MAX_REQUEST_BYTES as SENDGRID_MAX_REQUEST_BYTES

__all__ = [
    "OPAQUE_FILENAME",
    "SENDGRID_MAX_REQUEST_BYTES",
    "ConvertedMail",
    "ParsedMessage",
    "convert",
    "estimate_sendgrid_size",
    "extension_for",
    "from_address",
    "parse_message",
    "raw_header",
    "referenced_content_ids",
    "safe_header",
    "safe_header_all",
    "sanitize_filename",
    "to_sendgrid_attachments",
]
