"""Search a retrieval store from Python, with no dbt involved: a thin caller of the search
table macros (sql/search.sql) installed in the store.

By default the published read-only snapshot is searched (it never blocks or is blocked by a
running build); the main database file works too, between builds, since every build
installs the same macros and BM25 index there.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from rag_store.duckdb_ext import load_extension
from rag_store.embedder_info import DEFAULT_MODEL, embedder_info
from rag_store.snapshot import default_database, default_snapshot_path

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
    # The pages (PDF) or slides (PowerPoint) the chunk comes from; None without pages.
    page_start: int | None = None
    page_end: int | None = None
    page_kind: str | None = None
    # The document's metadata (a JSON object).
    metadata: dict = field(default_factory=dict)

    @property
    def pages(self) -> str:
        """'p. 12', 'pp. 3-4', 'slide 2' or '' — for a citation."""
        if self.page_start is None:
            return ""
        last = self.page_end if self.page_end is not None else self.page_start
        if self.page_kind == "slide":
            return f"slide {self.page_start}" + (f"-{last}" if last != self.page_start else "")
        return (
            f"p. {self.page_start}" if last == self.page_start else f"pp. {self.page_start}-{last}"
        )

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Filters:
    """Filters: LIKE patterns, an inclusive updated_at range (ISO text) and
    `metadata_contains`, JSON text of what the document's metadata must contain (an object;
    a list value matches a metadata list holding those items)."""

    doc_id_like: str = "%"
    title_like: str = "%"
    source_uri_like: str = "%"
    updated_after: str = "-infinity"
    updated_before: str = "infinity"
    metadata_contains: str | None = None

    def __post_init__(self):
        if self.metadata_contains is not None:
            object.__setattr__(
                self, "metadata_contains", metadata_filter_text(self.metadata_contains)
            )

    def params(self) -> dict:
        return asdict(self)


def metadata_filter_text(value) -> str:
    """`value` (a mapping, or JSON text of an object) as compact JSON text; SearchError
    when it is not an object."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise SearchError(f"metadata filter is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise SearchError('metadata filter must be a JSON object such as {"team": "hr"}')
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def principal_list(principals) -> list[str] | None:
    """The caller's principals as a list (None: not given, the store's default applies);
    a single name counts as a list of one."""
    if principals is None:
        return None
    if isinstance(principals, str):
        principals = [principals]
    names = [str(name).strip() for name in principals]
    return sorted({name for name in names if name})


@dataclass
class Query:
    text: str
    k: int = 10
    mode: str = "vector"
    # None: the embedder the snapshot records it was built with, else the default model.
    model_ref: str | None = None
    filters: Filters = field(default_factory=Filters)
    # Who is asking (users, groups); None: the store's default (see AccessControl).
    principals: list[str] | None = None


def default_search_path() -> Path:
    """The snapshot if one has been published, else the main database file."""
    database = Path(default_database())
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


def store_schema(conn: duckdb.DuckDBPyConnection) -> str:
    """The schema holding retrieval_store and its search macros ("main" in a snapshot, the
    dbt target's schema in the main database)."""
    rows = conn.execute(
        "select schema_name from duckdb_tables() where table_name = 'retrieval_store' "
        "and database_name = current_database() order by schema_name = 'main' desc"
    ).fetchall()
    if not rows:
        raise SearchError("the database has no retrieval_store table; run `dbt build`")
    schema = rows[0][0]
    if not _macro_binds(conn, f'"{schema}".search_vector(null, null)'):
        raise SearchError(
            "the store has no search macros (it was built by an older rag-store); "
            "run `dbt build` again"
        )
    return schema


def store_model_ids(conn: duckdb.DuckDBPyConnection) -> list[str]:
    schema = store_schema(conn)
    rows = conn.execute(f'select distinct model_id from "{schema}".retrieval_store').fetchall()
    return sorted(row[0] for row in rows)


def store_model_reference(conn: duckdb.DuckDBPyConnection) -> str | None:
    """The embedder reference the store was built with: store_info in a snapshot,
    int_active_embedder in the main database (None when neither says)."""
    schema = store_schema(conn)
    for relation in ("store_info", "int_active_embedder"):
        try:
            row = conn.execute(f'select model_reference from "{schema}".{relation}').fetchone()
        except duckdb.Error:
            continue
        if row and row[0]:
            return row[0]
    return None


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


_COLUMNS = (
    "score, chunk_id, doc_id, title, heading_path, chunk_text, source_uri, "
    "page_start, page_end, page_kind, metadata"
)
_FILTER_ARGS = (
    "doc_id_like := $doc_id_like, title_like := $title_like, "
    "source_uri_like := $source_uri_like, updated_after := $updated_after, "
    "updated_before := $updated_before, metadata_contains := $metadata_contains"
)
# How each mode calls its table macro; nothing here states a filter or a fusion.
_MACRO_CALLS = {
    "vector": "search_vector($query_vector, $model_id, k := $k, {filters})",
    "keyword": "search_keyword($query_text, k := $k, {filters})",
    "hybrid": "search_hybrid($query_text, $query_vector, $model_id, k := $k, {filters})",
    "similar": "similar_chunks($chunk_id, k := $k, {filters})",
}

# Per-document access control (principals allowed to read a document) is a column of
# retrieval_store. The search table macros are where it is enforced: they take the caller's
# principals as `principals` (none given: every document, or only public ones in a store
# built with var acl_deny_by_default). A store with the column but macros that cannot take
# principals is refused rather than searched unfiltered.
PRINCIPALS_COLUMN = "allowed_principals"


@dataclass(frozen=True)
class AccessControl:
    """Whether a store restricts documents by principal, and whether its macros enforce it.
    Resolve it once per opened store (`access_control`): two catalog probes, ~3 ms."""

    restricted: bool = False
    macros_take_principals: bool = False

    def arguments(self, principals) -> tuple[str, dict]:
        """The named argument (text, parameters) every search macro call gets."""
        if not self.restricted:
            return "", {}
        if not self.macros_take_principals:
            raise SearchError(
                f"retrieval_store has an {PRINCIPALS_COLUMN} column but its search macros "
                "take no principals; refusing to search it unfiltered (rebuild the store)"
            )
        return ", principals := $principals", {"principals": principal_list(principals)}


def access_control(conn: duckdb.DuckDBPyConnection, schema: str) -> AccessControl:
    """How the store in `schema` restricts reads by principal."""
    return AccessControl(
        restricted=has_store_column(conn, schema, PRINCIPALS_COLUMN),
        macros_take_principals=_macro_binds(
            conn, f'"{schema}".search_vector(null, null, principals := null)'
        ),
    )


def _macro_binds(conn: duckdb.DuckDBPyConnection, call: str) -> bool:
    """Whether the table macro call `call` exists with these arguments: bound, never run
    (~1 ms, where a lookup in duckdb_functions() takes ~20)."""
    try:
        conn.execute(f"select 1 from {call} limit 0").fetchall()
    except (duckdb.CatalogException, duckdb.BinderException):
        return False
    return True


def has_store_column(conn: duckdb.DuckDBPyConnection, schema: str, column: str) -> bool:
    """Whether retrieval_store in `schema` has `column` (stores of older rag-stores lack
    the newer ones)."""
    (count,) = conn.execute(
        "select count(*) from duckdb_columns() where table_name = 'retrieval_store' "
        "and schema_name = $schema and database_name = current_database() "
        "and column_name = $column",
        {"schema": schema, "column": column},
    ).fetchone()
    return count > 0


def call_search_macro(
    conn: duckdb.DuckDBPyConnection,
    mode: str,
    k: int,
    query_text: str | None = None,
    query_vector=None,
    model_id: str | None = None,
    filters: Filters | None = None,
    schema: str | None = None,
    chunk_id: str | None = None,
    access: AccessControl | None = None,
    principals=None,
) -> list[Hit]:
    """Run one mode's search table macro and return ranked hits. `access` (from
    `access_control`) applies the caller's `principals` to a store that restricts reads."""
    schema = schema or store_schema(conn)
    if mode in ("keyword", "hybrid"):
        load_extension(conn, "fts")
    access_args, access_params = (access or AccessControl()).arguments(principals)
    call = _MACRO_CALLS[mode].format(filters=_FILTER_ARGS + access_args)
    sql = f'select {_COLUMNS} from "{schema}".{call}'
    params = {
        "query_text": query_text,
        "query_vector": None if query_vector is None else vector_literal(query_vector),
        "model_id": model_id,
        "chunk_id": chunk_id,
        "k": k,
        **(filters or Filters()).params(),
        **access_params,
    }
    used = {name: value for name, value in params.items() if f"${name}" in sql}
    try:
        return _hits(conn.execute(sql, used).fetchall())
    except duckdb.Error as exc:
        raise SearchError(f"search failed: {exc}") from exc


def document_chunks(
    conn: duckdb.DuckDBPyConnection,
    doc_id: str,
    schema: str | None = None,
    access: AccessControl | None = None,
    principals=None,
) -> list[dict]:
    """The chunks of one document in order, read through the macros' `filtered_store` (so
    a store's access control applies as it does to every search)."""
    schema = schema or store_schema(conn)
    access_args, access_params = (access or AccessControl()).arguments(principals)
    sql = (
        "select chunk_id, doc_id, chunk_index, title, heading_path, chunk_text, source_uri, "
        "page_start, page_end, page_kind, "
        f"doc_updated_at, metadata from \"{schema}\".filtered_store('%', '%', '%', '-infinity', "
        f"'infinity'{access_args}) where doc_id = $doc_id order by chunk_index"
    )
    try:
        cursor = conn.execute(sql, {"doc_id": doc_id, **access_params})
        columns = [column[0] for column in cursor.description]
        chunks = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        for chunk in chunks:
            chunk["metadata"] = metadata_object(chunk["metadata"])
        return chunks
    except duckdb.Error as exc:
        raise SearchError(f"reading document {doc_id!r} failed: {exc}") from exc


def readable_counts(
    conn: duckdb.DuckDBPyConnection,
    schema: str,
    access: AccessControl | None = None,
    principals=None,
) -> tuple[int, int]:
    """(chunks, documents) a caller with `principals` may read."""
    access_args, access_params = (access or AccessControl()).arguments(principals)
    (chunks, documents) = conn.execute(
        f'select count(*), count(distinct doc_id) from "{schema}".filtered_store('
        f"'%', '%', '%', '-infinity', 'infinity'{access_args})",
        access_params,
    ).fetchone()
    return chunks, documents


def _hits(rows) -> list[Hit]:
    return [
        Hit(rank, float(row[0]), *row[1:-1], metadata=metadata_object(row[-1]))
        for rank, row in enumerate(rows, start=1)
    ]


def metadata_object(value) -> dict:
    """A metadata value as DuckDB returns it (JSON text, or None) as a dict."""
    if value is None:
        return {}
    return json.loads(value) if isinstance(value, str) else dict(value)


def vector_literal(vector) -> str:
    """A vector as '[…]' text: DuckDB casts that to FLOAT[d] in ~1 ms, while binding a
    Python list of 384 floats costs ~30 ms per query (docs/benchmarks.md)."""
    return "[" + ", ".join(repr(float(x)) for x in vector) + "]"


def vector_search(
    conn: duckdb.DuckDBPyConnection,
    query_vector,
    model_id: str,
    k: int = 10,
    filters: Filters | None = None,
) -> list[Hit]:
    """Top-k through the store's `search_vector` macro: exact, inner product on the
    normalised query, refusing a vector of another model_id."""
    return call_search_macro(
        conn, "vector", k, query_vector=query_vector, model_id=model_id, filters=filters
    )


def search(conn: duckdb.DuckDBPyConnection, query: Query) -> list[Hit]:
    if not query.text or not query.text.strip():
        raise SearchError("the question is empty")
    if query.k < 1:
        raise SearchError(f"k must be a positive integer, got {query.k}")
    if query.mode not in MODES:
        raise SearchError(f"mode must be one of {', '.join(MODES)}, got {query.mode!r}")
    schema = store_schema(conn)
    access = access_control(conn, schema)
    if query.mode == "keyword":
        return call_search_macro(
            conn,
            "keyword",
            query.k,
            query_text=query.text,
            filters=query.filters,
            schema=schema,
            access=access,
            principals=query.principals,
        )
    model_ref = query.model_ref or store_model_reference(conn) or DEFAULT_MODEL
    model_id = check_model(conn, model_ref)
    from rag_store.embedding import embed_query

    return call_search_macro(
        conn,
        query.mode,
        query.k,
        query_text=query.text,
        query_vector=embed_query(query.text, model_ref).tolist(),
        model_id=model_id,
        filters=query.filters,
        schema=schema,
        access=access,
        principals=query.principals,
    )


def search_text(
    db_path: str | os.PathLike,
    question: str,
    k: int = 10,
    model_ref: str | None = None,
    mode: str = "vector",
    filters: Filters | None = None,
    principals: list[str] | None = None,
) -> list[Hit]:
    with open_store(db_path) as conn:
        return search(conn, Query(question, k, mode, model_ref, filters or Filters(), principals))
