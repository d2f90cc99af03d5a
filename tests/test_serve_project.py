"""`scripts/serve` run from a user's own project folder, as the README tells them to."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.processes import json_lines
from tests.support.servers import SERVE_START_SECONDS, answers_200, free_port
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
STAMP = ROOT / ".venv" / "lg-deploy-install.stamp"
SKIPPED_PIP = "scripts/install: .venv is up to date (pyproject.toml unchanged); skipping pip"
GREETING = "hello from the project's .env"

AGENT = """
import os

from langgraph.func import entrypoint

GREETING = os.environ["LGD_PROJECT_GREETING"]  # read at import, as graph modules do


@entrypoint()
async def graph(inputs: dict) -> dict:
    return {"greeting": GREETING, "app_mode": os.environ["LGD_PROJECT_MODE"]}
"""


def make_project(folder: Path) -> Path:
    """A LangGraph project: agent.py, a .env, and a langgraph.json with keys lg-deploy ignores."""
    folder.mkdir()
    (folder / "agent.py").write_text(AGENT, encoding="utf-8")
    (folder / ".env").write_text(
        f"LGD_PROJECT_GREETING={GREETING}\nLGD_PROJECT_MODE=from-env-file\n", encoding="utf-8"
    )
    config = {
        "dependencies": ["."],
        "graphs": {"greeter": "./agent.py:graph"},
        "env": ".env",
        "python_version": "3.12",
        "auth": {"path": "./auth.py:auth"},
    }
    (folder / "langgraph.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def require_install_stamp() -> None:
    """The repo's .venv carries the stamp of this pyproject.toml; else scripts/serve runs pip."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamped = STAMP.read_text().split()[0] if STAMP.is_file() else None
    assert stamped == digest, "run scripts/install (scripts/test does) so .venv has its stamp"


@contextmanager
def scripts_serve(
    project: Path, env: dict[str, str], args: list[str], port: int
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The real scripts/serve started in `project`; yields it and its log once it answers."""
    log_path = project.parent / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(ROOT / "scripts" / "serve"), *args],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def answers() -> bool:
        assert process.poll() is None, log_path.read_text()
        return answers_200(f"http://127.0.0.1:{port}/healthz")

    try:
        wait_until(answers, SERVE_START_SECONDS)
        yield process, log_path
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


@pytest.mark.req("SERVE-PROJECT", "CONFIG-ENV", "CONFIG-UNUSED-KEYS", "INSTALL-STAMP")
@pytest.mark.parametrize("config_by", ["option", "variable"])
def test_scripts_serve_runs_a_project_from_its_own_folder(
    worker_env: dict[str, str], tmp_path: Path, config_by: str
) -> None:
    """From the project folder, ./langgraph.json, its ./agent.py and .env work; pip is skipped."""
    require_install_stamp()
    project = make_project(tmp_path / "my-project")
    port = free_port()
    env = {k: v for k, v in worker_env.items() if k != "LG_DEPLOY_DATA_DIR"}
    env["LGD_PROJECT_MODE"] = "from-the-shell"  # the .env wins, as with `langgraph dev`
    if config_by == "option":
        env["LG_DEPLOY_PORT"] = str(free_port())  # --port wins over it
        args = ["--port", str(port), "--config", "./langgraph.json"]
    else:
        env.update(LG_DEPLOY_PORT=str(port), LG_DEPLOY_CONFIG="./langgraph.json")
        args = []
    with scripts_serve(project, env, args, port) as (process, log_path):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=40) as client:
            submitted = client.post("/executions", json={"graph_id": "greeter", "input": {}})
            assert submitted.status_code == 202, submitted.text
            execution_id = submitted.json()["execution_id"]
            final = client.get(f"/executions/{execution_id}/wait", params={"timeout": 30}).json()
        assert final["status"] == "COMPLETED", final
        assert final["output"] == {"greeting": GREETING, "app_mode": "from-env-file"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log_path.read_text()
    output = log_path.read_text()
    assert SKIPPED_PIP in output.splitlines()
    unused = [line for line in json_lines(log_path) if "unused_keys" in line]
    assert len(unused) == 1, output
    assert unused[0]["level"] == "WARNING"
    assert unused[0]["unused_keys"] == ["auth", "dependencies", "python_version"]


@pytest.mark.req("SERVE-OPTIONS", "INSTALL-STAMP")
def test_scripts_serve_help_shows_its_options(tmp_path: Path) -> None:
    """scripts/serve --help (no pip run) lists --host, --port and --config."""
    require_install_stamp()
    done = subprocess.run(
        [str(ROOT / "scripts" / "serve"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert SKIPPED_PIP in done.stdout
    for option in ("--host", "--port", "--config"):
        assert option in done.stdout
