{#- Fails for every row whose token count exceeds the embedder's window, or whose stored
    count disagrees with a recount of `text_column` by the embedder's own tokenizer.
    Together they make silent truncation impossible.

    The window check covers every row. The recount (the tokenizer over the text) skips rows
    already verified: rows whose `key_column` and count appear in the relation
    `verified_in` of the same schema. That relation must be downstream of `model`, so a
    row only reaches it through a build where this test passed; it is looked up by name,
    not ref(), which would make the test wait for it. A build's cost then follows what
    changed, not the size of the store. -#}
{% test within_model_window(model, column_name, text_column, embedder, verified_in=none, key_column=none) %}
{%- set embedder_literal = rag_store.sql_string(embedder) -%}
{%- set verified = none -%}
{%- if verified_in and key_column and execute -%}
    {%- set verified = adapter.get_relation(
        database=model.database, schema=model.schema, identifier=verified_in) -%}
{%- endif -%}
with

{%- if verified is not none %}

published as (
    select distinct
        {{ key_column }} as published_key,
        {{ column_name }} as published_tokens
    from {{ verified }}
),
{%- endif %}

checked_rows as (
    select
        candidate.{{ column_name }} as stored_tokens,
        rag_model_max_tokens({{ embedder_literal }}) as window_tokens,
        {%- if verified is not none %}
        -- A CASE, not a WHERE: DuckDB would push a filter that calls the tokenizer below
        -- the join and recount every row; CASE calls it for unverified rows only.
        case
            when published.published_key is not null then candidate.{{ column_name }}
            else rag_count_tokens(candidate.{{ text_column }}, {{ embedder_literal }})
        end as recounted_tokens
        {%- else %}
        rag_count_tokens(candidate.{{ text_column }}, {{ embedder_literal }}) as recounted_tokens
        {%- endif %}
    from {{ model }} as candidate
    {%- if verified is not none %}
    left join published
        on
            candidate.{{ key_column }} = published.published_key
            and candidate.{{ column_name }} = published.published_tokens
    {%- endif %}
)

select * from checked_rows
where
    stored_tokens > window_tokens
    or stored_tokens is distinct from recounted_tokens
{% endtest %}
