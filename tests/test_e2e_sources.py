"""Where documents come from: a relation (a Parquet export, a real Postgres table, a model of a
host project), the feed and the directory, and that nothing they deliver is lost silently.

The hash embedder stands in for the model except in the host-project test: these tests are
about which documents are live and which rows are rejected, not about vector quality."""

from __future__ import annotations

import json
import shutil
import subprocess

import duckdb
import pytest
from conftest import BIN, FIXTURES, HASH_EMBEDDER, REPO, document, long_body, write_feed

pytestmark = pytest.mark.e2e


def live_documents(project) -> list[str]:
    return [
        row[0] for row in project.query("select distinct doc_id from retrieval_store order by 1")
    ]


def rejected(project) -> list[tuple]:
    return project.query(
        "select source_kind, regexp_extract(source_file, '[^/]*$'), line_number, reject_reason "
        "from documents_rejected order by all"
    )


# ------------------------------------------------------------------ feed and directory


def test_a_bad_line_is_rejected_alone_and_whitespace_is_empty(dbt_project):
    dbt_project.vars = {**HASH_EMBEDDER, "golden_min_recall": 0}
    good = [document(f"ok/{n}", long_body(1)) for n in range(3)]
    lines = [json.dumps(good[0]).encode(), b'{"doc_id": "bad", "body": "caf\xe9"}']
    lines += [json.dumps(good[1]).encode(), json.dumps(good[2]).encode()]
    for name, body in (("tabs", "\t\n\t \r\n"), ("nbsp", "\u00a0\u3000\u200b\ufeff")):
        lines.append(json.dumps(document(f"blank/{name}", body)).encode())
    (dbt_project.feed_dir / "mixed.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    dbt_project.build()

    assert live_documents(dbt_project) == ["ok/0", "ok/1", "ok/2"]
    assert rejected(dbt_project) == [
        ("feed", "mixed.jsonl", 2, "invalid_utf8"),
        ("feed", "mixed.jsonl", 5, "empty_body"),
        ("feed", "mixed.jsonl", 6, "empty_body"),
    ]


def test_other_formats_in_the_feed_are_rejected_once_per_file(dbt_project):
    dbt_project.vars = {**HASH_EMBEDDER, "golden_min_recall": 0, "document_feed": ""}
    feed = dbt_project.feed_dir
    write_feed(dbt_project, "good.jsonl", [document("ok/1", long_body(1))])
    (feed / "export.csv").write_text("doc_id,body\nx,hello\ny,world\n", encoding="utf-8")
    with duckdb.connect() as conn:
        conn.execute(f"copy (select 'x' as doc_id) to '{feed / 'export.parquet'}' (format parquet)")
        # Parquet under a JSON-lines name is recognised by its bytes.
        conn.execute(f"copy (select 'y' as doc_id) to '{feed / 'misnamed.jsonl'}' (format parquet)")
    dbt_project.build(vars={"document_feed": f"{feed}/*"})

    assert live_documents(dbt_project) == ["ok/1"]
    assert rejected(dbt_project) == [
        ("feed", "export.csv", None, "unsupported_format"),
        ("feed", "export.parquet", None, "unsupported_format"),
        ("feed", "misnamed.jsonl", None, "unsupported_format"),
    ]
    excerpt = dbt_project.query(
        "select raw_excerpt from documents_rejected where source_file like '%export.csv'"
    )
    assert "document_relation" in excerpt[0][0]


def test_every_file_of_the_directory_is_read_or_rejected(dbt_project):
    docs = dbt_project.root / "docs"
    (docs / "guides" / ".drafts").mkdir(parents=True)
    (docs / "a.md").write_text("# Alpha\n\n" + long_body(1), encoding="utf-8")
    (docs / "guides" / "B.MD").write_text("# Bravo\n\n" + long_body(1), encoding="utf-8")
    (docs / "guides" / "notes.TXT").write_text(long_body(1), encoding="utf-8")
    (docs / "guides" / "manual.pdf").write_bytes(b"%PDF-1.7\n")
    (docs / "guides" / "page.html").write_text("<h1>Gamma</h1><p>Text.</p>", encoding="utf-8")
    (docs / "guides" / "clip.MP4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    (docs / "latin1.md").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (docs / ".DS_Store").write_bytes(b"\x00\x01")
    (docs / "guides" / ".drafts" / "wip.md").write_text("# draft", encoding="utf-8")
    dbt_project.vars = {
        **HASH_EMBEDDER,
        "golden_min_recall": 0,
        "document_feed": "",
        "document_dir": str(docs),
    }
    dbt_project.build()

    assert live_documents(dbt_project) == [
        "a.md",
        "guides/B.MD",
        "guides/notes.TXT",
        "guides/page.html",
    ]
    assert rejected(dbt_project) == [
        ("directory", "clip.MP4", None, "unsupported_format"),
        ("directory", "latin1.md", None, "invalid_utf8"),
        ("directory", "manual.pdf", None, "corrupt_file"),
    ]

    # A file that can no longer be read stays live in its last good version, and is
    # rejected on every build until it is fixed (the rejected_rows alert says so).
    (docs / "a.md").write_bytes(b"# Alpha\n\n\xff\xfe")
    dbt_project.build()
    assert "a.md" in live_documents(dbt_project)
    assert ("directory", "a.md", None, "invalid_utf8") in rejected(dbt_project)


def test_a_source_that_matches_nothing_fails_naming_its_var(dbt_project):
    dbt_project.vars = {**HASH_EMBEDDER, "golden_min_recall": 0}
    failed = dbt_project.build(check=False)
    assert failed.returncode != 0
    assert "var document_feed" in failed.output
    assert "allow_empty_sources" in failed.output

    dbt_project.build(vars={"allow_empty_sources": True})
    assert live_documents(dbt_project) == []


def test_the_delete_guard_is_judged_per_source(dbt_project):
    """A directory that loses 3 of its 5 files is refused even though the feed's 20 live
    documents would make it 3 of 25 overall, under the 20% threshold."""
    docs = dbt_project.root / "docs"
    docs.mkdir()
    for n in range(5):
        (docs / f"page{n}.md").write_text(f"# Page {n}\n\n" + long_body(1), encoding="utf-8")
    write_feed(dbt_project, "feed.jsonl", [document(f"feed/{n}", long_body(1)) for n in range(20)])
    dbt_project.vars = {**HASH_EMBEDDER, "golden_min_recall": 0, "document_dir": str(docs)}
    dbt_project.build()
    for n in range(3):
        (docs / f"page{n}.md").unlink()

    blocked = dbt_project.build(check=False)
    assert blocked.returncode != 0
    assert "would delete 3 of 5 live documents of document_dir" in blocked.output
    assert len(live_documents(dbt_project)) == 25
    dbt_project.build(vars={"max_delete_fraction": 1})
    assert len(live_documents(dbt_project)) == 22


# ------------------------------------------------------------------ a relation as the source


def write_parquet(path, rows: list[dict]) -> None:
    with duckdb.connect() as conn:
        conn.execute(
            "create table pages (page_id varchar, heading varchar, content varchar, "
            "changed timestamp, gone boolean)"
        )
        conn.executemany(
            "insert into pages values (?, ?, ?, ?, ?)",
            [(r["id"], r["title"], r["body"], r["changed"], r.get("gone", False)) for r in rows],
        )
        conn.execute(f"copy pages to '{path}' (format parquet)")


def relation_vars(path, deletes: str = "snapshot") -> dict:
    columns = {"doc_id": "page_id", "title": "heading", "body": "content", "updated_at": "changed"}
    if deletes == "tombstone":
        columns["is_deleted"] = "gone"
    return {
        **HASH_EMBEDDER,
        "golden_min_recall": 0,
        "document_feed": "",
        "document_relation": {"table": f"read_parquet('{path}')"},
        "document_relation_columns": columns,
        "document_relation_deletes": deletes,
    }


def page(n: int, marker: str = "", **extra) -> dict:
    return {
        "id": f"page-{n}",
        "title": f"Page {n}",
        "body": long_body(3, marker=marker),
        "changed": "2026-06-01 10:00:00",
        **extra,
    }


def test_a_parquet_relation_with_snapshot_deletes(dbt_project):
    export = dbt_project.root / "pages.parquet"
    write_parquet(export, [page(n) for n in range(5)])
    dbt_project.vars = relation_vars(export)
    first = dbt_project.build()
    assert first.embedded == 15
    assert live_documents(dbt_project) == [f"page-{n}" for n in range(5)]
    assert dbt_project.query("select min(doc_updated_at)::varchar from retrieval_store") == [
        ("2026-06-01 10:00:00",)
    ]

    assert dbt_project.build().embedded == 0
    rows = [page(n) for n in range(5) if n != 3]
    rows[0] = page(0, marker="ocelot", changed="2026-06-02 10:00:00")
    write_parquet(export, rows)
    edited = dbt_project.build()
    assert edited.embedded == 1, "only the edited section is re-embedded"
    assert live_documents(dbt_project) == ["page-0", "page-1", "page-2", "page-4"]

    # A row with a bad value is rejected with the relation's name; the others stay.
    write_parquet(export, [*rows, {**page(9), "id": None}])
    dbt_project.build()
    assert rejected(dbt_project) == [("relation", "pages.parquet')", 5, "missing_doc_id")]
    assert len(live_documents(dbt_project)) == 4


def test_a_relation_with_tombstones_and_a_missing_column(dbt_project):
    export = dbt_project.root / "pages.parquet"
    write_parquet(export, [page(n) for n in range(4)])
    dbt_project.vars = relation_vars(export, deletes="tombstone")
    dbt_project.build()
    # Under tombstone deletes a row that disappears does not delete its document...
    write_parquet(export, [page(n) for n in range(3)] + [page(1, gone=True, changed="2026-06-03")])
    dbt_project.build()
    assert live_documents(dbt_project) == ["page-0", "page-2", "page-3"]

    bad = {**dbt_project.vars["document_relation_columns"], "body": "text"}
    failed = dbt_project.build(vars={"document_relation_columns": bad}, check=False)
    assert failed.returncode != 0
    assert "maps body to column text" in failed.output
    assert "page_id, heading, content, changed, gone" in failed.output


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """A real Postgres server (the pgserver package's binaries), stopped after the module."""
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    yield server
    server.cleanup()


def test_a_postgres_table_is_followed_row_by_row(dbt_project, postgres):
    def sql(statement: str) -> None:
        postgres.psql(statement)

    sql(
        "drop table if exists articles; create table articles (id integer primary key, "
        "title text, body text, updated timestamptz, url text)"
    )
    for n in range(6):
        body = long_body(3, marker="").replace("'", "''")
        sql(
            f"insert into articles values ({n}, 'Article {n}', '{body}', "
            f"'2026-07-01 09:00:00+02', 'https://crm.example/{n}')"
        )
    dbt_project.vars = {
        **HASH_EMBEDDER,
        "golden_min_recall": 0,
        "document_feed": "",
        "document_attach": [{"alias": "crm", "type": "postgres", "path": postgres.get_uri()}],
        "document_relation": {"table": "crm.public.articles"},
        "document_relation_columns": {"doc_id": "id", "updated_at": "updated", "source_uri": "url"},
    }
    assert dbt_project.build().embedded == 18
    assert dbt_project.query(
        "select min(doc_updated_at)::varchar, min(source_uri) from retrieval_store"
    ) == [("2026-07-01 07:00:00", "https://crm.example/0")]
    assert dbt_project.build().embedded == 0, "a no-op build embeds nothing"

    edited = long_body(3, marker="pangolin").replace("'", "''")
    sql(f"update articles set body = '{edited}', updated = now() where id = 2")
    sql("insert into articles values (7, 'Article 7', 'A short new article.', now(), null)")
    assert dbt_project.build().embedded == 2, "the edited section and the new article"
    sql("delete from articles where id = 4")
    dbt_project.build()
    assert live_documents(dbt_project) == ["0", "1", "2", "3", "5", "7"]
    assert dbt_project.query("select count(*) from int_document_chunks where doc_id = '4'") == [
        (0,)
    ]

    sql("delete from articles where id in (0, 1, 3)")
    blocked = dbt_project.build(check=False)
    assert blocked.returncode != 0
    assert "would delete 3 of 6 live documents of document_relation" in blocked.output
    assert len(live_documents(dbt_project)) == 6
    dbt_project.build(vars={"max_delete_fraction": 1})
    assert live_documents(dbt_project) == ["2", "5", "7"]


# ------------------------------------------------------------------ rag-store as a package


def test_a_host_project_uses_rag_store_as_a_package(tmp_path):
    host = tmp_path / "host"
    shutil.copytree(FIXTURES / "host_project", host)
    (host / "packages.yml").write_text(f"packages:\n  - local: {REPO}\n", encoding="utf-8")
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "ACME_DB": str(tmp_path / "acme.duckdb"),
        "DBT_PROFILES_DIR": str(host),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }

    def dbt(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        completed = subprocess.run(
            [str(BIN / "dbt"), *args], cwd=host, env=env, capture_output=True, text=True
        )
        if check:
            assert completed.returncode == 0, completed.stdout[-6000:] + completed.stderr
        return completed

    dbt("deps")
    dbt("build")
    with duckdb.connect(env["ACME_DB"], read_only=True) as conn:
        answers = conn.execute("select doc_id, title from travel_answers").fetchall()
        live = conn.execute("select count(distinct doc_id) from retrieval_store").fetchall()
    assert answers[0] == ("travel", "Travel policy")
    assert live == [(3,)]
    assert (tmp_path / "acme_snapshot.duckdb").exists()

    # A page deleted from the host's model leaves the store in the same build.
    seed = host / "seeds" / "handbook_pages_raw.csv"
    text = seed.read_text(encoding="utf-8")
    seed.write_text(text[: text.index("security,")], encoding="utf-8")
    dbt("build")
    with duckdb.connect(env["ACME_DB"], read_only=True) as conn:
        docs = conn.execute("select distinct doc_id from retrieval_store order by 1").fetchall()
    assert docs == [("onboarding",), ("travel",)]
