"""The operator commands of `aitrace` besides `serve`: `db ...`, `user ...`, `config` and
`worker`.

Each command is a function that takes the parsed arguments and returns the exit status:

- 0: done;
- 1: refused or failed because of the state of the data (an email already registered, an
  unknown user, a non-empty database to restore into, a failed `pg_dump`);
- 2: a configuration or usage problem (invalid settings, the database unreachable, a bad
  argument), as `aitrace serve` does.

A failure is one line on stderr, `aitrace: <reason>`; results go to stdout. This package is
imported by `app.cli` in every process, so it stays light: the command modules (which import
SQLAlchemy, Alembic and the services) are imported only when their command runs.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Command = Callable[[argparse.Namespace], int]
"""A command: the parsed arguments in, the exit status out."""


class CommandError(Exception):
    """Stops a command: the message is printed as one line, the status is the exit status."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def fail(message: str, exit_code: int) -> int:
    """Print `message` as the one line explaining why the command stops; return `exit_code`."""
    print(f"aitrace: {message}", file=sys.stderr, flush=True)
    return exit_code


def operator_command(command: Command) -> Command:
    """Turn a CommandError raised by `command` into its line on stderr and its exit status."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except CommandError as error:
            return fail(str(error), error.exit_code)
        except KeyboardInterrupt:
            return 130

    return run


def package_version() -> str:
    """The installed version of AITrace (`unknown` when run from a tree that is not installed)."""
    try:
        return version("aitrace")
    except PackageNotFoundError:
        return "unknown"


def add_operator_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare `db`, `user` and `config` on the `aitrace` parser's subcommands.

    Each command names its function as `module:function`, imported only when it runs.
    """
    db = commands.add_parser("db", help="database schema, backup and restore")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    db_commands.add_parser("upgrade", help="apply the pending schema migrations").set_defaults(
        handler="db:upgrade"
    )
    db_commands.add_parser(
        "current", help="print the schema revision of the database"
    ).set_defaults(handler="db:current")
    db_commands.add_parser(
        "history", help="list the schema revisions of this version"
    ).set_defaults(handler="db:history")
    db_commands.add_parser(
        "check", help="compare the models with the migrated database (alembic check)"
    ).set_defaults(handler="db:check")
    dump = db_commands.add_parser("dump", help="write the database to FILE (pg_dump -Fc)")
    dump.add_argument("file", metavar="FILE")
    dump.set_defaults(handler="backup:dump")
    restore = db_commands.add_parser(
        "restore", help="load FILE into an empty database, then upgrade it"
    )
    restore.add_argument("file", metavar="FILE")
    restore.add_argument(
        "--clean",
        action="store_true",
        help="replace the contents of a database that is not empty",
    )
    restore.set_defaults(handler="backup:restore")

    user = commands.add_parser("user", help="accounts: recover admin access")
    user_commands = user.add_subparsers(dest="user_command", required=True, metavar="COMMAND")
    create_admin = user_commands.add_parser(
        "create-admin", help="add an admin with a temporary password (first team if none)"
    )
    create_admin.add_argument("email", metavar="EMAIL")
    create_admin.add_argument(
        "--team", metavar="NAME", help="team name or id (required with several teams)"
    )
    create_admin.set_defaults(handler="users:create_admin")
    reset = user_commands.add_parser(
        "reset-password", help="give a user a temporary password and revoke their tokens"
    )
    reset.add_argument("email", metavar="EMAIL")
    reset.set_defaults(handler="users:reset_password")

    commands.add_parser(
        "config", help="print the effective settings (secrets masked)"
    ).set_defaults(handler="config:show")

    worker = commands.add_parser(
        "worker", help="run background jobs (imports, webhooks) without the API"
    )
    worker.add_argument(
        "--concurrency",
        type=_positive,
        metavar="N",
        help="jobs run at once (default: WORKER_CONCURRENCY, else 2)",
    )
    worker.set_defaults(handler="worker:run")


def _positive(value: str) -> int:
    """A whole number from 1 to 64, for `--concurrency`."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if not 1 <= number <= 64:
        raise argparse.ArgumentTypeError("must be from 1 to 64")
    return number


def run_operator_command(args: argparse.Namespace) -> int:
    """Run the command that `add_operator_commands` attached to `args`; return its exit status."""
    module_name, function_name = str(args.handler).split(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    command: Command = getattr(module, function_name)
    return command(args)
