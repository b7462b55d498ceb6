{#- Fails for every row whose token count exceeds the active embedder's window, or whose stored
    count disagrees with a recount of `text_column` by the embedder's own tokenizer.
    Together they make silent truncation impossible.

    The window check covers every row. The recount (the tokenizer over the text) skips rows
    already verified: rows whose `key_column` and count appear in the relation
    `verified_in` of the same schema. That relation must be downstream of `model`, so a
    row only reaches it through a build where this test passed; it is looked up by name,
    not ref(), which would make the test wait for it. A build's cost then follows what
    changed, not the size of the store. -#}
{% test within_model_window(model, column_name, text_column, verified_in=none, key_column=none) %}
{%- set verified = none -%}
{%- if verified_in and key_column and execute -%}
    {%- set verified = adapter.get_relation(
        database=model.database, schema=model.schema, identifier=verified_in) -%}
{%- endif -%}
with

active_embedder as (
    select * from {{ ref('int_active_embedder') }}
),

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
        active_embedder.window_tokens,
        {%- if verified is not none %}
        -- A CASE, not a WHERE: DuckDB would push a filter that calls the tokenizer below
        -- the join and recount every row; CASE calls it for unverified rows only.
        case
            when published.published_key is not null then candidate.{{ column_name }}
            else rag_count_tokens(
                candidate.{{ text_column }}, active_embedder.model_reference
            )
        end as recounted_tokens
        {%- else %}
        rag_count_tokens(
            candidate.{{ text_column }}, active_embedder.model_reference
        ) as recounted_tokens
        {%- endif %}
    from {{ model }} as candidate
    cross join active_embedder
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
