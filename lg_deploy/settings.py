"""Settings: the only reader of LG_DEPLOY_* variables and of the optional config file."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from dotenv.variables import parse_variables
from pydantic import Field, PrivateAttr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from lg_deploy.errors import ConfigError
from lg_deploy.webhooks.allowlist import AllowList

# Defaults that code outside Settings also states (the model, the retry policy, the collector,
# the pool): they take them from here, the one place.
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_BACKOFF_SECONDS = 1.0
DEFAULT_BACKOFF_MAX_SECONDS = 300.0
DEFAULT_OBJECTS_PER_SLOT = 1_000
DEFAULT_POOL_MAX_SIZE = 10
DEFAULT_POOL_TIMEOUT_SECONDS = 5.0

logger = logging.getLogger(__name__)

ENV_PREFIX = "LG_DEPLOY_"
# Variables for the test suite itself (LG_DEPLOY_TEST_DATABASE_URL), not settings.
TEST_PREFIX = "LG_DEPLOY_TEST_"
# Settings whose values are never echoed in an error (they may hold a password or a key).
SECRET_FIELDS = frozenset({"database_url", "api_key", "webhook_secret"})
# Config-file keys lg-deploy uses besides the settings (langgraph.json's `graphs` is one of those).
CONFIG_FILE_KEYS = frozenset({"env"})


class Settings(BaseSettings):
    """Every tunable of lg-deploy; each field is read from LG_DEPLOY_<FIELD NAME>."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    backend: Literal["postgres", "memory"] = "postgres"
    database_url: str | None = Field(default=None, min_length=1)
    data_dir: Path = Path(".lg-deploy")
    migrate_on_start: bool = True
    pool_max_size: int = Field(default=DEFAULT_POOL_MAX_SIZE, ge=1, le=1000)
    pool_timeout_seconds: float = Field(default=DEFAULT_POOL_TIMEOUT_SECONDS, gt=0, le=600)
    worker_concurrency: int = Field(default=4, ge=1, le=10_000)
    run_graphs: bool = True  # false: `serve` answers the API and runs no graph (workers do)
    poll_interval_seconds: float = Field(default=1.0, gt=0, le=3600)
    claim_ahead: int = Field(default=32, ge=0, le=10_000)
    claim_hold_seconds: float = Field(default=1.0, gt=0, le=3600)
    gc_objects_per_slot: int = Field(default=DEFAULT_OBJECTS_PER_SLOT, ge=0, le=1_000_000)
    lease_seconds: float = Field(default=10.0, ge=1, le=86_400)
    recovery_interval_seconds: float = Field(default=2.0, gt=0, le=3600)
    # false: runs of a worker whose process is gone from this host wait out their leases too
    recover_gone_workers: bool = True
    max_attempts: int = Field(default=DEFAULT_MAX_ATTEMPTS, ge=1, le=1000)
    retry_on_error: bool = False
    retry_backoff_seconds: float = Field(default=DEFAULT_BACKOFF_SECONDS, ge=0, le=3600)
    retry_backoff_max_seconds: float = Field(default=DEFAULT_BACKOFF_MAX_SECONDS, ge=0, le=86_400)
    execution_timeout_seconds: float | None = Field(default=None, gt=0, le=604_800)
    unserved_graph_seconds: float = Field(default=3600.0, gt=0, le=31_536_000)
    loop_warn_seconds: float = Field(default=0.5, gt=0, le=3600)
    checkpoints: bool = False
    retention_seconds: float | None = Field(default=None, gt=0)
    retention_interval_seconds: float = Field(default=300.0, gt=0, le=86_400)
    stream_events_seconds: float = Field(default=3600.0, gt=0, le=31_536_000)
    store_ttl_sweep_seconds: float = Field(default=60.0, gt=0, le=86_400)
    store_default_ttl_seconds: float | None = Field(default=None, ge=60, le=3_153_600_000)
    store_refresh_ttl_on_read: bool = True
    thread_ttl_seconds: float | None = Field(default=None, gt=0)  # None: threads never expire
    cron_interval_seconds: float = Field(default=1.0, ge=0, le=3600)  # 0: this process ticks none
    cron_missed_seconds: float = Field(default=60.0, ge=0, le=31_536_000)
    listen: bool = True
    prepared_statements: bool = True
    shutdown_grace_seconds: float = Field(default=10.0, ge=0, le=86_400)
    # Webhooks (docs/webhooks.md). The allow-list is checked before the default URL.
    webhook_allowed_hosts: str = "*"  # `*`: public addresses; names, *.suffixes, IPs, networks
    webhook_url: str | None = None  # the default for runs naming none; "": clear it; unset: keep
    webhook_secret: str | None = Field(default=None, min_length=16)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    webhook_max_attempts: int = Field(default=10, ge=1, le=1000)
    webhook_backoff_seconds: float = Field(default=2.0, ge=0, le=3600)
    webhook_backoff_max_seconds: float = Field(default=600.0, ge=0, le=86_400)
    webhook_concurrency: int = Field(default=8, ge=0, le=1000)  # 0: this process sends none
    graphs: dict[str, str] | None = None
    config: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65_535)
    api_key: str | None = Field(default=None, min_length=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=1_073_741_824)
    keepalive_seconds: float = Field(default=5.0, gt=0, le=300)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    # What the config file gives besides settings (see apply_config_file); not variables.
    _config_env: dict[str, str] = PrivateAttr(default_factory=dict)
    _unused_config_keys: tuple[str, ...] = PrivateAttr(default=())

    @property
    def config_env(self) -> dict[str, str]:
        """The variables of the config file's `env` (a JSON object, or a .env file it names)."""
        return dict(self._config_env)

    @property
    def unused_config_keys(self) -> tuple[str, ...]:
        """The config file's keys lg-deploy does not use (langgraph.json's `auth`, typos...)."""
        return self._unused_config_keys

    @field_validator("database_url")
    @classmethod
    def _parsable_url(cls, value: str | None) -> str | None:
        """Parse it now: libpq's own parse errors quote the string, password included."""
        if value is not None:
            import psycopg  # here: the client commands load settings and need no psycopg
            from psycopg.conninfo import conninfo_to_dict

            try:
                conninfo_to_dict(value)
            except psycopg.Error:
                raise ValueError("not a connection string libpq can parse") from None
        return value

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _parsable_allow_list(cls, value: str) -> str:
        AllowList.parse(value)
        return value

    @field_validator("webhook_url")
    @classmethod
    def _allowed_webhook(cls, value: str | None, info: ValidationInfo) -> str | None:
        """The default webhook must pass the allow-list (no DNS lookup here); "" clears it."""
        if value and "webhook_allowed_hosts" in info.data:
            AllowList.parse(info.data["webhook_allowed_hosts"]).check_url(value)
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


@dataclasses.dataclass(frozen=True)
class _ConfigFile:
    """What one config file gives: setting values, its `env` variables, the keys not used."""

    path: Path | None = None
    source: str = ""  # what named it: LG_DEPLOY_CONFIG or --config
    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    unused: tuple[str, ...] = ()


def load_settings(environ: Mapping[str, str], options: Mapping[str, str] | None = None) -> Settings:
    """Settings from command-line `options`, over `environ`, over the config file it names.

    The config file's `env` joins `environ` and wins over it, as `langgraph dev` lets it win
    over the variables already set. Reads files, never os.environ. A bad value raises a
    one-line ConfigError naming the option, variable or file it came from.
    """
    options = dict(options or {})
    real = _parse_environ(environ)
    source = option_name("config") if "config" in options else env_name("config")
    config = _read_config_file(options.get("config", real.get("config")), source, environ)
    environ = {**environ, **config.env}
    from_env = _parse_environ(environ) if config.env else real
    _warn_unknown(environ)
    try:
        settings = Settings(**{**config.values, **from_env, **options})
    except ValidationError as error:
        raise ConfigError(_validation_line(error, environ, options, config)) from error
    settings._config_env = config.env
    settings._unused_config_keys = config.unused
    return settings


def apply_config_file(settings: Settings, environ: MutableMapping[str, str] | None = None) -> None:
    """Do what the config file asks of this process, before its graphs are imported.

    Its `env` goes into `environ` (os.environ by default), over variables already set, as
    `langgraph dev` does; one warning names the keys lg-deploy does not use.
    """
    (os.environ if environ is None else environ).update(settings.config_env)
    unused = settings.unused_config_keys
    if unused:
        auth = "; `auth` is not honoured: LG_DEPLOY_API_KEY is the key" if "auth" in unused else ""
        logger.warning(
            "config file %s: lg-deploy does not use %s, ignored%s",
            settings.config,
            ", ".join(unused),
            auth,
            extra={"unused_keys": list(unused)},
        )


def _parse_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    try:
        return _MappingEnvSource(environ)()
    except SettingsError as error:
        raise ConfigError(_settings_error_line(error)) from error


def _read_config_file(path_value: Any, source: str, environ: Mapping[str, str]) -> _ConfigFile:
    """A langgraph.json (its graphs and env) or a JSON object of settings, keys not used noted."""
    if path_value is None:
        return _ConfigFile()
    path = Path(path_value)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"{source}: cannot read {path}: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {path} must hold a JSON object")
    known = set(Settings.model_fields) - {"config"}
    values = {key: value for key, value in data.items() if key in known}
    if "graphs" in values and isinstance(values["graphs"], dict):
        values["graphs"] = _resolve_file_graphs(values["graphs"], path.parent)
    unused = tuple(sorted(key for key in data if key not in known | CONFIG_FILE_KEYS))
    where = f"{source}: {path}: env"
    env = _config_env(data["env"], path, where, environ) if "env" in data else {}
    return _ConfigFile(path, source, values, env, unused)


def _config_env(value: Any, path: Path, where: str, environ: Mapping[str, str]) -> dict[str, str]:
    """`env`: a JSON object of strings, or the path of a .env file relative to the config file."""
    if isinstance(value, str):
        value = _read_dotenv((path.parent / value).resolve(), environ, where)
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a JSON object or the path of a .env file")
    for key, item in value.items():
        if not isinstance(item, str):
            raise ConfigError(f"{where}: {key}: must be a string (got {type(item).__name__})")
        if key.upper() == env_name("config"):
            raise ConfigError(f"{where}: {key} cannot be set from the config file it names")
    return dict(value)


def _read_dotenv(file: Path, environ: Mapping[str, str], where: str) -> dict[str, str]:
    """A .env file's variables, ${NAME} expanded from earlier lines, then `environ`."""
    if not file.is_file():
        raise ConfigError(f"{where}: no such file: {file}")
    try:
        raw = dotenv_values(file, interpolate=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{where}: cannot read {file}: {error}") from error
    resolved: dict[str, str] = {}
    for key, text in raw.items():
        if text is not None:  # a bare `KEY` line sets nothing
            scope = {**environ, **resolved}
            resolved[key] = "".join(atom.resolve(scope) for atom in parse_variables(text))
    return resolved


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


def option_name(field: str) -> str:
    """The command-line option that sets `field` (`--port`)."""
    return f"--{field.replace('_', '-')}"


def _validation_line(
    error: ValidationError,
    environ: Mapping[str, str],
    options: Mapping[str, str],
    config: _ConfigFile,
) -> str:
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    variables = {key.upper(): value for key, value in environ.items()}
    name, given = env_name(field), variables.get(env_name(field))
    if field in options:
        name, given = option_name(field), options[field]
    elif given is None and field in config.values:
        return f"{config.source}: {config.path}: {field}: {first['msg']}"
    elif name in {key.upper() for key in config.env}:
        name = f"{config.source}: {config.path}: env: {name}"
    shown = given is not None and field not in SECRET_FIELDS
    got = f" (got {given!r})" if shown else ""
    return f"{name}: {first['msg']}{got}{_allowed(first)}"


def _allowed(error: Any) -> str:
    expected = (error.get("ctx") or {}).get("expected")
    return f"; allowed: {expected}" if expected else ""


def _settings_error_line(error: SettingsError) -> str:
    text = str(error)
    for field in Settings.model_fields:
        if f'"{field}"' in text:
            return f"{env_name(field)}: {text}"
    return text
