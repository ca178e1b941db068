"""A real handler in a fresh interpreter, the way one Lambda execution environment runs it, so its peak
memory is its own: not the bench's, not the data the bench seeded, not an earlier scenario's.

The parent (``LambdaProcess``) starts ``python -m bench.lambda_process``, hands it the function's
environment and ``Handler`` string, and then sends events one at a time over stdin (JSON lines); the child
answers each with the handler's result and its time, and at the end reports its peak RSS and the DynamoDB
requests it made (counted with the same botocore hooks as the bench process).

Peak RSS is the kernel's high-water mark of this process's memory map (``VmHWM`` in ``/proc/self/status``),
not ``getrusage().ru_maxrss``: on Linux the latter carries over the *parent's* peak across fork/exec (a
child of a 400 MB bench reads 400 MB before doing anything), which would make every child look as big as
the bench.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from bench.counters import DynamoDBCounter, current_rss_mb, high_water_mb, reset_high_water


def child_main() -> None:
    # The protocol gets its own copy of stdout; whatever the handler prints or logs (Powertools logs to
    # stdout) goes to stderr instead.
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr

    def _reply(payload: Mapping[str, Any]) -> None:
        protocol.write(json.dumps(payload, default=str) + "\n")
        protocol.flush()

    spec = json.loads(sys.stdin.readline())
    os.environ.update(spec["env"])
    counter = DynamoDBCounter().install()
    from embedded.lambda_runtime import LambdaContext, resolve_handler

    rss_before_import = current_rss_mb()
    started = time.perf_counter()
    handler = resolve_handler(spec["handler"])
    _reply(
        {
            "ready": True,
            "import_seconds": time.perf_counter() - started,
            "rss_before_import_mb": rss_before_import,
            "rss_after_import_mb": current_rss_mb(),
        }
    )
    for line in sys.stdin:
        command = json.loads(line)
        if "invoke" in command:
            context = LambdaContext(function_name=spec["function_name"], remaining_ms=int(command["remaining_ms"]))
            peak_reset = bool(command.get("reset_peak")) and reset_high_water()
            started = time.perf_counter()
            try:
                result = handler(command["invoke"], context)
            except Exception:  # the parent reports it; this environment stays up, as Lambda's does
                _reply({"error": traceback.format_exc()})
                continue
            _reply(
                {
                    "result": result,
                    "seconds": time.perf_counter() - started,
                    "rss_mb": current_rss_mb(),
                    "peak_rss_mb": high_water_mb(),
                    "peak_reset": peak_reset,
                    "dynamodb": counter.snapshot().as_json(),
                }
            )
        elif command.get("report"):
            _reply({"peak_rss_mb": high_water_mb(), "rss_mb": current_rss_mb(), **counter.snapshot().as_json()})


def end_child(process: subprocess.Popen[str], *, wait_seconds: float) -> None:
    """Ends a child that stops when its stdin closes: close it, wait, kill if it will not go."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(timeout=wait_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


class LambdaProcess:
    """One fresh interpreter running one function's handler; use as a context manager."""

    def __init__(
        self,
        handler: str,
        function_name: str,
        env: Mapping[str, str],
        *,
        python_path: Sequence[str] = (),
    ) -> None:
        self.handler = handler
        self.function_name = function_name
        self.env = dict(env)
        self.python_path = list(python_path)
        self.ready: dict[str, Any] = {}
        self._process: subprocess.Popen[str] | None = None
        self._stderr: Any = None

    def __enter__(self) -> LambdaProcess:
        env = {**os.environ, **self.env}
        if self.python_path:
            env["PYTHONPATH"] = os.pathsep.join(self.python_path)
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.lambda_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        self._send({"handler": self.handler, "function_name": self.function_name, "env": self.env})
        self.ready = self._receive()
        return self

    def __exit__(self, *exc: object) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        end_child(process, wait_seconds=30)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def stderr_tail(self, limit: int = 4000) -> str:
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return str(self._stderr.read())[-limit:]

    def _send(self, payload: Mapping[str, Any]) -> None:
        if self._process is None or self._process.stdin is None:
            raise RuntimeError("the Lambda process is not running")
        self._process.stdin.write(json.dumps(payload) + "\n")
        self._process.stdin.flush()

    def _receive(self) -> dict[str, Any]:
        if self._process is None or self._process.stdout is None:
            raise RuntimeError("the Lambda process is not running")
        line = self._process.stdout.readline()
        if not line:
            code = self._process.wait(timeout=30)
            raise RuntimeError(f"the {self.function_name} process exited (code {code}):\n{self.stderr_tail()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def invoke(self, event: Any, *, remaining_ms: int = 300_000, reset_peak: bool = False) -> dict[str, Any]:
        """The handler's ``result``, its ``seconds``, and the process's ``rss_mb`` / ``peak_rss_mb`` after it
        (``reset_peak``: the peak of this invocation alone, where the kernel allows resetting it)."""
        self._send({"invoke": event, "remaining_ms": remaining_ms, "reset_peak": reset_peak})
        answer = self._receive()
        if "error" in answer:
            raise RuntimeError(f"{self.function_name} raised:\n{answer['error']}")
        return answer

    def report(self) -> dict[str, Any]:
        self._send({"report": True})
        return self._receive()


if __name__ == "__main__":
    child_main()
