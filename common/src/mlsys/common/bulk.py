"""Bulk upserts through a staging table: COPY on PostgreSQL, executemany on SQLite.

Rows are staged chunk by chunk (bounded memory), then merged into the target with one
INSERT ... SELECT ... ON CONFLICT that only touches rows whose values change, so loading
the same data twice writes nothing. All of it runs in the caller's transaction.
"""

import io
from collections.abc import Sequence
from typing import cast

import pandas as pd
import pyarrow as pa
from pyarrow import csv
from sqlalchemy import Connection, Table, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase

CHUNK_ROWS = 200_000


class DuplicateKey(ValueError):
    """The staged rows hold one natural key twice; `line` is the staged line of the second."""

    def __init__(self, key: dict, line: int | None):
        self.key, self.line = key, line
        super().__init__(f"duplicate key {key}" + (f" (line {line})" if line else ""))


def table_of(model: type[DeclarativeBase]) -> Table:
    return cast(Table, model.__table__)  # a mapped class's table is a Table, not a join


class Staging:
    """A temporary table shaped like `model`'s plus a `line` column, dropped at commit."""

    def __init__(
        self,
        connection: Connection,
        model: type[DeclarativeBase],
        columns: list[str],
        insert_only: Sequence[str] = (),
    ):
        table = table_of(model)
        self.connection, self.table, self.columns = connection, table, columns
        self.insert_only = set(insert_only)  # written for new rows, never updated
        self.keys = [c.name for c in table.primary_key.columns]
        self.name = f"staging_{table.name}"
        self.postgres = connection.dialect.name == "postgresql"
        column_list = ", ".join(columns)
        if self.postgres:
            connection.execute(
                text(
                    f"CREATE TEMP TABLE {self.name} ON COMMIT DROP AS "
                    f"SELECT {column_list}, 0::bigint AS line FROM {table.name} WITH NO DATA"
                )
            )
        else:
            connection.execute(text(f"DROP TABLE IF EXISTS temp.{self.name}"))
            connection.execute(
                text(
                    f"CREATE TEMP TABLE {self.name} AS SELECT {column_list}, 0 AS line "
                    f"FROM {table.name} WHERE 0"
                )
            )

    def add(self, frame: pd.DataFrame, lines: Sequence[int] | None = None) -> None:
        """Stage a chunk; `lines` (its rows' lines in a file) name duplicates in errors."""
        staged = frame[self.columns].assign(line=lines)
        if self.postgres:
            buffer = io.BytesIO()  # Arrow's CSV writer is about 9x faster than pandas'
            table = pa.Table.from_pandas(staged, preserve_index=False)
            csv.write_csv(table, buffer, csv.WriteOptions(include_header=False))
            driver = self.connection.connection.driver_connection
            assert driver is not None  # an open connection has its driver connection
            cursor = driver.cursor()
            columns = ", ".join([*self.columns, "line"])
            with cursor.copy(f"COPY {self.name} ({columns}) FROM STDIN (FORMAT csv)") as copy:
                copy.write(buffer.getvalue())
        else:
            placeholders = ", ".join(f":{c}" for c in [*self.columns, "line"])
            staged = _sqlite_datetimes(staged)
            records = staged.astype(object).where(staged.notna(), None).to_dict("records")
            self.connection.execute(
                text(f"INSERT INTO {self.name} VALUES ({placeholders})"), records
            )

    def first_duplicate(self) -> DuplicateKey | None:
        keys = ", ".join(self.keys)
        row = self.connection.execute(
            text(
                f"SELECT {keys}, max(line) FROM {self.name} "
                f"GROUP BY {keys} HAVING count(*) > 1 LIMIT 1"
            )
        ).first()
        return DuplicateKey(dict(zip(self.keys, row[:-1], strict=True)), row[-1]) if row else None

    def merge(self) -> int:
        """Upsert the staged rows into the target; returns rows inserted or changed."""
        if self.postgres:
            return self._merge_postgres()
        return self._merge_sqlite()

    def _assignments(self) -> tuple[list[str], str]:
        updates = [c for c in self.columns if c not in self.keys and c not in self.insert_only]
        changed = " OR ".join(f"t.{c} IS DISTINCT FROM s.{c}" for c in updates) or "false"
        return updates, changed

    def _merge_postgres(self) -> int:
        # MERGE joins staging and target in bulk (a hash join); INSERT ... ON CONFLICT would
        # probe the index row by row, which is several times slower for large loads.
        updates, changed = self._assignments()
        on = " AND ".join(f"t.{k} = s.{k}" for k in self.keys)
        update = (
            f"WHEN MATCHED AND ({changed}) THEN UPDATE SET "
            + ", ".join(f"{c} = s.{c}" for c in updates)
            if updates
            else ""
        )
        statement = text(
            f"MERGE INTO {self.table.name} t USING {self.name} s ON {on} {update} "
            f"WHEN NOT MATCHED THEN INSERT ({', '.join(self.columns)}) "
            f"VALUES ({', '.join(f's.{c}' for c in self.columns)})"
        )
        savepoint = self.connection.begin_nested()
        try:
            result = self.connection.execute(statement)
        except DBAPIError as error:
            # A key staged twice fails the MERGE (twice matched, or twice inserted): roll
            # back to the savepoint and find which key, for the message.
            savepoint.rollback()
            raise self.first_duplicate() or error from error
        savepoint.commit()
        return max(result.rowcount, 0)

    def _merge_sqlite(self) -> int:
        duplicate = self.first_duplicate()  # SQLite would let a later duplicate win silently
        if duplicate:
            raise duplicate
        updates, _ = self._assignments()
        column_list = ", ".join(self.columns)
        conflict = "DO NOTHING"
        if updates:
            changed = " OR ".join(
                f"{self.table.name}.{c} IS DISTINCT FROM excluded.{c}" for c in updates
            )
            assignments = ", ".join(f"{c} = excluded.{c}" for c in updates)
            conflict = f"DO UPDATE SET {assignments} WHERE {changed}"
        statement = text(
            f"INSERT INTO {self.table.name} ({column_list}) "
            f"SELECT {column_list} FROM {self.name} WHERE true "  # WHERE: SQLite's upsert grammar
            f"ON CONFLICT ({', '.join(self.keys)}) {conflict}"
        )
        return max(self.connection.execute(statement).rowcount, 0)


def _sqlite_datetimes(frame: pd.DataFrame) -> pd.DataFrame:
    """Timestamps as the naive-UTC text SQLAlchemy's SQLite DateTime stores and reads."""
    converted = {}
    for column in frame.columns:
        values = frame[column]
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        if pd.api.types.is_datetime64_dtype(values.dtype):
            converted[column] = values.dt.strftime("%Y-%m-%d %H:%M:%S.%f")
    return frame.assign(**converted) if converted else frame


def bulk_upsert(
    connection: Connection,
    model: type[DeclarativeBase],
    frame: pd.DataFrame,
    insert_only: Sequence[str] = (),
) -> int:
    """Stage `frame` in chunks and merge it into `model`'s table; returns rows inserted or
    changed. `insert_only` columns are written for new rows only: once a row exists, the
    running system owns them (a re-load never undoes a deactivation, say)."""
    staging = Staging(connection, model, list(frame.columns), insert_only)
    for start in range(0, len(frame), CHUNK_ROWS):
        chunk = frame.iloc[start : start + CHUNK_ROWS]
        staging.add(chunk)
    return staging.merge()


def executemany_upsert(
    connection: Connection, model: type[DeclarativeBase], frame: pd.DataFrame
) -> int:
    """Row-by-row upsert with executemany: the slow path the benchmark compares COPY with."""
    table = table_of(model)
    dialect_insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    statement = dialect_insert(table)
    keys = [c.name for c in table.primary_key.columns]
    statement = statement.on_conflict_do_update(
        index_elements=keys,
        set_={c: statement.excluded[c] for c in frame.columns if c not in keys},
    )
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return max(connection.execute(statement, records).rowcount, 0)
