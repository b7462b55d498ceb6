"""The work behind the `chunk_embeddings` dbt Python model, kept here so it is testable.

Reads the chunks, finds the (chunk_hash, model_id) pairs without a vector, embeds only those
and returns them as an Arrow table that dbt appends to the incremental model.
"""

from __future__ import annotations

import sys
import time
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
    def from_active_embedder(
        cls, active_embedder: duckdb.DuckDBPyRelation, batch_size: object
    ) -> EmbeddingJobConfig:
        """The config of a dbt Python model: the embedder from the one row of the
        int_active_embedder relation, the batch size from the model's config."""
        model_ref, dimension = active_embedder.select("model_reference, dimension").fetchone()
        batch = int(batch_size or 32)
        if batch < 1:
            raise ValueError(f"embedding_batch_size must be >= 1, got {batch}")
        return cls(str(model_ref), int(dimension), batch)


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
    """Distinct chunk hashes from `chunks_sql` lacking a vector for $model_id."""
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


class InFlight:
    """Vectors computed by a build that has not finished yet, committed batch by batch.

    If the build is killed, the next build takes these vectors instead of embedding the
    same text again. The chunk_embeddings post-hook drops the table once a build lands.
    """

    def __init__(self, session: duckdb.DuckDBPyConnection, table: str | None, model_id: str):
        self.session, self.table, self.model_id = session, table, model_id
        if table:
            session.execute(
                f"create table if not exists {table} ("
                "chunk_hash varchar, model_id varchar, embedding float[], "
                "token_count integer, embedded_at timestamp)"
            )

    def recover(self, pending: pa.Table) -> pa.Table:
        """Rows of `pending` already embedded by an interrupted build of this model."""
        if not self.table:
            return pending.slice(0, 0).append_column(
                "embedding", pa.array([], pa.list_(pa.float32()))
            )
        self.session.register("__rag_pending", pending)
        try:
            return self.session.execute(
                f"""
                select pending.*, in_flight.embedding
                from __rag_pending as pending
                inner join (
                    select chunk_hash, any_value(embedding) as embedding
                    from {self.table}
                    where model_id = $model_id
                    group by chunk_hash
                ) as in_flight on pending.chunk_hash = in_flight.chunk_hash
                order by pending.chunk_hash
                """,
                {"model_id": self.model_id},
            ).fetch_arrow_table()
        finally:
            self.session.unregister("__rag_pending")

    def save(self, hashes, vectors: np.ndarray, token_counts, embedded_at: datetime) -> None:
        if not self.table or not hashes:
            return
        batch = pa.table(
            {
                "chunk_hash": pa.array(hashes, pa.string()),
                "model_id": pa.array([self.model_id] * len(hashes), pa.string()),
                "embedding": pa.array(list(vectors), pa.list_(pa.float32())),
                "token_count": pa.array(token_counts, pa.int32()),
                "embedded_at": pa.array([embedded_at] * len(hashes), pa.timestamp("us")),
            }
        )
        self.session.register("__rag_in_flight_batch", batch)
        try:
            self.session.execute(f"insert into {self.table} select * from __rag_in_flight_batch")
        finally:
            self.session.unregister("__rag_in_flight_batch")


def run_embedding_job(
    session: duckdb.DuckDBPyConnection,
    chunks: duckdb.DuckDBPyRelation,
    existing_table: str | None,
    config: EmbeddingJobConfig,
    in_flight_table: str | None = None,
    runs_table: str | None = None,
) -> pa.Table:
    started_at = datetime.now(UTC).replace(tzinfo=None)
    info = embedder_info(config.model_ref)
    check_dimension(info, config.expected_dimension)
    schema = output_schema(info.dimension)
    params = {"model_id": info.model_id} if existing_table else {}
    pending = session.execute(
        pending_chunks_sql(chunks.sql_query(), existing_table), params
    ).fetch_arrow_table()
    current_hashes = session.execute(
        f"select count(distinct chunk_hash) from ({chunks.sql_query()})"
    ).fetchone()[0]
    reused = current_hashes - pending.num_rows
    in_flight = InFlight(session, in_flight_table, info.model_id)
    recovered = in_flight.recover(pending)
    if recovered.num_rows:
        done = set(recovered.column("chunk_hash").to_pylist())
        keep = [h not in done for h in pending.column("chunk_hash").to_pylist()]
        pending = pending.filter(pa.array(keep))
        log(f"chunk_embeddings: reusing {recovered.num_rows} vector(s) of an interrupted build")
    total = pending.num_rows
    log(f"chunk_embeddings: {total} chunk(s) to embed with {info.model_id}")
    embedded_at = datetime.now(UTC).replace(tzinfo=None)
    parts = [_recovered_rows(recovered, info, schema, embedded_at)]
    run = RunRecord(session, runs_table, started_at, info.model_id, reused, recovered.num_rows)
    try:
        if total:
            parts.append(_embed_pending(pending, info, schema, config, in_flight, embedded_at))
    except Exception:
        run.write(embedded=0, failed=total)
        raise
    result = pa.concat_tables(parts)
    failed = result.column("embedding").null_count
    run.write(embedded=result.num_rows - failed - recovered.num_rows, failed=failed)
    return result


class RunRecord:
    """Appends one row per run to the embedding_runs table, committed immediately."""

    def __init__(self, session, table, started_at, model_id, reused, recovered):
        self.session, self.table = session, table
        self.values = {
            "started_at": started_at,
            "model_id": model_id,
            "reused": reused,
            "recovered": recovered,
        }

    def write(self, embedded: int, failed: int) -> None:
        if not self.table:
            return
        self.session.execute(
            f"""
            create table if not exists {self.table} (
                run_id varchar, started_at timestamp, finished_at timestamp,
                model_id varchar, chunks_embedded bigint, chunks_reused bigint,
                chunks_recovered bigint, chunks_failed bigint
            )"""
        )
        self.session.execute(
            f"""
            insert into {self.table} values (
                uuid()::varchar, $started_at, (now() at time zone 'UTC'), $model_id,
                $embedded, $reused, $recovered, $failed
            )""",
            {**self.values, "embedded": embedded, "failed": failed},
        )


def _recovered_rows(recovered: pa.Table, info: EmbedderInfo, schema, embedded_at) -> pa.Table:
    count = recovered.num_rows
    return pa.table(
        {
            "chunk_hash": recovered.column("chunk_hash"),
            "model_id": pa.array([info.model_id] * count, type=pa.string()),
            "embedding": recovered.column("embedding").cast(pa.list_(pa.float32(), info.dimension)),
            "token_count": recovered.column("token_count").cast(pa.int32()),
            "embedded_at": pa.array([embedded_at] * count, type=pa.timestamp("us")),
            "error": pa.array([None] * count, type=pa.string()),
        },
        schema=schema,
    )


def _embed_pending(pending, info, schema, config, in_flight: InFlight, embedded_at) -> pa.Table:
    from rag_store.embedding import embed_texts, load_model, progress_bar

    if info.backend == "sentence-transformers":
        loading = time.perf_counter()
        load_model(config.model_ref)
        log(f"chunk_embeddings: model loaded in {time.perf_counter() - loading:.1f}s")
    total = pending.num_rows
    hashes = pending.column("chunk_hash").to_pylist()
    token_counts = pending.column("token_count").to_pylist()
    texts = pending.column("embedding_text").to_pylist()
    matrix = np.zeros((total, info.dimension), dtype=np.float32)
    errors: list[str | None] = [None] * total
    order = sorted(range(total), key=lambda i: len(texts[i]), reverse=True)
    started = last_report = time.perf_counter()
    finished = 0
    with progress_bar(total, "embedding") as bar:
        for batch_start in range(0, total, config.batch_size):
            batch = order[batch_start : batch_start + config.batch_size]
            succeeded = []
            for index, vector, error in _embed_batch(embed_texts, texts, batch, config):
                if error is None:
                    matrix[index] = vector
                    succeeded.append(index)
                errors[index] = error
            in_flight.save(
                [hashes[i] for i in succeeded],
                matrix[succeeded],
                [token_counts[i] for i in succeeded],
                embedded_at,
            )
            finished += len(succeeded)
            bar.update(len(batch))
            if time.perf_counter() - last_report >= 2.0 or batch_start + len(batch) >= total:
                last_report = time.perf_counter()
                log(f"chunk_embeddings: checkpoint {finished}/{total} vectors saved")
    elapsed = max(time.perf_counter() - started, 1e-9)
    failed = sum(error is not None for error in errors)
    tokens = sum(token_counts)
    log(
        f"chunk_embeddings: embedded {total - failed} chunk(s) in {elapsed:.1f}s "
        f"({(total - failed) / elapsed:.1f} chunks/s, {tokens / elapsed:.0f} tokens/s)"
        + (f"; {failed} FAILED and will be retried on the next build" if failed else "")
    )
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


def embed_questions(
    session: duckdb.DuckDBPyConnection,
    questions: duckdb.DuckDBPyRelation,
    documents: duckdb.DuckDBPyRelation,
    existing_table: str | None,
    config: EmbeddingJobConfig,
) -> pa.Table:
    """Vectors for seed questions whose expected document is live and that lack one."""
    info = embedder_info(config.model_ref)
    check_dimension(info, config.expected_dimension)
    anti_join = (
        f"""and not exists (
            select 1 from {existing_table} as existing
            where existing.query_text = questions.query_text and existing.model_id = $model_id
        )"""
        if existing_table
        else ""
    )
    pending = session.execute(
        f"""
        select distinct questions.query_text
        from ({questions.sql_query()}) as questions
        inner join ({documents.sql_query()}) as documents
            on questions.expected_doc_id = documents.doc_id and not documents.is_deleted
        where true {anti_join}
        order by questions.query_text
        """,
        {"model_id": info.model_id} if existing_table else {},
    ).fetch_arrow_table()
    texts = pending.column("query_text").to_pylist()
    log(f"golden_query_embeddings: {len(texts)} question(s) to embed")
    from rag_store.embedding import embed_texts

    vectors = embed_texts(texts, config.model_ref, config.batch_size) if texts else None
    flat = vectors.reshape(-1) if vectors is not None else np.zeros(0, dtype=np.float32)
    return pa.table(
        {
            "query_text": pa.array(texts, pa.string()),
            "model_id": pa.array([info.model_id] * len(texts), pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(flat, type=pa.float32()), info.dimension
            ),
        }
    )
