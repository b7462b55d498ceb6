"""chunk_embeddings: the embedding cache, one row per (chunk_hash, model_id) vector.

Incremental: each build embeds only the chunk hashes that have no vector for the active
model yet. When there is nothing new, the model is never loaded (torch is not imported).
A chunk whose embedding raised gets a row with a null vector and the error, and is retried
on the next build. `--full-refresh` does not empty this cache (full_refresh=False): vectors
are keyed by content and model, so they never go stale. Vectors are also committed batch by
batch to chunk_embeddings__in_flight, so a build that is killed loses no finished work.
"""

import pyarrow as pa


def model(dbt, session):
    dbt.config(
        materialized="incremental",
        incremental_strategy="append",
        on_schema_change="fail",
        full_refresh=False,
    )
    from rag_store.embedding_job import EmbeddingJobConfig, run_embedding_job

    # The embedder is the one row of int_active_embedder. dbt passes a config key to a
    # Python model only when the model file itself calls dbt.config.get() with that key as a
    # literal, so the vars that steer embedding are read here.
    config = EmbeddingJobConfig.from_active_embedder(
        dbt.ref("int_active_embedder"),
        dbt.config.get("embedding_batch_size"),
        device=dbt.config.get("embedding_device"),
        executor=dbt.config.get("embedding_executor"),
        ray_address=dbt.config.get("ray_address"),
        ray_workers=dbt.config.get("ray_workers"),
    )
    chunks = dbt.ref("int_document_chunks")
    existing = str(dbt.this) if dbt.is_incremental else None
    schema = f'"{dbt.this.database}"."{dbt.this.schema}"'
    table: pa.Table = run_embedding_job(
        session,
        chunks,
        existing,
        config,
        in_flight_table=f"{schema}.chunk_embeddings__in_flight",
        runs_table=f"{schema}.embedding_runs",
    )
    return table
