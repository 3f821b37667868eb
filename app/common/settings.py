"""Service configuration, read from the environment or a `.env` file."""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

MIN_SECRET_KEY_LENGTH = 32


class ConfigurationError(Exception):
    """Raised when the configuration cannot be used; the message names the variable."""


def normalize_database_url(value: str) -> str:
    """Return `value` as an asyncpg SQLAlchemy URL, or raise ValueError.

    Accepts `postgresql://`, `postgres://` and `postgresql+asyncpg://` URLs.
    """
    try:
        url: URL = make_url(value.strip())
    except ArgumentError:
        raise ValueError("not a valid URL, expected postgresql+asyncpg://user:pass@host:5432/db")
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise ValueError("must be a PostgreSQL URL (postgresql+asyncpg://...)")
    if url.drivername not in ("postgresql", "postgres", "postgresql+asyncpg"):
        raise ValueError("the only supported driver is asyncpg (postgresql+asyncpg://...)")
    if not url.database:
        raise ValueError("names no database")
    return url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


class Settings(BaseSettings):
    """Every setting of the service; see `.env.example` for what each one means."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: str | None = None
    auto_migrate: bool = True
    secret_key: SecretStr | None = None
    env: Literal["local", "production"] = "local"
    data_dir: Path = Path(".aitrace")
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "INFO"
    cookie_secure: bool = True
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    trust_forwarded_host: bool = False
    signup_enabled: bool = False
    allow_private_image_urls: bool = False
    image_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    image_fetch_timeout: float = Field(default=10.0, gt=0, le=600)
    image_max_pixels: int = Field(default=64_000_000, ge=1, le=1_000_000_000)
    import_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    import_concurrency: int = Field(default=16, ge=1, le=256)
    import_max_concurrent_per_team: int = Field(default=2, ge=1, le=1000)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    header_timeout: float = Field(default=10.0, gt=0, le=300)
    export_pool_size: int = Field(default=4, ge=1, le=100)
    export_max_concurrent_per_user: int = Field(default=2, ge=1, le=100)
    export_send_timeout: float = Field(default=30.0, gt=0, le=3600)
    search_timeout: float = Field(default=5.0, gt=0, le=600)
    run_worker: bool = True
    worker_concurrency: int = Field(default=2, ge=1, le=64)
    job_heartbeat_timeout: float = Field(default=30.0, ge=1, le=3600)

    @field_validator("database_url", mode="before")
    @classmethod
    def _check_database_url(cls, value: object) -> object:
        if isinstance(value, str):
            return normalize_database_url(value) if value.strip() else None
        return value

    @field_validator("secret_key", mode="before")
    @classmethod
    def _blank_secret_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("secret_key")
    @classmethod
    def _check_secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_KEY_LENGTH} characters long")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if not isinstance(logging.getLevelNamesMapping().get(level), int):
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip().rstrip("/") for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _refuse_wildcard_origin(cls, value: list[str]) -> list[str]:
        """Credentials are always allowed cross-origin, so `*` would let any site act as the user."""
        if "*" in value:
            raise ValueError(
                "must list exact origins, not '*' (credentials are allowed, so '*' would let"
                " any site call the API as the signed-in user)"
            )
        return value

    @model_validator(mode="after")
    def _check_production(self) -> Settings:
        if self.env == "production" and self.secret_key is None:
            raise ValueError("SECRET_KEY must be set when ENV=production")
        return self

    def secret(self) -> str:
        """Return the JWT signing key; the CLI resolves a generated one before the app starts."""
        if self.secret_key is None:
            raise ConfigurationError("SECRET_KEY is not set")
        return self.secret_key.get_secret_value()


def describe_validation_error(error: ValidationError) -> str:
    """Render a settings error as one line per variable, e.g. `DATABASE_URL: not a valid URL`."""
    lines = []
    for item in error.errors():
        name = "_".join(str(part) for part in item["loc"]).upper()
        message = str(item["msg"]).removeprefix("Value error, ")
        if name:
            lines.append(f"{name}: {message}")
        else:
            lines.append(message)
    return "\n".join(lines)


def load_settings() -> Settings:
    """Read the settings, raising ConfigurationError with a readable message when invalid."""
    try:
        return Settings()
    except ValidationError as error:
        raise ConfigurationError(describe_validation_error(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings (read once)."""
    return load_settings()
