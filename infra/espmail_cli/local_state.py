"""The state file ``espmail local serve`` writes so that ``espmail --local ...`` finds the running stack.

It lives in the working directory (``.espmail/local.json``) and holds what another process needs to work
against the same stack: the moto endpoint, the SendGrid double's host, the SMTP port, the out folder, the
serving process id, and the environment each function gets (resolved from ``template.yaml`` by the serving
``EmbeddedStack``, so a command run with ``--local`` wires the use cases exactly as the functions are wired).
The only credentials in it are moto's fixed fake ones.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from espmail.errors import ConfigurationError

DEFAULT_STATE_FILE = Path(".espmail") / "local.json"
STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class LocalState:
    pid: int
    endpoint: str
    sendgrid_host: str
    smtp_host: str
    smtp_port: int
    out_dir: str
    started_at: str
    environment: dict[str, str] = field(default_factory=dict)
    """What every function gets (template ``Globals``) plus the local wiring (endpoint, fake credentials)."""
    functions: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per function logical id: the environment that function gets."""
    names: dict[str, str] = field(default_factory=dict)
    """Logical id -> local physical name (tables, queues, buckets, functions)."""
    parameters: dict[str, Any] = field(default_factory=dict)
    """The template parameter values the local stack was made with (the IAM contract resolves roles with them)."""
    version: int = STATE_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_mapping(cls, data: Any, where: Path) -> LocalState:
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ConfigurationError(
                f"{where} is not a state file this espmail understands; stop the old `espmail local serve` "
                "and start it again"
            )
        try:
            return cls(
                pid=int(data["pid"]),
                endpoint=str(data["endpoint"]),
                sendgrid_host=str(data["sendgrid_host"]),
                smtp_host=str(data["smtp_host"]),
                smtp_port=int(data["smtp_port"]),
                out_dir=str(data["out_dir"]),
                started_at=str(data["started_at"]),
                environment={str(k): str(v) for k, v in dict(data.get("environment", {})).items()},
                functions={
                    str(name): {str(k): str(v) for k, v in dict(env).items()}
                    for name, env in dict(data.get("functions", {})).items()
                },
                names={str(k): str(v) for k, v in dict(data.get("names", {})).items()},
                parameters={str(k): v for k, v in dict(data.get("parameters", {})).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"{where} is damaged ({exc}); delete it and start `espmail local serve`") from exc


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def read_state(path: Path) -> LocalState:
    """The state of a running ``local serve``; ``ConfigurationError`` (one clear line) when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigurationError(
            f"no `espmail local serve` is running here ({path} not found); start one in this folder first"
        ) from exc
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{path} is damaged (not JSON); delete it and start `espmail local serve`") from exc
    state = LocalState.from_mapping(data, path)
    if not process_alive(state.pid):
        raise ConfigurationError(
            f"the `espmail local serve` that wrote {path} (pid {state.pid}) is no longer running; start it again"
        )
    return state


def write_state(path: Path, state: LocalState) -> None:
    """Written whole through a temporary file, so a reader never sees half a state."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(state.to_json() + "\n", encoding="utf-8")
    partial.chmod(0o600)
    partial.replace(path)


def remove_state(path: Path, pid: int) -> None:
    """Removes the file only if it is still this process's (a newer serve may have replaced it)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return  # already gone
    except json.JSONDecodeError:
        return  # not a state file this process wrote (it writes whole files): not ours to delete
    if isinstance(data, dict) and data.get("pid") == pid:
        path.unlink(missing_ok=True)
