-- Table macro: every line of every JSON-lines file matching `feed_glob`, parsed leniently.
-- Nothing is dropped here: a line that is not JSON, or a file that is not UTF-8, comes out
-- as a row with `_parse_error` set, so staging can send it to documents_rejected.
-- The output columns are those of `parsed_lines`; an undecodable file sets only the columns
-- it knows and `union all by name` leaves the others null. `read_document_feed([]::varchar[])`
-- is zero rows of this shape (staging's stand-in for an unconfigured source).
create or replace macro read_document_feed(feed_glob) as table
    with

    files as (
        select
            filename as source_file,
            try(decode(content)) as file_text
        from read_blob(feed_glob)
    ),

    lines as (
        select
            source_file,
            unnest(generate_series(1, len(string_split(file_text, chr(10))))) as line_number,
            unnest(string_split(file_text, chr(10))) as raw_line
        from files
        where file_text is not null
    ),

    json_lines as (
        select
            source_file,
            line_number,
            rtrim(raw_line, chr(13)) as raw_line,
            try(json(rtrim(raw_line, chr(13)))) as line_json
        from lines
        where trim(raw_line) != ''
    ),

    parsed_lines as (
        select
            source_file as _source_file,
            line_number as _line_number,
            raw_line as _raw_line,
            case
                when line_json is null then 'malformed_json'
                when json_type(line_json) != 'OBJECT' then 'not_a_json_object'
            end as _parse_error,
            line_json ->> 'doc_id' as doc_id,
            line_json ->> 'title' as title,
            line_json ->> 'body' as body,
            line_json ->> 'source_uri' as source_uri,
            line_json ->> 'updated_at' as updated_at,
            line_json ->> 'is_deleted' as is_deleted,
            try_cast(line_json ->> '_loaded_at' as timestamp) as _loaded_at
        from json_lines
    ),

    undecodable_files as (
        select
            source_file as _source_file,
            'invalid_utf8' as _parse_error
        from files
        where file_text is null
    )

    -- By name: an undecodable file fills two columns, the rest are null.
    select * from parsed_lines  -- noqa: AM07
    union all by name
    select * from undecodable_files
