-- Fails when fewer than golden_min_recall of the golden questions (seed golden_queries)
-- find their expected document among the top golden_k documents of a vector search.
-- Questions whose expected document is not live are left out, so the test is silent on
-- stores built from other corpora.
-- Runs after pipeline_health, so a failure here never keeps a build's health row unwritten:
-- depends_on: {{ ref('pipeline_health_current') }}

with

golden_queries as (
    select * from {{ ref('golden_queries') }}
),

question_vectors as (
    select * from {{ ref('golden_query_embeddings') }}
),

-- not materialized: the check of which questions apply reads doc_id alone, and the
-- vectors are read only when some question applies (on a store of another corpus, never)
stored_chunks as not materialized (
    select * from {{ ref('retrieval_store') }}
),

active_embedder as (
    select * from {{ ref('int_active_embedder') }}
),

asked as (
    select
        golden_queries.query_id,
        golden_queries.expected_doc_id,
        question_vectors.embedding
    from golden_queries
    inner join question_vectors
        on golden_queries.query_text = question_vectors.query_text
    inner join active_embedder on question_vectors.model_id = active_embedder.model_id
    where golden_queries.expected_doc_id in (select stored_chunks.doc_id from stored_chunks)
),

document_scores as (
    select
        asked.query_id,
        asked.expected_doc_id,
        stored_chunks.doc_id,
        max(array_cosine_similarity(stored_chunks.embedding, asked.embedding)) as score
    from asked
    cross join stored_chunks
    group by asked.query_id, asked.expected_doc_id, stored_chunks.doc_id
),

ranked as (
    select
        *,
        row_number() over (partition by query_id order by score desc, doc_id asc) as doc_rank
    from document_scores
),

recall as (
    select
        count(distinct query_id) as questions,
        count(distinct query_id) filter (
            where doc_id = expected_doc_id and doc_rank <= {{ var('golden_k') | int }}
        ) as found
    from ranked
)

select
    questions,
    found,
    found / questions as recall_at_k,
    {{ var('golden_min_recall') | float }} as min_recall
from recall
where questions > 0 and found / questions < {{ var('golden_min_recall') | float }}
