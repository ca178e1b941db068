"""Incoming mail: SES receipt -> S3 -> the mailgate -> list rules -> forwarded through SendGrid."""
