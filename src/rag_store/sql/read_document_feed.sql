-- Table macro: every line of every JSON-lines file matching `feed_glob`, parsed leniently.
-- Nothing is dropped here: a line that is not JSON or not UTF-8 comes out as a row with
-- `_parse_error` set, so staging can send it to documents_rejected, and a bad line never
-- takes the good lines of its file with it. A file in another format (CSV, Parquet, a
-- compressed or zipped file) comes out once, as one `unsupported_format` row.
-- The output columns are those of `parsed_lines`; a file-level row sets only the columns it
-- knows and `union all by name` leaves the others null. `read_document_feed([]::varchar[])`
-- is zero rows of this shape (staging's stand-in for an unconfigured source).
create or replace macro read_document_feed(feed_glob) as table
    with

    files as (
        select
            filename as source_file,
            content,
            try(decode(content)) as file_text,
            case
                when regexp_matches(lower(filename), '\.(csv|tsv|parquet|pq|xlsx?|gz|zst|zip)$')
                    then regexp_extract(lower(filename), '\.([a-z]+)$', 1) || ' file'
            end as named_format
        from read_blob(feed_glob)
    ),

    -- Each file split into its lines once, as a list, before the list is unnested:
    -- unnesting the split expression itself grew with the square of a file's lines (DuckDB
    -- 1.5.5: 4.1 s for one file of 100k lines against 0.06 s for 10k; split first, 0.27 s).
    decoded_files as materialized (
        select
            source_file,
            string_split(file_text, chr(10)) as file_lines
        from files
        where file_text is not null and named_format is null
    ),

    decoded_lines as (
        select
            source_file,
            unnest(generate_series(1, len(file_lines))) as line_number,
            unnest(file_lines) as raw_line,
            null::varchar as escaped_line
        from decoded_files
    ),

    -- A file that is not valid UTF-8 as a whole: DuckDB renders a blob as text with every
    -- non-ASCII byte, backslash and quote as an \xHH escape, so a literal \x0A is always a
    -- newline byte. Binary formats are recognised by their first bytes; any other file is
    -- split on its newline bytes and each line decoded on its own.
    undecodable_files as (
        select
            source_file,
            content::varchar as escaped_text
        from files
        where file_text is null and named_format is null
    ),

    binary_files as (
        select
            source_file,
            case
                when starts_with(escaped_text, 'PAR1') then 'parquet file'
                when starts_with(escaped_text, 'PK\x03\x04') then 'zip archive'
                when starts_with(escaped_text, '\x1F\x8B') then 'gzip file'
            end as binary_format,
            escaped_text
        from undecodable_files
    ),

    escaped_files as materialized (  -- split once, as decoded_files
        select
            source_file,
            string_split(escaped_text, '\x0A') as file_lines
        from binary_files
        where binary_format is null
    ),

    escaped_lines as (
        select
            source_file,
            unnest(generate_series(1, len(file_lines))) as line_number,
            unnest(file_lines) as escaped_line
        from escaped_files
    ),

    undecodable_file_lines as (
        select
            source_file,
            line_number,
            try(decode(escaped_line::blob)) as raw_line,
            escaped_line
        from escaped_lines
    ),

    lines as (
        select * from decoded_lines  -- noqa: AM07
        union all
        select * from undecodable_file_lines
    ),

    json_lines as (
        select
            source_file,
            line_number,
            coalesce(rtrim(raw_line, chr(13)), regexp_replace(escaped_line, '\\x0D$', ''))
                as raw_line,
            raw_line is null as is_undecodable,
            try(json(rtrim(raw_line, chr(13)))) as line_json
        from lines
        -- blank lines (whitespace of any kind) are no rows
        where not regexp_full_match(coalesce(raw_line, escaped_line), '\s*')
    ),

    parsed_lines as (
        select
            source_file as _source_file,
            line_number as _line_number,
            raw_line as _raw_line,
            case
                when is_undecodable then 'invalid_utf8'
                when line_json is null then 'malformed_json'
                when json_type(line_json) != 'OBJECT' then 'not_a_json_object'
            end as _parse_error,
            line_json ->> 'doc_id' as doc_id,
            line_json ->> 'title' as title,
            line_json ->> 'body' as body,
            line_json ->> 'source_uri' as source_uri,
            line_json ->> 'updated_at' as updated_at,
            line_json ->> 'is_deleted' as is_deleted,
            (line_json -> 'metadata')::varchar as metadata,
            (line_json -> 'allowed_principals')::varchar as allowed_principals,
            try_cast(line_json ->> '_loaded_at' as timestamp) as _loaded_at
        from json_lines
    ),

    unsupported_formats as (
        select  -- noqa: AM07
            source_file,
            named_format as unsupported_format
        from files
        where named_format is not null
        union all
        select
            source_file,
            binary_format as unsupported_format
        from binary_files
        where binary_format is not null
    ),

    unsupported_files as (
        select
            source_file as _source_file,
            unsupported_format
            || ': feed files are JSON lines; read other formats through var document_relation'
                as _raw_line,
            'unsupported_format' as _parse_error
        from unsupported_formats
    )

    -- By name: a file-level row fills three columns, the rest are null.
    select * from parsed_lines  -- noqa: AM07
    union all by name
    select * from unsupported_files
