-- Warns when more feed rows were refused than var max_rejected_rows (default 0), one row
-- per reject reason; documents_rejected has the rows themselves.
{{ config(severity='warn', tags=['alert']) }}

with

rejected_rows as (
    select * from {{ ref('documents_rejected') }}
),

rejects_by_reason as (
    select
        reject_reason,
        count(*) as rejected_rows,
        sum(count(*)) over () as total_rejected_rows
    from rejected_rows
    group by reject_reason
)

select * from rejects_by_reason
where total_rejected_rows > {{ var('max_rejected_rows') | int }}
