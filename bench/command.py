"""What every bench command shares: running with clear exit codes, and writing its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench.api import ApiError
from bench.service import ServiceError

T = TypeVar("T")

SETUP_ERRORS = (ServiceError, ApiError, httpx.HTTPError, OSError, subprocess.SubprocessError)
"""Failures that mean the run could not complete (exit code 2)."""


def run_or_exit(name: str, run: Callable[[], T]) -> T:
    """Run a measurement; exit 130 on Ctrl-C and 2 when the service or setup fails."""
    try:
        return run()
    except KeyboardInterrupt:
        print(f"\n{name}: interrupted; service stopped", file=sys.stderr)
        sys.exit(130)
    except SETUP_ERRORS as error:
        print(f"{name}: {error}", file=sys.stderr)
        sys.exit(2)


def write_results(payload: Any, path: Path) -> None:
    """Write `payload` as indented JSON to `path`, creating its folder, and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nresults written to {path}")
