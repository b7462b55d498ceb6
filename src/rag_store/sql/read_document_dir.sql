-- Table macro: every .md / .markdown / .txt file under `directory` as one document version.
-- doc_id is the path relative to `directory`; updated_at is the file's modification time;
-- _loaded_at is the scan time (a directory is a full snapshot on every build). A file that
-- is not UTF-8 comes out with `_parse_error` set instead of failing the scan.
create or replace macro read_document_dir(directory) as table
    with

    files as (
        select
            filename as source_file,
            try(decode(content)) as file_text,
            last_modified
        from read_blob(
            case
                when trim(directory) = ''
                    then error('read_document_dir: the directory argument is empty')
                else [
                    rtrim(directory, '/') || '/**/*.md',
                    rtrim(directory, '/') || '/**/*.markdown',
                    rtrim(directory, '/') || '/**/*.txt'
                ]
            end
        )
    ),

    described_files as (
        select
            source_file,
            file_text,
            last_modified,
            substr(source_file, length(rtrim(directory, '/')) + 2) as relative_path,
            nullif(regexp_extract(file_text, '(?m)^#[ \t]+(.+)$', 1), '') as first_heading
        from files
    )

    select
        source_file as _source_file,
        null::bigint as _line_number,
        left(file_text, 500) as _raw_line,
        case when file_text is null then 'invalid_utf8' end as _parse_error,
        relative_path as doc_id,
        coalesce(
            first_heading,
            regexp_replace(parse_filename(relative_path), '\.[^.]*$', '')
        ) as title,
        file_text as body,
        'file://' || source_file as source_uri,
        strftime(last_modified at time zone 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ') as updated_at,
        'false' as is_deleted,
        (now() at time zone 'UTC') as _loaded_at
    from described_files
