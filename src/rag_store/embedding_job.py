"""The work behind the `chunk_embeddings` dbt Python model, kept here so it is testable.

Reads the chunks, finds the (chunk_hash, model_id) pairs without a vector, embeds only those
and returns them as an Arrow table that dbt appends to the incremental model.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa

from rag_store.embedder_info import DEFAULT_MODEL, EmbedderInfo, embedder_info


@dataclass(frozen=True)
class EmbeddingJobConfig:
    model_ref: str = DEFAULT_MODEL
    expected_dimension: int | None = None
    batch_size: int = 32

    @classmethod
    def from_dbt_config(cls, get: Callable[[str], object]) -> EmbeddingJobConfig:
        model_ref = str(get("embedding_model") or DEFAULT_MODEL)
        dimension = get("embedding_dimension")
        batch_size = int(get("embedding_batch_size") or 32)
        if batch_size < 1:
            raise ValueError(f"embedding_batch_size must be >= 1, got {batch_size}")
        return cls(model_ref, int(dimension) if dimension else None, batch_size)


def output_schema(dimension: int) -> pa.Schema:
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


def check_dimension(info: EmbedderInfo, expected: int | None) -> None:
    if expected is not None and expected != info.dimension:
        raise ValueError(
            f"var embedding_dimension={expected} but {info.model_id} produces "
            f"{info.dimension}-dimensional vectors; set --vars "
            f"'{{embedding_dimension: {info.dimension}}}' (and run with --full-refresh "
            "of retrieval_store if the dimension changed)"
        )


def pending_chunks_sql(chunks_sql: str, existing_table: str | None) -> str:
    """Distinct chunk hashes from `chunks_sql` lacking a vector for model_id $1."""
    anti_join = (
        f"""
        where not exists (
            select 1 from {existing_table} as existing
            where
                existing.chunk_hash = chunks.chunk_hash
                and existing.model_id = $model_id
                and existing.embedding is not null
        )"""
        if existing_table
        else ""
    )
    return f"""
        select
            chunk_hash,
            any_value(embedding_text order by chunk_id) as embedding_text,
            any_value(token_count order by chunk_id) as token_count
        from ({chunks_sql}) as chunks
        {anti_join}
        group by chunk_hash
        order by chunk_hash
    """


def log(message: str) -> None:
    print(f"[rag-store] {message}", file=sys.stderr, flush=True)


def run_embedding_job(
    session: duckdb.DuckDBPyConnection,
    chunks: duckdb.DuckDBPyRelation,
    existing_table: str | None,
    config: EmbeddingJobConfig,
) -> pa.Table:
    info = embedder_info(config.model_ref)
    check_dimension(info, config.expected_dimension)
    schema = output_schema(info.dimension)
    params = {"model_id": info.model_id} if existing_table else {}
    pending = session.execute(
        pending_chunks_sql(chunks.sql_query(), existing_table), params
    ).fetch_arrow_table()
    total = pending.num_rows
    log(f"chunk_embeddings: {total} chunk(s) to embed with {info.model_id}")
    if total == 0:
        return schema.empty_table()

    from rag_store.embedding import embed_texts, load_model, progress_bar

    if info.backend == "sentence-transformers":
        loading = time.perf_counter()
        load_model(config.model_ref)
        log(f"chunk_embeddings: model loaded in {time.perf_counter() - loading:.1f}s")
    texts = pending.column("embedding_text").to_pylist()
    matrix = np.zeros((total, info.dimension), dtype=np.float32)
    errors: list[str | None] = [None] * total
    order = sorted(range(total), key=lambda i: len(texts[i]), reverse=True)
    started = time.perf_counter()
    with progress_bar(total, "embedding") as bar:
        for batch_start in range(0, total, config.batch_size):
            batch = order[batch_start : batch_start + config.batch_size]
            for index, vector, error in _embed_batch(embed_texts, texts, batch, config):
                if error is None:
                    matrix[index] = vector
                errors[index] = error
            bar.update(len(batch))
    elapsed = max(time.perf_counter() - started, 1e-9)
    failed = sum(error is not None for error in errors)
    if failed == total:
        raise RuntimeError(f"every chunk failed to embed with {info.model_id}; first: {errors[0]}")
    tokens = sum(pending.column("token_count").to_pylist())
    log(
        f"chunk_embeddings: embedded {total - failed} chunk(s) in {elapsed:.1f}s "
        f"({(total - failed) / elapsed:.1f} chunks/s, {tokens / elapsed:.0f} tokens/s)"
        + (f"; {failed} FAILED and will be retried on the next build" if failed else "")
    )
    embedded_at = datetime.now(UTC).replace(tzinfo=None)
    return pa.table(
        {
            "chunk_hash": pending.column("chunk_hash"),
            "model_id": pa.array([info.model_id] * total, type=pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(matrix.reshape(-1), type=pa.float32()),
                info.dimension,
                mask=pa.array([error is not None for error in errors]),
            ),
            "token_count": pending.column("token_count").cast(pa.int32()),
            "embedded_at": pa.array([embedded_at] * total, type=pa.timestamp("us")),
            "error": pa.array(errors, type=pa.string()),
        },
        schema=schema,
    )


def _embed_batch(embed_texts, texts, batch, config):
    """Yield (index, vector, error) for a batch; one bad text does not sink the others."""
    try:
        vectors = embed_texts([texts[i] for i in batch], config.model_ref, len(batch))
    except Exception:
        # Find the culprit(s): embed the batch one text at a time.
        for index in batch:
            try:
                (vector,) = embed_texts([texts[index]], config.model_ref, 1)
                yield index, vector, None
            except Exception as exc:
                yield index, None, f"{type(exc).__name__}: {exc}"[:1000]
        return
    for index, vector in zip(batch, vectors, strict=True):
        yield index, vector, None
