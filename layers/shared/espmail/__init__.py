"""The shared package of ESP Mail: every Lambda function imports it from the shared layer (/opt/python).

- ``settings``       one validated settings model per function, read from the environment once
- ``observability``  Powertools logger and metrics, set up in one place
- ``errors``         the project's own exceptions
- ``domain``         plain domain types (no storage, no transport)
- ``storage``        PynamoDB models and repositories (table names bound at run time)
- ``transport``      adapters to the outside: SendGrid, S3, Secrets Manager
- ``mime``           inbound MIME to SendGrid's structured shape
- ``outgoing``       use cases: expand message requests, send the outbox
- ``incoming``       use cases: the mailgate
"""
