"""The work behind the `chunk_embeddings` dbt Python model, kept here so it is testable.

Reads the chunks, finds the (chunk_hash, model_id) pairs without a vector, embeds only those
in length-sorted batches (checkpointing each batch to the in-flight table) and returns them
as an Arrow table that dbt appends to the incremental model. Also holds what both embedding
models share: their config, the dimension check and the log line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa

from rag_store.embedder_info import DEFAULT_MODEL, EmbedderInfo, embedder_info
from rag_store.embedding_tables import (
    chunk_embeddings_table,
    in_flight_rows,
    in_flight_schema,
    vector_array,
)

EXECUTORS = ("local", "ray")
# With embedding_executor: ray, fewer pending chunks than this are embedded in the build's
# process: Ray's start-up and the actors' model loads (5-10 s, docs/benchmarks.md) are more
# than embedding them here, so a change build (or a watch cycle) never waits for a cluster.
RAY_FROM_CHUNKS = 256


@dataclass(frozen=True)
class EmbeddingJobConfig:
    model_ref: str = DEFAULT_MODEL
    expected_dimension: int | None = None
    # Texts per forward pass; 0 = the device's default (embedding.batch_size_for).
    batch_size: int = 0
    # Vars embedding_device, embedding_executor, ray_address and ray_workers (README).
    device: str = "auto"
    executor: str = "local"
    ray_address: str = ""
    ray_workers: int = 0

    @classmethod
    def from_active_embedder(
        cls,
        active_embedder: duckdb.DuckDBPyRelation,
        batch_size: object,
        device: object = None,
        executor: object = None,
        ray_address: object = None,
        ray_workers: object = None,
    ) -> EmbeddingJobConfig:
        """The config of a dbt Python model: the embedder from the one row of the
        int_active_embedder relation, the rest from the model's config (its vars)."""
        from rag_store.embedding import requested_device

        model_ref, dimension = active_embedder.select("model_reference, dimension").fetchone()
        batch = _whole_number("embedding_batch_size", batch_size)
        workers = _whole_number("ray_workers", ray_workers)
        chosen = str(executor or "local").strip().lower()
        if chosen not in EXECUTORS:
            raise ValueError(
                f"embedding_executor={executor!r}: expected one of {', '.join(EXECUTORS)}"
            )
        return cls(
            str(model_ref),
            int(dimension),
            batch,
            requested_device(device),
            chosen,
            str(ray_address or "").strip(),
            workers,
        )


def _whole_number(name: str, value: object) -> int:
    """A var that is a count >= 0 ('' and None mean 0)."""
    try:
        number = int(str(value).strip() or 0) if value is not None else 0
    except ValueError:
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{name} must be a whole number >= 0, got {number}")
    return number


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
                and existing.error is null  -- a vector (cheaper than reading it)
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


@contextmanager
def _registered(session: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> Iterator[str]:
    """`table` visible to SQL on `session` as `name` for the duration of the block."""
    session.register(name, table)
    try:
        yield name
    finally:
        session.unregister(name)


class InFlight:
    """Vectors computed by a build that has not finished yet, committed batch by batch.

    If the build is killed, the next build takes these vectors instead of embedding the
    same text again. The chunk_embeddings post-hook drops the table once a build lands.
    """

    def __init__(self, session: duckdb.DuckDBPyConnection, table: str | None, info: EmbedderInfo):
        self.session, self.table, self.info = session, table, info
        if table:
            with _registered(session, "__rag_in_flight_empty", in_flight_schema().empty_table()):
                session.execute(
                    f"create table if not exists {table} as select * from __rag_in_flight_empty"
                )

    def recover(self, pending: pa.Table, embedded_at: datetime) -> pa.Table:
        """chunk_embeddings rows for the `pending` chunks that an interrupted build of this
        model already embedded."""
        found = {"chunk_hash": [], "embedding": [], "token_count": []}
        if self.table:
            with _registered(self.session, "__rag_pending", pending):
                found = self.session.execute(
                    f"""
                    select pending.chunk_hash, in_flight.embedding, pending.token_count
                    from __rag_pending as pending
                    inner join (
                        select chunk_hash, any_value(embedding) as embedding
                        from {self.table}
                        where model_id = $model_id
                        group by chunk_hash
                    ) as in_flight on pending.chunk_hash = in_flight.chunk_hash
                    order by pending.chunk_hash
                    """,
                    {"model_id": self.info.model_id},
                ).to_arrow_table()
        return chunk_embeddings_table(
            self.info,
            found["chunk_hash"],
            found["embedding"],
            found["token_count"],
            embedded_at,
        )

    def save(self, rows: pa.Table) -> None:
        """Commit the vectors among `rows` (chunk_embeddings rows; failures are skipped)."""
        batch = in_flight_rows(rows)
        if not self.table or not batch.num_rows:
            return
        with _registered(self.session, "__rag_in_flight_batch", batch):
            self.session.execute(f"insert into {self.table} select * from __rag_in_flight_batch")


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
    params = {"model_id": info.model_id} if existing_table else {}
    pending = session.execute(
        pending_chunks_sql(chunks.sql_query(), existing_table), params
    ).to_arrow_table()
    current_hashes = session.execute(
        f"select count(distinct chunk_hash) from ({chunks.sql_query()})"
    ).fetchone()[0]
    reused = current_hashes - pending.num_rows
    embedded_at = datetime.now(UTC).replace(tzinfo=None)
    in_flight = InFlight(session, in_flight_table, info)
    recovered = in_flight.recover(pending, embedded_at)
    if recovered.num_rows:
        done = set(recovered.column("chunk_hash").to_pylist())
        keep = [h not in done for h in pending.column("chunk_hash").to_pylist()]
        pending = pending.filter(pa.array(keep))
        log(f"chunk_embeddings: reusing {recovered.num_rows} vector(s) of an interrupted build")
    total = pending.num_rows
    log(f"chunk_embeddings: {total} chunk(s) to embed with {info.model_id}")
    parts = [recovered]
    run = RunRecord(session, runs_table, started_at, info.model_id, reused, recovered.num_rows)
    try:
        if total:
            parts.append(_embed_pending(pending, info, config, in_flight, embedded_at))
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


def _embed_pending(
    pending: pa.Table,
    info: EmbedderInfo,
    config: EmbeddingJobConfig,
    in_flight: InFlight,
    embedded_at: datetime,
) -> pa.Table:
    """Embed `pending` in length-sorted batches on the configured executor, committing each
    batch to `in_flight` as it arrives."""
    from rag_store.embedding import batch_size_for, length_sorted_batches, progress_bar

    total = pending.num_rows
    texts = pending.column("embedding_text").to_pylist()
    # Each batch takes its rows by index. On a table of several Arrow chunks (DuckDB hands
    # them over so) a take copies every chunk first: 0.12 s per batch at a million pending
    # chunks, more than embedding them with the hash embedder. One chunk per column makes it
    # O(batch); the texts, which could pass 2 GB, are already a list.
    keys = pending.select(["chunk_hash", "token_count"]).combine_chunks()
    parts: list[pa.Table] = []
    progress = {"attempted": 0, "finished": 0, "reported": time.perf_counter()}

    def save(batch: list[int], vectors: np.ndarray, errors: list[str | None]) -> None:
        rows = keys.take(batch)
        part = chunk_embeddings_table(
            info,
            rows.column("chunk_hash"),
            vector_array(vectors, [error is not None for error in errors]),
            rows.column("token_count"),
            embedded_at,
            errors,
        )
        in_flight.save(part)
        parts.append(part)
        progress["attempted"] += len(batch)
        progress["finished"] += part.num_rows - part.column("embedding").null_count
        bar.update(len(batch))
        now = time.perf_counter()
        if now - progress["reported"] >= 2.0 or progress["attempted"] >= total:
            progress["reported"] = now
            log(f"chunk_embeddings: checkpoint {progress['finished']}/{total} vectors saved")

    started = time.perf_counter()
    with progress_bar(total, "embedding") as bar:
        on_ray = config.executor == "ray" and total >= RAY_FROM_CHUNKS
        if config.executor == "ray" and not on_ray:
            log(
                f"chunk_embeddings: {total} chunk(s) embed here: fewer than {RAY_FROM_CHUNKS}, "
                "they take less time than Ray's start-up"
            )
        if on_ray:
            from rag_store import ray_executor

            batches = length_sorted_batches(texts, batch_size_for(config.device, config.batch_size))
            ray_executor.embed(texts, batches, info, config, save, log)
        else:
            encoder = _local_encoder(info, config, total)
            device = getattr(encoder, "device", "cpu")
            for batch in length_sorted_batches(texts, batch_size_for(device, config.batch_size)):
                batch_texts = [texts[i] for i in batch]
                save(batch, *embed_batch_or_errors(batch_texts, info, config.model_ref, encoder))
    elapsed = max(time.perf_counter() - started, 1e-9)
    finished = progress["finished"]
    failed = total - finished
    tokens = sum(pending.column("token_count").to_pylist())
    log(
        f"chunk_embeddings: embedded {finished} chunk(s) in {elapsed:.1f}s "
        f"({finished / elapsed:.1f} chunks/s, {tokens / elapsed:.0f} tokens/s)"
        + (f"; {failed} FAILED and will be retried on the next build" if failed else "")
    )
    return pa.concat_tables(parts)


def _local_encoder(info: EmbedderInfo, config: EmbeddingJobConfig, texts: int):
    """The encoder of this process for `texts` pending texts (None for the hash embedder)."""
    from rag_store.embedding import load_model

    if info.backend != "sentence-transformers":
        return None
    loading = time.perf_counter()
    encoder = load_model(config.model_ref, texts, config.device)
    log(
        f"chunk_embeddings: model loaded in {time.perf_counter() - loading:.1f}s "
        f"({encoder.runtime} on {encoder.device}, {info.precision})"
    )
    return encoder


def embed_batch_or_errors(
    texts: list[str], info: EmbedderInfo, model_ref: str, encoder=None
) -> tuple[np.ndarray, list[str | None]]:
    """Vectors [len(texts), d] and per-text errors (None: embedded) for one batch; one bad
    text does not sink the others."""
    from rag_store.embedding import embed_batch

    try:
        return embed_batch(texts, model_ref, encoder), [None] * len(texts)
    except Exception:
        # Find the culprit(s): embed the batch one text at a time.
        vectors = np.zeros((len(texts), info.dimension), dtype=np.float32)
        errors: list[str | None] = [None] * len(texts)
        for row, text in enumerate(texts):
            try:
                vectors[row] = embed_batch([text], model_ref, encoder)[0]
            except Exception as exc:
                errors[row] = f"{type(exc).__name__}: {exc}"[:1000]
        return vectors, errors
