"""Child processes of a run (workers, servers, load generators): started here, always stopped."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bench.graphs import SPECS

ROOT = Path(__file__).resolve().parent.parent
STOP_SECONDS = 20.0
_started: list[subprocess.Popen[bytes]] = []


def lgd_env(db_url: str, **settings: object) -> dict[str, str]:
    """Environment for `python -m lg_deploy` on `db_url` with the bench graphs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LG_DEPLOY_")}
    env.update(
        LG_DEPLOY_DATABASE_URL=db_url,
        LG_DEPLOY_GRAPHS=json.dumps(SPECS),
        LG_DEPLOY_LOG_LEVEL="WARNING",
        LG_DEPLOY_SHUTDOWN_GRACE_SECONDS="1",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    env.update({f"LG_DEPLOY_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a child (python when args[0] is "-m"), its output in a temporary log file."""
    command = [sys.executable, *args] if args[0] == "-m" else args
    log = tempfile.NamedTemporaryFile(prefix="lgd-bench-", suffix=".log", delete=False)  # noqa: SIM115
    child = subprocess.Popen(
        command,
        env=env or {**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    child.log_path = log.name  # type: ignore[attr-defined]
    log.close()
    _started.append(child)
    return child


def stop(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM, wait, then SIGKILL; removes its log unless it failed."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    with contextlib.suppress(ValueError):
        _started.remove(child)
    with contextlib.suppress(OSError):
        os.unlink(child.log_path)  # type: ignore[attr-defined]


def stop_all() -> None:
    """Stop every child still running (on failure paths)."""
    for child in list(_started):
        stop(child)


def output(child: subprocess.Popen[bytes]) -> str:
    """What the child printed so far."""
    return Path(child.log_path).read_text(errors="replace")  # type: ignore[attr-defined]


@contextlib.contextmanager
def running(
    args: list[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A child for the duration of a block."""
    child = start(args, env)
    try:
        yield child
    finally:
        stop(child)


def check_alive(child: subprocess.Popen[bytes]) -> None:
    """Raise with its output if the child exited."""
    if child.poll() is not None:
        raise RuntimeError(f"{child.args} exited with {child.returncode}:\n{output(child)[-3000:]}")


def wait_http(child: subprocess.Popen[bytes], url: str, timeout: float = 60.0) -> None:
    """Wait until GET `url` answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        check_alive(child)
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310
            if answer.status == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not ready after {timeout} s:\n{output(child)[-3000:]}")
        time.sleep(0.1)


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a live process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
