{#- Fails for every row whose token count exceeds the embedder's window, or whose stored
    count disagrees with a recount of `text_column` by the embedder's own tokenizer.
    Together they make silent truncation impossible. -#}
{% test within_model_window(model, column_name, text_column, embedder) %}
{%- set embedder_literal = rag_store.sql_string(embedder) -%}
with

checked_rows as (
    select
        {{ column_name }} as stored_tokens,
        rag_count_tokens({{ text_column }}, {{ embedder_literal }}) as recounted_tokens,
        rag_model_max_tokens({{ embedder_literal }}) as window_tokens
    from {{ model }}
)

select * from checked_rows
where stored_tokens > window_tokens or stored_tokens != recounted_tokens
{% endtest %}
