"""The `aitrace` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from types import FrameType

from app.commands import add_operator_commands, package_version, run_operator_command
from app.common.embedded_db import EmbeddedDatabase, start_embedded_database
from app.common.logging_setup import configure_logging
from app.common.secret_key import load_or_create_secret_key
from app.common.settings import ConfigurationError, Settings, load_settings
from app.server import bind_listener, build_config, run_server


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aitrace", description="AITrace API server")
    parser.add_argument("--version", action="version", version=f"aitrace {package_version()}")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the API server (the default command)")
    _add_serve_options(serve)
    add_operator_commands(commands)
    _add_serve_options(parser)
    return parser


def _add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default: HOST, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: PORT, else 8000)")
    parser.add_argument("--workers", type=int, default=1, help="number of worker processes")
    parser.add_argument("--reload", action="store_true", help="restart on code changes (dev)")
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="do not run background jobs in the server (run `aitrace worker` elsewhere)",
    )


def _resolve_listen_address(args: argparse.Namespace, settings: Settings) -> None:
    """Fill in `--host`/`--port` when not given: the flags win, then HOST/PORT, then defaults."""
    if args.host is None:
        args.host = settings.host
    if args.port is None:
        args.port = settings.port


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into a normal exit so that cleanup (the embedded database) still runs."""
    raise SystemExit(128 + signum)


def prepare_database(settings: Settings) -> EmbeddedDatabase | None:
    """Resolve the database, exporting its URL (normalized) for the worker processes.

    Returns:
        The embedded database when one was started (no `DATABASE_URL`), else None.
    """
    if settings.database_url is not None:
        os.environ["DATABASE_URL"] = settings.database_url
        return None
    embedded = start_embedded_database(settings.data_dir)
    os.environ["DATABASE_URL"] = embedded.url
    return embedded


def prepare_secret_key(settings: Settings) -> None:
    """Export the signing key for the worker processes, generating and keeping one if unset."""
    if settings.secret_key is None:
        os.environ["SECRET_KEY"] = load_or_create_secret_key(settings.data_dir)


def _fail(message: str) -> int:
    """Print `message` as the one line explaining why the command stops; return exit status 2."""
    print(f"aitrace: {message}", file=sys.stderr, flush=True)
    return 2


def _check_database(database_url: str, name: str) -> str | None:
    """Connect once to the database the server will use; return the problem, or None if fine.

    The check's module (SQLAlchemy's engine, asyncpg) is imported here rather than at the top:
    every `--workers` process re-imports this module before it can answer the supervisor, and
    only this process needs the check.
    """
    from app.common.db_check import DatabaseUnreachable, check_database, describe_url

    try:
        asyncio.run(check_database(database_url))
    except DatabaseUnreachable as error:
        return f"cannot connect to {name} ({describe_url(database_url)}): {error}"
    return None


def serve(args: argparse.Namespace) -> int:
    """Start the API server and, when needed, the embedded database; stop both on exit.

    Every problem found before the server runs (configuration, port taken, database unreachable)
    stops it with one line on stderr and exit status 2. The banner is printed by the server once
    it accepts connections (see `app.server`).
    """
    try:
        settings = load_settings()
    except ConfigurationError as error:
        return _fail(f"configuration error: {error}")
    configure_logging(settings.log_level)
    _resolve_listen_address(args, settings)
    try:
        listener = bind_listener(args.host, args.port)
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        return _fail(f"cannot listen on {args.host}:{args.port}: {reason}")
    signal.signal(signal.SIGTERM, _exit_on_signal)
    embedded: EmbeddedDatabase | None = None
    try:
        try:
            embedded = prepare_database(settings)
        except RuntimeError as error:
            return _fail(str(error))
        name = "DATABASE_URL" if embedded is None else "the embedded database"
        problem = _check_database(os.environ["DATABASE_URL"], name)
        if problem is not None:
            return _fail(problem)
        if args.no_worker:
            os.environ["RUN_WORKER"] = "false"
        try:
            prepare_secret_key(settings)
        except ConfigurationError as error:
            return _fail(str(error))
        config = build_config(
            settings,
            host=args.host,
            port=listener.getsockname()[1],
            workers=args.workers,
            reload=args.reload,
        )
        return run_server(config, listener)
    except KeyboardInterrupt:
        return 130
    finally:
        listener.close()
        if embedded is not None:
            embedded.stop()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `aitrace` console script."""
    args = _parser().parse_args(argv)
    sys.exit(run_operator_command(args) if hasattr(args, "handler") else serve(args))


if __name__ == "__main__":
    main()
