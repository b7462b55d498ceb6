"""Metadata and access control end to end: from the feed, the document directory (front
matter, file properties) and a relation into retrieval_store, bad values rejected with a
reason, and enforced by the CLI and the dbt search macros; a revoked principal loses the
document on the next build without a re-embed; deny-by-default hides restricted documents
from a search without principals.

The hash embedder stands in for the model: these tests are about which rows a caller may
see, not about vector quality (every search here is a keyword search)."""

from __future__ import annotations

import json

import pytest
from conftest import HASH_EMBEDDER, document, write_feed

pytestmark = pytest.mark.e2e


def keyword_docs(project, question: str, *args: str, db=None) -> list[str]:
    """Doc ids of a keyword search through the CLI (of the main database by default)."""
    completed = project.rag_store(
        "search", question, "--mode", "keyword", "--k", "20", "--json", *args, db=db
    )
    assert completed.returncode == 0, completed.stderr
    return [hit["doc_id"] for hit in json.loads(completed.stdout)["hits"]]


def operation_output(project, args: dict) -> str:
    return project.dbt("run-operation", "search", "--args", json.dumps(args)).output


def write_docx_with_author(path) -> None:
    import docx

    word = docx.Document()
    word.core_properties.author = "Dana Finance"
    word.add_heading("Budget memo", level=1)
    word.add_paragraph("The okapi budget is frozen until spring.")
    word.save(str(path))


def test_metadata_and_principals_flow_from_every_source_and_are_enforced(dbt_project):
    project = dbt_project
    docs = project.root / "docs"
    docs.mkdir()
    (docs / "minutes.md").write_text(
        "---\ntitle: Board minutes\nauthor: CFO\nallowed_principals: [board, alice]\n"
        "confidential: true\n---\n# Minutes\n\nThe board approved the narwhal plan.\n",
        encoding="utf-8",
    )
    (docs / "handbook.md").write_text("# Handbook\n\nThe narwhal mascot is public.\n", "utf-8")
    (docs / "finance").mkdir()
    write_docx_with_author(docs / "finance" / "memo.docx")
    (project.root / "pages.csv").write_text(
        "id,heading,content,updated,team,owner,acl\n"
        "ops/runbook,Runbook,The axolotl runbook restarts the queue.,2026-05-01,ops,sam,ops|sre\n"
        "ops/faq,FAQ,Anyone may read the axolotl FAQ.,2026-05-01,ops,kim,\n",
        encoding="utf-8",
    )
    relation = (
        "(select *, case when acl is null then null else string_split(acl, '|') end as acl_list "
        f"from read_csv('{project.root / 'pages.csv'}', all_varchar = true))"
    )
    write_feed(
        project,
        "people.jsonl",
        [
            document(
                "hr/case-17",
                "# Case\n\nThe zebracorn case concerns a salary review.",
                metadata={"team": "hr", "tags": ["case", "pay"]},
                allowed_principals=["group:hr", " group:hr ", "carol"],
            ),
            document(
                "eng/oncall",
                "# On call\n\nPage the zebracorn pager.",
                allowed_principals="group:eng",
            ),
            document(
                "pub/leave",
                "# Leave\n\nThe zebracorn leave policy is public.",
                metadata={"team": "hr"},
            ),
            document("bad/acl", "# Bad\n\nText.", allowed_principals=[1, 2]),
            document("bad/blank", "# Bad\n\nText.", allowed_principals=["ok", "  "]),
            document("bad/meta", "# Bad\n\nText.", metadata=["not", "an", "object"]),
        ],
    )
    project.vars = {
        **HASH_EMBEDDER,
        "golden_min_recall": 0,
        "document_dir": str(docs),
        "document_dir_principals": [
            {"glob": "finance/*", "allowed_principals": ["group:finance"]},
            {"glob": "*", "allowed_principals": ["nobody-else"]},
        ],
        "document_relation": {"table": relation},
        "document_relation_columns": {
            "doc_id": "id",
            "title": "heading",
            "body": "content",
            "updated_at": "updated",
            "metadata": ["team", "owner"],
            "allowed_principals": "acl_list",
        },
    }
    project.build()

    stored = {
        doc_id: (json.loads(metadata), principals)
        for doc_id, metadata, principals in project.query(
            "select distinct doc_id, metadata::varchar, allowed_principals from retrieval_store"
        )
    }
    assert stored["hr/case-17"] == ({"team": "hr", "tags": ["case", "pay"]}, ["carol", "group:hr"])
    assert stored["eng/oncall"] == ({}, ["group:eng"])
    assert stored["pub/leave"] == ({"team": "hr"}, None)
    assert stored["minutes.md"][1] == ["alice", "board"]  # front matter over the rules
    assert stored["minutes.md"][0]["author"] == "CFO"
    assert "allowed_principals" not in stored["minutes.md"][0]
    assert stored["handbook.md"] == ({}, ["nobody-else"])  # the first matching rule
    assert stored["finance/memo.docx"] == (
        {**stored["finance/memo.docx"][0], "author": "Dana Finance"},
        ["group:finance"],
    )
    assert stored["ops/runbook"] == ({"team": "ops", "owner": "sam"}, ["ops", "sre"])
    assert stored["ops/faq"] == ({"team": "ops", "owner": "kim"}, None)
    (minutes_text,) = project.query(
        "select string_agg(chunk_text, ' ') from retrieval_store where doc_id = 'minutes.md'"
    )[0]
    assert "narwhal" in minutes_text and "confidential" not in minutes_text
    assert sorted(project.query("select doc_id, reject_reason from documents_rejected")) == [
        ("bad/acl", "invalid_allowed_principals"),
        ("bad/blank", "invalid_allowed_principals"),
        ("bad/meta", "invalid_metadata"),
    ]

    # The CLI: no principals is every document (the default), '' is public only.
    assert sorted(keyword_docs(project, "zebracorn")) == ["eng/oncall", "hr/case-17", "pub/leave"]
    assert keyword_docs(project, "zebracorn", "--principals", "") == ["pub/leave"]
    assert sorted(keyword_docs(project, "zebracorn", "--principals", "group:hr,bob")) == [
        "hr/case-17",
        "pub/leave",
    ]
    assert keyword_docs(project, "narwhal", "--principals", "bob") == []
    assert keyword_docs(project, "narwhal", "--principals", "alice") == ["minutes.md"]
    assert keyword_docs(project, "okapi", "--principals", "bob") == []
    assert keyword_docs(project, "okapi", "--principals", "group:finance") == ["finance/memo.docx"]
    assert sorted(keyword_docs(project, "axolotl", "--principals", "sre")) == [
        "ops/faq",
        "ops/runbook",
    ]
    assert keyword_docs(project, "axolotl", "--principals", "") == ["ops/faq"]
    assert keyword_docs(
        project, "zebracorn", "--principals", "carol", "--metadata", '{"tags": ["pay"]}'
    ) == ["hr/case-17"]

    # The dbt macros take the same principals.
    hidden = operation_output(
        project, {"query": "zebracorn", "mode": "keyword", "principals": ["bob"]}
    )
    assert "pub/leave" in hidden and "hr/case-17" not in hidden and "eng/oncall" not in hidden
    shown = operation_output(
        project,
        {
            "query": "zebracorn",
            "mode": "keyword",
            "principals": ["group:hr"],
            "filters": {"metadata_contains": {"tags": ["case"]}},
        },
    )
    assert "hr/case-17" in shown and "pub/leave" not in shown

    # Revoking a principal is a new version with the same text: no re-embed, and the
    # revoked group no longer sees the document.
    write_feed(
        project,
        "people-2.jsonl",
        [
            document(
                "hr/case-17",
                "# Case\n\nThe zebracorn case concerns a salary review.",
                metadata={"team": "hr", "tags": ["case", "pay"]},
                allowed_principals=["group:hr-leads"],
                updated_at="2026-05-02T09:00:00Z",
                _loaded_at="2026-05-03T06:00:00Z",
            )
        ],
    )
    assert project.build().embedded == 0
    assert keyword_docs(project, "zebracorn", "--principals", "group:hr") == ["pub/leave"]
    assert "hr/case-17" in keyword_docs(project, "zebracorn", "--principals", "group:hr-leads")

    # Deny by default: a search without principals sees the public documents only.
    project.vars["acl_deny_by_default"] = True
    project.build()
    assert keyword_docs(project, "zebracorn") == ["pub/leave"]
    snapshot = project.db.with_name("store_snapshot.duckdb")
    assert keyword_docs(project, "zebracorn", db=snapshot) == ["pub/leave"]
    assert sorted(keyword_docs(project, "zebracorn", "--principals", "group:eng", db=snapshot)) == [
        "eng/oncall",
        "pub/leave",
    ]
