"""``Custom::SendGridDomainAuthentication`` (see ``resource``); ``Handler: sendgrid_domain_auth.lambda_handler``."""

from sendgrid_domain_auth.handler import lambda_handler

__all__ = ["lambda_handler"]
