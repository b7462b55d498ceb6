{#- Incremental reading of the change feed (var document_feed), file by file.

    stg_docs__document_changes stores with every row the fingerprint of its file (size,
    modification time in nanoseconds, inode; rag_file_fingerprint) as it was before the file
    was read. A build reads only the files whose current fingerprint it has not stored: new
    files and rewritten ones. Its pre-hook first forgets the rows of files that changed or
    are gone, so the staged rows are always those of the files as they are now. -#}

{#- The feed files matching var document_feed now, with their fingerprints (SQL). -#}
{% macro feed_file_listing_sql() -%}
    select
        filename as source_file,
        rag_file_fingerprint(filename) as source_fingerprint
    from read_blob({{ rag_store.sql_string(var('document_feed') | trim) }})
{%- endmacro %}

{#- Whether `relation` (the feed staging table) already records file fingerprints; a store
    staged before they existed is read again whole, once. -#}
{% macro stores_feed_fingerprints(relation) -%}
    {{ return(rag_store.has_column(relation, 'source_fingerprint')) }}
{%- endmacro %}

{#- Pre-hook of stg_docs__document_changes: forget the rows of feed files that were rewritten,
    replaced or removed since they were read (all rows when the feed is no longer configured). -#}
{% macro forget_stale_feed_files() -%}
    {%- if execute and is_incremental() -%}
        {%- if var('document_feed') | trim and rag_store.stores_feed_fingerprints(this) -%}
            delete from {{ this }} as staged
            where not exists (
                select 1
                from ({{ rag_store.feed_file_listing_sql() }}) as listing
                where
                    listing.source_file = staged.source_file
                    and listing.source_fingerprint = staged.source_fingerprint
            )
        {%- else -%}
            delete from {{ this }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- The feed lines to stage in this build, as a parenthesised select in read_document_feed's
    columns plus _source_fingerprint: every file on a full build, the files not yet read in
    their current state on an incremental one, none under --empty. -#}
{% macro unread_feed_lines() -%}
    {%- set files = [] -%}
    {%- if execute and not rag_store.invoked_with('empty') -%}
        {%- set incremental = is_incremental() and rag_store.stores_feed_fingerprints(this) -%}
        {%- set listing -%}
            select listing.source_file, listing.source_fingerprint
            from ({{ rag_store.feed_file_listing_sql() }}) as listing
            where
                listing.source_fingerprint is not null
                {%- if incremental %}
                    and not exists (
                        select 1
                        from {{ this }} as staged
                        where
                            staged.source_file = listing.source_file
                            and staged.source_fingerprint = listing.source_fingerprint
                    )
                {%- endif %}
            order by listing.source_file
        {%- endset -%}
        {%- set files = run_query(listing).rows -%}
    {%- endif -%}
    {%- if files | length == 0 %}
        (
            select
                *,
                null::varchar as _source_fingerprint
            from read_document_feed([]::varchar [])
        )
    {%- else %}
        (
            select
                feed.*,
                listing.source_fingerprint as _source_fingerprint
            from read_document_feed([
                {%- for file in files %}{{ rag_store.sql_string(file[0]) }}{{ ', ' if not loop.last }}{% endfor -%}
            ]) as feed
            inner join (
                values
                {%- for file in files %}
                    ({{ rag_store.sql_string(file[0]) }}, {{ rag_store.sql_string(file[1]) }}){{ ',' if not loop.last }}
                {%- endfor %}
            ) as listing (source_file, source_fingerprint)
                on feed._source_file = listing.source_file
        )
    {%- endif -%}
{%- endmacro %}
