"""One log format for the app, uvicorn and the CLI."""

from __future__ import annotations

import logging
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"


def alembic_level(level: str) -> str:
    """Alembic's own level: its per-start INFO chatter (plugins, "Context impl") only at DEBUG.

    AITrace logs the outcome of a migration itself ("Database upgraded from ... to ...").
    """
    return level if logging.getLevelName(level) <= logging.DEBUG else "WARNING"


def configure_logging(level: str) -> None:
    """Send every log record to stderr in the service's format."""
    logging.basicConfig(level=level, format=LOG_FORMAT, force=True)
    logging.getLogger("alembic").setLevel(alembic_level(level))


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """Return uvicorn's `log_config` so that its records use the same format."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"format": LOG_FORMAT}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            "uvicorn": {"level": level},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"level": level},
            "alembic": {"level": alembic_level(level)},
        },
    }
