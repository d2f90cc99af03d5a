"""The client commands for scripts: exit codes, stdout JSON, stderr tracebacks, imports."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import LG_DEPLOY_COMMAND
from tests.support.servers import free_port, running_server, served_in_thread

TRACEBACK = 'Traceback (most recent call last):\n  File "agent.py", line 3\nValueError: boom\n'
SERVER_MODULES = ("langgraph", "uvicorn", "psycopg_pool", "starlette")
# Runs one command in-process, then prints which server-side packages it imported.
IMPORT_PROBE = f"""
import json, sys
from lg_deploy.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({SERVER_MODULES!r}))
print(json.dumps({{"code": code, "loaded": loaded}}))
"""


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`lg-deploy ARGS` in a child process, its output captured."""
    return subprocess.run(
        [*LG_DEPLOY_COMMAND, *args], env=env, capture_output=True, text=True, timeout=60
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (fails if there are more)."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


class _StubApi(BaseHTTPRequestHandler):
    """Answers as lg-deploy does once executions carry `traceback`; /executions list is a 503."""

    def do_GET(self) -> None:
        if self.path.startswith("/executions?"):
            self._answer(503, {"error": "database_unavailable", "message": "down"})
            return
        execution_id = self.path.split("/")[2]
        has_traceback = execution_id != "no-traceback"
        self._answer(200, self._failed(execution_id, TRACEBACK if has_traceback else None))

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(202, {"execution_id": "submitted", "status": "QUEUED"})

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads answers, not the stub's access log."""

    @staticmethod
    def _failed(execution_id: str, traceback: str | None) -> dict[str, Any]:
        return {
            "execution_id": execution_id,
            "status": "FAILED",
            "error": "ValueError: boom",
            "traceback": traceback,
        }

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def stub_url() -> Iterator[str]:
    """The URL of a stub lg-deploy API in a thread of this process."""
    with served_in_thread(_StubApi) as url:
        yield url


@pytest.mark.req("CLI-EXIT-CODES", "CLI-CLIENT")
def test_exit_codes_against_a_real_server(worker_env: dict[str, str], tmp_path: Path) -> None:
    """0 done, 1 FAILED, 2 bad usage, 5 for the server's 404, 422 and 409; the reason on stderr."""
    with running_server(worker_env, tmp_path) as server:
        url = ["--url", server.url]
        done = run_cli(worker_env, "submit", "echo", "--input", '{"a": 1}', "--wait", *url)
        assert done.returncode == 0, done.stderr
        finished = json.loads(done.stdout)["execution_id"]
        failed = run_cli(worker_env, "submit", "fail", "--wait", *url)
        assert failed.returncode == 1, failed.stderr
        assert json.loads(failed.stdout)["status"] == "FAILED"
        answers = {
            "404": run_cli(worker_env, "get", str(uuid.uuid4()), *url),
            "422": run_cli(worker_env, "submit", "no-such-graph", *url),
            "409": run_cli(worker_env, "cancel", finished, *url),
        }
        for status, answer in answers.items():
            assert answer.returncode == 5, (status, answer.stderr)
            assert status in one_line_error(answer)
        assert run_cli(worker_env, "submit", "echo", "--input", "{not json", *url).returncode == 2
        assert run_cli(worker_env, "get", "x", "--url", "ftp://127.0.0.1").returncode == 2
        assert run_cli(worker_env, "wait", *url).returncode == 2  # argparse: no execution id


@pytest.mark.req("CLI-EXIT-CODES")
@pytest.mark.parametrize(
    "args",
    [["get", "x"], ["list"], ["submit", "echo"], ["wait", "x"], ["cancel", "x"], ["events", "x"]],
)
def test_an_unreachable_server_exits_4(worker_env: dict[str, str], args: list[str]) -> None:
    """Nothing listening on the port: exit 4 (not FAILED's 1) and one line saying so."""
    done = run_cli(worker_env, *args, "--url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 4, done.stderr
    assert "cannot reach" in one_line_error(done)


@pytest.mark.req("CLI-EXIT-CODES")
def test_a_5xx_answer_exits_5(worker_env: dict[str, str], stub_url: str) -> None:
    """A server answering 503 gives exit 5 and its status on stderr."""
    done = run_cli(worker_env, "list", "--url", stub_url)
    assert done.returncode == 5
    assert "503" in one_line_error(done)


@pytest.mark.req("CLI-TRACEBACK")
@pytest.mark.parametrize(
    ("args", "code"),
    [(["get", "one"], 0), (["wait", "one"], 1), (["submit", "echo", "--wait"], 1)],
)
def test_traceback_goes_to_stderr_and_json_stays_on_stdout(
    worker_env: dict[str, str], stub_url: str, args: list[str], code: int
) -> None:
    """get, wait and submit --wait print the execution as JSON, its traceback as text on stderr."""
    done = run_cli(worker_env, *args, "--url", stub_url)
    assert done.returncode == code, done.stderr
    assert json.loads(done.stdout)["traceback"] == TRACEBACK
    assert done.stderr == TRACEBACK


@pytest.mark.req("CLI-TRACEBACK")
def test_no_traceback_prints_nothing_on_stderr(worker_env: dict[str, str], stub_url: str) -> None:
    """An execution whose traceback is null leaves stderr empty."""
    done = run_cli(worker_env, "get", "no-traceback", "--url", stub_url)
    assert done.returncode == 0
    assert done.stderr == ""


@pytest.mark.req("CLI-EXIT-CODES")
def test_help_lists_every_exit_code(worker_env: dict[str, str]) -> None:
    """lg-deploy --help documents exit statuses 0 to 5."""
    done = run_cli(worker_env, "--help")
    assert done.returncode == 0
    epilog = done.stdout.split("exit status:")[1]
    codes = [line.split()[0] for line in epilog.strip().splitlines()]
    assert codes[:6] == ["0", "1", "2", "3", "4", "5"]


@pytest.mark.req("CLI-FAST-START")
@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["get", "--help"],
        ["submit", "echo"],
        ["get", "x"],
        ["list"],
        ["wait", "x"],
        ["cancel", "x"],
        ["events", "x"],
    ],
)
def test_client_commands_import_no_server_modules(
    worker_env: dict[str, str], args: list[str]
) -> None:
    """--help and each client command import no LangGraph, uvicorn, psycopg_pool or Starlette."""
    unreachable = [] if "--help" in args else ["--url", f"http://127.0.0.1:{free_port()}"]
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, *args, *unreachable],
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe["code"] in (0, 4), done.stderr
    assert probe["loaded"] == []


@pytest.mark.req("SERVE-OPTIONS")
@pytest.mark.parametrize(
    ("args", "starts"),
    [
        (["serve", "--port", "70000"], "lg-deploy: --port: "),
        (["serve", "--port", "abc"], "lg-deploy: --port: "),
        (["worker", "--config", "/nonexistent/langgraph.json"], "lg-deploy: --config: "),
    ],
)
def test_a_bad_option_exits_2_with_one_line(
    worker_env: dict[str, str], args: list[str], starts: str
) -> None:
    """serve --port 70000 or abc, worker --config of no file: exit 2 and one line naming it."""
    done = run_cli(worker_env, *args)
    assert done.returncode == 2
    line = one_line_error(done)
    assert line.startswith(starts)
    assert args[-1] in line
