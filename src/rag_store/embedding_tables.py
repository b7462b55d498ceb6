"""The Arrow shape of every table the embedding models write, defined once each.

chunk_embeddings and golden_query_embeddings are dbt Python models (incremental, so their
column types must never drift); chunk_embeddings__in_flight is the checkpoint a build writes
batch by batch. Every Arrow table of these rows is built from the schema here, and so is the
in-flight table's DDL.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pyarrow as pa

from rag_store.embedder_info import EmbedderInfo


def chunk_embeddings_schema(dimension: int) -> pa.Schema:
    """chunk_embeddings: a FLOAT[dimension] vector per (chunk_hash, model_id), or a null
    vector and the error of a failed attempt."""
    return pa.schema(
        [
            ("chunk_hash", pa.string()),
            ("model_id", pa.string()),
            ("embedding", pa.list_(pa.float32(), dimension)),
            ("token_count", pa.int32()),
            ("embedded_at", pa.timestamp("us")),
            ("error", pa.string()),
        ]
    )


def in_flight_schema() -> pa.Schema:
    """chunk_embeddings__in_flight: the vectors of chunk_embeddings (no failures) of a build
    that has not landed yet. FLOAT[], not FLOAT[d]: the next build may use another model."""
    schema = chunk_embeddings_schema(dimension=1)
    schema = schema.remove(schema.get_field_index("error"))
    vector = pa.field("embedding", pa.list_(pa.float32()))
    return schema.set(schema.get_field_index("embedding"), vector)


def question_embeddings_schema(dimension: int) -> pa.Schema:
    """golden_query_embeddings: a FLOAT[dimension] vector per (query_text, model_id)."""
    return pa.schema(
        [
            ("query_text", pa.string()),
            ("model_id", pa.string()),
            ("embedding", pa.list_(pa.float32(), dimension)),
        ]
    )


def vector_array(vectors: np.ndarray, failed: Sequence[bool] | None = None) -> pa.Array:
    """The rows of a float32 [n, d] matrix as a FLOAT[d] array; rows where `failed` is
    true are null."""
    dimension = vectors.shape[1]
    mask = pa.array(failed, pa.bool_()) if failed is not None else None
    return pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.reshape(-1), pa.float32()), dimension, mask=mask
    )


def chunk_embeddings_table(
    info: EmbedderInfo,
    chunk_hashes,
    vectors,
    token_counts,
    embedded_at: datetime,
    errors: Sequence[str | None] | None = None,
) -> pa.Table:
    """chunk_embeddings rows of one embedder, all stamped `embedded_at`. `vectors` is
    anything Arrow casts to FLOAT[d] (null where embedding failed, with its error)."""
    count = len(chunk_hashes)
    return pa.table(
        {
            "chunk_hash": chunk_hashes,
            "model_id": [info.model_id] * count,
            "embedding": vectors,
            "token_count": token_counts,
            "embedded_at": [embedded_at] * count,
            "error": [None] * count if errors is None else errors,
        },
        schema=chunk_embeddings_schema(info.dimension),
    )


def in_flight_rows(rows: pa.Table) -> pa.Table:
    """The chunk_embeddings `rows` that have a vector, as in-flight rows."""
    schema = in_flight_schema()
    return rows.filter(rows["embedding"].is_valid()).select(schema.names).cast(schema)


def question_embeddings_table(info: EmbedderInfo, texts: Sequence[str], vectors) -> pa.Table:
    """golden_query_embeddings rows of one embedder."""
    return pa.table(
        {
            "query_text": texts,
            "model_id": [info.model_id] * len(texts),
            "embedding": vectors,
        },
        schema=question_embeddings_schema(info.dimension),
    )
