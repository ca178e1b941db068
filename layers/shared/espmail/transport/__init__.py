"""Adapters to the outside world: the SendGrid v3 API, S3 (raw inbound mail), Secrets Manager."""
