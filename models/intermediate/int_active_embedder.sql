{#- One row: the embedder of this build, resolved once from var embedding_model. Every
    model, test and search that needs its identity, dimension, window or chunker settings
    refs this model instead of resolving the var again. A table, not a view: the rag_*
    functions exist only on dbt's connection. It also refuses a build whose
    embedding_dimension var (the type of retrieval_store.embedding) is not the model's. -#}
{%- set model_reference = rag_store.sql_string(var('embedding_model')) -%}
{%- set chunker_args = (var('max_chunk_tokens') | int) ~ ", "
    ~ (var('chunk_overlap_tokens') | int) ~ ", "
    ~ rag_store.sql_bool(var('chunk_context_header')) -%}

with

resolved as (
    select
        {{ model_reference }} as model_reference,
        rag_model_id({{ model_reference }}) as model_id,
        rag_model_dimension({{ model_reference }}) as dimension,
        rag_model_window_tokens({{ model_reference }}) as window_tokens,
        {{ var('max_chunk_tokens') | int }} as max_chunk_tokens,
        {{ var('chunk_overlap_tokens') | int }} as chunk_overlap_tokens,
        {{ rag_store.sql_bool(var('chunk_context_header')) }} as chunk_context_header,
        rag_chunker_fingerprint({{ model_reference }}, {{ chunker_args }})
            as chunker_fingerprint,
        {{ rag_store.sql_bool(var('acl_deny_by_default')) }} as acl_deny_by_default
),

checked as (
    select
        model_reference,
        model_id,
        case
            when dimension = {{ var('embedding_dimension') | int }} then dimension
            else error(
                'var embedding_dimension={{ var("embedding_dimension") | int }} but '
                || model_id || ' produces ' || dimension || '-dimensional vectors; set '
                || '--vars ''{embedding_dimension: ' || dimension || '}'' (and run with '
                || '--full-refresh of retrieval_store if the dimension changed)'
            )
        end as dimension,
        window_tokens,
        max_chunk_tokens,
        chunk_overlap_tokens,
        chunk_context_header,
        chunker_fingerprint,
        acl_deny_by_default
    from resolved
)

select * from checked
