{#- What a dbt invocation may write. rag-store's hooks write only to the relations of the current
    target, and never under --empty; these macros are the one place that decides. -#}

{#- The rag_store models of this project (or of the host project using rag-store as a package)
    as relations, from the graph: where they are built, whatever schema config the host sets. -#}
{% macro store_relations() -%}
{%- set relations = [] -%}
{%- for node in graph.nodes.values()
    if node.resource_type == 'model' and node.package_name == 'rag_store' -%}
    {%- do relations.append(api.Relation.create(
        database=node.database, schema=node.schema, identifier=node.alias)) -%}
{%- endfor -%}
{{ return(relations) }}
{%- endmacro %}

{#- The relation of rag_store model `name`, as the graph places it. -#}
{% macro store_relation(name) -%}
{%- for relation in rag_store.store_relations() if relation.identifier == name -%}
    {{ return(relation) }}
{%- endfor -%}
{{ exceptions.raise_compiler_error("rag-store: no model " ~ name ~ " in the graph") }}
{%- endmacro %}

{#- on-run-start hook. Fails in one line when the rag_store plugin (its UDFs and table macros)
    is missing from the profile. `--empty` renders every ref as zero rows, so on an existing store a build
    would replace its tables and delete its chunks: refuse before anything is written. On a
    target with no store yet, `--empty` is a schema dry run and goes ahead (hooks that write
    are skipped, nothing is published). -#}
{% macro guard_invocation() -%}
{%- if execute and target.type == 'duckdb' -%}
    {%- set loaded = run_query(
        "select count(*) from duckdb_functions() where function_name = 'rag_chunk'"
    ).columns[0].values()[0] -%}
    {%- if loaded == 0 -%}
        {{ exceptions.raise_compiler_error(
            "rag-store: the rag_store plugin is not loaded on this dbt connection; add "
            ~ "`plugins: [{module: rag_store.dbt_plugin}]` to the duckdb output of profile '"
            ~ target.profile_name ~ "' (target " ~ target.name ~ ") in profiles.yml") }}
    {%- endif -%}
{%- endif -%}
{%- if execute -%}
    {{ rag_store.check_embedding_vars() }}
{%- endif -%}
{%- if execute and rag_store.invoked_with('empty') and flags.WHICH in ['build', 'run'] -%}
    {%- for relation in rag_store.store_relations() -%}
        {%- if adapter.get_relation(
            database=relation.database, schema=relation.schema,
            identifier=relation.identifier) is not none -%}
            {{ exceptions.raise_compiler_error(
                "rag-store: refusing `--empty`: " ~ relation ~ " already holds a store, and an "
                ~ "--empty build would replace it with zero rows. Run --empty against a target "
                ~ "(schema or database) with no store yet.") }}
        {%- endif -%}
    {%- endfor -%}
{%- endif -%}
select 1
{%- endmacro %}

{#- Whether a hook may write to `relation`: never under --empty (refs are zero-row subqueries
    there), and only inside the schema of the model running the hook (`this`), so a ref that
    --defer resolved to another target's relation is read, never written. -#}
{% macro may_write(relation) -%}
{%- if rag_store.invoked_with('empty') -%}
    {{ return(false) }}
{%- endif -%}
{{ return(relation.database == this.database and relation.schema == this.schema) }}
{%- endmacro %}

{#- Whether the invocation was given flag `name` (`empty`, `defer`, ...), on the command line or
    through its DBT_ environment variable. -#}
{% macro invoked_with(name) -%}
{{ return(invocation_args_dict.get(name) in [true, 'true', 'True', 1]) }}
{%- endmacro %}

{#- The vars that say where embedding runs, checked before anything is built: a wrong value
    would otherwise surface only as a Python traceback from chunk_embeddings, after the
    chunking work. rag_store.embedding and rag_store.embedding_job hold the same lists. -#}
{% macro check_embedding_vars() -%}
{%- set choices = {
    'embedding_device': ['auto', 'cpu', 'cuda', 'mps'],
    'embedding_executor': ['local', 'ray'],
} -%}
{%- for name, allowed in choices.items() -%}
    {%- set value = (var(name, allowed[0]) ~ '') | trim | lower -%}
    {%- if value not in allowed + [''] -%}
        {{ exceptions.raise_compiler_error(
            "rag-store: var " ~ name ~ " is '" ~ var(name) ~ "'; expected one of "
            ~ allowed | join(', ')) }}
    {%- endif -%}
{%- endfor -%}
{%- endmacro %}
