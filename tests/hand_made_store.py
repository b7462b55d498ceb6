"""Hand-made retrieval stores for tests of the search macros: the table with every column of
the retrieval_store contract, a store_info row and the macros of sql/search.sql installed,
so a test states only the rows it is about."""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa

from rag_store.search_macros import StoreLayout, install

# Column -> type, as the retrieval_store contract declares them (models/marts/_marts.yml).
COLUMNS = {
    "chunk_id": "varchar",
    "doc_id": "varchar",
    "chunk_index": "integer",
    "title": "varchar",
    "heading_path": "varchar",
    "chunk_text": "varchar",
    "token_count": "integer",
    "char_start": "integer",
    "char_end": "integer",
    "page_start": "integer",
    "page_end": "integer",
    "page_kind": "varchar",
    "source_uri": "varchar",
    "doc_updated_at": "timestamp",
    "metadata": "json",
    "allowed_principals": "varchar[]",
    "chunk_hash": "varchar",
    "content_hash": "varchar",
    "model_id": "varchar",
    "embedded_at": "timestamp",
    "embedding": "float[{dimension}]",
    "stored_at": "timestamp",
}

# Arrow types of the columns Arrow cannot infer from None-only or mixed values.
ARROW_TYPES = {
    "chunk_index": pa.int32(),
    "token_count": pa.int32(),
    "char_start": pa.int32(),
    "char_end": pa.int32(),
    "page_start": pa.int32(),
    "page_end": pa.int32(),
    "allowed_principals": pa.list_(pa.string()),
    "embedding": pa.list_(pa.float32()),
    "title": pa.string(),
    "heading_path": pa.string(),
    "chunk_text": pa.string(),
    "page_kind": pa.string(),
    "source_uri": pa.string(),
    "doc_updated_at": pa.string(),
    "embedded_at": pa.string(),
    "stored_at": pa.string(),
}


def make_store(
    rows: list[dict],
    dimension: int,
    model_id: str,
    conn: duckdb.DuckDBPyConnection | None = None,
    deny_by_default: bool = False,
) -> duckdb.DuckDBPyConnection:
    """`conn` (a new in-memory database by default) holding retrieval_store of `rows`
    (dicts of column values; chunk_id, doc_id and embedding required, the rest defaulted),
    store_info for `model_id`, the BM25 index and the search macros."""
    conn = conn or duckdb.connect(":memory:")
    columns = ", ".join(
        f"{name} {kind.format(dimension=dimension)}" for name, kind in COLUMNS.items()
    )
    conn.execute(f"create table retrieval_store ({columns})")
    values = [_row(row, model_id) for row in rows]
    if values:
        # One Arrow table, not executemany: row-by-row inserts of vectors take seconds.
        table = pa.table(
            {
                name: pa.array([row[i] for row in values], type=ARROW_TYPES.get(name))
                for i, name in enumerate(COLUMNS)
            }
        )
        conn.register("hand_made_rows", table)
        casts = ", ".join(
            f"hand_made_rows.{name}::{kind.format(dimension=dimension)}"
            for name, kind in COLUMNS.items()
        )
        conn.execute(f"insert into retrieval_store select {casts} from hand_made_rows")
        conn.unregister("hand_made_rows")
    conn.execute(
        "create table store_info as select $model_id as model_id, $dimension as dimension, "
        "$deny as acl_deny_by_default",
        {"model_id": model_id, "dimension": dimension, "deny": deny_by_default},
    )
    install(conn, StoreLayout(), dimension)
    return conn


def duckdb_bm25_index(conn: duckdb.DuckDBPyConnection) -> str:
    """Index retrieval_store with the full-text extension's own BM25 index (the reference
    the keyword index must agree with); returns its match_bm25 function's name."""
    conn.execute(
        "pragma create_fts_index('main.retrieval_store', 'chunk_id', 'title', 'heading_path', "
        "'chunk_text', overwrite = 1)"
    )
    return "fts_main_retrieval_store.match_bm25"


def _row(row: dict, model_id: str) -> list:
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"not retrieval_store columns: {sorted(unknown)}")
    text = row.get("chunk_text", "")
    defaults = {
        "chunk_index": int(str(row["chunk_id"]).rsplit(":", 1)[-1] or 0),
        "heading_path": "",
        "chunk_text": text,
        "token_count": len(text.split()),
        "char_start": 0,
        "char_end": len(text),
        "doc_updated_at": "2026-01-01",
        "metadata": {},
        "chunk_hash": f"hash-{row['chunk_id']}",
        "content_hash": f"content-{row['doc_id']}",
        "model_id": model_id,
        "embedded_at": "2026-01-01",
        "stored_at": "2026-01-01",
    }
    merged = {**defaults, **row}
    if isinstance(merged["metadata"], dict):
        merged["metadata"] = json.dumps(merged["metadata"])
    merged["embedding"] = [float(x) for x in merged["embedding"]]
    for name in ("doc_updated_at", "embedded_at", "stored_at"):
        if merged.get(name) is not None:
            merged[name] = str(merged[name])
    return [merged.get(name) for name in COLUMNS]
