"""Search a retrieval store from Python, with no dbt involved.

By default the published read-only snapshot is searched (it has the BM25 index and the
search table macros, and never blocks or is blocked by a running build); the main database
file works too, for vector search only.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from rag_store.embedder_info import DEFAULT_MODEL, embedder_info
from rag_store.snapshot import default_snapshot_path, load_extension

DEFAULT_DB = "warehouse/rag_store.duckdb"
MODES = ("vector", "keyword", "hybrid")


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


@dataclass(frozen=True)
class Filters:
    """Metadata filters; LIKE patterns and an inclusive updated_at range (ISO text)."""

    doc_id_like: str = "%"
    title_like: str = "%"
    source_uri_like: str = "%"
    updated_after: str = "-infinity"
    updated_before: str = "infinity"

    def params(self) -> dict:
        return asdict(self)


@dataclass
class Query:
    text: str
    k: int = 10
    mode: str = "vector"
    # None: the embedder the snapshot records it was built with, else the default model.
    model_ref: str | None = None
    filters: Filters = field(default_factory=Filters)


def default_db_path() -> str:
    return os.environ.get("RAG_STORE_DB", DEFAULT_DB)


def default_search_path() -> Path:
    """The snapshot if one has been published, else the main database file."""
    database = Path(default_db_path())
    snapshot = default_snapshot_path(database)
    return snapshot if snapshot.exists() else database


def open_store(db_path: str | os.PathLike) -> duckdb.DuckDBPyConnection:
    path = Path(db_path)
    if not path.exists():
        raise SearchError(f"no database at {path}; run `make demo` or `dbt build` first")
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        raise SearchError(
            f"cannot open {path} read-only: {exc}. A running `dbt build` holds the file; "
            "search the published snapshot instead (the default)."
        ) from exc


def is_snapshot(conn: duckdb.DuckDBPyConnection) -> bool:
    found = conn.execute(
        "select count(*) from duckdb_tables() where table_name = 'store_info'"
    ).fetchone()
    return bool(found[0])


def store_model_ids(conn: duckdb.DuckDBPyConnection) -> list[str]:
    try:
        rows = conn.execute("select distinct model_id from retrieval_store").fetchall()
    except duckdb.CatalogException as exc:
        raise SearchError("the database has no retrieval_store table; run `dbt build`") from exc
    return sorted(row[0] for row in rows)


def store_model_reference(conn: duckdb.DuckDBPyConnection) -> str | None:
    """The embedder reference a snapshot was published with (None for the main database
    file, or a snapshot published before the column existed)."""
    try:
        row = conn.execute("select model_reference from store_info").fetchone()
    except duckdb.Error:
        return None
    return row[0] if row and row[0] else None


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


_COLUMNS = "score, chunk_id, doc_id, title, heading_path, chunk_text, source_uri"
_FILTER_ARGS = (
    "doc_id_like := $doc_id_like, title_like := $title_like, "
    "source_uri_like := $source_uri_like, updated_after := $updated_after, "
    "updated_before := $updated_before"
)


def _hits(rows) -> list[Hit]:
    return [Hit(rank, float(row[0]), *row[1:]) for rank, row in enumerate(rows, start=1)]


def vector_search(
    conn: duckdb.DuckDBPyConnection,
    query_vector,
    k: int = 10,
    filters: Filters | None = None,
) -> list[Hit]:
    """Top-k by cosine similarity on any store file (snapshot or main database)."""
    vector = [float(x) for x in query_vector]
    params = {"query_vector": vector_literal(vector), "k": k, **(filters or Filters()).params()}
    sql = f"""
        select
            array_cosine_similarity(embedding, $query_vector::float[{len(vector)}]) as score,
            chunk_id, doc_id, title, heading_path, chunk_text, source_uri
        from retrieval_store
        where
            coalesce(doc_id like $doc_id_like, false)
            and coalesce(title like $title_like, $title_like = '%')
            and coalesce(source_uri like $source_uri_like, $source_uri_like = '%')
            and doc_updated_at between $updated_after::timestamp and $updated_before::timestamp
        order by score desc, chunk_id asc
        limit $k
    """
    return _run(conn, sql, params)


def vector_literal(vector) -> str:
    """A vector as '[…]' text: DuckDB casts that to FLOAT[d] in ~1 ms, while binding a
    Python list of 384 floats costs ~30 ms per query (docs/benchmarks.md)."""
    return "[" + ", ".join(repr(float(x)) for x in vector) + "]"


def _run(conn, sql: str, params: dict) -> list[Hit]:
    used = {name: value for name, value in params.items() if f"${name}" in sql}
    try:
        return _hits(conn.execute(sql, used).fetchall())
    except duckdb.Error as exc:
        raise SearchError(f"search failed: {exc}") from exc


def search(conn: duckdb.DuckDBPyConnection, query: Query) -> list[Hit]:
    if not query.text or not query.text.strip():
        raise SearchError("the question is empty")
    if query.k < 1:
        raise SearchError(f"k must be a positive integer, got {query.k}")
    if query.mode not in MODES:
        raise SearchError(f"mode must be one of {', '.join(MODES)}, got {query.mode!r}")
    snapshot = is_snapshot(conn)
    if query.mode != "vector" and not snapshot:
        raise SearchError(
            f"{query.mode} search needs the published snapshot (it holds the BM25 index); "
            "pass --db with the *_snapshot.duckdb file"
        )
    params = {"query_text": query.text, "k": query.k, **query.filters.params()}
    if query.mode == "keyword":
        load_extension(conn, "fts")
        sql = f"select {_COLUMNS} from search_keyword($query_text, k := $k, {_FILTER_ARGS})"
        return _run(conn, sql, params)
    model_ref = query.model_ref or store_model_reference(conn) or DEFAULT_MODEL
    model_id = check_model(conn, model_ref)
    from rag_store.embedding import embed_query

    vector = embed_query(query.text, model_ref).tolist()
    if query.mode == "vector":
        if not snapshot:
            return vector_search(conn, vector, query.k, query.filters)
        return snapshot_vector_search(conn, vector, model_id, query.k, query.filters)
    load_extension(conn, "fts")
    sql = (
        f"select {_COLUMNS} from search_hybrid($query_text, $query_vector, $model_id, "
        f"k := $k, {_FILTER_ARGS})"
    )
    params.update(query_vector=vector_literal(vector), model_id=model_id)
    return _run(conn, sql, params)


def snapshot_vector_search(
    conn: duckdb.DuckDBPyConnection,
    query_vector,
    model_id: str,
    k: int = 10,
    filters: Filters | None = None,
) -> list[Hit]:
    """Top-k through the snapshot's `search_vector` macro: exact, inner product on the
    normalised query, refusing a vector of another model_id."""
    params = {
        "query_vector": vector_literal(query_vector),
        "model_id": model_id,
        "k": k,
        **(filters or Filters()).params(),
    }
    sql = f"select {_COLUMNS} from search_vector($query_vector, $model_id, k := $k, {_FILTER_ARGS})"
    return _run(conn, sql, params)


def search_text(
    db_path: str | os.PathLike,
    question: str,
    k: int = 10,
    model_ref: str | None = None,
    mode: str = "vector",
    filters: Filters | None = None,
) -> list[Hit]:
    with open_store(db_path) as conn:
        return search(conn, Query(question, k, mode, model_ref, filters or Filters()))
