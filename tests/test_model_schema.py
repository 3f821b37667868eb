"""The SQLModel classes and database/schema.sql describe the same tables."""

from __future__ import annotations

import re

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlmodel import SQLModel

import app.models  # noqa: F401  (registers every table)
from tests.database import TABLES

_DB_TYPE_NAMES = {
    "uuid": "UUID",
    "text": "TEXT",
    "jsonb": "JSONB",
    "bigint": "BIGINT",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "timestamp with time zone": "TIMESTAMP WITH TIME ZONE",
}


def _canonical_db_type(formatted: str) -> str:
    match = re.fullmatch(r"character varying\((\d+)\)", formatted)
    if match:
        return f"VARCHAR({match.group(1)})"
    return _DB_TYPE_NAMES.get(formatted, formatted.upper())


async def _database_columns(app: FastAPI) -> dict[str, dict[str, tuple[str, bool]]]:
    query = text("""
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
          FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
        """)
    columns: dict[str, dict[str, tuple[str, bool]]] = {}
    async with app.state.engine.connect() as conn:
        for table, column, formatted, nullable in await conn.execute(query):
            columns.setdefault(table, {})[column] = (_canonical_db_type(formatted), nullable)
    return columns


async def test_models_match_schema_sql(app: FastAPI) -> None:
    database = await _database_columns(app)
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    model_tables = {table.name: table for table in SQLModel.metadata.sorted_tables}
    assert set(model_tables) == set(database) == set(TABLES)
    for name, table in model_tables.items():
        model_columns = {
            column.name: (column.type.compile(dialect=dialect), column.nullable)
            for column in table.columns
        }
        assert model_columns == database[name], f"table {name} differs from schema.sql"


async def test_schema_has_no_database_generated_ids(app: FastAPI) -> None:
    async with app.state.engine.connect() as conn:
        defaults = (
            await conn.execute(
                text(
                    "SELECT table_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND column_name = 'id' "
                    "AND column_default IS NOT NULL"
                )
            )
        ).all()
    assert defaults == []
