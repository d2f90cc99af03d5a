"""A config file's `env` (langgraph.json), its unused keys, and command-line options over both."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from lg_deploy.errors import ConfigError
from lg_deploy.settings import apply_config_file, load_settings


def write_config(folder: Path, document: object, name: str = "langgraph.json") -> str:
    """`document` as JSON in `folder/name`; returns the path as a string."""
    path = folder / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


def config_error(environ: dict[str, str], options: dict[str, str] | None = None) -> str:
    """The message of the ConfigError that load_settings raises."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ, options)
    return str(caught.value)


@pytest.mark.req("CONFIG-ENV", "LLD-8.1")
def test_env_object_gives_variables_that_win_over_the_environment(tmp_path: Path) -> None:
    """`env` as an object: its LG_DEPLOY_* values are settings and win over the real ones."""
    env = {"GREETING": "from env", "LG_DEPLOY_WORKER_CONCURRENCY": "7"}
    config = write_config(tmp_path, {"graphs": {}, "env": env})
    environ = {"LG_DEPLOY_CONFIG": config, "LG_DEPLOY_WORKER_CONCURRENCY": "3", "GREETING": "old"}
    settings = load_settings(environ)
    assert settings.worker_concurrency == 7
    assert settings.config_env == env


@pytest.mark.req("CONFIG-ENV", "SERVE-OPTIONS")
def test_command_line_options_win_over_env_and_variables(tmp_path: Path) -> None:
    """--port and --config beat LG_DEPLOY_PORT, the file's env and LG_DEPLOY_CONFIG."""
    chosen = write_config(tmp_path, {"env": {"LG_DEPLOY_PORT": "9001"}})
    other = write_config(tmp_path, {"env": {"LG_DEPLOY_PORT": "9002"}}, "other.json")
    environ = {"LG_DEPLOY_CONFIG": other, "LG_DEPLOY_PORT": "9003"}
    assert load_settings(environ, {"config": chosen}).port == 9001
    assert load_settings(environ, {"config": chosen, "port": "9100"}).port == 9100
    assert load_settings(environ, {"host": "0.0.0.0"}).host == "0.0.0.0"


@pytest.mark.req("CONFIG-ENV")
def test_env_file_is_relative_to_the_config_file_and_expands_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`env` as a path: a .env beside the config file, ${NAME} from earlier lines or the environ."""
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text(
        "# a comment\nA=one\nB=\"${A}-two\"\nC=${OUTSIDE}/x\nexport D='four'\nBARE\n",
        encoding="utf-8",
    )
    config = write_config(project, {"env": ".env"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings({"LG_DEPLOY_CONFIG": config, "OUTSIDE": "/out"})
    assert settings.config_env == {"A": "one", "B": "one-two", "C": "/out/x", "D": "four"}


@pytest.mark.req("CONFIG-ENV")
def test_a_missing_env_file_stops_with_one_line_naming_it(tmp_path: Path) -> None:
    """`env` naming a file that does not exist is a one-line ConfigError with its full path."""
    config = write_config(tmp_path, {"env": "./missing.env"})
    message = config_error({"LG_DEPLOY_CONFIG": config})
    assert message.startswith("LG_DEPLOY_CONFIG")
    assert str(tmp_path / "missing.env") in message
    assert "\n" not in message


@pytest.mark.req("CONFIG-ENV")
@pytest.mark.parametrize(
    "env",
    [["A=1"], 42, {"A": 1}, {"A": None}, {"lg_deploy_config": "other.json"}],
)
def test_a_bad_env_is_one_line_naming_the_config_file(tmp_path: Path, env: object) -> None:
    """`env` that is not an object of strings, or sets LG_DEPLOY_CONFIG, is a one-line error."""
    config = write_config(tmp_path, {"env": env})
    message = config_error({"LG_DEPLOY_CONFIG": config})
    assert message.startswith(f"LG_DEPLOY_CONFIG: {config}: env")
    assert "\n" not in message


@pytest.mark.req("CONFIG-ENV", "LLD-8.1")
def test_a_bad_setting_from_env_names_the_file_and_the_variable(tmp_path: Path) -> None:
    """LG_DEPLOY_PORT=70000 in `env` names the config file, `env` and the variable, in one line."""
    config = write_config(tmp_path, {"env": {"LG_DEPLOY_PORT": "70000"}})
    message = config_error({"LG_DEPLOY_CONFIG": config})
    assert message.startswith(f"LG_DEPLOY_CONFIG: {config}: env: LG_DEPLOY_PORT")
    assert "65535" in message
    assert "\n" not in message


@pytest.mark.req("SERVE-OPTIONS", "LLD-8.1")
@pytest.mark.parametrize(("option", "value"), [("port", "70000"), ("port", "abc")])
def test_a_bad_option_value_is_one_line_naming_the_option(option: str, value: str) -> None:
    """--port 70000 gives the variable's one-line error, naming --port and the value."""
    message = config_error({"LG_DEPLOY_PORT": "8000"}, {option: value})
    assert message.startswith(f"--{option}: ")
    assert repr(value) in message
    assert "\n" not in message


@pytest.mark.req("CONFIG-ENV")
def test_load_settings_leaves_os_environ_alone(tmp_path: Path) -> None:
    """Loading settings reads `env` but does not put it into os.environ (apply_config_file does)."""
    config = write_config(tmp_path, {"env": {"LGD_TEST_ONLY_IN_ENV": "x"}})
    load_settings({"LG_DEPLOY_CONFIG": config})
    assert "LGD_TEST_ONLY_IN_ENV" not in os.environ


@pytest.mark.req("CONFIG-ENV", "CONFIG-UNUSED-KEYS")
def test_apply_config_file_sets_env_and_logs_one_line_of_unused_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """apply_config_file puts `env` over variables already set and names unused keys once."""
    document = {
        "graphs": {"g": "./agent.py:graph"},
        "env": {"GREETING": "hi"},
        "dependencies": ["."],
        "python_version": "3.12",
        "auth": {"path": "./auth.py:auth"},
    }
    settings = load_settings({"LG_DEPLOY_CONFIG": write_config(tmp_path, document)})
    target = {"GREETING": "old", "OTHER": "kept"}
    with caplog.at_level(logging.WARNING, logger="lg_deploy.settings"):
        apply_config_file(settings, target)
    assert target == {"GREETING": "hi", "OTHER": "kept"}
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].__dict__["unused_keys"] == ["auth", "dependencies", "python_version"]
    assert "auth, dependencies, python_version" in warnings[0].getMessage()
    assert "LG_DEPLOY_API_KEY" in warnings[0].getMessage()


@pytest.mark.req("CONFIG-UNUSED-KEYS")
def test_unknown_keys_of_a_plain_settings_file_are_listed(tmp_path: Path) -> None:
    """A settings file's typo (wroker_concurrency) is listed as unused, not silently dropped."""
    document = {"worker_concurrency": 2, "wroker_concurrency": 3}
    settings = load_settings({"LG_DEPLOY_CONFIG": write_config(tmp_path, document, "s.json")})
    assert settings.worker_concurrency == 2
    assert settings.unused_config_keys == ("wroker_concurrency",)


@pytest.mark.req("CONFIG-UNUSED-KEYS")
def test_a_file_with_only_used_keys_logs_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """graphs, env and settings are all used: apply_config_file logs no warning."""
    document = {"graphs": {}, "env": {}, "worker_concurrency": 2}
    settings = load_settings({"LG_DEPLOY_CONFIG": write_config(tmp_path, document)})
    with caplog.at_level(logging.WARNING, logger="lg_deploy.settings"):
        apply_config_file(settings, {})
    assert not caplog.records
