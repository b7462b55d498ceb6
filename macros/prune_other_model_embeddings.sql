{#- Post-hook of retrieval_store: once the store has switched to the active model, delete
    the cached vectors of every other model, unless var keep_previous_model_embeddings is
    true (keep them to roll back without re-embedding). Only in the current target: under
    --defer, chunk_embeddings may be another target's, and it is left alone. -#}
{% macro prune_other_model_embeddings() -%}
{%- if rag_store.sql_bool(var('keep_previous_model_embeddings')) == 'true'
    or not rag_store.may_write(ref('chunk_embeddings')) -%}
    select 1
{%- else -%}
    delete from {{ ref('chunk_embeddings') }}
    where model_id != (select active.model_id from {{ ref('int_active_embedder') }} as active)
{%- endif -%}
{%- endmacro %}
