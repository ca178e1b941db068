"""A ``/v3/mail/send`` client over a pool of kept-alive connections, for ``SendGridMailer(client=...)``.

The ``sendgrid`` package opens a new connection (and TLS handshake) per call. The sender makes many calls
in parallel, so it gives the mailer this client instead: same interface as far as the mailer is
concerned (``send(payload)`` returning an object with ``status_code`` and ``headers``, ``client.timeout``,
``python_http_client.exceptions.HTTPError`` for answers >= 400), but over a urllib3 pool sized to the
sender's concurrency. One pool per run: connections do not outlive the invocation (a frozen Lambda's
sockets are stale when it thaws). urllib3's own errors become ``TimeoutError`` / ``ConnectionError`` so
the mailer's ``translate_error`` classifies them as retryable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DEFAULT_PATH = "/v3/mail/send"


@dataclass
class _Settings:
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class MailSendResponse:
    status_code: int
    headers: Any
    body: bytes


class PooledMailSendClient:
    def __init__(self, api_key: str, host: str, pool_size: int = 8, user_agent: str = "espmail-sender") -> None:
        import urllib3

        self.client = _Settings()
        self._url = host.rstrip("/") + DEFAULT_PATH
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": user_agent,
        }
        self._pool = urllib3.PoolManager(num_pools=2, maxsize=max(1, pool_size), block=True, retries=False)

    def send(self, payload: dict[str, Any]) -> MailSendResponse:
        import urllib3
        from python_http_client.exceptions import HTTPError

        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        try:
            answer = self._pool.request(
                "POST",
                self._url,
                body=body,
                headers=self._headers,
                timeout=urllib3.Timeout(connect=min(5.0, self.client.timeout), read=self.client.timeout),
                redirect=False,
            )
        except urllib3.exceptions.NewConnectionError as exc:  # before TimeoutError: urllib3 2 subclasses it
            raise ConnectionError(f"could not connect to {self._url}: {exc}") from exc
        except urllib3.exceptions.TimeoutError as exc:
            raise TimeoutError(f"no answer within {self.client.timeout:.1f}s") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
        if answer.status >= 400:
            raise HTTPError(answer.status, answer.reason or "", answer.data, answer.headers)
        return MailSendResponse(answer.status, answer.headers, answer.data)

    def close(self) -> None:
        self._pool.clear()
