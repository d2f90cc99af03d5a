"""Settings: the only reader of LG_DEPLOY_* variables and of the optional config file."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from lg_deploy.collector import DEFAULT_OBJECTS_PER_SLOT
from lg_deploy.errors import ConfigError

logger = logging.getLogger(__name__)

ENV_PREFIX = "LG_DEPLOY_"
# Variables for the test suite itself (LG_DEPLOY_TEST_DATABASE_URL), not settings.
TEST_PREFIX = "LG_DEPLOY_TEST_"
# Settings whose values are never echoed in an error (they may hold a password or a key).
SECRET_FIELDS = frozenset({"database_url", "api_key"})


class Settings(BaseSettings):
    """Every tunable of lg-deploy; each field is read from LG_DEPLOY_<FIELD NAME>."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    backend: Literal["postgres", "memory"] = "postgres"
    database_url: str | None = Field(default=None, min_length=1)
    data_dir: Path = Path(".lg-deploy")
    migrate_on_start: bool = True
    pool_max_size: int = Field(default=10, ge=1, le=1000)
    pool_timeout_seconds: float = Field(default=5.0, gt=0, le=600)
    worker_concurrency: int = Field(default=4, ge=1, le=10_000)
    poll_interval_seconds: float = Field(default=1.0, gt=0, le=3600)
    claim_ahead: int = Field(default=32, ge=0, le=10_000)
    gc_objects_per_slot: int = Field(default=DEFAULT_OBJECTS_PER_SLOT, ge=0, le=1_000_000)
    lease_seconds: float = Field(default=10.0, ge=1, le=86_400)
    recovery_interval_seconds: float = Field(default=2.0, gt=0, le=3600)
    max_attempts: int = Field(default=3, ge=1, le=1000)
    retry_on_error: bool = False
    retry_backoff_seconds: float = Field(default=1.0, ge=0, le=3600)
    retry_backoff_max_seconds: float = Field(default=300.0, ge=0, le=86_400)
    execution_timeout_seconds: float | None = Field(default=None, gt=0, le=604_800)
    unserved_graph_seconds: float = Field(default=3600.0, gt=0, le=31_536_000)
    loop_warn_seconds: float = Field(default=0.5, gt=0, le=3600)
    checkpoints: bool = False
    retention_seconds: float | None = Field(default=None, gt=0)
    retention_interval_seconds: float = Field(default=300.0, gt=0, le=86_400)
    listen: bool = True
    prepared_statements: bool = True
    shutdown_grace_seconds: float = Field(default=10.0, ge=0, le=86_400)
    graphs: dict[str, str] | None = None
    config: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65_535)
    api_key: str | None = Field(default=None, min_length=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=1_073_741_824)
    keepalive_seconds: float = Field(default=5.0, gt=0, le=300)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("database_url")
    @classmethod
    def _parsable_url(cls, value: str | None) -> str | None:
        """Parse it now: libpq's own parse errors quote the string, password included."""
        if value is not None:
            try:
                conninfo_to_dict(value)
            except psycopg.Error:
                raise ValueError("not a connection string libpq can parse") from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only explicit values: load_settings gathers them from the environment it is given."""
        return (init_settings,)


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment parsing, over a mapping instead of os.environ."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = {key.lower(): value for key, value in environ.items()}
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._environ


def env_name(field: str) -> str:
    """The environment variable that sets `field`."""
    return f"{ENV_PREFIX}{field.upper()}"


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Settings from `environ` over the config file it names; ConfigError names the bad variable."""
    try:
        from_env = _MappingEnvSource(environ)()
    except SettingsError as error:
        raise ConfigError(_settings_error_line(error)) from error
    _warn_unknown(environ)
    from_file = _read_config_file(from_env.get("config"))
    try:
        return Settings(**{**from_file, **from_env})
    except ValidationError as error:
        field = str(error.errors()[0]["loc"][0]) if error.errors()[0]["loc"] else ""
        if field in from_file and field not in from_env:
            problem = error.errors()[0]["msg"]
            path = from_env["config"]
            raise ConfigError(f"{env_name('config')}: {path}: {field}: {problem}") from error
        raise ConfigError(_validation_line(error, environ)) from error


def _read_config_file(path_value: Any) -> dict[str, Any]:
    """Values from the config file: a langgraph.json (its graphs) or a JSON object of settings."""
    if path_value is None:
        return {}
    path = Path(path_value)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"{env_name('config')}: cannot read {path}: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{env_name('config')}: {path} must hold a JSON object")
    known = set(Settings.model_fields)
    values = {key: value for key, value in data.items() if key in known and key != "config"}
    if "graphs" in values and isinstance(values["graphs"], dict):
        values["graphs"] = _resolve_file_graphs(values["graphs"], path.parent)
    return values


def _resolve_file_graphs(graphs: dict[str, Any], base: Path) -> dict[str, Any]:
    """Graph specs in a config file are relative to that file, as in langgraph.json."""
    resolved: dict[str, Any] = {}
    for name, spec in graphs.items():
        if isinstance(spec, dict):
            spec = spec.get("path")
        if isinstance(spec, str) and spec.startswith("."):
            file_part, _, attr = spec.partition(":")
            spec = f"{(base / file_part).resolve()}:{attr}"
        resolved[name] = spec
    return resolved


def _warn_unknown(environ: Mapping[str, str]) -> None:
    known = {env_name(field) for field in Settings.model_fields}
    for key in environ:
        name = key.upper()
        if name.startswith(ENV_PREFIX) and name not in known and not name.startswith(TEST_PREFIX):
            logger.warning("ignoring unknown setting %s", key)


def _validation_line(error: ValidationError, environ: Mapping[str, str]) -> str:
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    name = env_name(field)
    given = {key.upper(): value for key, value in environ.items()}.get(name)
    shown = given is not None and field not in SECRET_FIELDS
    got = f" (got {given!r})" if shown else ""
    allowed = _allowed(first)
    return f"{name}: {first['msg']}{got}{allowed}"


def _allowed(error: Any) -> str:
    expected = (error.get("ctx") or {}).get("expected")
    return f"; allowed: {expected}" if expected else ""


def _settings_error_line(error: SettingsError) -> str:
    text = str(error)
    for field in Settings.model_fields:
        if f'"{field}"' in text:
            return f"{env_name(field)}: {text}"
    return text
