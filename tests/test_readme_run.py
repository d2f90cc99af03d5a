"""The README's first command, run as a newcomer would: a fresh copy, a fresh user, nothing set up.

Slow (it installs lg-deploy into a new virtualenv), so it carries the `slow` mark; the default
run, and so CI, includes it. When the suite runs as root, the command runs as a new unprivileged
user with an empty home and a minimal environment, as on a developer's laptop. It runs twice:
with the Python the minimal PATH offers (3.11 on Debian 12), and with the newest Python 3.13+ the
machine has (PATH or pyenv), through PYTHON as a user would set it; the second start of each is
offline.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
NEWCOMER = "lgdnewcomer"
START_SECONDS = 420.0
CLEAN_EXITS = (0,)
NEWEST_NAMES = ("python3.14", "python3.13")
PYENV_NEWEST = "3.1[3-9]*/bin/python3.1[3-9]"
SKIPPED_PIP = "scripts/install: .venv is up to date (pyproject.toml unchanged); skipping pip"
VERSION_CODE = "import sys; print('%d.%d' % sys.version_info[:2])"


@dataclass(frozen=True)
class Interpreter:
    """The Python the README's command is run with: the environment that selects it."""

    env: dict[str, str] = field(default_factory=dict)
    version: str | None = None  # expected in .venv; None: whatever scripts/install picks


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
        made = subprocess.run(["useradd", "--create-home", NEWCOMER], check=False)
        if made.returncode != 0:
            pwd.getpwnam(NEWCOMER)  # another test process made it first; else this raises
    subprocess.run(["chown", "-R", f"{NEWCOMER}:{NEWCOMER}", str(checkout.parent)], check=True)
    return pwd.getpwnam(NEWCOMER)


def _as_user(user: pwd.struct_passwd | None) -> dict[str, Any]:
    """subprocess arguments that run a child as `user` (nothing when None)."""
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}


def _version_of(python: str, env: dict[str, str] | None = None, **as_user: Any) -> str | None:
    """'3.13' when `python` runs (with `env`, as the given user), else None."""
    try:
        done = subprocess.run(
            [python, "-c", VERSION_CODE],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            **as_user,
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def newest_python() -> tuple[str, str] | None:
    """(path, version) of the newest Python 3.13+ here that runs: on PATH (a pyenv shim of an
    inactive version does not), or under ~/.pyenv/versions."""
    found = [shutil.which(name) for name in NEWEST_NAMES]
    found += [str(p) for p in sorted((Path.home() / ".pyenv" / "versions").glob(PYENV_NEWEST))]
    versions = [(path, _version_of(path)) for path in found if path]
    usable = [(tuple(map(int, v.split("."))), path, v) for path, v in versions if v]
    return max(usable)[1:] if usable else None


def _link(source: str, target: str) -> None:
    """A hard link of `source` at `target`, or a copy across file systems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _newcomer_python(python: str, user: pwd.struct_passwd | None, room: Path) -> Interpreter:
    """PYTHON (and what it needs) so `user` can run `python`; a copy when it cannot read it.

    pyenv lives in root's 0700 home, and its interpreter finds libpython through an absolute
    RUNPATH there: the copy in `room` (world-readable, outside the chowned checkout) runs with
    LD_LIBRARY_PATH naming its own lib folder. Its files are hard links where the file system
    allows (root's files, read-only to the user; removing the copy unlinks only the copy).
    """
    version = _version_of(python)
    if user is None or _version_of(python, {}, **_as_user(user)) == version:
        return Interpreter({"PYTHON": python}, version)
    prefix = subprocess.run(
        [python, "-c", "import sys; print(sys.base_prefix)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    copy = room / Path(prefix).name
    shutil.copytree(
        prefix, copy, symlinks=True, ignore=shutil.ignore_patterns("test"), copy_function=_link
    )
    env = {"PYTHON": str(copy / "bin" / Path(python).name), "LD_LIBRARY_PATH": str(copy / "lib")}
    assert _version_of(env["PYTHON"], env, **_as_user(user)) == version
    return Interpreter(env, version)


@pytest.fixture
def checkout() -> Iterator[Path]:
    """A fresh copy of the project, owned by whoever will run the README's command."""
    copy = _fresh_copy()
    yield copy
    shutil.rmtree(copy.parent, ignore_errors=True)


@pytest.fixture(params=["python-on-path", "newest-python"])
def interpreter(request: pytest.FixtureRequest, checkout: Path) -> Iterator[Interpreter]:
    """The Python scripts/install picks from PATH, or the newest one here through PYTHON."""
    if request.param == "python-on-path":
        yield Interpreter()
        return
    newest = newest_python()
    if newest is None:
        pytest.skip("no Python 3.13 or later runs on this machine")
    room = Path(tempfile.mkdtemp(prefix="lgd-newcomer-python-", dir="/tmp"))
    room.chmod(0o755)
    try:
        yield _newcomer_python(newest[0], _newcomer(checkout), room)
    finally:
        shutil.rmtree(room, ignore_errors=True)


def _offline_env(folder: Path) -> dict[str, str]:
    """pip settings under which any install fails: no index, a dead index URL, no wheels."""
    empty = folder / "no-wheels"
    empty.mkdir(mode=0o755, exist_ok=True)
    return {
        "PIP_NO_INDEX": "1",
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_FIND_LINKS": str(empty),
    }


def _newcomer_env(checkout: Path, extra: dict[str, str]) -> dict[str, str]:
    """The minimal environment of the user running the README command, plus `extra`."""
    user = _newcomer(checkout)
    home = Path(user.pw_dir) if user else Path.home()
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
    return {**env, **extra}


def _start(checkout: Path, port: int, log: Path, extra: dict[str, str]) -> subprocess.Popen[bytes]:
    command = readme_commands()[0]
    user = _newcomer(checkout)
    env = {**_newcomer_env(checkout, extra), "LG_DEPLOY_PORT": str(port)}
    with log.open("ab") as output:
        return subprocess.Popen(
            ["bash", "-c", f"exec {command}"],  # the server replaces the shell, as in a terminal
            cwd=checkout,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **_as_user(user),
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


def _venv_version(checkout: Path, interpreter: Interpreter) -> str | None:
    """The Python version of the checkout's .venv, run as its owner."""
    user = _newcomer(checkout)
    python = str(checkout / ".venv" / "bin" / "python")
    return _version_of(python, _newcomer_env(checkout, interpreter.env), **_as_user(user))


def _pip_is_offline(checkout: Path, offline: dict[str, str], folder: Path) -> bool:
    """True when pip, under the offline settings, cannot fetch even one small package."""
    user = _newcomer(checkout)
    pip = [str(checkout / ".venv" / "bin" / "python"), "-m", "pip"]
    fetch = subprocess.run(
        [*pip, "download", "--no-deps", "--dest", str(folder), "--quiet", "six"],
        env=_newcomer_env(checkout, offline),
        capture_output=True,
        timeout=120,
        **_as_user(user),
    )
    return fetch.returncode != 0


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.req("README-RUN", "EMBEDDED-DEFAULT", "EMBEDDED-PYTHONS")
def test_readme_run_command_serves_and_keeps_data(
    checkout: Path, interpreter: Interpreter, tmp_path: Path
) -> None:
    """The README's run command installs and serves; it restarts offline and keeps its data."""
    assert readme_commands()[0] == "scripts/serve"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    process = _start(checkout, port, log, interpreter.env)
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
    assert (checkout / ".lg-deploy" / "pgdata" / "PG_VERSION").read_text().strip() == "18"
    venv_version = _venv_version(checkout, interpreter)
    assert venv_version in ("3.11", "3.12", "3.13", "3.14")
    assert interpreter.version in (None, venv_version)

    offline = {**interpreter.env, **_offline_env(checkout.parent)}
    assert _pip_is_offline(checkout, offline, checkout.parent / "fetched")
    first_run = len(log.read_text())
    process = _start(checkout, port, log, offline)
    try:
        _wait_healthy(base, process, log)
        again = httpx.get(f"{base}/executions/{execution_id}", timeout=10).json()
        assert again["status"] == "COMPLETED"
    finally:
        assert _stop(process) in CLEAN_EXITS, log.read_text()[-3000:]
    assert SKIPPED_PIP in log.read_text()[first_run:]


@pytest.mark.req("README-RUN")
def test_readme_test_command_is_what_ci_runs() -> None:
    """The README's second command is the test command, and .ci/run runs exactly that."""
    assert readme_commands()[1] == "scripts/test"
    assert "exec scripts/test" in (ROOT / ".ci" / "run").read_text()
