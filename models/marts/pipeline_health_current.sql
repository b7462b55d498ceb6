{#- The latest pipeline_health row: what the strict build tests and alerts read. -#}
{{ config(materialized='view') }}

with

pipeline_health as (
    select * from {{ ref('pipeline_health') }}
),

latest_build as (
    select * from pipeline_health
    order by measured_at desc
    limit 1
)

select * from latest_build
