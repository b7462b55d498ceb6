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
    def keyword_schema(self) -> str:
        """The schema of the store's BM25 index (sql/keyword_index.sql)."""
        return f"{self.schema}_{self.store}_keywords"

    @property
    def analyzer_schema(self) -> str:
        """The schema DuckDB's full-text extension makes for the index's analyzer table: its
        `tokenize` macro and `stopwords` table define what a term is."""
        return f"fts_{self.keyword_schema}_analyzer"

    @property
    def legacy_fts_schema(self) -> str:
        """Where stores published before the incremental keyword index kept their fts index."""
        return f"fts_{self.schema}_{self.store}"


def template(name: str = "search.sql") -> str:
    return (resources.files("rag_store") / "sql" / name).read_text("utf-8")


def _substitute(name: str, layout: StoreLayout, dimension: int = 0) -> list[str]:
    sql = Template(template(name)).substitute(
        schema=_identifier(layout.schema),
        store=f"{_identifier(layout.schema)}.{_identifier(layout.store)}",
        embedder=".".join(
            _identifier(name) for name in (layout.embedder_schema or layout.schema, layout.embedder)
        ),
        keyword_schema=_identifier(layout.keyword_schema),
        analyzer_schema=_identifier(layout.analyzer_schema),
        dimension=int(dimension),
    )
    return split_statements(sql)


def render(layout: StoreLayout, dimension: int) -> list[str]:
    """The macro statements for `layout`, vectors of `dimension`."""
    return _substitute("search.sql", layout, dimension)


def keyword_index_sql(layout: StoreLayout) -> list[str]:
    """The statements that bring the store's BM25 index up to date with the store: only
    chunks whose id, chunk_hash or content_hash is new are tokenized (sql/keyword_index.sql).
    Run them in order, in one transaction, after the store has changed."""
    analyzer = f"{layout.keyword_schema}.analyzer".replace("'", "''")
    return [
        f"drop schema if exists {_identifier(layout.legacy_fts_schema)} cascade",
        f"create schema if not exists {_identifier(layout.keyword_schema)}",
        # The analyzer: an fts index over an empty table gives the extension's `tokenize`
        # macro and `stopwords` table, so a term is exactly what match_bm25 takes it to be.
        f"create table if not exists {_identifier(layout.keyword_schema)}.analyzer "
        "(id varchar, text varchar)",
        f"pragma create_fts_index('{analyzer}', 'id', 'text', overwrite = 1)",
        *_substitute("keyword_index.sql", layout),
    ]


def install(
    conn: duckdb.DuckDBPyConnection,
    layout: StoreLayout,
    dimension: int,
    keyword_index: bool = True,
) -> None:
    """Bring the BM25 index up to date (unless `keyword_index` is false: it is already
    current) and create the search table macros in a database holding the store."""
    load_extension(conn, "fts")
    if keyword_index:
        for statement in keyword_index_sql(layout):
            conn.execute(statement)
    for statement in render(layout, dimension):
        conn.execute(statement)


def install_sql_json(
    schema: str, store: str, embedder_schema: str, embedder: str, dimension: int
) -> str:
    """The macro statements as a JSON list, for a dbt macro to run one by one on its own
    connection (a UDF cannot run SQL on the connection that calls it)."""
    layout = StoreLayout(schema, store, embedder, embedder_schema)
    return json.dumps(render(layout, dimension))


def keyword_index_sql_json(schema: str, store: str) -> str:
    """keyword_index_sql as a JSON list, for the dbt post-hook to run one by one."""
    return json.dumps(keyword_index_sql(StoreLayout(schema, store)))


def split_statements(sql: str) -> list[str]:
    """Split a file of `create macro` statements on the semicolons that end them."""
    without_comments = re.sub(r"--[^\n]*", "", sql)
    return [part.strip() for part in without_comments.split(";\n") if part.strip()]


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
