{#- The relation source (var document_relation): any relation read as one row per document,
    its columns mapped to the document fields by var document_relation_columns. -#}

{#- The relation var document_relation names, or none when it is not set:
      {ref: model_name} or {ref: model_name, package: package_name}: a model (of the host
          project when rag-store is a package); dbt builds it first.
      {source: [source_name, table_name]}: a dbt source.
      {table: expression}, or the expression as plain text: any relation DuckDB reads, e.g.
          "read_parquet('exports/*.parquet')", "read_csv('docs.csv')", or a table of a
          database attached through var document_attach ("crm.public.articles"). -#}
{% macro document_relation() -%}
{%- set spec = var('document_relation') -%}
{%- if spec is none or (spec is string and not spec | trim) -%}
    {{ return(none) }}
{%- endif -%}
{%- if spec is string -%}
    {{ return(spec | trim) }}
{%- endif -%}
{%- if spec is not mapping or (spec | length) == 0 -%}
    {{ exceptions.raise_compiler_error(
        "rag-store: var document_relation must be {ref: ...}, {source: [...]}, {table: ...} "
        ~ "or a table expression, got " ~ spec) }}
{%- endif -%}
{%- if 'ref' in spec -%}
    {%- if spec.get('package') -%}
        {{ return(ref(spec['package'], spec['ref'])) }}
    {%- endif -%}
    {{ return(ref(spec['ref'])) }}
{%- elif 'source' in spec -%}
    {{ return(source(spec['source'][0], spec['source'][1])) }}
{%- elif 'table' in spec -%}
    {{ return(spec['table']) }}
{%- endif -%}
{{ exceptions.raise_compiler_error(
    "rag-store: var document_relation has none of the keys ref, source, table: " ~ spec) }}
{%- endmacro %}

{#- How documents leave the relation source: 'snapshot' (a doc_id no longer in the relation is
    deleted, under the mass-delete guard) or 'tombstone' (rows flagged by the is_deleted
    column). -#}
{% macro document_relation_deletes() -%}
{%- set deletes = var('document_relation_deletes') | string | trim | lower -%}
{%- if deletes not in ['snapshot', 'tombstone'] -%}
    {{ exceptions.raise_compiler_error(
        "rag-store: var document_relation_deletes must be snapshot or tombstone, got "
        ~ deletes) }}
{%- endif -%}
{%- if deletes == 'tombstone' and not rag_store.document_relation_columns()['is_deleted'] -%}
    {{ exceptions.raise_compiler_error(
        "rag-store: var document_relation_deletes is tombstone, but var "
        ~ "document_relation_columns maps no is_deleted column") }}
{%- endif -%}
{{ return(deletes) }}
{%- endmacro %}

{#- The column of the relation for each document field: var document_relation_columns over
    the defaults (a field mapped to null or '' is absent). doc_id, body and updated_at are
    required, except body for a relation whose rows carry a file (file_path: a local file's
    path; file_bytes: a BLOB column, file_name its name for the format), converted like a
    document_dir file when the row's body is empty. metadata may also be a list of columns,
    each kept under its own name. -#}
{% macro document_relation_columns() -%}
{%- set columns = {
    'doc_id': 'doc_id', 'title': 'title', 'body': 'body', 'updated_at': 'updated_at',
    'source_uri': none, 'is_deleted': none, 'loaded_at': none,
    'metadata': none, 'allowed_principals': none,
    'file_path': none, 'file_bytes': none, 'file_name': none} -%}
{%- set given = var('document_relation_columns') or {} -%}
{%- for field, column in given.items() -%}
    {%- if field not in columns -%}
        {{ exceptions.raise_compiler_error(
            "rag-store: var document_relation_columns has an unknown field " ~ field
            ~ "; the fields are " ~ (columns.keys() | join(', '))) }}
    {%- endif -%}
    {%- if column and column is not string and (field != 'metadata' or column is mapping) -%}
        {{ exceptions.raise_compiler_error(
            "rag-store: var document_relation_columns maps " ~ field ~ " to " ~ column
            ~ "; give a column name" ~ (" or a list of column names" if field == 'metadata' else '')) }}
    {%- endif -%}
    {%- do columns.update({field: column if column else none}) -%}
{%- endfor -%}
{%- set required = ['doc_id', 'updated_at'] + ([] if columns['file_path'] or columns['file_bytes'] else ['body']) -%}
{%- for field in required if not columns[field] -%}
    {{ exceptions.raise_compiler_error(
        "rag-store: var document_relation_columns must map " ~ field ~ " to a column") }}
{%- endfor -%}
{{ return(columns) }}
{%- endmacro %}

{#- The relation's rows in the columns of the read_document_feed table macro, as a
    parenthesised select for stage_document_versions. When dbt executes, a mapped column the
    relation does not have fails here in one line that names it and lists what there is. -#}
{% macro document_relation_rows(relation) -%}
{%- set columns = rag_store.document_relation_columns() -%}
{%- if execute -%}
    {%- set present = run_query(
        "select column_name from (describe select * from " ~ relation ~ ")").columns[0].values() -%}
    {%- for field, mapped in columns.items() if mapped -%}
        {%- for column in ([mapped] if mapped is string else mapped) if column not in present -%}
            {{ exceptions.raise_compiler_error(
                "rag-store: var document_relation_columns maps " ~ field ~ " to column " ~ column
                ~ ", which " ~ relation ~ " does not have; its columns: " ~ (present | join(', '))) }}
        {%- endfor -%}
    {%- endfor -%}
{%- endif -%}
{%- set updated_at = 'source_rows.' ~ adapter.quote(columns['updated_at']) -%}
(
    select
        {{ rag_store.sql_string(relation | string) }} as _source_file,
        row_number() over (
            order by
                {{ rag_store.relation_text(columns, 'doc_id') }},
                {{ rag_store.relation_text(columns, 'updated_at') }},
                {{ rag_store.relation_text(columns, 'title') }}
        ) as _line_number,
        left(json_object(
            'doc_id', {{ rag_store.relation_text(columns, 'doc_id') }}, 'title', {{ rag_store.relation_text(columns, 'title') }},
            'updated_at', {{ rag_store.relation_text(columns, 'updated_at') }}
        )::varchar, 500) as _raw_line,
        null::varchar as _parse_error,
        {{ rag_store.relation_text(columns, 'doc_id') }} as doc_id,
        {{ rag_store.relation_text(columns, 'title') }} as title,
        {{ rag_store.relation_text(columns, 'body') }} as body,
        {{ rag_store.relation_text(columns, 'source_uri') }} as source_uri,
        {#- A timestamp without a time zone is taken as UTC. #}
        case
            when typeof({{ updated_at }}) like 'TIMESTAMP%' and typeof({{ updated_at }}) != 'TIMESTAMP WITH TIME ZONE'
                then strftime(try_cast({{ updated_at }} as timestamp), '%Y-%m-%dT%H:%M:%S.%fZ')
            when typeof({{ updated_at }}) = 'DATE'
                then strftime(try_cast({{ updated_at }} as timestamp), '%Y-%m-%dT%H:%M:%S.%fZ')
            else cast({{ updated_at }} as varchar)
        end as updated_at,
        {{ rag_store.relation_text(columns, 'is_deleted') if columns['is_deleted'] else "'false'" }} as is_deleted,
        {{ rag_store.relation_json(columns, 'metadata') }} as metadata,
        {{ rag_store.relation_json(columns, 'allowed_principals') }} as allowed_principals,
        {{ rag_store.relation_text(columns, 'file_path') }} as _file_path,
        {% if columns['file_bytes'] -%}
            try_cast(source_rows.{{ adapter.quote(columns['file_bytes']) }} as blob)
        {%- else -%}
            null::blob
        {%- endif %} as _file_bytes,
        coalesce(
            {{ rag_store.relation_text(columns, 'file_name') }},
            {{ rag_store.relation_text(columns, 'file_path') }},
            {{ rag_store.relation_text(columns, 'doc_id') }}
        ) as _file_name,
        {% if columns['loaded_at'] -%}
            try_cast(source_rows.{{ adapter.quote(columns['loaded_at']) }} as timestamp)
        {%- else -%}
            (now() at time zone 'UTC')
        {%- endif %} as _loaded_at
    from {{ relation }} as source_rows
)
{%- endmacro %}

{#- Column `field` of the relation as JSON text: a text or JSON column as it is (JSON text), a
    list, struct or map column converted; for a list of columns, an object of them by name;
    null when it is not mapped. -#}
{% macro relation_json(columns, field) -%}
{%- set mapped = columns[field] -%}
{%- if not mapped -%}
    null::varchar
{%- elif mapped is string -%}
    {%- set column = 'source_rows.' ~ adapter.quote(mapped) -%}
    case
        when typeof({{ column }}) in ('VARCHAR', 'JSON') then cast({{ column }} as varchar)
        else to_json({{ column }})::varchar
    end
{%- else -%}
    json_object(
        {%- for column in mapped %}
        {{ rag_store.sql_string(column) }}, source_rows.{{ adapter.quote(column) }}{{ ',' if not loop.last }}
        {%- endfor %}
    )::varchar
{%- endif -%}
{%- endmacro %}

{#- Column `field` of the relation as text, or null when it is not mapped. -#}
{% macro relation_text(columns, field) -%}
{%- if columns[field] -%}
    cast(source_rows.{{ adapter.quote(columns[field]) }} as varchar)
{%- else -%}
    null::varchar
{%- endif -%}
{%- endmacro %}

{#- The source kinds read as full snapshots, where a document no longer delivered is deleted:
    the directory, and the relation under snapshot deletes. -#}
{% macro snapshot_source_kinds() -%}
{%- set kinds = [] -%}
{%- if var('document_dir') | trim -%}
    {%- do kinds.append('directory') -%}
{%- endif -%}
{%- if rag_store.document_relation() is not none
    and rag_store.document_relation_deletes() == 'snapshot' -%}
    {%- do kinds.append('relation') -%}
{%- endif -%}
{{ return(kinds) }}
{%- endmacro %}

{#- on-run-start hook: attaches the databases of var document_attach (read-only), loading
    their DuckDB extension from its pip package first. Each entry: {alias: name, path: uri
    or file, type: postgres | sqlite | duckdb}. -#}
{% macro attach_document_databases() -%}
{%- if not execute -%}
    {{ return('select 1') }}
{%- endif -%}
{%- for database in var('document_attach') or [] -%}
    {%- set kind = (database.get('type') or 'duckdb') | lower -%}
    {%- if kind not in ['postgres', 'sqlite', 'duckdb'] or not database.get('alias') or not database.get('path') -%}
        {{ exceptions.raise_compiler_error(
            "rag-store: each entry of var document_attach needs alias, path and a type of "
            ~ "postgres, sqlite or duckdb; got " ~ database) }}
    {%- endif -%}
    {%- if kind != 'duckdb' -%}
        {%- do run_query("load " ~ rag_store.sql_string(
            run_query("select rag_extension_path(" ~ rag_store.sql_string(kind) ~ ")").columns[0].values()[0])) -%}
    {%- endif -%}
    {%- do run_query(
        "attach if not exists " ~ rag_store.sql_string(database['path']) ~ " as "
        ~ adapter.quote(database['alias']) ~ " (type " ~ kind ~ ", read_only)") -%}
{%- endfor -%}
select 1
{%- endmacro %}

{#- The access list var document_dir_principals gives the file at relative path `path_sql`
    (a SQL expression), as JSON text, or null: the principals of the first rule whose glob
    matches ({glob: 'hr/*', allowed_principals: [group:hr]}; `*` matches across folders). -#}
{% macro document_dir_principals(path_sql) -%}
{%- set rules = var('document_dir_principals') or [] -%}
{%- if rules is mapping or rules is string -%}
    {{ exceptions.raise_compiler_error(
        "rag-store: var document_dir_principals must be a list of {glob: ..., allowed_principals: [...]}, got " ~ rules) }}
{%- endif -%}
{%- if not rules -%}
    null::varchar
{%- else -%}
    case
    {%- for rule in rules %}
        {%- if rule is not mapping or not rule.get('glob') or 'allowed_principals' not in rule -%}
            {{ exceptions.raise_compiler_error(
                "rag-store: each rule of var document_dir_principals needs glob and allowed_principals, got " ~ rule) }}
        {%- endif %}
        when {{ path_sql }} glob {{ rag_store.sql_string(rule['glob']) }}
            then {{ rag_store.sql_string(tojson(rule['allowed_principals'])) }}
    {%- endfor %}
    end
{%- endif -%}
{%- endmacro %}
