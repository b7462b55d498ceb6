"""`rag-store` command line: a thin shell over the library."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap

from rag_store.embedder_info import DEFAULT_MODEL


def _snippet(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return textwrap.shorten(flat, width=width, placeholder=" …")


def print_hits(question: str, hits, out=sys.stdout) -> None:
    print(f"Question: {question}", file=out)
    if not hits:
        print("  (no results)", file=out)
    for hit in hits:
        heading = hit.heading_path or "-"
        pages = f" {hit.pages}" if hit.pages else ""
        print(f"{hit.rank:>3}. {hit.score:.4f}  {hit.doc_id}{pages}  [{heading}]", file=out)
        print(f"      {hit.title}", file=out)
        print(f"      {_snippet(hit.chunk_text, 200)}", file=out)


def cmd_search(args: argparse.Namespace) -> int:
    from rag_store.embedder_info import ModelNotFoundError
    from rag_store.search import Filters, SearchError, default_search_path, search_text

    db = args.db or default_search_path()
    principals = None if args.principals is None else args.principals.split(",")
    try:
        filters = Filters(
            doc_id_like=args.doc_id or "%",
            title_like=args.title or "%",
            source_uri_like=args.source_uri or "%",
            updated_after=args.updated_after or "-infinity",
            updated_before=args.updated_before or "infinity",
            metadata_contains=args.metadata,
        )
        hits = search_text(
            db,
            args.question,
            k=args.k,
            model_ref=args.model,
            mode=args.mode,
            filters=filters,
            principals=principals,
        )
    except (SearchError, ModelNotFoundError) as exc:
        print(f"rag-store search: {exc}", file=sys.stderr)
        return 2
    if args.json:
        payload = {"question": args.question, "hits": [hit.as_dict() for hit in hits]}
        print(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        print_hits(args.question, hits)
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rag_store import alerts
    from rag_store.snapshot import default_database

    project_dir = Path(args.project_dir).resolve()
    db_path = Path(args.db or default_database())
    if not db_path.is_absolute():
        db_path = project_dir / db_path
    report = alerts.collect(project_dir, db_path, args.vars)
    webhook = os.environ.get("RAG_STORE_ALERT_WEBHOOK")
    if webhook:
        failure = alerts.post_webhook(webhook, report)
        report.notes.append(
            "webhook: delivered" if failure is None else f"webhook: NOT delivered ({failure})"
        )
    alerts.append_history(alerts.history_path(db_path, args.history), report)
    if args.format == "json":
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        for check in report.problems:
            print(alerts.describe(check))
        if not report.problems:
            print(f"OK     all {len(report.checks)} checks passed")
        for note in report.notes:
            print(note, file=sys.stderr)
    return alerts.EXIT_CODES[report.status]


def cmd_watch(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rag_store import watch
    from rag_store.snapshot import default_database

    project_dir = Path(args.project_dir).resolve()
    db_path = Path(args.db or default_database())
    if not db_path.is_absolute():
        db_path = project_dir / db_path
    options = watch.WatchOptions(
        project_dir=project_dir,
        database=db_path,
        cli_vars=args.vars,
        poll_seconds=args.poll_seconds,
        debounce_seconds=args.debounce_seconds,
        relation_interval_seconds=args.relation_interval_seconds,
        retry_seconds=args.retry_seconds,
        file_events=not args.no_file_events,
        once=args.once,
        verbose=args.verbose,
        subprocess=args.dbt_subprocess,
        target_path=Path(args.target_path).resolve() if args.target_path else None,
        log_path=Path(args.log_path).resolve() if args.log_path else None,
    )
    try:
        return watch.run(options)
    except watch.WatchError as exc:
        print(f"rag-store watch: {exc}", file=sys.stderr)
        return 2


def cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rag_store.evaluation import run
    from rag_store.watch import parse_cli_vars

    try:
        table = run(
            args.collection,
            Path(args.eval_dir).resolve(),
            Path(args.project_dir).resolve(),
            args.model,
            Path(args.keep).resolve() if args.keep else None,
            parse_cli_vars(args.vars),
        )
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"rag-store eval: {exc}", file=sys.stderr)
        return 2
    print(table)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from rag_store.snapshot import PublishError, default_database, default_snapshot_path, rollback

    snapshot = args.db or default_snapshot_path(default_database())
    try:
        print(rollback(snapshot))
    except PublishError as exc:
        print(f"rag-store rollback: {str(exc).removeprefix('rag-store: ')}", file=sys.stderr)
        return 2
    return 0


def cmd_extension(args: argparse.Namespace) -> int:
    from rag_store.snapshot import extension_path

    try:
        print(extension_path(args.name))
    except RuntimeError as exc:
        print(f"rag-store extension: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rag_store import server
    from rag_store.alerts import history_path
    from rag_store.embedder_info import ModelNotFoundError
    from rag_store.snapshot import default_database, default_snapshot_path

    # The published snapshot only: serving the main database would lock `dbt build` out.
    snapshot = Path(args.db) if args.db else default_snapshot_path(default_database())
    limits = server.Limits(
        max_k=args.max_k,
        max_question_chars=args.max_question_chars,
        max_body_bytes=args.max_body_bytes,
    )
    try:
        config = server.ServeConfig(
            snapshot=snapshot,
            model=args.model,
            api_key=os.environ.get(server.API_KEY_ENV) or None,
            limits=limits,
            poll_seconds=args.poll_seconds,
            search_threads=args.threads,
            duckdb_threads=args.duckdb_threads,
            embed_threads=args.embed_threads,
            alert_history=history_path(default_database(), args.alert_history),
            **({"index": args.index} if args.index else {}),
        )
        server.serve(config, args.host, args.port, access_log=args.access_log)
    except (server.ServeError, ModelNotFoundError) as exc:
        print(f"rag-store serve: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rag-store", description="Keep a RAG retrieval store in sync with your documents."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    search = commands.add_parser("search", help="print the top-k chunks for a question")
    search.add_argument("question", help="question text")
    search.add_argument("--k", type=int, default=5, help="number of hits (default 5)")
    search.add_argument("--mode", choices=["vector", "keyword", "hybrid"], default="vector")
    search.add_argument(
        "--db",
        help="store to search (default: the published snapshot beside $RAG_STORE_DB, "
        "else the database itself)",
    )
    search.add_argument(
        "--model",
        help="embedder for the question (default: the one the snapshot was built with, "
        f"else {DEFAULT_MODEL})",
    )
    search.add_argument("--doc-id", help="only doc_ids LIKE this pattern, e.g. 'api/%%'")
    search.add_argument("--title", help="only titles LIKE this pattern")
    search.add_argument("--source-uri", help="only source_uris LIKE this pattern")
    search.add_argument("--updated-after", help="only documents updated at/after (ISO time)")
    search.add_argument("--updated-before", help="only documents updated at/before (ISO time)")
    search.add_argument(
        "--metadata",
        help="""only documents whose metadata contains this JSON object, e.g. '{"team": "hr"}'""",
    )
    search.add_argument(
        "--principals",
        help="search as these users or groups (comma-separated): documents with "
        "allowed_principals are seen only when one matches; '' means public documents only",
    )
    search.add_argument("--json", action="store_true", help="print JSON instead of text")
    search.set_defaults(handler=cmd_search)

    alert = commands.add_parser(
        "alerts",
        help="run feed freshness and the alert tests; exit 0 ok, 1 warn, 2 error",
    )
    alert.add_argument("--format", choices=["text", "json"], default="text")
    alert.add_argument("--project-dir", default=".", help="the dbt project (default: .)")
    alert.add_argument("--db", help="DuckDB file (default $RAG_STORE_DB or warehouse/...)")
    alert.add_argument("--vars", help="dbt --vars for the checks, as for dbt build")
    alert.add_argument(
        "--history",
        help="JSON-lines file every run is appended to "
        "(default $RAG_STORE_ALERT_HISTORY or alert_history.jsonl beside the database)",
    )
    alert.set_defaults(handler=cmd_alerts)

    watcher = commands.add_parser(
        "watch",
        help="keep the store live: run the incremental build whenever a source changes",
    )
    watcher.add_argument("--project-dir", default=".", help="the dbt project (default: .)")
    watcher.add_argument("--db", help="DuckDB file (default $RAG_STORE_DB or warehouse/...)")
    watcher.add_argument("--vars", help="dbt --vars for every build, as for dbt build")
    watcher.add_argument(
        "--poll-seconds",
        type=float,
        default=5.0,
        help="stat the sources this often (default 5; file events, when available, wake it sooner)",
    )
    watcher.add_argument(
        "--debounce-seconds",
        type=float,
        default=2.0,
        help="build once the sources have been still this long (default 2)",
    )
    watcher.add_argument(
        "--relation-interval-seconds",
        type=float,
        default=300.0,
        help="build this often for a document_relation that cannot be stat-ed (a dbt ref or "
        "source, a database table; default 300)",
    )
    watcher.add_argument(
        "--retry-seconds",
        type=float,
        default=60.0,
        help="after a failed build, retry unchanged sources after this long, doubling up to "
        "30 minutes (default 60); any change retries at once",
    )
    watcher.add_argument(
        "--once", action="store_true", help="run one cycle if anything changed, then exit"
    )
    watcher.add_argument(
        "--no-file-events", action="store_true", help="stat polling only (no file events)"
    )
    watcher.add_argument(
        "--dbt-subprocess",
        action="store_true",
        help="run each build as a dbt subprocess instead of in this process",
    )
    watcher.add_argument("--target-path", help="dbt --target-path (default: target)")
    watcher.add_argument("--log-path", help="dbt --log-path (default: logs)")
    watcher.add_argument("--verbose", action="store_true", help="show dbt's output")
    watcher.set_defaults(handler=cmd_watch)

    evaluate = commands.add_parser(
        "eval", help="build a store from a labeled collection and report nDCG@10 / recall@10"
    )
    evaluate.add_argument("--collection", required=True, help="e.g. scifact or cranfield")
    evaluate.add_argument(
        "--eval-dir", default="../shared/eval", help="folder of collections (read only)"
    )
    evaluate.add_argument("--project-dir", default=".", help="the dbt project (default: .)")
    evaluate.add_argument("--model", default=DEFAULT_MODEL, help="embedder to evaluate")
    evaluate.add_argument("--keep", help="keep the evaluation store in this directory")
    evaluate.add_argument(
        "--vars", help="more dbt vars for the build, as for dbt build (YAML or JSON)"
    )
    evaluate.set_defaults(handler=cmd_eval)

    rollback = commands.add_parser(
        "rollback",
        help="make the snapshot the last publish replaced current again (run twice to undo)",
    )
    rollback.add_argument(
        "--db", help="the published snapshot (default: the one beside $RAG_STORE_DB)"
    )
    rollback.set_defaults(handler=cmd_rollback)

    extension = commands.add_parser(
        "extension", help="print the path of a pip-installed DuckDB extension, for LOAD"
    )
    extension.add_argument("name", choices=["fts", "vss"])
    extension.set_defaults(handler=cmd_extension)

    serve = commands.add_parser(
        "serve", help="answer searches over HTTP from the published snapshot (JSON API + page)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    serve.add_argument(
        "--db",
        help="snapshot to serve (default: the published snapshot beside $RAG_STORE_DB); "
        "new publishes to it are picked up without a restart",
    )
    serve.add_argument(
        "--model",
        help="embedder for questions (default: the one the snapshot was built with); "
        "refused if it is not the store's",
    )
    serve.add_argument("--max-k", type=int, default=100, help="largest k accepted (100)")
    serve.add_argument(
        "--max-question-chars", type=int, default=2000, help="longest question accepted (2000)"
    )
    serve.add_argument(
        "--max-body-bytes", type=int, default=16384, help="largest POST body accepted (16384)"
    )
    serve.add_argument(
        "--threads", type=int, default=2, help="searches at once, one DuckDB cursor each (2)"
    )
    serve.add_argument(
        "--duckdb-threads", type=int, default=1, help="DuckDB threads per search (1)"
    )
    serve.add_argument(
        "--embed-threads", type=int, default=None, help="torch threads for questions (1)"
    )
    serve.add_argument(
        "--index",
        choices=("auto", "memory", "sql"),
        help="vector search from an exact in-memory index, the SQL macros, or auto: memory "
        "while the vectors fit in 1 GiB (default $RAG_STORE_SERVE_INDEX, else auto)",
    )
    serve.add_argument(
        "--poll-seconds",
        type=float,
        default=0.5,
        help="how often to look for a new publish (0.5)",
    )
    serve.add_argument(
        "--alert-history",
        help="the `rag-store alerts` history whose latest verdict /health reports "
        "(default $RAG_STORE_ALERT_HISTORY or alert_history.jsonl beside the database)",
    )
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(handler=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
