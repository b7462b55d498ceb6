"""The published snapshot: searchable while dbt writes the main file, swapped atomically,
kept when a build fails; search modes from the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import time

import duckdb
import pytest
from conftest import BIN, FIXTURES, HASH_EMBEDDER, DbtProject, document, write_feed
from test_e2e_pipeline import search_cli

from rag_store.duckdb_ext import load_extension
from rag_store.embedding import HASH_FAILURE_MARKER
from rag_store.snapshot import default_snapshot_path, snapshot_paths

pytestmark = pytest.mark.e2e


def snapshot_of(project: DbtProject):
    return default_snapshot_path(project.db)


def test_snapshot_is_searchable_while_a_build_writes_the_main_file(dbt_project):
    dbt_project.deliver(FIXTURES / "small_feed" / "batch_1.jsonl")
    dbt_project.build()
    write_feed(dbt_project, "2.jsonl", [document("new/doc", "Whales sing in cold oceans.")])

    build = dbt_project.start_dbt("build")
    for line in build.stdout:
        if "START python incremental model main.chunk_embeddings" in line:
            break
    # The build holds the main file: even a read-only client is turned away...
    with pytest.raises(duckdb.IOException, match="lock"):
        duckdb.connect(str(dbt_project.db), read_only=True)
    # ...while the snapshot answers, from a separate connection.
    with duckdb.connect(str(snapshot_of(dbt_project)), read_only=True) as reader:
        load_extension(reader, "fts")
        hits = reader.execute("select doc_id from search_keyword('sourdough starter', k := 1)")
        assert hits.fetchall() == [("kitchen/sourdough",)]
    build.stdout.read()
    assert build.wait() == 0

    with duckdb.connect(str(snapshot_of(dbt_project)), read_only=True) as reader:
        docs = reader.execute("select count(*) from documents").fetchone()
        assert docs == (6,)


@pytest.mark.parametrize(
    ("mode", "question", "expected"),
    [
        ("vector", "how often should I oil my bicycle chain", "bikes/chain-care"),
        ("keyword", "smoke alarm battery", "home/smoke-alarms"),
        ("hybrid", "berth on a sleeper train", "travel/night-trains"),
    ],
)
def test_cli_search_modes_on_the_snapshot(tmp_path_factory, mode, question, expected):
    project = _shared_store(tmp_path_factory)
    result = search_cli(project, "search", question, "--mode", mode, "--json", "--k", "3")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)["hits"]
    assert hits[0]["doc_id"] == expected
    assert hits == sorted(hits, key=lambda h: (-h["score"], h["chunk_id"]))


_STORES: dict[str, DbtProject] = {}


def _shared_store(tmp_path_factory) -> DbtProject:
    if "small" not in _STORES:
        project = DbtProject(tmp_path_factory.mktemp("snapshot-store"))
        project.deliver(FIXTURES / "small_feed" / "batch_1.jsonl")
        project.build()
        _STORES["small"] = project
    return _STORES["small"]


def published_once(project: DbtProject):
    """Build a one-document store with the hash embedder; its snapshot and snapshot bytes."""
    project.vars = dict(HASH_EMBEDDER)
    write_feed(project, "1.jsonl", [document("a", "Alpha.")])
    project.build()
    snapshot = snapshot_of(project)
    return snapshot, snapshot.read_bytes()


def test_a_failed_build_keeps_the_previous_snapshot(dbt_project):
    snapshot, before = published_once(dbt_project)
    write_feed(dbt_project, "2.jsonl", [document("b", f"Poison {HASH_FAILURE_MARKER}.")])
    failed = dbt_project.build(check=False)
    assert failed.returncode != 0
    assert "snapshot not published" in failed.output
    assert snapshot.read_bytes() == before


def test_a_publish_that_cannot_write_fails_in_one_line_and_keeps_the_snapshot(dbt_project):
    snapshot, before = published_once(dbt_project)
    # A snapshot_path below a regular file cannot be written (as a full or read-only disk).
    blocker = dbt_project.root / "not-a-directory"
    blocker.write_text("")
    write_feed(dbt_project, "2.jsonl", [document("b", "Beta.")])
    failed = dbt_project.build(
        vars={"snapshot_path": str(blocker / "snapshot.duckdb")}, check=False
    )
    assert failed.returncode != 0
    (line,) = [line for line in failed.output.splitlines() if "rag-store: preparing" in line]
    assert "Not a directory" in line and "the previous snapshot is unchanged" in line
    assert "Traceback" not in failed.output
    assert snapshot.read_bytes() == before


def test_snapshot_paths_derive_from_the_database_or_the_var():
    paths = snapshot_paths("warehouse/ci.duckdb")
    assert (str(paths.snapshot), str(paths.parquet)) == (
        "warehouse/ci_snapshot.duckdb",
        "warehouse/ci_snapshot_retrieval_store.parquet",
    )
    moved = snapshot_paths("warehouse/ci.duckdb", "/srv/share/store.duckdb")
    assert (str(moved.snapshot), str(moved.parquet)) == (
        "/srv/share/store.duckdb",
        "/srv/share/store_retrieval_store.parquet",
    )


@pytest.mark.parametrize(
    ("precision", "suffix", "min_cosine"),
    [("bf16", "/bf16", 0.999), ("int8", "/int8-dyn-v1", 0.97)],
)
def test_a_precision_is_a_model_switch_and_search_follows_the_snapshot(
    dbt_project, precision, suffix, min_cosine
):
    dbt_project.deliver(FIXTURES / "small_feed" / "batch_1.jsonl")
    dbt_project.vars = {"keep_previous_model_embeddings": True}
    first = dbt_project.build()
    switched = dbt_project.build(vars={"embedding_model": f"{precision}:all-MiniLM-L6-v2"})
    assert switched.embedded == first.embedded > 0  # every chunk, none reused across models
    (model_id,) = dbt_project.query("select distinct model_id from retrieval_store")[0]
    assert model_id.endswith(suffix)
    # The same chunks under both precisions: the vectors point (nearly) the same way.
    (worst,) = dbt_project.query(
        "select min(array_inner_product(a.embedding, b.embedding)) "
        "from chunk_embeddings a join chunk_embeddings b using (chunk_hash) "
        "where a.model_id = $switched and b.model_id != $switched",
        {"switched": model_id},
    )[0]
    assert worst > min_cosine

    # The snapshot records its embedder, so search embeds the question the same way...
    result = search_cli(dbt_project, "search", "oil my bicycle chain", "--json", "--k", "1")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["hits"][0]["doc_id"] == "bikes/chain-care"
    # ...and refuses an explicitly different one rather than mixing vector spaces.
    mismatch = search_cli(
        dbt_project, "search", "oil my bicycle chain", "--model", "all-MiniLM-L6-v2"
    )
    assert mismatch.returncode == 2
    assert suffix in mismatch.stderr


def published_rows(snapshot) -> list[tuple]:
    """The snapshot's retrieval_store in chunk order: an ordered checksum's input."""
    with duckdb.connect(str(snapshot), read_only=True) as reader:
        return reader.execute("select * from retrieval_store order by chunk_id").fetchall()


def keyword_hits(snapshot, question: str) -> list[str]:
    with duckdb.connect(str(snapshot), read_only=True) as reader:
        load_extension(reader, "fts")
        rows = reader.execute("select doc_id from search_keyword($q)", {"q": question})
        return [doc_id for (doc_id,) in rows.fetchall()]


def test_a_publish_patches_the_changed_documents_and_rollback_restores_the_last_one(dbt_project):
    dbt_project.vars = dict(HASH_EMBEDDER)
    snapshot = snapshot_of(dbt_project)
    write_feed(dbt_project, "1.jsonl", [document("a", "Whales sing."), document("b", "Owls hoot.")])
    assert "built whole" in dbt_project.build().output
    assert "(0 document(s) changed" in dbt_project.build().output
    first = published_rows(snapshot)
    assert first == dbt_project.query("select * from retrieval_store order by chunk_id")

    # A reader holding the published store keeps answering from it during the next publish,
    # which patches the snapshot the last publish replaced (nobody holds that one) in place.
    # (Attached to a connection of its own: connect() would hand published_rows() the same
    # open database, as DuckDB caches one instance per path within a process.)
    reader = duckdb.connect()
    load_extension(reader, "fts")
    reader.execute(f"attach '{snapshot}' as held (read_only)")
    reader.execute("use held")
    later = "2026-06-01T00:00:00Z"
    write_feed(dbt_project, "2.jsonl", [document("b", "Herons wade.", updated_at=later)])
    changed = dbt_project.build().output
    assert "(1 document(s) changed" in changed and "by patching the snapshot it replaced" in changed
    held = reader.execute("select doc_id from search_keyword('owls')").fetchall()
    assert held == [("b",)]
    second = published_rows(snapshot)
    assert second == dbt_project.query("select * from retrieval_store order by chunk_id")
    assert second != first
    assert keyword_hits(snapshot, "herons") == ["b"] and keyword_hits(snapshot, "owls") == []
    # The store that reader holds is now the replaced one: the next publish leaves it alone
    # (copies the current snapshot instead), and the reader's answers stay the same.
    # Parquet copy follows the store; removing it is repaired even when nothing changed.
    parquet = dbt_project.root / "store_snapshot_retrieval_store.parquet"
    parquet.unlink()
    unchanged = dbt_project.build().output
    assert "(0 document(s) changed" in unchanged and "by patching" not in unchanged
    assert reader.execute("select doc_id from search_keyword('owls')").fetchall() == held
    reader.close()
    assert duckdb.sql(f"select count(*) from '{parquet}'").fetchone() == (2,)

    # One command brings the published store back to the build before, exactly...
    third = published_rows(snapshot)
    rolled = dbt_project.rag_store("rollback", db=snapshot)
    assert rolled.returncode == 0, rolled.stderr
    assert published_rows(snapshot) == second  # the no-op build's store equals the change's
    rolled = dbt_project.rag_store("rollback", db=snapshot)  # ...and a second one undoes it
    assert rolled.returncode == 0, rolled.stderr
    assert published_rows(snapshot) == third

    # A publish that patches the replaced snapshot (two builds behind) brings it to the store
    # exactly, and a rollback after it restores the one it replaced exactly.
    write_feed(dbt_project, "3.jsonl", [document("c", "Moles dig.", updated_at=later)])
    patched = dbt_project.build().output
    assert "(1 document(s) changed" in patched and "by patching" in patched
    assert published_rows(snapshot) == dbt_project.query(
        "select * from retrieval_store order by chunk_id"
    )
    assert keyword_hits(snapshot, "moles") == ["c"] and keyword_hits(snapshot, "herons") == ["b"]
    assert dbt_project.rag_store("rollback", db=snapshot).returncode == 0
    assert published_rows(snapshot) == third


def test_rollback_of_a_bad_build_restores_the_store_before_it(dbt_project):
    dbt_project.vars = dict(HASH_EMBEDDER)
    snapshot = snapshot_of(dbt_project)
    missing = dbt_project.rag_store("rollback", db=snapshot)
    assert missing.returncode == 2 and "no previous snapshot" in missing.stderr
    assert "Traceback" not in missing.stderr
    write_feed(dbt_project, "1.jsonl", [document("a", "Whales sing."), document("b", "Owls hoot.")])
    dbt_project.build()
    good = published_rows(snapshot)
    parquet = snapshot_paths("", str(snapshot)).parquet
    assert duckdb.sql(f"select count(*) from read_parquet('{parquet}')").fetchall() == [(2,)]
    # A bad delivery that passes every test: a document's text replaced by junk. This
    # build publishes no Parquet copy (var snapshot_parquet), so the stale one goes.
    later = "2026-06-01T00:00:00Z"
    write_feed(dbt_project, "2.jsonl", [document("a", "lorem ipsum", updated_at=later)])
    dbt_project.build(vars={"snapshot_parquet": False})
    assert not parquet.exists()
    assert keyword_hits(snapshot, "whales") == []
    rolled = dbt_project.rag_store("rollback", db=snapshot)
    assert rolled.returncode == 0, rolled.stderr
    assert "rolled back" in rolled.stdout
    assert published_rows(snapshot) == good
    assert not parquet.exists()  # a rollback writes no Parquet copy where none is kept
    assert keyword_hits(snapshot, "whales") == ["a"]
    search = search_cli(dbt_project, "search", "whales", "--mode", "keyword", "--json")
    assert json.loads(search.stdout)["hits"][0]["doc_id"] == "a"


def test_the_replaced_snapshot_is_kept_where_hard_links_are_refused(tmp_path, monkeypatch):
    import errno
    import os

    from rag_store import snapshot as publishing

    current = tmp_path / "store_snapshot.duckdb"
    current.write_bytes(b"published store")

    def refuse(*_args):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse)
    kept = publishing.previous_path(current)
    publishing._keep(current, kept)
    assert kept.read_bytes() == b"published store"


def test_a_store_published_to_a_shared_directory_is_read_as_another_host_would(
    dbt_project, tmp_path
):
    """snapshot_path on a shared directory: a host that mounts it elsewhere, with no project,
    no main database and an environment of its own, searches it with rag-store, reads it
    with the DuckDB shell and serves it, and sees the next publish (the server without a
    restart)."""
    from server_helpers import ServerProcess

    share = tmp_path / "share"
    dbt_project.vars = {**HASH_EMBEDDER, "snapshot_path": str(share / "store.duckdb")}
    dbt_project.deliver(FIXTURES / "small_feed" / "batch_1.jsonl")
    dbt_project.build()

    host = tmp_path / "other-host"
    host.mkdir()
    (host / "mnt").symlink_to(share, target_is_directory=True)
    store = host / "mnt" / "store.duckdb"
    env = {"PATH": os.environ["PATH"], "HOME": str(host), "HF_HUB_OFFLINE": "1"}

    def on_host(*command: str) -> str:
        """`command` run as the other host would: its directory and environment only."""
        done = subprocess.run(
            command, cwd=host, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def search(question: str, mode: str) -> list[str]:
        found = on_host(
            *(str(BIN / "rag-store"), "search", question, "--mode", mode, "--json"),
            *("--k", "3", "--db", str(store)),
        )
        return [hit["doc_id"] for hit in json.loads(found)["hits"]]

    def shell(sql: str) -> str:
        return on_host(
            str(BIN / "duckdb"), "-readonly", "-noheader", "-list", str(store), "-c", sql
        ).strip()

    live = "select count(*) from int_documents__latest where not is_deleted"
    (documents,) = dbt_project.query(live)[0]
    # The main database is out of reach of the other host.
    away = dbt_project.db.rename(dbt_project.db.with_name("elsewhere.duckdb"))
    assert search("smoke alarm battery", "keyword")[0] == "home/smoke-alarms"
    assert len(search("how often should I oil my bicycle chain", "vector")) == 3
    assert shell("select count(*) from documents") == str(documents)
    unset = {"RAG_STORE_DB": None, "DBT_PROFILES_DIR": None, "HOME": str(host)}
    server = ServerProcess(dbt_project, "--db", str(store), env=unset)
    try:
        question = "/search?q=narwhals&mode=keyword&k=1"
        assert server.get(question).json()["results"] == []

        away.rename(dbt_project.db)
        whales = document("sea/whales", "Narwhals sing beneath the pack ice.")
        write_feed(dbt_project, "2.jsonl", [whales])
        dbt_project.build()
        assert search("narwhals", "keyword")[0] == "sea/whales"
        assert shell("select count(*) from documents") == str(documents + 1)
        deadline = time.monotonic() + 60
        while not server.get(question).json()["results"]:
            assert time.monotonic() < deadline, f"publish not picked up:\n{server.stderr()}"
            time.sleep(0.2)
        assert server.get(question).json()["results"][0]["doc_id"] == "sea/whales"
    finally:
        server.stop()


def test_a_patch_names_the_changed_documents_as_literals_the_scans_can_use():
    from rag_store import snapshot

    statement = f"delete from main.retrieval_store where {snapshot.CHANGED_DOCUMENTS}"
    assert snapshot.expand_changed_documents(statement, ["a/1", "o'brien"]) == (
        "delete from main.retrieval_store where doc_id in ('a/1', 'o''brien')"
    )
    assert snapshot.expand_changed_documents(statement, []).endswith("where false")
    many = [f"doc-{i}" for i in range(snapshot.MAX_LITERAL_DOCUMENTS + 1)]
    assert snapshot.expand_changed_documents(statement, many).endswith(
        "where doc_id in (select doc_id from rag_publish_changes)"
    )
    plan = snapshot.publish_statements(
        {snapshot.STORE_TABLE: "select 1"}, ["doc_id"], 3, True, "/tmp/x.duckdb", "memory"
    )
    expanded = [entry["sql"] for entry in plan if entry["expand"]]
    assert len(expanded) == 2 and all(snapshot.CHANGED_DOCUMENTS in sql for sql in expanded)
    assert not any(snapshot.CHANGED_DOCUMENTS in e["sql"] for e in plan if not e["expand"])
