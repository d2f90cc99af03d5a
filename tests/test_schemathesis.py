"""Schemathesis against a real `lg-deploy serve`: every operation of its own /openapi.json.

The schema is loaded from the running server, every built-in check runs on every response, and
generation is derandomized. Positive cases are steered only where the document cannot say what
the deployment knows: graph names, a real cursor, no NUL, and short waits (the long waits are
proven elsewhere). Refusals of such cases (unknown graph 422, NUL 422) are tested in
tests/test_http_errors.py.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import status_code_conformance
from starlette.testclient import TestClient

from lg_deploy.http import create_app
from lg_deploy.http.schemas import GRAPH_ID_PATTERN
from lg_deploy.settings import load_settings
from tests.support.servers import running_server

REQUEST_SECONDS = 20.0
# Generated cases per operation and generation mode, after the coverage cases; `--deep` runs
# more (the coverage cases, about 4,400, are the same in both runs).
EXAMPLES = 5
DEEP_EXAMPLES = 40
KEY_EXAMPLES = 3  # with the key: past the 401 on every operation, positive and negative
DEEP_KEY_EXAMPLES = 10
API_KEY = "fuzz-key-0123456789"
# Graphs positive cases run: fast ones (sleep is bounded by the run timeout, but slow).
FAST_GRAPHS = ("echo", "fail", "pipeline")
GRAPH_NAME = re.compile(GRAPH_ID_PATTERN)
# The body fields of each operation that name a graph this deployment must serve.
GRAPH_FIELDS = {
    "/executions": ("graph_id",),
    "/runs": ("assistant_id",),
    "/runs/wait": ("assistant_id",),
    "/runs/crons": ("assistant_id",),
    "/threads/{thread_id}/runs/crons": ("assistant_id",),
    "/assistants": ("graph_id",),
    "/assistants/{assistant_id}": ("graph_id",),
}
PATH_PARAMETER = re.compile(r"{(\w+)}")
SUPPRESSED = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
SERVER_ENV = {
    "LG_DEPLOY_WORKER_CONCURRENCY": "16",
    "LG_DEPLOY_EXECUTION_TIMEOUT_SECONDS": "5",
    "LG_DEPLOY_KEEPALIVE_SECONDS": "1",
    "LG_DEPLOY_LOG_LEVEL": "WARNING",
    "LG_DEPLOY_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
}
# Where positive cases' webhooks go: the allow-list is the deployment's, as graph names are
# (nothing listens there: each delivery fails fast, in the background).
FUZZ_WEBHOOK = "http://127.0.0.1:9/lg-deploy-fuzz"
# The schedule positive cases give a cron (any cron expression cronsim reads would do).
CRON_SCHEDULE = "0 3 * * *"


@contextmanager
def serving(env: dict[str, str], tmp_path: Path, **overrides: str) -> Iterator[str]:
    """A running `lg-deploy serve` (env, SERVER_ENV, overrides) on a free port; yields its URL."""
    with running_server({**env, **SERVER_ENV, **overrides}, tmp_path) as server:
        yield server.url


@dataclass
class Fuzzing:
    """What one schemathesis run sent and which checks failed (one line per distinct failure)."""

    url: str
    headers: dict[str, str]
    cursor: str
    sent: int = 0
    failures: dict[str, str] = field(default_factory=dict)

    def steer(self, case: Case, positive: bool) -> None:
        """Name a graph this deployment runs (in any case: a valid name stays valid); in positive
        cases also what the document cannot say: a real cursor, short waits, one schedule, a
        webhook the allow-list takes."""
        body = case.body if isinstance(case.body, dict) else None
        if body is not None:
            for name in GRAPH_FIELDS.get(case.path, ()):
                if isinstance(body.get(name), str) and GRAPH_NAME.match(body[name]):
                    body[name] = FAST_GRAPHS[len(body[name]) % len(FAST_GRAPHS)]
        if not positive:
            return
        if body is not None:
            if body.get("run_at") is not None and body.get("delay_seconds") is not None:
                del body["delay_seconds"]  # both at once is refused (422), as documented
            if case.path == "/runs/wait":
                body.pop("after_seconds", None)  # a wait for a run due next year never ends
            if isinstance(body.get("webhook"), str):
                body["webhook"] = FUZZ_WEBHOOK
            if isinstance(body.get("schedule"), str):
                body["schedule"] = CRON_SCHEDULE  # the document cannot say what cron reads
            if isinstance(body.get("timezone"), str):
                body["timezone"] = "UTC"
        if case.query:
            if "cursor" in case.query:
                case.query["cursor"] = self.cursor
            if "timeout" in case.query:
                case.query["timeout"] = min(float(case.query["timeout"]), 0.5)

    def run(self, case: Case) -> None:
        """Send `case` and run every check; record failures instead of stopping."""
        mode = case.meta.generation.mode if case.meta is not None else GenerationMode.POSITIVE
        self.steer(case, positive=mode is GenerationMode.POSITIVE)
        self.sent += 1
        try:
            case.call_and_validate(
                base_url=self.url, headers=self.headers or None, timeout=REQUEST_SECONDS
            )
        except* AssertionError as group:
            for failure in _leaves(group):
                title = getattr(failure, "title", type(failure).__name__)
                key = f"{case.operation.label}: {title}"
                self.failures.setdefault(key, f"{str(failure)[:300]}\n  {case.as_curl_command()}")


def _leaves(group: BaseException) -> Iterator[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        for inner in group.exceptions:
            yield from _leaves(inner)
    else:
        yield group


def load_schema(url: str, headers: dict[str, str]) -> Any:
    """The server's own /openapi.json as a schemathesis schema (no NUL, UTF-8 strings)."""
    schema = schemathesis.openapi.from_url(
        f"{url}/openapi.json", config=schemathesis.Config(), headers=headers, timeout=10
    )
    schema.config.generation.update(allow_x00=False, codec="utf-8")
    return schema


def real_cursor(url: str, headers: dict[str, str]) -> str:
    """A next_cursor from a real listing (two executions exist afterwards)."""
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        for _ in range(2):
            assert client.post("/executions", json={"graph_id": "echo"}).status_code == 202
        cursor = client.get("/executions", params={"limit": 1}).json()["next_cursor"]
    assert isinstance(cursor, str)
    return cursor


def fuzz(url: str, headers: dict[str, str], max_examples: int, coverage: bool) -> Fuzzing:
    """Coverage cases (optional), then positive and negative generated cases, per operation."""
    schema = load_schema(url, headers)
    fuzzing = Fuzzing(url, headers, real_cursor(url, headers))
    for result in schema.get_all_operations():
        operation = result.ok()
        if coverage:
            generation = schema.config.generation_for(operation=operation, phase="coverage")
            for case in schema.iter_coverage_cases(
                operation, generation_modes=list(GenerationMode), generation_config=generation
            ):
                fuzzing.run(case)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=max_examples,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=SUPPRESSED,
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def generated(case: Case) -> None:
                fuzzing.run(case)

            try:
                generated()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing invalid to send (no inputs)
    return fuzzing


@pytest.mark.req("SEC-FUZZ", "API-OPENAPI", "API-LIMITS")
@pytest.mark.timeout(240)  # its cases grow with the operations: about 40 s alone on 2 cores
def test_schemathesis_all_checks_pass_on_the_running_server(
    worker_env: dict[str, str], tmp_path: Path, deep: bool
) -> None:
    """Over 1,000 derandomized cases on every operation: no 5xx, undocumented status or mismatch."""
    examples = DEEP_EXAMPLES if deep else EXAMPLES
    with serving(worker_env, tmp_path) as url:
        fuzzing = fuzz(url, {}, max_examples=examples, coverage=True)
    assert fuzzing.sent >= 1000, fuzzing.sent
    assert fuzzing.failures == {}, "\n\n".join(fuzzing.failures.values())


@pytest.mark.req("SEC-FUZZ", "API-AUTH")
@pytest.mark.timeout(240)  # about 30 s alone on 2 cores; four times that beside other tests
def test_schemathesis_with_the_api_key_reaches_past_401(
    worker_env: dict[str, str], tmp_path: Path, deep: bool
) -> None:
    """With LG_DEPLOY_API_KEY set and the key sent, every check passes on every operation."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    examples = DEEP_KEY_EXAMPLES if deep else KEY_EXAMPLES
    with serving(worker_env, tmp_path, LG_DEPLOY_API_KEY=API_KEY) as url:
        fuzzing = fuzz(url, headers, max_examples=examples, coverage=False)
        with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
            assert client.post("/executions", json={"graph_id": "echo"}).status_code == 202
    assert fuzzing.sent >= 200, fuzzing.sent
    assert fuzzing.failures == {}, "\n\n".join(fuzzing.failures.values())


@pytest.mark.req("SEC-FUZZ", "API-AUTH", "API-OPENAPI")
def test_401_without_the_key_is_a_documented_answer_of_every_protected_operation(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    """Without the key every operation but /healthz answers 401, and its document lists 401."""
    headers = {"X-API-Key": API_KEY}
    undocumented = []
    with serving(worker_env, tmp_path, LG_DEPLOY_API_KEY=API_KEY) as url:
        schema = load_schema(url, headers)
        for result in schema.get_all_operations():
            operation = result.ok()
            ids = {name: str(uuid.uuid4()) for name in PATH_PARAMETER.findall(operation.path)}
            has_body = bool(operation.get_request_payload_content_types())
            body = {"body": {"graph_id": "echo"}} if has_body else {}
            case = operation.Case(path_parameters=ids, **body)
            answer = case.call(base_url=url, timeout=REQUEST_SECONDS)
            expected = 200 if operation.path == "/healthz" else 401
            assert answer.status_code == expected, (operation.label, answer.status_code)
            try:
                case.validate_response(answer, checks=[status_code_conformance])
            except* AssertionError:
                undocumented.append(operation.label)
    assert undocumented == [], f"401 not documented for: {undocumented}"


BODY_ROUTES = [
    "/executions",
    "/runs",
    "/runs/wait",
    "/assistants",
    "/assistants/search",
    "/assistants/count",
    "/store/items/search",
    "/store/namespaces",
]


@pytest.mark.req("API-OPENAPI", "API-LIMITS", "SEC-FUZZ")
def test_envelope_refusals_are_documented_on_every_route_with_a_body() -> None:
    """Malformed JSON (400), an oversized body (413) and a non-JSON one (415) are answers every
    JSON-body operation documents (schemathesis never sends them: they are outside the schema)."""
    settings = load_settings({"LG_DEPLOY_BACKEND": "memory", "LG_DEPLOY_MAX_BODY_BYTES": "2048"})
    bodies = {400: (b'{"graph_id":', "application/json"), 413: (b" " * 4096, "application/json"),
              415: (b"{}", "text/plain")}  # fmt: skip
    undocumented = []
    with TestClient(create_app(settings)) as client:
        document = client.get("/openapi.json").json()
        for path in BODY_ROUTES:
            for status, (content, media_type) in bodies.items():
                answer = client.post(path, content=content, headers={"content-type": media_type})
                assert answer.status_code == status, (path, answer.text)
                if str(status) not in document["paths"][path]["post"]["responses"]:
                    undocumented.append(f"POST {path} {status}")
    assert undocumented == []
