-- Table macros that read a document directory.

-- The file patterns (any letter case) under `directory` for a list of extensions.
create or replace macro document_dir_patterns(directory, extensions) as
list_transform(
    extensions,
    extension -> rtrim(directory, '/') || '/**/*.' || array_to_string(
        list_transform(
            string_split(extension, ''), letter -> '[' || lower(letter) || upper(letter) || ']'
        ),
        ''
    )
);

-- The files under `directory` with one of `extensions` (any letter case): name, bytes and
-- modification time. An empty directory argument is an error, never the root.
create or replace macro document_dir_files(directory, extensions) as table
    select
        filename,
        content,
        last_modified
    from
        read_blob(
            case
                when trim(directory) = ''
                    then error('read_document_dir: the directory argument is empty')
                else document_dir_patterns(directory, extensions)
            end
        );

-- The conversion cache's key of a file: the SHA-256 of its bytes and its lower-case extension.
create or replace macro file_content_key(content, filename) as
sha256(content) || ':' || lower(regexp_extract(filename, '\.([^./]+)$', 1));

-- Whether a Markdown or text file's content opens with YAML front matter: such a file goes
-- through the conversion cache too, which moves the front matter into metadata.
create or replace macro has_front_matter(content) as
coalesce(regexp_matches(try(decode(content)), '^---[ \t]*\r?\n'), false);

-- Every file under `directory` that rag_store.converters turns into Markdown (PDF, Word,
-- PowerPoint, HTML, e-mail, Excel, reStructuredText, CSV, and Markdown or text with front
-- matter), with its bytes and a content key: the SHA-256 of the bytes and the extension, so
-- an unchanged file is never converted twice.
create or replace macro read_document_dir_content(directory) as table
    with

    converted_formats as (
        select
            filename,
            content,
            last_modified
        from
            document_dir_files(
                directory, ['pdf', 'docx', 'pptx', 'html', 'htm', 'eml', 'xlsx', 'rst', 'csv']
            )
        union all
        select
            filename,
            content,
            last_modified
        from document_dir_files(directory, ['md', 'markdown', 'txt'])
        where has_front_matter(content)
    )

    select
        filename as source_file,
        content as file_bytes,
        last_modified,
        file_content_key(content, filename) as content_key
    from converted_formats;

-- Every file under `directory`, one row each. A .md / .markdown / .txt file (any letter case)
-- is one document version: doc_id is the path relative to `directory`, updated_at the
-- file's modification time, _loaded_at the scan time (a directory is a full snapshot on
-- every build). A file of a converted format comes out with its `_content_key` and no body
-- (staging takes the body from the conversion cache); any other file as an
-- `unsupported_format` row without being read, and a text file that is not UTF-8 with
-- `_parse_error` set: nothing under the directory is skipped without a trace, except hidden
-- files and directories (a name starting with a dot: .git, .DS_Store), which are not
-- documents.
create or replace macro read_document_dir(directory) as table
    with

    root as (
        select rtrim(directory, '/') as directory_path
    ),

    text_files as (
        select
            filename as source_file,
            try(decode(content)) as file_text,
            last_modified
        from document_dir_files(directory, ['md', 'markdown', 'txt'])
        where not has_front_matter(content)
    ),

    converted_files as (
        select
            source_file,
            last_modified,
            content_key
        from read_document_dir_content(directory)
    ),

    other_files as (
        select listed.file as source_file
        -- never '/**': an empty argument fails in the read_blob of text_files
        from glob(rtrim(directory, '/') || if(trim(directory) = '', '/.', '/**')) as listed
        where
            not regexp_matches(
                lower(listed.file),
                '\.(md|markdown|txt|pdf|docx|pptx|html|htm|eml|xlsx|rst|csv)$'
            )
    ),

    files as (
        select
            source_file,
            file_text,
            last_modified,
            null::varchar as content_key,
            false as is_unsupported
        from text_files
        union all
        select
            source_file,
            null as file_text,
            last_modified,
            content_key,
            false as is_unsupported
        from converted_files
        union all
        select
            source_file,
            null as file_text,
            null as last_modified,
            null as content_key,
            true as is_unsupported
        from other_files
    ),

    described_files as (
        select
            files.source_file,
            files.file_text,
            files.last_modified,
            files.is_unsupported,
            files.content_key,
            substr(files.source_file, length(root.directory_path) + 2) as relative_path,
            nullif(regexp_extract(files.file_text, '(?m)^#[ \t]+(.+)$', 1), '') as first_heading
        from files
        cross join root
    )

    select
        source_file as _source_file,
        null::bigint as _line_number,
        case
            when is_unsupported
                then coalesce(
                    nullif(regexp_extract(lower(relative_path), '\.([^./]+)$', 1), '') || ' file',
                    'file without an extension'
                ) || ': not a format document_dir reads'
            else left(file_text, 500)
        end as _raw_line,
        case
            when is_unsupported then 'unsupported_format'
            when file_text is null and content_key is null then 'invalid_utf8'
        end as _parse_error,
        relative_path as doc_id,
        coalesce(
            first_heading,
            regexp_replace(parse_filename(relative_path), '\.[^.]*$', '')
        ) as title,
        file_text as body,
        'file://' || source_file as source_uri,
        strftime(last_modified at time zone 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ') as updated_at,
        'false' as is_deleted,
        (now() at time zone 'UTC') as _loaded_at,
        content_key as _content_key
    from described_files
    where not regexp_matches(relative_path, '(^|/)\.')
