"""Run `aitrace` commands in tests, fast: forked from a process that has imported them once.

`run_command` behaves like `subprocess.run([aitrace, *args], capture_output=True, text=True)`
(see `tests/command_zygote.py` for why and how). One zygote process serves each test process,
started on first use and stopped when the test process exits.
"""

from __future__ import annotations

import atexit
import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from tests.server_process import AITRACE, clean_env

PROJECT_ROOT = Path(__file__).resolve().parents[1]
COMMAND_TIMEOUT = 180
"""Seconds a command may run before it is killed (SIGALRM); generous for a loaded machine."""


class CommandZygote:
    """The zygote process and the lock that keeps one request at a time on its pipe."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.command_zygote"],
            cwd=PROJECT_ROOT,
            env=clean_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lock = threading.Lock()

    def run(self, request: dict[str, object]) -> int:
        """Send one request; wait for and return the child's exit status."""
        assert self.process.stdin is not None and self.process.stdout is not None
        with self.lock:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the command zygote exited ({self.process.poll()})")
        return int(answer)

    def close(self) -> None:
        """Close its stdin (it exits at end of input) and wait for it."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


_zygote: CommandZygote | None = None
_start_lock = threading.Lock()


def _the_zygote() -> CommandZygote:
    global _zygote
    with _start_lock:
        if _zygote is None or _zygote.process.poll() is not None:
            _zygote = CommandZygote()
            atexit.register(_zygote.close)
        return _zygote


def run_command(
    *args: str, env: dict[str, str], cwd: Path, timeout: int = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run `aitrace ARGS` with exactly `env` in `cwd`; return its status and captured output."""
    with tempfile.TemporaryDirectory(prefix="aitrace-command-") as scratch:
        stdout, stderr = Path(scratch, "stdout"), Path(scratch, "stderr")
        status = _the_zygote().run(
            {
                "args": list(args),
                "env": env,
                "cwd": str(cwd),
                "stdout": str(stdout),
                "stderr": str(stderr),
                "timeout": timeout,
            }
        )
        return subprocess.CompletedProcess(
            [AITRACE, *args],
            status,
            stdout.read_text(encoding="utf-8", errors="replace"),
            stderr.read_text(encoding="utf-8", errors="replace"),
        )
