"""load_settings: LG_DEPLOY_* variables from a given mapping, over an optional config file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from lg_deploy.errors import ConfigError
from lg_deploy.settings import load_settings


def config_error(environ: dict[str, str]) -> str:
    """The message of the ConfigError that load_settings raises for `environ`."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    return str(caught.value)


def write_json(path: Path, document: object) -> Path:
    """`document` written as JSON to `path`."""
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.mark.req("LLD-8.1")
def test_defaults_from_an_empty_mapping() -> None:
    """With no variables every setting has its documented default."""
    settings = load_settings({})
    assert settings.backend == "postgres"
    assert settings.database_url is None
    assert settings.worker_concurrency == 4
    assert settings.poll_interval_seconds == 1.0
    assert settings.lease_seconds == 10.0
    assert settings.gc_objects_per_slot == 1_000
    assert settings.recovery_interval_seconds == 2.0
    assert settings.max_attempts == 3
    assert settings.retry_on_error is False
    assert settings.checkpoints is False
    assert settings.shutdown_grace_seconds == 10.0
    assert settings.execution_timeout_seconds is None
    assert settings.graphs is None
    assert settings.config is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.api_key is None
    assert (settings.log_level, settings.log_format) == ("INFO", "text")


@pytest.mark.req("LLD-8.1")
def test_reads_only_the_mapping_given_not_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Variables in os.environ are ignored; only the mapping passed in counts."""
    monkeypatch.setenv("LG_DEPLOY_WORKER_CONCURRENCY", "not-a-number")
    monkeypatch.setenv("LG_DEPLOY_BACKEND", "memory")
    settings = load_settings({})
    assert settings.worker_concurrency == 4
    assert settings.backend == "postgres"


@pytest.mark.req("LLD-8.1")
def test_each_variable_is_read_from_the_mapping() -> None:
    """Every LG_DEPLOY_* variable sets its field, converted to the field's type."""
    settings = load_settings(
        {
            "LG_DEPLOY_BACKEND": "memory",
            "LG_DEPLOY_DATABASE_URL": "postgresql://u@db:5432/app",
            "LG_DEPLOY_WORKER_CONCURRENCY": "12",
            "LG_DEPLOY_POLL_INTERVAL_SECONDS": "0.25",
            "LG_DEPLOY_LEASE_SECONDS": "45",
            "LG_DEPLOY_EXECUTION_TIMEOUT_SECONDS": "2.5",
            "LG_DEPLOY_SHUTDOWN_GRACE_SECONDS": "0",
            "LG_DEPLOY_HOST": "0.0.0.0",
            "LG_DEPLOY_PORT": "9001",
            "LG_DEPLOY_API_KEY": "s3cret",
            "LG_DEPLOY_LOG_LEVEL": "debug",
            "LG_DEPLOY_LOG_FORMAT": "json",
            "LG_DEPLOY_MIGRATE_ON_START": "false",
        }
    )
    assert settings.backend == "memory"
    assert settings.database_url == "postgresql://u@db:5432/app"
    assert settings.worker_concurrency == 12
    assert settings.poll_interval_seconds == 0.25
    assert settings.lease_seconds == 45.0
    assert settings.execution_timeout_seconds == 2.5
    assert settings.shutdown_grace_seconds == 0.0
    assert (settings.host, settings.port) == ("0.0.0.0", 9001)
    assert settings.api_key == "s3cret"
    assert (settings.log_level, settings.log_format) == ("DEBUG", "json")
    assert settings.migrate_on_start is False


@pytest.mark.req("LLD-8.1")
def test_variable_names_are_case_insensitive() -> None:
    """lg_deploy_worker_concurrency and Lg_Deploy_Backend set the same fields as upper case."""
    settings = load_settings({"lg_deploy_worker_concurrency": "7", "Lg_Deploy_Backend": "memory"})
    assert settings.worker_concurrency == 7
    assert settings.backend == "memory"


@pytest.mark.req("LLD-8.1", "GRAPH-REGISTRY")
def test_graphs_variable_is_a_json_object() -> None:
    """LG_DEPLOY_GRAPHS holds a JSON object of graph name to spec."""
    graphs = {"triage": "my_app.graphs:triage", "local": "./agent.py:graph"}
    settings = load_settings({"LG_DEPLOY_GRAPHS": json.dumps(graphs)})
    assert settings.graphs == graphs


@pytest.mark.req("LLD-8.1")
@pytest.mark.parametrize(
    ("variable", "value", "mentions"),
    [
        ("LG_DEPLOY_WORKER_CONCURRENCY", "0", ["1"]),
        ("LG_DEPLOY_WORKER_CONCURRENCY", "abc", ["integer"]),
        ("LG_DEPLOY_BACKEND", "redis", ["postgres", "memory"]),
        ("LG_DEPLOY_POLL_INTERVAL_SECONDS", "-1", ["0"]),
        ("LG_DEPLOY_GRAPHS", "{not json", []),
        ("LG_DEPLOY_GRAPHS", '["a list"]', []),
        ("LG_DEPLOY_PORT", "70000", ["65535"]),
        ("LG_DEPLOY_GC_OBJECTS_PER_SLOT", "-5", ["0"]),
    ],
)
def test_invalid_value_raises_one_line_config_error_naming_the_variable(
    variable: str, value: str, mentions: list[str]
) -> None:
    """A bad value raises a one-line ConfigError that starts with the variable and says why."""
    message = config_error({variable: value})
    assert message.startswith(variable)
    assert "\n" not in message
    for text in mentions:
        assert text in message.replace("_", "")


@pytest.mark.req("LLD-8.1", "GRAPH-REGISTRY")
def test_langgraph_json_graphs_resolve_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LG_DEPLOY_CONFIG=langgraph.json gives its graphs, paths made absolute from its folder."""
    project = tmp_path / "project"
    project.mkdir()
    config = write_json(project / "langgraph.json", {"graphs": {"g": "./agent.py:graph"}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings({"LG_DEPLOY_CONFIG": str(config)})
    assert settings.graphs == {"g": f"{(project / 'agent.py').resolve()}:graph"}
    assert Path(settings.graphs["g"].rpartition(":")[0]).is_absolute()


@pytest.mark.req("LLD-8.1")
def test_config_file_value_applies_and_an_env_variable_overrides_it(tmp_path: Path) -> None:
    """A setting in the config file applies; the same setting as a variable wins over it."""
    config = str(write_json(tmp_path / "settings.json", {"worker_concurrency": 7}))
    assert load_settings({"LG_DEPLOY_CONFIG": config}).worker_concurrency == 7
    overridden = load_settings({"LG_DEPLOY_CONFIG": config, "LG_DEPLOY_WORKER_CONCURRENCY": "9"})
    assert overridden.worker_concurrency == 9


@pytest.mark.req("LLD-8.1")
@pytest.mark.parametrize("content", [None, "{not json", "[1, 2]"])
def test_missing_or_invalid_config_file_names_lg_deploy_config(
    tmp_path: Path, content: str | None
) -> None:
    """A config file missing, not JSON or not an object gives a ConfigError on LG_DEPLOY_CONFIG."""
    path = tmp_path / "langgraph.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    message = config_error({"LG_DEPLOY_CONFIG": str(path)})
    assert message.startswith("LG_DEPLOY_CONFIG")
    assert str(path) in message
    assert "\n" not in message


@pytest.mark.req("LLD-8.1")
def test_bad_value_in_config_file_names_the_file_not_an_unset_variable(tmp_path: Path) -> None:
    """A bad value read from the config file names that file, since no variable was set."""
    path = write_json(tmp_path / "settings.json", {"worker_concurrency": 0})
    message = config_error({"LG_DEPLOY_CONFIG": str(path)})
    assert "worker_concurrency" in message
    assert "LG_DEPLOY_CONFIG" in message or str(path) in message
    assert "\n" not in message


@pytest.mark.req("LLD-8.1")
def test_unknown_variable_logs_a_warning_and_does_not_fail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unknown LG_DEPLOY_FOO is reported in a warning; the other settings still load."""
    with caplog.at_level(logging.WARNING, logger="lg_deploy.settings"):
        settings = load_settings({"LG_DEPLOY_FOO": "1", "LG_DEPLOY_WORKER_CONCURRENCY": "3"})
    assert settings.worker_concurrency == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("LG_DEPLOY_FOO" in r.getMessage() for r in warnings)


@pytest.mark.req("LLD-8.1")
def test_unrelated_variables_are_ignored_without_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Variables outside LG_DEPLOY_* and the test suite's LG_DEPLOY_TEST_* raise no warning."""
    environ = {"PATH": "/usr/bin", "LG_DEPLOY_TEST_DATABASE_URL": "postgresql://x"}
    with caplog.at_level(logging.WARNING, logger="lg_deploy.settings"):
        settings = load_settings(environ)
    assert settings.worker_concurrency == 4
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
