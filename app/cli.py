"""The `aitrace` command."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType

import uvicorn

from app.common.embedded_db import EmbeddedDatabase, start_embedded_database
from app.common.logging_setup import configure_logging, uvicorn_log_config
from app.common.secret_key import load_or_create_secret_key
from app.common.settings import ConfigurationError, Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aitrace", description="AITrace API server")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the API server (the default command)")
    _add_serve_options(serve)
    _add_serve_options(parser)
    return parser


def _add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--workers", type=int, default=1, help="number of worker processes")
    parser.add_argument("--reload", action="store_true", help="restart on code changes (dev)")


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into a normal exit so that cleanup (the embedded database) still runs."""
    raise SystemExit(128 + signum)


def prepare_environment(settings: Settings) -> EmbeddedDatabase | None:
    """Resolve the signing key and the database, exporting both for the worker processes.

    Returns:
        The embedded database when one was started, else None.
    """
    if settings.secret_key is None:
        os.environ["SECRET_KEY"] = load_or_create_secret_key(settings.data_dir)
    if settings.database_url is not None:
        return None
    embedded = start_embedded_database(settings.data_dir)
    os.environ["DATABASE_URL"] = embedded.url
    return embedded


def serve(args: argparse.Namespace) -> int:
    """Start the API server and, when needed, the embedded database; stop both on exit."""
    try:
        settings = load_settings()
    except ConfigurationError as error:
        print(f"aitrace: configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    embedded: EmbeddedDatabase | None = None
    try:
        try:
            embedded = prepare_environment(settings)
        except (ConfigurationError, RuntimeError) as error:
            print(f"aitrace: {error}", file=sys.stderr)
            return 2
        shown_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        print(
            f"AITrace API on http://{shown_host}:{args.port} — docs at "
            f"http://{shown_host}:{args.port}/api/docs",
            file=sys.stderr,
            flush=True,
        )
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=None if args.reload else args.workers,
            reload=args.reload,
            log_config=uvicorn_log_config(settings.log_level),
            proxy_headers=False,
        )
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        if embedded is not None:
            embedded.stop()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `aitrace` console script."""
    args = _parser().parse_args(argv)
    sys.exit(serve(args))


if __name__ == "__main__":
    main()
