"""dbt-duckdb plugin: registers rag-store's UDFs and SQL macros on dbt's connection.

Enabled in profiles.yml with `plugins: [{module: rag_store.dbt_plugin}]`. The Python UDFs exist
only on dbt's own connection, so models that call them must be tables or incremental models,
never views. The table macro `read_document_feed` is plain SQL and is stored in the database.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from dbt.adapters.duckdb.plugins import BasePlugin

from rag_store.chunking import Chunker, ChunkerSettings, load_tokenizer, settings_fingerprint
from rag_store.embedder_info import embedder_info, offline_environment

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

_chunkers: dict[tuple[str, int, int, bool], Chunker] = {}


def chunk_settings(
    model_ref: str,
    max_chunk_tokens: int | None,
    overlap_tokens: int | None,
    context_header: bool | None = True,
):
    """Validated settings; max_chunk_tokens <= 0 or NULL means "the model's whole window"."""
    info = embedder_info(model_ref)
    window = info.max_chunk_tokens
    requested = window if not max_chunk_tokens or max_chunk_tokens <= 0 else max_chunk_tokens
    if requested > window:
        raise ValueError(
            f"max_chunk_tokens={requested} exceeds the window of {info.model_id} "
            f"({window} tokens without special tokens); the model would truncate silently"
        )
    header = True if context_header is None else bool(context_header)
    return info, ChunkerSettings(requested, overlap_tokens or 0, header)


def get_chunker(model_ref, max_chunk_tokens, overlap_tokens, context_header=True):
    key = (model_ref, max_chunk_tokens or 0, overlap_tokens or 0, context_header is not False)
    if key not in _chunkers:
        info, settings = chunk_settings(*key)
        _chunkers[key] = Chunker(load_tokenizer(str(info.tokenizer_file)), settings)
    return _chunkers[key]


def rag_chunk(body, title, model_ref, max_chunk_tokens, overlap_tokens, context_header):
    chunker = get_chunker(model_ref, max_chunk_tokens, overlap_tokens, context_header)
    return [chunk.as_dict() for chunk in chunker.chunk(body, title or "")]


def rag_chunker_fingerprint(model_ref, max_chunk_tokens, overlap_tokens, context_header):
    info, settings = chunk_settings(model_ref, max_chunk_tokens, overlap_tokens, context_header)
    return settings_fingerprint(settings, info.tokenizer_digest)


def rag_count_tokens(texts: pa.Array, model_refs: pa.Array) -> pa.Array:
    """Token counts (no special tokens) of a whole vector of texts at once (an Arrow UDF):
    the tokenizer's batch encoder runs in parallel, so the recount test over every chunk
    costs about a tenth of a row-by-row call."""
    values, refs = texts.to_pylist(), model_refs.to_pylist()
    counts: list[int | None] = [None] * len(values)
    rows_by_ref: dict[str, list[int]] = {}
    for row, (text, ref) in enumerate(zip(values, refs, strict=True)):
        if text is not None and ref is not None:
            rows_by_ref.setdefault(ref, []).append(row)
    for ref, rows in rows_by_ref.items():
        tokenizer = load_tokenizer(str(embedder_info(ref).tokenizer_file))
        encodings = tokenizer.encode_batch([values[i] for i in rows], add_special_tokens=False)
        for row, encoding in zip(rows, encodings, strict=True):
            counts[row] = len(encoding.ids)
    return pa.array(counts, pa.int32())


def rag_embed(text, model_ref):
    from rag_store.embedding import embed_query

    return embed_query(text, model_ref).tolist()


def rag_publish_snapshot(export_dir, snapshot_path, parquet_path):
    from rag_store.snapshot import publish_snapshot

    return publish_snapshot(export_dir, snapshot_path, parquet_path)


def rag_snapshot_is_current(snapshot_path, fingerprint):
    from rag_store.snapshot import snapshot_is_current

    return snapshot_is_current(snapshot_path, fingerprint)


def rag_prepare_export(export_dir):
    from rag_store.snapshot import prepare_export

    return prepare_export(export_dir)


def rag_search_macros_sql(schema, store, embedder, dimension):
    from rag_store.search_macros import install_sql_json

    return install_sql_json(schema, store, embedder, dimension)


def rag_keyword_index_sql(schema, store):
    from rag_store.search_macros import keyword_index_sql_for

    return keyword_index_sql_for(schema, store)


_SIDE_EFFECTS = {"rag_prepare_export", "rag_publish_snapshot", "rag_snapshot_is_current"}
_ARROW = {"rag_count_tokens"}


def register_udfs(conn: duckdb.DuckDBPyConnection) -> None:
    """Register every rag-store UDF on `conn` (also used by tests and the CLI)."""
    functions: list[tuple[str, Any, list[str], Any]] = [
        (
            "rag_chunk",
            rag_chunk,
            ["VARCHAR", "VARCHAR", "VARCHAR", "INTEGER", "INTEGER", "BOOLEAN"],
            CHUNK_TYPE,
        ),
        (
            "rag_chunker_fingerprint",
            rag_chunker_fingerprint,
            ["VARCHAR", "INTEGER", "INTEGER", "BOOLEAN"],
            "VARCHAR",
        ),
        ("rag_model_id", lambda ref: embedder_info(ref).model_id, ["VARCHAR"], "VARCHAR"),
        (
            "rag_model_dimension",
            lambda ref: embedder_info(ref).dimension,
            ["VARCHAR"],
            "INTEGER",
        ),
        (
            "rag_model_max_tokens",
            lambda ref: embedder_info(ref).max_chunk_tokens,
            ["VARCHAR"],
            "INTEGER",
        ),
        ("rag_count_tokens", rag_count_tokens, ["VARCHAR", "VARCHAR"], "INTEGER"),
        ("rag_embed", rag_embed, ["VARCHAR", "VARCHAR"], "FLOAT[]"),
        ("rag_prepare_export", rag_prepare_export, ["VARCHAR"], "VARCHAR"),
        (
            "rag_search_macros_sql",
            rag_search_macros_sql,
            ["VARCHAR", "VARCHAR", "VARCHAR", "INTEGER"],
            "VARCHAR",
        ),
        ("rag_keyword_index_sql", rag_keyword_index_sql, ["VARCHAR", "VARCHAR"], "VARCHAR"),
        (
            "rag_snapshot_is_current",
            rag_snapshot_is_current,
            ["VARCHAR", "VARCHAR"],
            "BOOLEAN",
        ),
        (
            "rag_publish_snapshot",
            rag_publish_snapshot,
            ["VARCHAR", "VARCHAR", "VARCHAR"],
            "VARCHAR",
        ),
    ]
    existing = {
        row[0]
        for row in conn.execute(
            "select function_name from duckdb_functions() where function_name like 'rag_%'"
        ).fetchall()
    }
    for name, function, parameters, return_type in functions:
        if name in existing:
            conn.remove_function(name)
        conn.create_function(
            name,
            function,
            parameters,
            return_type,
            type="arrow" if name in _ARROW else "native",
            side_effects=name in _SIDE_EFFECTS,
        )


def create_sql_macros(conn: duckdb.DuckDBPyConnection) -> None:
    sql_dir = resources.files("rag_store") / "sql"
    for name in ("read_document_feed.sql", "read_document_dir.sql"):
        conn.execute((sql_dir / name).read_text(encoding="utf-8"))


def check_single_writer(path: str) -> None:
    """Fail fast, with a readable message, when another process holds the database file."""
    if not Path(path).exists():
        return
    try:
        duckdb.connect(path).close()
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise
        from dbt_common.exceptions import DbtRuntimeError

        holder = str(exc).split("Conflicting lock is held in", 1)[-1].split(". See")[0]
        raise DbtRuntimeError(
            f"rag-store: another process already has {path} open ({holder.strip()}). "
            "DuckDB allows one writer per file: wait for that build or close that client, "
            "then run again. Nothing was changed."
        ) from None


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
