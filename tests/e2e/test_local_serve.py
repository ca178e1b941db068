"""`espmail local serve` the way a person uses it: start it, send a real message over SMTP, see the
forwarded copies appear as .eml files, use `--local` against it, stop it with Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from embedded.aws import free_port

REPO = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 60


def _wait_for_port(port: int, process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"local serve exited early ({process.returncode}):\n{output}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listened on {port} within {timeout}s")


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _clean_env() -> dict[str, str]:
    """A person's shell: no AWS endpoint or credentials from this test session's own stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SENDGRID_"))}
    env["PYTHONPATH"] = os.pathsep.join(str(REPO / p) for p in ("layers/shared", "functions", "infra"))
    env["COLUMNS"] = "200"
    return env


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "espmail_cli.main", "local", "serve", "--smtp-port", str(port), "--every", "1"],
        cwd=tmp_path,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_port(port, process, STARTUP_SECONDS)
        yield process, port, tmp_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_a_message_sent_over_smtp_is_forwarded_as_eml_files_and_ctrl_c_stops_cleanly(
    served: tuple[subprocess.Popen[str], int, Path],
) -> None:
    process, port, folder = served
    state_file = folder / ".espmail" / "local.json"
    out = folder / "out" / "local"
    assert state_file.exists()
    state = json.loads(state_file.read_text())
    assert state["pid"] == process.pid
    assert state["smtp_port"] == port

    sent = EmailMessage()
    sent["From"] = "Ruth Feld <ruth@physics.example.edu>"
    sent["To"] = "E1234-class@esp.example.org"
    sent["Subject"] = "Lab safety"
    sent.set_content("Goggles on from the first minute, please.")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        refused = smtp.send_message(sent)
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("ruth@physics.example.edu", ["someone@elsewhere.example"], sent.as_bytes())
    assert refused == {}

    # E1234 has two sections: teachers ruth and omar, 8 students, and the directors.
    assert _wait_for(lambda: len(list(out.glob("*.eml"))) >= 11, timeout=30), sorted(out.glob("*"))
    copies = [message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(out.glob("*.eml"))]
    assert len(copies) == 11
    assert {str(c["Subject"]) for c in copies} == {"[E1234] Lab safety"}
    assert all("teacher_ruth@esp.example.org" in str(c["From"]) for c in copies)
    recipients = {str(c["To"]) for c in copies}
    assert any("omar.h@example.com" in r for r in recipients)
    assert any("splash-directors@mit.example.edu" in r for r in recipients)
    assert "Goggles on" in copies[0].get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]

    listed = subprocess.run(
        [sys.executable, "-m", "espmail_cli.main", "--local", "inbound", "list", "--since", "1h"],
        cwd=folder,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "forwarded" in listed.stdout
    assert "1 message;" in listed.stdout

    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)

    assert process.returncode == 0, output
    assert "e1234-class@esp.example.org: forwarded to 11 people (rule class-list)" in output
    assert "11 .eml written to" in output
    assert "stopped" in output
    assert "Traceback" not in output
    assert "⏱" not in output  # the scheduled runs found nothing to do: no line every second
    assert "failed" not in output
    assert (folder / ".espmail" / "functions.log").exists()  # the mailgate's own JSON log
    assert not state_file.exists()
