"""A process that imports `aitrace` once, then forks a child for each command a test runs.

Starting the `aitrace` console script costs 1.5-3 s of imports (SQLAlchemy, Alembic, FastAPI) on
the 2-core test machine: more than most commands take to run. Tests that check what a command
prints and its exit status send the command here instead (see `tests/command_runner.py`). Each
command still runs in a process of its own, with its own environment, working directory, signal
handlers, logging configuration and exit status; only the imports are shared. Tests of the
entry point itself (`aitrace --version`, `aitrace serve`) start the real console script.

Protocol: one JSON request per line on stdin, `{"args", "env", "cwd", "stdout", "stderr",
"timeout"}` (the two output paths are files the child writes); the answer is one line on stdout,
the child's exit status (negative: killed by that signal, e.g. -14 when `timeout` ran out).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from typing import Any, NoReturn

import app.cli
import app.commands.backup
import app.commands.config
import app.commands.db
import app.commands.users

PRELOADED = (app.commands.backup, app.commands.config, app.commands.db, app.commands.users)
"""The command modules, which `aitrace` imports only when their command runs."""


def exit_status(error: SystemExit) -> int:
    """The process exit status that `sys.exit(code)` stands for."""
    if error.code is None:
        return 0
    if isinstance(error.code, int):
        return error.code
    print(error.code, file=sys.stderr)
    return 1


def _redirect(path: str, fd: int) -> None:
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(target, fd)
    os.close(target)


def run_child(request: dict[str, Any]) -> NoReturn:
    """Run one command as `aitrace ARGS` would, in the forked child; never returns."""
    status = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        _redirect(os.devnull, 0)
        _redirect(request["stdout"], 1)
        _redirect(request["stderr"], 2)
        signal.alarm(int(request["timeout"]))
        try:
            app.cli.main(list(request["args"]))
            status = 0
        except SystemExit as error:
            status = exit_status(error)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def serve_requests() -> None:
    """Fork one child per request line and answer with its exit status, until stdin closes."""
    for line in sys.stdin:
        request = json.loads(line)
        child = os.fork()
        if child == 0:
            run_child(request)
        _, wait_status = os.waitpid(child, 0)
        print(os.waitstatus_to_exitcode(wait_status), flush=True)


if __name__ == "__main__":
    serve_requests()
