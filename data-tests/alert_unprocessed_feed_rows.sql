-- Alert: feed rows delivered after the last build (their _loaded_at is past the checkpoint)
-- and still not processed. One row = warn, two rows = error (see health_threshold).
{{ config(tags=['alert'], enabled=rag_store.alert_tests_enabled(), warn_if='>0', error_if='>1') }}

with

feed_rows as (
    select * from {{ source('docs', 'document_changes') }}
),

latest_documents as (
    select * from {{ ref('int_documents__latest') }}
),

checkpoint as (
    select coalesce(max(loaded_at_watermark), '-infinity'::timestamp) as processed_until
    from latest_documents
),

unprocessed as (
    select
        count(*) as unprocessed_rows,
        min(feed_rows._loaded_at) as oldest_unprocessed
    from feed_rows
    cross join checkpoint
    where feed_rows._loaded_at > checkpoint.processed_until
),

observed as (
    select
        'unprocessed_feed_minutes' as check_name,
        epoch((now() at time zone 'UTC') - oldest_unprocessed) / 60 as observed_value
    from unprocessed
    where unprocessed_rows > 0
),

breaches as (
    select
        check_name,
        'warn' as severity_level,
        '>' as comparison,
        observed_value,
        {{ var('alert_unprocessed_warn_minutes') | float }} as threshold
    from observed
    where observed_value > {{ var('alert_unprocessed_warn_minutes') | float }}
    union all
    select
        check_name,
        'error' as severity_level,
        '>' as comparison,
        observed_value,
        {{ var('alert_unprocessed_error_minutes') | float }} as threshold
    from observed
    where observed_value > {{ var('alert_unprocessed_error_minutes') | float }}
)

select * from breaches
