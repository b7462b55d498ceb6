"""golden_query_embeddings: the golden questions (seed golden_queries), embedded once per
(question text, model_id) so the recall test in every build needs no model.

Only questions whose expected document is live in the store are embedded, so a store built
from another corpus never loads the model for them.
"""


def model(dbt, session):
    dbt.config(materialized="incremental", incremental_strategy="append", full_refresh=False)
    from rag_store.embedding_job import EmbeddingJobConfig
    from rag_store.question_embeddings import embed_questions

    config = EmbeddingJobConfig.from_active_embedder(
        dbt.ref("int_active_embedder"), dbt.config.get("embedding_batch_size")
    )
    questions = dbt.ref("golden_queries")
    documents = dbt.ref("int_documents__latest")
    existing = str(dbt.this) if dbt.is_incremental else None
    return embed_questions(session, questions, documents, existing, config)
