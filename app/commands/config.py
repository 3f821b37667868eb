"""`aitrace config`: the effective settings, one `NAME=value` per line, secrets masked.

The values are what the server would use: the environment, then `.env`, then the defaults. The
signing key is never shown, nor the password inside `DATABASE_URL`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import SecretStr

from app.commands import EXIT_OK, operator_command
from app.commands.database import load_command_settings
from app.common.db_check import describe_url
from app.common.secret_key import SECRET_FILE_NAME
from app.common.settings import Settings

MASK = "***"


def _format(value: object) -> str:
    """A setting as it is written in the environment (`true`, `a,b`, empty for unset)."""
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def effective_settings(settings: Settings) -> list[tuple[str, str]]:
    """Every setting's name and printable value, in the order `Settings` declares them."""
    lines = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if name == "database_url":
            shown = (
                describe_url(value)
                if value is not None
                else f"(unset: embedded PostgreSQL in {Path(settings.data_dir, 'postgres')})"
            )
        elif name == "secret_key" and value is None:
            shown = f"(generated, in {Path(settings.data_dir, SECRET_FILE_NAME)})"
        else:
            shown = _format(value)
        lines.append((name.upper(), shown))
    return lines


@operator_command
def show(args: argparse.Namespace) -> int:
    """Print the effective settings."""
    for name, value in effective_settings(load_command_settings()):
        print(f"{name}={value}")
    return EXIT_OK
