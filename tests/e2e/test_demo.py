"""`make demo` runs `espmail local demo`: the whole story on its own embedded stack."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

from click.testing import CliRunner

from espmail_cli.main import cli


def test_the_demo_tells_the_whole_story_and_leaves_messages_a_person_can_open(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["local", "demo", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for expected in ("pending -> expanded", "forwarded", "refused", "Summary"):
        assert expected in result.output
    emls = sorted((out / "sent").glob("*.eml"))
    assert len(emls) >= 20
    subjects = {str(message_from_bytes(p.read_bytes(), policy=policy.default)["Subject"]) for p in emls}
    assert any(s.startswith("[E1234]") for s in subjects)
