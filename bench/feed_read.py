"""How long reading one JSON-lines feed file takes, by its number of lines.

Writes one feed file per size (the synthetic corpus of bench/corpus.py, short documents)
and times, on plain DuckDB:

  read_document_feed   the project's table macro (sql/read_document_feed.sql) that staging
                       reads feeds with: every line split, parsed leniently, counted
  split once           the file's lines as a list, materialized, then unnested (the form
                       the macro uses)
  split per unnest     unnest(string_split(file, newline)) directly, the form the macro
                       used before: it grows with the square of the lines, so it runs only
                       up to --direct-limit lines

    .venv/bin/python bench/feed_read.py                          # 10k, 100k, 1M lines
    .venv/bin/python bench/feed_read.py --sizes 10000,100000 --direct-limit 100000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import SHORT, make_corpus, write_feed

from rag_store.search_macros import template


def int_list(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def timed(conn, sql: str) -> tuple[float, tuple]:
    started = time.perf_counter()
    row = conn.execute(sql).fetchone()
    return time.perf_counter() - started, row


def measure(conn, feed: Path, lines: int, direct_limit: int) -> dict:
    path = str(feed).replace("'", "''")
    blob = f"(select try(decode(content)) as text from read_blob('{path}'))"
    row = {"lines": lines, "mb": feed.stat().st_size / 1e6}
    row["macro_s"], (count,) = timed(conn, f"select count(*) from read_document_feed('{path}')")
    if count != lines:
        raise RuntimeError(f"read_document_feed gave {count} rows for {lines} lines")
    row["split_once_s"], _ = timed(
        conn,
        f"with files as materialized (select string_split(text, chr(10)) as lines from {blob}) "
        "select count(*) from (select unnest(lines) from files)",
    )
    row["split_per_unnest_s"] = None
    if lines <= direct_limit:
        row["split_per_unnest_s"], _ = timed(
            conn,
            f"select count(*) from (select unnest(string_split(text, chr(10))) from {blob})",
        )
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int_list, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--direct-limit", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=20261208)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="rag-store-feed-read-") as scratch:
        conn = duckdb.connect()
        conn.execute(template("read_document_feed.sql"))
        for size in args.sizes:
            feed = Path(scratch) / f"feed-{size}.jsonl"
            print(f"[feed-read] writing {size:,} documents ...", file=sys.stderr, flush=True)
            write_feed(feed, make_corpus(size, args.seed, SHORT))
            rows.append(measure(conn, feed, size, args.direct_limit))
            print(f"[feed-read] {rows[-1]}", file=sys.stderr, flush=True)
            feed.unlink()
    print(f"\nduckdb {duckdb.__version__}, one file per size, times in seconds\n")
    print("| lines | MB | read_document_feed s | split once s | split per unnest s |")
    print("|---:|---:|---:|---:|---:|")
    for row in rows:
        direct = row["split_per_unnest_s"]
        print(
            f"| {row['lines']:,} | {row['mb']:.0f} | {row['macro_s']:.2f} | "
            f"{row['split_once_s']:.2f} | {'not run' if direct is None else f'{direct:.2f}'} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
