"""The read_document_feed table macro and staging rules, on plain DuckDB."""

from __future__ import annotations

import json

import duckdb
import pytest

from rag_store.dbt_plugin import create_sql_macros, register_udfs


@pytest.fixture
def conn():
    connection = duckdb.connect()
    register_udfs(connection)
    create_sql_macros(connection)
    yield connection
    connection.close()


def write_lines(path, lines):
    path.write_bytes(b"\n".join(lines) + b"\n")


def row(**fields):
    base = {
        "doc_id": "a",
        "title": "A",
        "body": "text",
        "source_uri": "https://x.example/a",
        "updated_at": "2026-01-01T00:00:00Z",
        "is_deleted": False,
        "_loaded_at": "2026-01-02T00:00:00Z",
    }
    base.update(fields)
    return json.dumps(base, ensure_ascii=False).encode("utf-8")


def test_every_line_comes_through_with_its_position(conn, tmp_path):
    write_lines(tmp_path / "a.jsonl", [row(), b"{not json", b"", b"[1, 2]", row(doc_id="b")])
    (tmp_path / "b.jsonl").write_bytes(row(doc_id="\xff".encode("latin-1").decode("latin-1")))
    # One line that is not UTF-8 is rejected alone; the file's other lines still parse.
    (tmp_path / "c.jsonl").write_bytes(b'{"doc_id": "\xff\xfe"}\n' + row(doc_id="c") + b"\n")
    rows = conn.execute(
        "select _source_file, _line_number, _parse_error, doc_id "
        f"from read_document_feed('{tmp_path}/*.jsonl') order by all"
    ).fetchall()
    by_error = {(r[0].split("/")[-1], r[1]): (r[2], r[3]) for r in rows}
    assert by_error[("a.jsonl", 1)] == (None, "a")
    assert by_error[("a.jsonl", 2)] == ("malformed_json", None)
    assert by_error[("a.jsonl", 4)] == ("not_a_json_object", None)
    assert by_error[("a.jsonl", 5)] == (None, "b")
    assert ("a.jsonl", 3) not in by_error  # blank lines are not rows
    assert by_error[("b.jsonl", 1)] == (None, "ÿ")
    assert by_error[("c.jsonl", 1)] == ("invalid_utf8", None)
    assert by_error[("c.jsonl", 2)] == (None, "c")


def test_crlf_lines_and_loaded_at_are_parsed(conn, tmp_path):
    (tmp_path / "a.jsonl").write_bytes(row() + b"\r\n" + row(doc_id="b") + b"\r\n")
    rows = conn.execute(
        f"select doc_id, _loaded_at::varchar from read_document_feed('{tmp_path}/*.jsonl')"
    ).fetchall()
    assert sorted(rows) == [("a", "2026-01-02 00:00:00"), ("b", "2026-01-02 00:00:00")]


def test_chunk_udf_refuses_a_budget_above_the_model_window(conn):
    with pytest.raises(duckdb.Error, match="exceeds the window"):
        conn.execute(
            "select rag_chunk('text', 'title', 'all-MiniLM-L6-v2', 300, 0, true)"
        ).fetchall()


def test_chunk_udf_returns_structured_chunks(conn):
    (chunks,) = conn.execute(
        "select rag_chunk('Intro.' || chr(10) || chr(10) || '## Part' || chr(10) || 'Body.', "
        "'Doc', 'all-MiniLM-L6-v2', 0, 0, true)"
    ).fetchone()
    assert [c["heading_path"] for c in chunks] == ["", "Part"]
    assert chunks[1]["chunk_text"] == "## Part\nBody."
    assert all(c["token_count"] <= 254 for c in chunks)
