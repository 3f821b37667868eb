"""`aitrace db dump FILE` and `aitrace db restore FILE [--clean]`.

A dump is PostgreSQL's custom format (`pg_dump -Fc`): compressed, and restorable table by table.
It holds everything AITrace stores, password hashes included, so it is written readable by its
owner only (mode 0600), first under a temporary name and renamed once complete: an interrupted
dump never replaces a good one.

A restore is all or nothing: it runs in one transaction (`pg_restore --single-transaction`), so a
damaged dump or a failure half-way leaves the database as it was. Ownership and grants in the
dump are not restored; the restored tables belong to the configured database user, which lets a
dump move between the embedded database and an external server. A restore refuses:

- a database that already has tables, unless `--clean`: then every object of the dump is
  dropped and recreated (`--clean --if-exists`), replacing the data;
- even with `--clean`, a database holding tables that the dump lacks (typically, one upgraded
  by a newer AITrace than the dump's): those would survive the restore and break the upgrade
  that follows. Restore into an empty database instead.

After the restore the schema is upgraded to head, so a dump from an older version is usable.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
from pathlib import Path

from sqlalchemy import text

from app.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CommandError, operator_command
from app.commands.database import (
    CommandDatabase,
    command_engine,
    load_command_settings,
    open_database,
)
from app.commands.db import EMPTY, describe_revision, read_revision, upgrade_database
from app.commands.pg_tools import conninfo_dbname, find_program, run_program

RELATION_KINDS = r"TABLE(?! DATA)|SEQUENCE(?! SET| OWNED BY)|VIEW|MATERIALIZED VIEW(?! DATA)"
TOC_RELATION = re.compile(rf"^\d+; \d+ \d+ (?:{RELATION_KINDS}) (\S+) (\S+) ", re.MULTILINE)
"""A table, sequence or view in `pg_restore --list`: `218; 1259 16390 TABLE public teams owner`."""

USER_RELATIONS = text("""
    SELECT n.nspname, c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
    ORDER BY 1, 2
    """)
"""Every table, view and sequence outside PostgreSQL's own schemas."""


def _human_size(size: int) -> str:
    """`24.0 KiB`, `3.2 MiB`: a file size for people."""
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    return f"{value:.1f} {unit}"


def _private_file(path: Path) -> None:
    """Create `path` empty, readable by its owner only (pg_dump then writes into it)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(descriptor)


@operator_command
def dump(args: argparse.Namespace) -> int:
    """Write the configured database to FILE in pg_dump's custom format."""
    target = Path(args.file)
    if not target.parent.is_dir():
        raise CommandError(f"cannot write {target}: {target.parent} is not a folder", EXIT_USAGE)
    settings = load_command_settings()
    with open_database(settings) as database:
        program = find_program("pg_dump", embedded=database.embedded)
        revision = read_revision(database)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            _private_file(partial)
            run_program(program, ["--format=custom", "--file", str(partial)], database.url)
            os.replace(partial, target)
        except OSError as error:
            raise CommandError(f"cannot write {target}: {error.strerror}", EXIT_FAILED) from None
        finally:
            partial.unlink(missing_ok=True)
    size = _human_size(target.stat().st_size)
    print(f"Dumped {database.name} (revision {revision or EMPTY}) to {target} ({size})")
    return EXIT_OK


def _dump_relations(file: Path, database: CommandDatabase) -> set[tuple[str, str]]:
    """The tables, sequences and views in the dump; refuses a file that is not a dump."""
    program = find_program("pg_restore", embedded=database.embedded)
    try:
        listing = run_program(program, ["--list", str(file)], database.url)
    except CommandError as error:
        raise CommandError(
            f"{file} is not a dump made by `aitrace db dump` ({error})", EXIT_FAILED
        ) from None
    return {(match.group(1), match.group(2)) for match in TOC_RELATION.finditer(listing)}


def _existing_relations(database: CommandDatabase) -> set[tuple[str, str]]:
    async def read() -> set[tuple[str, str]]:
        async with command_engine(database) as engine, engine.connect() as conn:
            rows = (await conn.execute(USER_RELATIONS)).all()
        return {(str(schema), str(name)) for schema, name in rows}

    return asyncio.run(read())


def _names(relations: set[tuple[str, str]]) -> str:
    names = sorted(f"{schema}.{name}" for schema, name in relations)
    shown = ", ".join(names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _check_target(database: CommandDatabase, dumped: set[tuple[str, str]], clean: bool) -> None:
    """Refuse to restore over data, unless `--clean` and the dump replaces all of it."""
    existing = _existing_relations(database)
    if existing and not clean:
        raise CommandError(
            f"{database.name} is not empty (it has {_names(existing)}): restore into an empty "
            "database, or pass --clean to replace its contents with the dump's "
            "(dump it first if you may need them)",
            EXIT_FAILED,
        )
    extra = existing - dumped
    if extra:
        raise CommandError(
            f"{database.name} has tables the dump lacks ({_names(extra)}), which --clean would "
            "leave behind: restore into an empty database instead",
            EXIT_FAILED,
        )


@operator_command
def restore(args: argparse.Namespace) -> int:
    """Load FILE into the configured database, then upgrade it to head."""
    file = Path(args.file)
    if not file.is_file():
        raise CommandError(f"cannot read {file}: no such file", EXIT_USAGE)
    settings = load_command_settings()
    with open_database(settings) as database:
        dumped = _dump_relations(file, database)
        _check_target(database, dumped, args.clean)
        options = ["--single-transaction", "--no-owner", "--no-privileges"]
        if args.clean:
            options += ["--clean", "--if-exists"]
        program = find_program("pg_restore", embedded=database.embedded)
        run_program(
            program, [*options, "--dbname", conninfo_dbname(database.url), str(file)], database.url
        )
        before, after = upgrade_database(database)
    print(f"Restored {file} into {database.name} (revision {before or EMPTY})")
    if before != after:
        print(f"Upgraded the restored data from {before or EMPTY} to {describe_revision(after)}")
    return EXIT_OK
