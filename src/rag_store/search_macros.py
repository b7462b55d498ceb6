"""The search table macros (sql/search.sql), rendered for one store and installed in it.

sql/search.sql is the one definition of every search — vector, similar, keyword, hybrid
and the filters they share. It is installed in the published snapshot, on dbt's connection
(a post-hook of retrieval_store, so the dbt search macros and run-operation call it) and is
what Python search calls; nothing else states a filter or a fusion.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from string import Template

import duckdb

from rag_store.duckdb_ext import load_extension

KEYWORD_COLUMNS = ("title", "heading_path", "chunk_text")


@dataclass(frozen=True)
class StoreLayout:
    """Where the tables the macros read live: `schema.store` (retrieval_store) and
    `embedder_schema.embedder` (a one-row relation with the store's model_id; its schema is
    the store's unless given, e.g. another target's under dbt's --defer)."""

    schema: str = "main"
    store: str = "retrieval_store"
    embedder: str = "store_info"
    embedder_schema: str = ""

    @property
    def fts_schema(self) -> str:
        """The schema DuckDB's full-text extension creates for the store's BM25 index."""
        return f"fts_{self.schema}_{self.store}"


def template() -> str:
    return (resources.files("rag_store") / "sql" / "search.sql").read_text("utf-8")


def render(layout: StoreLayout, dimension: int) -> list[str]:
    """The macro statements for `layout`, vectors of `dimension`."""
    sql = Template(template()).substitute(
        schema=_identifier(layout.schema),
        store=f"{_identifier(layout.schema)}.{_identifier(layout.store)}",
        embedder=".".join(
            _identifier(name) for name in (layout.embedder_schema or layout.schema, layout.embedder)
        ),
        fts_schema=_identifier(layout.fts_schema),
        dimension=int(dimension),
    )
    return split_statements(sql)


def keyword_index_sql(layout: StoreLayout) -> str:
    """The statement that (re)builds the store's BM25 index, keyed by chunk_id."""
    columns = ", ".join(f"'{column}'" for column in KEYWORD_COLUMNS)
    return (
        f"pragma create_fts_index('{layout.schema}.{layout.store}', 'chunk_id', {columns}, "
        "overwrite = 1)"
    )


def install(
    conn: duckdb.DuckDBPyConnection,
    layout: StoreLayout,
    dimension: int,
    keyword_index: bool = True,
) -> None:
    """Create the BM25 index (unless `keyword_index` is false: it is already there) and the
    search table macros in a database holding the store."""
    load_extension(conn, "fts")
    if keyword_index:
        conn.execute(keyword_index_sql(layout))
    for statement in render(layout, dimension):
        conn.execute(statement)


def install_sql_json(
    schema: str, store: str, embedder_schema: str, embedder: str, dimension: int
) -> str:
    """The macro statements as a JSON list, for a dbt macro to run one by one on its own
    connection (a UDF cannot run SQL on the connection that calls it)."""
    layout = StoreLayout(schema, store, embedder, embedder_schema)
    return json.dumps(render(layout, dimension))


def keyword_index_sql_for(schema: str, store: str) -> str:
    return keyword_index_sql(StoreLayout(schema, store))


def split_statements(sql: str) -> list[str]:
    """Split a file of `create macro` statements on the semicolons that end them."""
    without_comments = re.sub(r"--[^\n]*", "", sql)
    return [part.strip() for part in without_comments.split(";\n") if part.strip()]


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
