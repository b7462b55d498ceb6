"""Vector search over a retrieval_store from Python, with no dbt involved."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from rag_store.embedder_info import DEFAULT_MODEL, embedder_info

DEFAULT_DB = "warehouse/rag_store.duckdb"


class SearchError(RuntimeError):
    """A search that cannot run; the message says why and what to do."""


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float
    chunk_id: str
    doc_id: str
    title: str
    heading_path: str
    chunk_text: str
    source_uri: str | None

    def as_dict(self) -> dict:
        return asdict(self)


def default_db_path() -> str:
    return os.environ.get("RAG_STORE_DB", DEFAULT_DB)


def open_store(db_path: str | os.PathLike) -> duckdb.DuckDBPyConnection:
    path = Path(db_path)
    if not path.exists():
        raise SearchError(f"no database at {path}; run `make demo` or `dbt build` first")
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        raise SearchError(
            f"cannot open {path} read-only: {exc}. A running `dbt build` holds the file; "
            "retry when it finishes."
        ) from exc


def store_model_ids(conn: duckdb.DuckDBPyConnection) -> list[str]:
    try:
        rows = conn.execute("select distinct model_id from retrieval_store").fetchall()
    except duckdb.CatalogException as exc:
        raise SearchError("the database has no retrieval_store table; run `dbt build`") from exc
    return sorted(row[0] for row in rows)


def check_model(conn: duckdb.DuckDBPyConnection, model_ref: str) -> str:
    """The store's model_id, refusing a query embedder that is not the store's."""
    stored = store_model_ids(conn)
    wanted = embedder_info(model_ref).model_id
    if not stored:
        raise SearchError("retrieval_store is empty: nothing to search")
    if len(stored) > 1:
        raise SearchError(f"retrieval_store mixes embedders {stored}; rebuild it")
    if stored[0] != wanted:
        raise SearchError(
            f"the store was embedded with {stored[0]} but queries would be embedded with "
            f"{wanted}; vectors from different models are not comparable. Pass the store's "
            "model with --model."
        )
    return wanted


def vector_search(
    conn: duckdb.DuckDBPyConnection,
    query_vector,
    k: int = 10,
    where: str | None = None,
) -> list[Hit]:
    """Top-k by cosine similarity, ties broken by chunk_id. `where` is trusted SQL."""
    if k < 1:
        raise SearchError(f"k must be a positive integer, got {k}")
    vector = [float(x) for x in query_vector]
    predicate = f"where {where}" if where else ""
    sql = f"""
        select
            array_cosine_similarity(embedding, $query_vector::float[{len(vector)}]) as score,
            chunk_id, doc_id, title, heading_path, chunk_text, source_uri
        from retrieval_store
        {predicate}
        order by score desc, chunk_id asc
        limit $k
    """
    try:
        rows = conn.execute(sql, {"query_vector": vector, "k": k}).fetchall()
    except duckdb.Error as exc:
        raise SearchError(f"search failed: {exc}") from exc
    return [Hit(rank, float(row[0]), *row[1:]) for rank, row in enumerate(rows, start=1)]


def search_text(
    db_path: str | os.PathLike,
    question: str,
    k: int = 10,
    model_ref: str = DEFAULT_MODEL,
    where: str | None = None,
) -> list[Hit]:
    if not question or not question.strip():
        raise SearchError("the question is empty")
    with open_store(db_path) as conn:
        check_model(conn, model_ref)
        from rag_store.embedding import embed_query

        return vector_search(conn, embed_query(question, model_ref), k, where)
