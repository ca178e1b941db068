"""``espmail local replay``: one JSON object on stdout, exit 0 whatever the decision."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from embedded.ses_inbound import InboundVerdicts
from espmail_cli.replay import replay_on
from tests.e2e.mailgate_support import RUTH, SITE, seeded

CORPUS = Path(__file__).parents[1] / "corpus"
REPO = Path(__file__).parents[2]


def test_the_command_prints_one_json_object_and_exits_0(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "espmail_cli.main",
            "local",
            "replay",
            str(CORPUS / "nodemailer" / "mail.eml"),
            "--to",
            "E1234-class",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode()[-2000:]
    result = json.loads(completed.stdout)  # the whole of stdout is one JSON object
    assert result["decision"] == "forwarded"
    assert result["to"] == f"E1234-class@{SITE}"
    assert result["from"] == RUTH
    assert len(result["forwarded_to"]) == 11
    (request,) = result["sendgrid_requests"]
    assert request["from"]["email"] == f"teacher_ruth@{SITE}"
    assert len(list(tmp_path.glob("*.eml"))) == 11


def test_a_refusal_is_a_result_not_a_failure(stack: Any) -> None:
    seeded(stack)
    raw = (CORPUS / "nodemailer" / "mail.eml").read_bytes()
    result, failed = replay_on(stack, raw, to="E1234-class", sender="someone@else.example", verdicts=InboundVerdicts())
    assert not failed
    assert result["decision"] == "refused"
    assert "unknown sender" in result["reason"]
    assert result["forwarded_to"] == []
    assert result["sendgrid_requests"] == []


def test_verdicts_reach_the_mailgate(stack: Any) -> None:
    seeded(stack)
    raw = (CORPUS / "ses-forwarder" / "message.txt").read_bytes()
    result, _ = replay_on(stack, raw, to=f"E1234-class@{SITE}", sender=RUTH, verdicts=InboundVerdicts(virus="FAIL"))
    assert result["decision"] == "dropped"
    assert result["verdicts"]["virus"] == "FAIL"
