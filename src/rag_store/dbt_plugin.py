"""dbt-duckdb plugin: the table of rag-store's UDFs, and the Plugin that registers them (and
the SQL macros) on dbt's connection.

Enabled in profiles.yml with `plugins: [{module: rag_store.dbt_plugin}]`. The Python UDFs exist
only on dbt's own connection, so models that call them must be tables or incremental models,
never views. The table macro `read_document_feed` is plain SQL and is stored in the database.
The work behind each UDF lives in the module that owns it; this file only says how SQL calls it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
from dbt.adapters.duckdb.plugins import BasePlugin

from rag_store.chunking import chunker_fingerprint, chunker_for, count_tokens_by_model
from rag_store.embedder_info import embedder_info, offline_environment
from rag_store.store_lock import check_single_writer

# One chunk as `rag_chunk` returns it: the fields of rag_store.chunking.Chunk.
CHUNK_TYPE = duckdb.list_type(
    duckdb.struct_type(
        {
            "chunk_index": "INTEGER",
            "chunk_text": "VARCHAR",
            "embedding_text": "VARCHAR",
            "token_count": "INTEGER",
            "char_start": "INTEGER",
            "char_end": "INTEGER",
            "heading_path": "VARCHAR",
        }
    )
)

# One converted file as `rag_convert` returns it: the fields of rag_store.converters.Conversion
# (metadata as JSON text).
CONVERSION_TYPE = duckdb.struct_type(
    {
        "markdown": "VARCHAR",
        "title": "VARCHAR",
        "pages": "INTEGER[]",
        "page_kind": "VARCHAR",
        "metadata": "VARCHAR",
        "reject_reason": "VARCHAR",
        "detail": "VARCHAR",
    }
)


@dataclass(frozen=True)
class Udf:
    """One SQL function. `function` is a callable, or "module:attribute" to import on the
    first call (so the plugin loads without the snapshot or embedding code)."""

    name: str
    function: Callable[..., Any] | str
    parameters: tuple[str, ...]
    returns: Any
    # "native": called once per row; "arrow": called with whole Arrow arrays.
    kind: Literal["native", "arrow"] = "native"
    # Writes files or reads state DuckDB cannot see: never folded into a constant.
    side_effects: bool = False

    def python_function(self) -> Callable[..., Any]:
        """What DuckDB calls."""
        if not isinstance(self.function, str):
            return self.function
        module, attribute = self.function.split(":")

        def call(*args):
            return getattr(importlib.import_module(module), attribute)(*args)

        # DuckDB checks the callable's arity against the parameter types.
        positional = inspect.Parameter.POSITIONAL_ONLY
        call.__signature__ = inspect.Signature(
            [inspect.Parameter(f"arg{i}", positional) for i in range(len(self.parameters))]
        )
        return call


# CHUNK_TYPE as Arrow: what rag_chunk hands back for a whole batch of documents.
CHUNK_ARROW_TYPE = pa.list_(
    pa.struct(
        [
            ("chunk_index", pa.int32()),
            ("chunk_text", pa.string()),
            ("embedding_text", pa.string()),
            ("token_count", pa.int32()),
            ("char_start", pa.int32()),
            ("char_end", pa.int32()),
            ("heading_path", pa.string()),
        ]
    )
)


def _chunk_rows(body, title, model_ref, max_chunk_tokens, overlap_tokens, context_header):
    chunker = chunker_for(model_ref, max_chunk_tokens, overlap_tokens, context_header)
    return [chunk.as_dict() for chunk in chunker.chunk(body, title or "")]


def _chunk_batch(
    bodies: pa.Array,
    titles: pa.Array,
    model_refs: pa.Array,
    budgets: pa.Array,
    overlaps: pa.Array,
    headers: pa.Array,
) -> pa.Array:
    """rag_chunk over a batch of rows. An Arrow UDF: DuckDB's per-row conversion of a
    returned list of structs cost twice the chunking itself, and pyarrow builds the whole
    batch's lists at once. A row with any NULL argument gives NULL, as a per-row UDF would."""
    columns = (bodies, titles, model_refs, budgets, overlaps, headers)
    rows = zip(*(column.to_pylist() for column in columns), strict=True)
    return pa.array([None if None in row else _chunk_rows(*row) for row in rows], CHUNK_ARROW_TYPE)


def _count_tokens(texts: pa.Array, model_refs: pa.Array) -> pa.Array:
    return pa.array(count_tokens_by_model(texts.to_pylist(), model_refs.to_pylist()), pa.int32())


def _convert_files(contents: pa.Array, filenames: pa.Array) -> pa.Array:
    """A whole batch through one convert_many call (worker processes, per-file limits). Rows
    with a NULL argument never get here: DuckDB returns NULL for them."""
    import json

    from rag_store.converters import convert_many

    items = list(zip(contents.to_pylist(), filenames.to_pylist(), strict=True))
    conversions = convert_many(items)
    columns = {
        "markdown": pa.array([c.markdown for c in conversions], pa.string()),
        "title": pa.array([c.title for c in conversions], pa.string()),
        "pages": pa.array([c.pages for c in conversions], pa.list_(pa.int32())),
        "page_kind": pa.array([c.page_kind for c in conversions], pa.string()),
        "metadata": pa.array(
            [json.dumps(c.metadata, ensure_ascii=False, sort_keys=True) for c in conversions],
            pa.string(),
        ),
        "reject_reason": pa.array([c.reject_reason for c in conversions], pa.string()),
        "detail": pa.array([c.detail for c in conversions], pa.string()),
    }
    return pa.StructArray.from_arrays(list(columns.values()), names=list(columns))


# One file as `rag_read_file` returns it: its bytes, or why they could not be read.
READ_FILE_TYPE = duckdb.struct_type({"content": "BLOB", "error": "VARCHAR"})


def _read_files(paths: pa.Array) -> pa.Array:
    from rag_store.converters import read_file

    results = [read_file(path) for path in paths.to_pylist()]
    return pa.StructArray.from_arrays(
        [
            pa.array([content for content, _ in results], pa.binary()),
            pa.array([error for _, error in results], pa.string()),
        ],
        names=["content", "error"],
    )


VARCHAR, INTEGER, BOOLEAN = "VARCHAR", "INTEGER", "BOOLEAN"
CHUNKER_ARGS = (VARCHAR, INTEGER, INTEGER, BOOLEAN)  # model_ref, budget, overlap, header

UDFS: tuple[Udf, ...] = (
    # rag_chunk(body, title, model_ref, max_chunk_tokens, overlap_tokens, context_header)
    Udf("rag_chunk", _chunk_batch, (VARCHAR, VARCHAR, *CHUNKER_ARGS), CHUNK_TYPE, kind="arrow"),
    Udf("rag_chunker_fingerprint", chunker_fingerprint, CHUNKER_ARGS, VARCHAR),
    Udf("rag_model_id", lambda ref: embedder_info(ref).model_id, (VARCHAR,), VARCHAR),
    Udf("rag_model_dimension", lambda ref: embedder_info(ref).dimension, (VARCHAR,), INTEGER),
    # The model's window in tokens without special tokens (the largest chunk budget).
    Udf(
        "rag_model_window_tokens",
        lambda ref: embedder_info(ref).window_tokens,
        (VARCHAR,),
        INTEGER,
    ),
    # rag_count_tokens(text, model_ref): a whole vector per call, so one batch encode.
    Udf("rag_count_tokens", _count_tokens, (VARCHAR, VARCHAR), INTEGER, kind="arrow"),
    Udf("rag_embed", "rag_store.embedding:embed_query", (VARCHAR, VARCHAR), "FLOAT[]"),
    # rag_publish_plan(database, catalog, schema, snapshot_path var, row key JSON, dimension,
    # the connection's default catalog) -> the plan as JSON (the staging copy is made here)
    Udf(
        "rag_publish_plan",
        "rag_store.snapshot:publish_plan_json",
        (VARCHAR, VARCHAR, VARCHAR, VARCHAR, VARCHAR, INTEGER, VARCHAR),
        VARCHAR,
        side_effects=True,
    ),
    # rag_extension_path(name): a file to LOAD the pip-installed DuckDB extension from
    Udf(
        "rag_extension_path",
        "rag_store.duckdb_ext:loadable_file",
        (VARCHAR,),
        VARCHAR,
        side_effects=True,
    ),
    Udf("rag_publish_inputs", "rag_store.snapshot:publish_inputs_json", (), VARCHAR),
    # rag_publish_expand(statement, changed doc_ids) -> the statement with its doc_id
    # condition filled in (a patch plan's statements marked `expand`)
    Udf(
        "rag_publish_expand",
        "rag_store.snapshot:expand_changed_documents",
        (VARCHAR, "VARCHAR[]"),
        VARCHAR,
    ),
    Udf(
        "rag_search_macros_sql",
        "rag_store.search_macros:install_sql_json",
        (VARCHAR, VARCHAR, VARCHAR, VARCHAR, INTEGER),
        VARCHAR,
    ),
    Udf(
        "rag_keyword_index_sql",
        "rag_store.search_macros:keyword_index_sql_json",
        (VARCHAR, VARCHAR),
        VARCHAR,
    ),
    Udf(
        "rag_publish_swap",
        "rag_store.snapshot:publish_swap",
        (VARCHAR,),
        VARCHAR,
        side_effects=True,
    ),
    # rag_convert(content, filename) -> CONVERSION_TYPE: a file's bytes as Markdown, or a reject
    Udf("rag_convert", _convert_files, ("BLOB", VARCHAR), CONVERSION_TYPE, kind="arrow"),
    Udf("rag_converter_version", "rag_store.converters:converter_version", (), VARCHAR),
    # rag_file_fingerprint(path) -> 'size:mtime_ns:inode', or NULL for a file that is gone
    Udf(
        "rag_file_fingerprint",
        "rag_store.feed_files:file_fingerprint",
        (VARCHAR,),
        VARCHAR,
        side_effects=True,
    ),
    # rag_read_file(path) -> READ_FILE_TYPE: a local file's bytes for conversion, or why not
    Udf(
        "rag_read_file",
        _read_files,
        (VARCHAR,),
        READ_FILE_TYPE,
        kind="arrow",
        side_effects=True,
    ),
)


def register_udfs(conn: duckdb.DuckDBPyConnection) -> None:
    """Register every UDF of UDFS on `conn` (also used by tests and the CLI)."""
    existing = {
        row[0]
        for row in conn.execute(
            "select function_name from duckdb_functions() where function_name like 'rag_%'"
        ).fetchall()
    }
    for udf in UDFS:
        if udf.name in existing:
            conn.remove_function(udf.name)
        conn.create_function(
            udf.name,
            udf.python_function(),
            list(udf.parameters),
            udf.returns,
            type=udf.kind,
            side_effects=udf.side_effects,
        )


def create_sql_macros(conn: duckdb.DuckDBPyConnection) -> None:
    sql_dir = resources.files("rag_store") / "sql"
    for name in ("read_document_feed.sql", "read_document_dir.sql"):
        conn.execute((sql_dir / name).read_text(encoding="utf-8"))


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        offline_environment()

    def update_connection_config(self, creds, config: dict[str, Any]) -> None:
        path = getattr(creds, "path", None)
        if path and path != ":memory:" and not str(path).startswith("md:"):
            # DuckDB creates the database file but not its directory.
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            check_single_writer(str(path))

    def configure_connection(self, conn: duckdb.DuckDBPyConnection) -> None:
        from rag_store.duckdb_ext import load_extension

        register_udfs(conn)
        create_sql_macros(conn)
        # BM25 for the keyword_search / hybrid_search macros, from the pip package.
        load_extension(conn, "fts")
