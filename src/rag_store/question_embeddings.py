"""The work behind the `golden_query_embeddings` dbt Python model: vectors for the golden
questions, so the recall test of every build needs no model.

Embeds only the questions whose expected document is live and that have no vector for the
active model yet, and returns them as an Arrow table that dbt appends to the model.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from rag_store.embedder_info import embedder_info
from rag_store.embedding_job import EmbeddingJobConfig, check_dimension, log
from rag_store.embedding_tables import question_embeddings_table, vector_array


def pending_questions_sql(
    questions_sql: str, documents_sql: str, existing_table: str | None
) -> str:
    """Distinct question texts of `questions_sql` whose expected document is live in
    `documents_sql` and that lack a vector for $model_id in `existing_table`."""
    anti_join = (
        f"""and not exists (
            select 1 from {existing_table} as existing
            where existing.query_text = questions.query_text and existing.model_id = $model_id
        )"""
        if existing_table
        else ""
    )
    return f"""
        select distinct questions.query_text
        from ({questions_sql}) as questions
        inner join ({documents_sql}) as documents
            on questions.expected_doc_id = documents.doc_id and not documents.is_deleted
        where true {anti_join}
        order by questions.query_text
        """


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
    pending = session.execute(
        pending_questions_sql(questions.sql_query(), documents.sql_query(), existing_table),
        {"model_id": info.model_id} if existing_table else {},
    ).to_arrow_table()
    texts = pending.column("query_text").to_pylist()
    log(f"golden_query_embeddings: {len(texts)} question(s) to embed")
    if texts:
        from rag_store.embedding import embed_texts

        vectors = embed_texts(texts, config.model_ref, config.batch_size)
    else:
        vectors = np.zeros((0, info.dimension), dtype=np.float32)
    return question_embeddings_table(info, texts, vector_array(vectors))
