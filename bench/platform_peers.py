"""The servers a LangGraph user would pick instead of lg-deploy, serving the bench graphs.

Each peer is installed, at the pinned versions in VERSIONS, into its own venv under
`.bench-peers/NAME/`, and runs as one process in its own process group, so that the official
`langgraph_sdk` client drives it exactly as it drives lg-deploy (assistant id = graph name).

- `langgraph-dev`: `langgraph dev` (langgraph-cli 0.4.40, langgraph-api 0.16.7,
  langgraph-runtime-inmem 0.36.7; Python 3.11), the LangGraph Platform's own server on its
  in-memory runtime. Slots: `--n-jobs-per-worker` (N_JOBS_PER_WORKER; `langgraph dev` passes 1
  when the flag is absent, though its help says 10). The database URL is not used: its state
  lives in memory, pickled every 10 s to `.langgraph_api/` in its working folder (a temporary
  one here, kept across `restart()`), so a SIGKILL loses up to 10 s of state. Its queue sleeps
  0.5 s before looking again whenever a look found no pending run, so a run created on an idle
  server waits up to 0.5 s to start (none under steady load). It serves with uvloop and
  httptools; its blocking-call detector (blockbuster) is on, as in `langgraph dev`.
- `aegra`: Aegra (aegra-api / aegra-cli 0.11.0; Python 3.12, which 0.7 and later require) run as
  `python -m uvicorn aegra_api.main:app`, in its production mode (REDIS_BROKER_ENABLED=true):
  runs go through a Redis list (127.0.0.1:6379, keys under a prefix of its own, deleted at
  stop), executed with leases in PostgreSQL; its alembic migrations run at start. Slots:
  WORKER_COUNT=1 loop x N_JOBS_PER_WORKER=slots (default 3 x 10). A `runs.wait` or `runs.join`
  polls a Redis key every 2 s (from the request's arrival), so each waited run takes about 2 s
  or more whatever its graph; streams are Redis pub/sub and do not wait so. A SIGKILLed run is
  re-queued by the lease reaper once its 30 s lease is out (checked every 15 s). Plain uvicorn
  (asyncio loop, h11): aegra-api does not bring uvloop or httptools.

Both: auth off (none configured), LangSmith tracing, CLI analytics and version checks off,
logging at WARNING, no access log.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench import procs
from bench.graphs import PLATFORM_GRAPHS

ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = ROOT / ".bench-peers"
PEERS: tuple[str, ...] = ("langgraph-dev", "aegra")
VERSIONS: dict[str, dict[str, str]] = {
    "langgraph-dev": {
        "langgraph-cli[inmem]": "0.4.40",
        "langgraph-api": "0.16.7",
        "langgraph-runtime-inmem": "0.36.7",
        "langgraph": "1.2.24",
        "langchain-core": "1.8.3",
    },
    "aegra": {
        "aegra-api": "0.11.0",
        "aegra-cli": "0.11.0",
        "langgraph": "1.2.24",
        "langchain-core": "1.8.3",
    },
}
PYTHONS: dict[str, str] = {"langgraph-dev": "3.11", "aegra": "3.12"}
REDIS_URL = "redis://127.0.0.1:6379/0"
# The machine's PostgreSQL, for Aegra when the caller gives no database.
LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
READY_SECONDS = 120.0
STOP_SECONDS = 20.0
_MARKER = "installed.json"


def _python(version: str) -> str:
    """An interpreter of this minor version that runs (pyenv's shims may refuse)."""
    candidates = [shutil.which(f"python{version}") or ""]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(str(path) for path in pyenv.glob(f"{version}*/bin/python{version}"))
    candidates += [f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    for candidate in filter(None, candidates):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([candidate, "--version"], check=True, capture_output=True, timeout=30)
            return candidate
    raise RuntimeError(f"no working python{version} on this machine")


def install(name: str) -> Path:
    """The peer's venv, created and pip-installed at the pinned versions unless already so."""
    versions = VERSIONS[name]
    venv = PEERS_DIR / name
    wanted = {"python": PYTHONS[name], "packages": versions}
    marker = venv / _MARKER
    with contextlib.suppress(OSError, ValueError):
        if json.loads(marker.read_text()) == wanted:
            return venv
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [_python(PYTHONS[name]), "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
        + [f"{package}=={version}" for package, version in versions.items()],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"installing {name} failed: {' '.join(step)}\n{(done.stdout + done.stderr)[-6000:]}"
            )
    marker.write_text(json.dumps(wanted))
    return venv


def _graphs() -> dict[str, str]:
    """The config's graphs: each bench graph by file path."""
    return {graph: f"{ROOT / 'bench' / 'graphs.py'}:{graph}" for graph in PLATFORM_GRAPHS}


def _base_env() -> dict[str, str]:
    """A clean environment: only what a process needs, nothing of lg-deploy's or the caller's."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env.update(
        PYTHONUNBUFFERED="1",
        LANGSMITH_TRACING="false",
        LANGSMITH_TRACING_V2="false",
        LANGCHAIN_TRACING_V2="false",
        LANGCHAIN_TRACING="false",
        LOG_LEVEL="WARNING",
    )
    return env


def sqlalchemy_style_url(database_url: str) -> str:
    """A `postgresql://` URL (what Aegra's DATABASE_URL takes) for a libpq URL or conninfo."""
    params = conninfo_to_dict(database_url)
    user = quote(str(params.get("user", "postgres")), safe="")
    password = params.get("password")
    auth = f"{user}:{quote(str(password), safe='')}@" if password else f"{user}@"
    host, port = str(params.get("host", "")), str(params.get("port", ""))
    dbname = quote(str(params.get("dbname", "postgres")), safe="")
    if host.startswith("/"):  # a unix socket folder: a query parameter asyncpg and libpq take
        query = f"?host={quote(host, safe='/')}" + (f"&port={port}" if port else "")
        return f"postgresql://{auth}/{dbname}{query}"
    return f"postgresql://{auth}{host or 'localhost'}{f':{port}' if port else ''}/{dbname}"


def _descendants(root: int) -> list[int]:
    """`root` and every live process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            found.append(pid)
        todo.extend(children.get(pid, []))
    return found


class Peer:
    """A running peer server."""

    def __init__(
        self, name: str, command: list[str], env: dict[str, str], folder: Path, port: int
    ) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self.folder = folder
        self._command, self._env = command, env
        self._ready_path = "/ok" if name == "langgraph-dev" else "/health"
        self._logs: list[str] = []
        self.child: subprocess.Popen[bytes] = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        """Start the server in its own process group, its output in a log file; wait ready."""
        log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix=f"peer-{self.name}-", suffix=".log", delete=False
        )
        child = subprocess.Popen(
            self._command,
            env=self._env,
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        child.log_path = log.name  # type: ignore[attr-defined]
        self._logs.append(log.name)
        self.child = child
        try:
            procs.wait_http(child, self.url + self._ready_path, READY_SECONDS)
        except BaseException:  # the error carries the output: the log goes
            self._signal(signal.SIGKILL)
            child.wait()
            self._logs.remove(log.name)
            os.unlink(log.name)
            raise
        return child

    def output(self) -> str:
        """What the current server process printed so far."""
        return procs.output(self.child)

    def pids(self) -> list[int]:
        """The server's process and its descendants."""
        return _descendants(self.child.pid) if self.child.poll() is None else []

    def _signal(self, number: signal.Signals) -> None:
        """Send a signal to the server's process group and to any descendant outside it."""
        targets = self.pids()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.child.pid, number)
        for pid in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, number)

    def kill(self) -> None:
        """SIGKILL the whole process tree (crash test)."""
        self._signal(signal.SIGKILL)
        self.child.wait()

    def restart(self) -> None:
        """Start again after kill() on the same port and state; wait ready."""
        if self.child.poll() is None:
            raise RuntimeError(f"{self.name} is still running")
        self._start()

    def stop(self) -> None:
        """SIGTERM the tree, wait, SIGKILL after a timeout, remove its temporary files."""
        if self.child.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.child.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.child.wait()
        # Children that outlived their parent (none expected) share its process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.child.pid, signal.SIGKILL)
        for path in self._logs:
            with contextlib.suppress(OSError):
                os.unlink(path)
        shutil.rmtree(self.folder, ignore_errors=True)


def _langgraph_dev(venv: Path, folder: Path, slots: int) -> tuple[list[str], dict[str, str]]:
    """Command and environment of `langgraph dev` on the bench graphs."""
    (folder / "langgraph.json").write_text(
        json.dumps({"graphs": _graphs(), "dependencies": ["."]}, indent=2)
    )
    port = procs.free_port()
    command = [
        str(venv / "bin" / "langgraph"),
        "dev",
        "--no-browser",
        "--no-reload",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--config",
        str(folder / "langgraph.json"),
        "--n-jobs-per-worker",
        str(slots),
        "--server-log-level",
        "WARNING",
    ]
    env = _base_env()
    env.update(
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGGRAPH_NO_VERSION_CHECK="true",
        LOG_COLOR="false",
        BG_JOB_SHUTDOWN_GRACE_PERIOD_SECS="1",
    )
    return command, env


def _aegra(
    venv: Path, folder: Path, slots: int, database_url: str, prefix: str
) -> tuple[list[str], dict[str, str]]:
    """Command and environment of Aegra (uvicorn, Redis mode) on the bench graphs."""
    (folder / "aegra.json").write_text(
        json.dumps({"graphs": _graphs(), "dependencies": ["."]}, indent=2)
    )
    port = procs.free_port()
    command = [
        str(venv / "bin" / "python"),
        "-m",
        "uvicorn",
        "aegra_api.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    env = _base_env()
    env.update(
        AEGRA_CONFIG=str(folder / "aegra.json"),
        HOST="127.0.0.1",
        PORT=str(port),
        DATABASE_URL=sqlalchemy_style_url(database_url),
        AUTH_TYPE="noop",
        ENV_MODE="LOCAL",
        RUN_MIGRATIONS_ON_STARTUP="true",
        REDIS_BROKER_ENABLED="true",
        REDIS_URL=REDIS_URL,
        REDIS_CHANNEL_PREFIX=f"{prefix}run:",
        WORKER_QUEUE_KEY=f"{prefix}jobs",
        WORKER_COUNT="1",
        N_JOBS_PER_WORKER=str(slots),
        WORKER_DRAIN_TIMEOUT="1",
        OTEL_TARGETS="",
        ENABLE_PROMETHEUS_METRICS="false",
    )
    return command, env


def _delete_redis_keys(venv: Path, prefix: str) -> None:
    """Delete the Redis keys under `prefix` (with the peer venv's redis client)."""
    script = (
        "import redis, sys\n"
        "client = redis.Redis.from_url(sys.argv[1])\n"
        "keys = list(client.scan_iter(match=sys.argv[2] + '*', count=1000))\n"
        "if keys: client.delete(*keys)\n"
    )
    subprocess.run(
        [str(venv / "bin" / "python"), "-c", script, REDIS_URL, prefix],
        check=False,
        capture_output=True,
        timeout=60,
    )


@contextlib.contextmanager
def _local_database() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL, dropped afterwards."""
    name = f"aegra_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(LOCAL_POSTGRES, autocommit=True) as admin:
        admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    try:
        yield make_conninfo(LOCAL_POSTGRES, dbname=name)
    finally:
        with psycopg.connect(LOCAL_POSTGRES, autocommit=True) as admin:
            admin.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name))
            )


@contextlib.contextmanager
def running(name: str, database_url: str | None, slots: int) -> Iterator[Peer]:
    """Peer `name` serving the bench graphs, `slots` runs at once, on `database_url` (Aegra)."""
    # database_url: a libpq URL or conninfo; for Aegra None means a fresh database on the
    # machine's PostgreSQL (127.0.0.1:5432), dropped at exit. langgraph dev ignores it.
    venv = install(name)
    with contextlib.ExitStack() as stack:
        folder = Path(tempfile.mkdtemp(prefix=f"peer-{name}-"))
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        if name == "langgraph-dev":
            command, env = _langgraph_dev(venv, folder, slots)
        elif name == "aegra":
            if database_url is None:
                database_url = stack.enter_context(_local_database())
            prefix = f"aegra-bench-{uuid.uuid4().hex[:8]}:"
            stack.callback(_delete_redis_keys, venv, prefix)
            command, env = _aegra(venv, folder, slots, database_url, prefix)
        else:
            raise ValueError(f"unknown peer {name!r}; one of {PEERS}")
        peer = Peer(name, command, env, folder, _port(command))
        stack.callback(peer.stop)
        yield peer


def _port(command: list[str]) -> int:
    """The --port argument of a command."""
    return int(command[command.index("--port") + 1])
