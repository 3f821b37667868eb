"""The JWT signing key generated for local use when `SECRET_KEY` is unset."""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path

from app.common.settings import MIN_SECRET_KEY_LENGTH, ConfigurationError

logger = logging.getLogger(__name__)

SECRET_FILE_NAME = "secret_key"


def load_or_create_secret_key(data_dir: Path) -> str:
    """Return the key kept in `data_dir`, creating it (mode 0600) on first use."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_FILE_NAME
    key = secrets.token_urlsafe(48)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_existing(path)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(key)
    logger.warning(
        "SECRET_KEY is not set: generated one and kept it in %s (set SECRET_KEY in production)",
        path,
    )
    return key


def _read_existing(path: Path) -> str:
    """Read a key file written earlier (or by a concurrent start); refuse a damaged one."""
    for _ in range(50):
        key = path.read_text(encoding="utf-8").strip()
        if len(key) >= MIN_SECRET_KEY_LENGTH:
            return key
        time.sleep(0.02)
    raise ConfigurationError(f"SECRET_KEY: the generated key in {path} is damaged; delete it")
