"""Outgoing bulk mail: message requests expanded into outbox rows (one per recipient) and sent through
SendGrid. ESP's ``MessageRequest`` -> ``TextOfEmail`` -> send, made sturdy.

- the message request, its recipient spec and ``sendto``, and their validation, and the outbox row are
  domain types: ``espmail.domain.message_requests``, ``espmail.domain.outbox``, ``espmail.domain.recipients``;
- ``render``: the sandboxed templates (ESP's variables; unknown ones render empty; header-safe);
- ``recipients``: who a request reaches (users -> addresses, skips with reasons, de-duplication);
- ``expand``: the expander use case (scheduled); ``send``: the sender use case (scheduled);
- ``completion``: final counts and the one failure notice; ``unsubscribe``: signed one-click links;
- ``requests_service``: the API the CLI and the website call (create, get, list, cancel, retry, preview).
"""
