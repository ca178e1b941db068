"""The SendGrid double in a process of its own, for the benchmarks.

In the tests the double answers from a thread of the test process. In a benchmark that would put the
double's own work (JSON parsing and schema validation: ~1.7 ms per single-recipient request, ~50 ms per
1,000-personalization request) under the same GIL as the code being measured, and its kept bodies into
the measured process's memory; real SendGrid is on another machine. So the bench runs the very same
``SendGridDouble`` in a child process (``python -m bench.remote_double``) and talks to it through a small
control API on a second loopback port; ``RemoteSendGridDouble`` is the stack-side stand-in with the
methods the bench uses (``host``, ``set_latency``, ``requests_log``, ``accepted_summary``, ``reset``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.lambda_process import end_child
from embedded.sendgrid_double import SendGridDouble


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    status: int | None
    duration: float
    started_at: float


@dataclass(frozen=True)
class AcceptedSummary:
    """One accepted ``/v3/mail/send`` body, reduced to what the bench checks."""

    message_id: str
    personalizations: int
    recipients: tuple[str, ...]
    body_bytes: int


def _summary(mail: Any) -> dict[str, Any]:
    recipients = [
        str(address.get("email", "")).lower()
        for personalization in mail.body.get("personalizations", [])
        for kind in ("to", "cc", "bcc")
        for address in personalization.get(kind, []) or []
    ]
    return {
        "message_id": mail.message_id,
        "personalizations": len(mail.body.get("personalizations", [])),
        "recipients": recipients,
        "body_bytes": len(json.dumps(mail.body)),
    }


def serve(api_key: str) -> None:
    """Runs the double and its control API until stdin closes (the parent died or stopped us)."""
    double = SendGridDouble(api_key=api_key).start()

    class Control(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _answer(self, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/log":
                self._answer([r.__dict__ for r in double.requests_log])
            elif self.path == "/accepted":
                self._answer([_summary(m) for m in double.accepted])
            else:
                self.send_error(404)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path == "/latency":
                double.set_latency(float(body["seconds"]))
                self._answer({"ok": True})
            elif self.path == "/reset":
                double.reset()
                self._answer({"ok": True})
            else:
                self.send_error(404)

    control = ThreadingHTTPServer(("127.0.0.1", 0), Control)
    thread = threading.Thread(target=control.serve_forever, name="double-control", daemon=True)
    thread.start()
    print(f"READY {double.host} http://127.0.0.1:{control.server_address[1]}", flush=True)
    sys.stdin.read()  # returns at EOF: the parent closed our stdin or went away
    control.shutdown()
    double.stop()


class RemoteSendGridDouble:
    """Starts ``python -m bench.remote_double`` and drives it; the same surface the bench uses of
    ``SendGridDouble``."""

    def __init__(self, api_key: str, *, python_path: Sequence[str] = ()) -> None:
        self.api_key = api_key
        self._python_path = list(python_path)
        self._process: subprocess.Popen[str] | None = None
        self._host = ""
        self._control = ""

    @property
    def host(self) -> str:
        if not self._host:
            raise RuntimeError("the remote SendGrid double has not been started")
        return self._host

    def start(self) -> RemoteSendGridDouble:
        if self._process is not None:
            return self
        env = dict(os.environ)
        if self._python_path:
            env["PYTHONPATH"] = os.pathsep.join(self._python_path)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.remote_double", self.api_key],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().split()
        if len(line) != 3 or line[0] != "READY":
            self.stop()
            raise RuntimeError(f"the remote SendGrid double did not start: {line!r}")
        self._host, self._control = line[1], line[2]
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        end_child(process, wait_seconds=10)

    def _call(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        # Our own child's loopback control URL (http://127.0.0.1:<port>), never anything a user typed.
        url = f"{self._control}{path}"
        request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
            return json.loads(answer.read())

    def set_latency(self, seconds: float) -> None:
        self._call("/latency", {"seconds": seconds})

    def reset(self) -> None:
        """Forgets accepted mail, the request log and the latency (as ``SendGridDouble.reset``)."""
        self._call("/reset", {})

    @property
    def requests_log(self) -> list[LoggedRequest]:
        return [LoggedRequest(**record) for record in self._call("/log")]

    def accepted_summary(self) -> list[AcceptedSummary]:
        return [
            AcceptedSummary(m["message_id"], m["personalizations"], tuple(m["recipients"]), m["body_bytes"])
            for m in self._call("/accepted")
        ]


if __name__ == "__main__":
    serve(sys.argv[1])
