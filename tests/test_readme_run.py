"""The README's first command, run as a newcomer would: a fresh copy, a fresh user, nothing set up.

Slow (it installs lg-deploy into a new virtualenv), so it carries the `slow` mark; the default
run, and so CI, includes it. When the suite runs as root, the command runs as a new unprivileged
user with an empty home and a minimal environment, as on a developer's laptop.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
NEWCOMER = "lgdnewcomer"
START_SECONDS = 420.0
CLEAN_EXITS = (0,)


def readme_commands() -> list[str]:
    """The shell commands of the README's first two ```sh blocks (run, then test)."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    return [block.strip() for block in blocks[:2]]


def _fresh_copy() -> Path:
    """The project's files (as git would clone them) in a new world-readable folder."""
    folder = Path(tempfile.mkdtemp(prefix="lgd-newcomer-", dir="/tmp"))
    folder.chmod(0o755)
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in listed:
        source = ROOT / name
        if source.is_file():
            target = folder / "lg-deploy" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return folder / "lg-deploy"


def _newcomer(checkout: Path) -> pwd.struct_passwd | None:
    """A fresh unprivileged user owning the checkout when we are root; else None (run as is)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(NEWCOMER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", NEWCOMER], check=True)
    subprocess.run(["chown", "-R", f"{NEWCOMER}:{NEWCOMER}", str(checkout.parent)], check=True)
    return pwd.getpwnam(NEWCOMER)


@pytest.fixture(scope="module")
def checkout() -> Iterator[Path]:
    """A fresh copy of the project, owned by whoever will run the README's command."""
    copy = _fresh_copy()
    yield copy
    shutil.rmtree(copy.parent, ignore_errors=True)


def _start(checkout: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = readme_commands()[0]
    user = _newcomer(checkout)
    home = Path(user.pw_dir) if user else Path.home()
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "LG_DEPLOY_PORT": str(port)}
    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
    as_user: dict[str, Any] = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    with log.open("ab") as output:
        return subprocess.Popen(
            ["bash", "-c", f"exec {command}"],  # the server replaces the shell, as in a terminal
            cwd=checkout,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **(as_user if user else {}),
        )


def _wait_healthy(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"the README command exited {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"not serving after {START_SECONDS} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.req("README-RUN", "EMBEDDED-DEFAULT")
def test_readme_run_command_serves_and_keeps_data(checkout: Path, tmp_path: Path) -> None:
    """The README's run command installs and serves on embedded PostgreSQL; data survives."""
    assert readme_commands()[0] == "scripts/serve"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    process = _start(checkout, port, log)
    try:
        _wait_healthy(base, process, log)
        submitted = httpx.post(
            f"{base}/executions", json={"graph_id": "echo", "input": {"ticket": 42}}, timeout=10
        )
        assert submitted.status_code == 202
        execution_id = submitted.json()["execution_id"]
        final = httpx.get(f"{base}/executions/{execution_id}/wait?timeout=30", timeout=40).json()
        assert final["status"] == "COMPLETED"
        assert final["output"] == {"ticket": 42}
    finally:
        assert _stop(process) in CLEAN_EXITS, log.read_text()[-3000:]
    assert "Application shutdown complete" in log.read_text()
    assert "psql postgresql://" in log.read_text()
    assert (checkout / ".lg-deploy" / "pgdata" / "PG_VERSION").exists()

    process = _start(checkout, port, log)
    try:
        _wait_healthy(base, process, log)
        again = httpx.get(f"{base}/executions/{execution_id}", timeout=10).json()
        assert again["status"] == "COMPLETED"
    finally:
        assert _stop(process) in CLEAN_EXITS, log.read_text()[-3000:]


@pytest.mark.req("README-RUN")
def test_readme_test_command_is_what_ci_runs() -> None:
    """The README's second command is the test command, and .ci/run runs exactly that."""
    assert readme_commands()[1] == "scripts/test"
    assert "exec scripts/test" in (ROOT / ".ci" / "run").read_text()
