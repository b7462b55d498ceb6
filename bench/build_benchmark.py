"""Wall time, throughput and memory of real `dbt build`s over a synthetic corpus.

For each corpus size (--docs) the script writes a deterministic markdown corpus as a
JSON-lines feed into a temporary directory and runs three builds of the real project, with
the real embedding model, into a temporary DuckDB file:

  full      the first build: everything is chunked and embedded
  change    --change-fraction of the documents (default 1%) get a sentence appended to one
            section, delivered as a second feed file with later updated_at and _loaded_at
  change again  as many documents again, drawn anew: the steady state of a live store (its
            publish patches the snapshot the previous publish replaced; the first change
            build's publish copies the snapshot the full build made)
  no-op     the same feed again: nothing to chunk or embed

It reports wall time, chunks and tokens, embedding throughput and model load time (parsed
from the chunk_embeddings log lines), per-model execution times from run_results.json, and
the peak RSS of the dbt process. No figure is checked against a threshold.

    .venv/bin/python bench/build_benchmark.py                    # 1000 documents
    .venv/bin/python bench/build_benchmark.py --docs 1000,5000   # 5000 only if 1000 was fast

Larger sizes in --docs run only while the previous size's full build stayed under
--max-full-build-seconds (default 240); otherwise the script prints a projected time.
`--model bf16:all-MiniLM-L6-v2` measures the bfloat16 embedder instead of the default.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import SHORT, Shape, edit_documents, make_corpus, write_feed

REPO = Path(__file__).resolve().parent.parent
TIME_BIN = Path("/usr/bin/time")

TO_EMBED = re.compile(r"chunk_embeddings: (\d+) chunk\(s\) to embed")
MODEL_LOADED = re.compile(r"chunk_embeddings: model loaded in ([\d.]+)s")
EMBEDDED = re.compile(
    r"chunk_embeddings: embedded (\d+) chunk\(s\) in ([\d.]+)s "
    r"\(([\d.]+) chunks/s, ([\d.]+) tokens/s\)"
)
MAX_RSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")
# /usr/bin/time -v: blocks of 512 bytes written by the build (the store, the snapshot, logs)
WRITTEN = re.compile(r"File system outputs: (\d+)")
DBT_SUMMARY = re.compile(r"Done\. PASS=(\d+) WARN=(\d+) ERROR=(\d+) SKIP=(\d+)")


@dataclass
class Build:
    label: str
    wall_s: float
    returncode: int
    chunks_to_embed: int | None = None
    model_load_s: float | None = None
    embedded: int | None = None
    embed_s: float | None = None
    chunks_per_s: float | None = None
    tokens_per_s: float | None = None
    model_loaded: bool = False
    peak_rss_mb: float | None = None
    written_mb: float | None = None
    rss_source: str = ""
    dbt_summary: str = ""
    node_seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class CorpusRun:
    docs: int
    words: int
    feed_mb: float
    edited_docs: int
    live_docs: int = 0
    chunks: int = 0
    tokens: int = 0
    avg_tokens_per_chunk: float = 0.0
    max_tokens_per_chunk: int = 0
    builds: list[Build] = field(default_factory=list)


# --------------------------------------------------------------------------- running dbt


def dbt_env(db_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DBT_PROFILES_DIR": str(REPO),
            "RAG_STORE_DB": str(db_path),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def run_dbt(label: str, args, workdir: Path, feed_glob: str, timeout: float) -> Build:
    """One `dbt build`, timed from outside; logs go to workdir/<label>.log."""
    db_path = workdir / "store.duckdb"
    target = workdir / "target"
    dbt = Path(sys.executable).with_name("dbt")
    command = [
        str(dbt),
        "build",
        "--vars",
        json.dumps(
            {
                "document_feed": feed_glob,
                **({"embedding_model": args.model} if args.model else {}),
                **json.loads(args.extra_vars),
            }
        ),
        "--target-path",
        str(target),
        "--log-path",
        str(workdir / "dbt-logs"),
    ]
    use_time = TIME_BIN.exists() and not args.no_time_binary
    if use_time:
        command = [str(TIME_BIN), "-v", *command]
    log_file = workdir / f"{label}.log"
    started = time.perf_counter()
    before = resource_children_maxrss()
    with log_file.open("w") as handle:
        process = subprocess.run(
            command,
            cwd=REPO,
            env=dbt_env(db_path),
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    wall = time.perf_counter() - started
    text = log_file.read_text(errors="replace")
    build = Build(label=label, wall_s=wall, returncode=process.returncode)
    parse_log(build, text)
    if use_time and (match := MAX_RSS.search(text)):
        build.peak_rss_mb = int(match.group(1)) / 1024
        build.rss_source = "/usr/bin/time -v"
        if match := WRITTEN.search(text):
            build.written_mb = int(match.group(1)) * 512 / 1e6
    else:
        after = resource_children_maxrss()
        if after > before:
            build.peak_rss_mb = after / 1024
            build.rss_source = "getrusage(RUSAGE_CHILDREN)"
    build.node_seconds = node_timings(target / "run_results.json")
    if process.returncode != 0:
        tail = "\n".join(text.splitlines()[-40:])
        raise SystemExit(
            f"dbt build '{label}' failed ({process.returncode}); see {log_file}\n{tail}"
        )
    return build


def resource_children_maxrss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def parse_log(build: Build, text: str) -> None:
    if match := TO_EMBED.search(text):
        build.chunks_to_embed = int(match.group(1))
    if match := MODEL_LOADED.search(text):
        build.model_loaded = True
        build.model_load_s = float(match.group(1))
    if match := EMBEDDED.search(text):
        build.embedded = int(match.group(1))
        build.embed_s = float(match.group(2))
        build.chunks_per_s = float(match.group(3))
        build.tokens_per_s = float(match.group(4))
    if match := DBT_SUMMARY.search(text):
        build.dbt_summary = "PASS={} WARN={} ERROR={} SKIP={}".format(*match.groups())


def node_timings(run_results: Path) -> dict[str, float]:
    """Seconds per model/seed, plus all tests summed, from dbt's run_results.json."""
    if not run_results.exists():
        return {}
    data = json.loads(run_results.read_text())
    timings: dict[str, float] = {}
    tests = 0.0
    for result in data.get("results", []):
        unique_id = result.get("unique_id", "")
        seconds = float(result.get("execution_time") or 0.0)
        if unique_id.startswith("test."):
            tests += seconds
        else:
            timings[unique_id.split(".")[-1]] = seconds
    timings["(all tests)"] = tests
    return timings


# --------------------------------------------------------------------------- one corpus


def store_figures(run: CorpusRun, db_path: Path) -> None:
    with duckdb.connect(str(db_path), read_only=True) as conn:
        chunks, tokens, average, largest = conn.execute(
            "select count(*), sum(token_count), avg(token_count), max(token_count) "
            "from int_document_chunks"
        ).fetchone()
        run.live_docs = conn.execute(
            "select count(distinct doc_id) from retrieval_store"
        ).fetchone()[0]
    run.chunks, run.tokens = int(chunks), int(tokens)
    run.avg_tokens_per_chunk, run.max_tokens_per_chunk = float(average), int(largest)


def run_corpus(args, docs: int, workdir: Path) -> CorpusRun:
    feed_dir = workdir / "feed"
    corpus = make_corpus(docs, args.seed, SHORT if args.short_documents else Shape())
    write_feed(feed_dir / "0001_initial.jsonl", corpus)
    edited = edit_documents(corpus, args.change_fraction, args.seed)
    run = CorpusRun(
        docs=docs,
        words=sum(doc.word_count() for doc in corpus),
        feed_mb=(feed_dir / "0001_initial.jsonl").stat().st_size / 1e6,
        edited_docs=len(edited),
    )
    feed_glob = str(feed_dir / "*.jsonl")
    log(f"{docs} docs: full build ...")
    run.builds.append(run_dbt("full", args, workdir, feed_glob, args.timeout))
    store_figures(run, workdir / "store.duckdb")
    log(f"{docs} docs: full build {run.builds[-1].wall_s:.1f}s, {run.chunks} chunks")

    write_feed(feed_dir / "0002_changes.jsonl", edited)
    log(f"{docs} docs: build after editing {len(edited)} document(s) ...")
    run.builds.append(run_dbt("change", args, workdir, feed_glob, args.timeout))
    log(f"{docs} docs: change build {run.builds[-1].wall_s:.1f}s")

    # The same number of documents again (drawn anew; one edited twice gets a later
    # version): the steady state of a live store, whose publish patches the snapshot that
    # the previous publish replaced instead of copying the current one.
    by_id = {doc.doc_id: doc for doc in edited}
    current = [by_id.get(doc.doc_id, doc) for doc in corpus]
    write_feed(
        feed_dir / "0003_changes.jsonl",
        edit_documents(current, args.change_fraction, args.seed + 1),
    )
    log(f"{docs} docs: build after editing {len(edited)} document(s) again ...")
    run.builds.append(run_dbt("change again", args, workdir, feed_glob, args.timeout))
    log(f"{docs} docs: second change build {run.builds[-1].wall_s:.1f}s")

    log(f"{docs} docs: no-op build ...")
    run.builds.append(run_dbt("no-op", args, workdir, feed_glob, args.timeout))
    log(f"{docs} docs: no-op build {run.builds[-1].wall_s:.1f}s")
    return run


# --------------------------------------------------------------------------- output


def fmt(value, pattern: str = "{:.1f}", missing: str = "—") -> str:
    return missing if value is None else pattern.format(value)


def print_markdown(runs: list[CorpusRun], skipped: list[str], settings: dict) -> None:
    print()
    print(
        f"dbt threads {settings['dbt_threads']}, torch threads {settings['torch_threads']}, "
        f"max_chunk_tokens {settings['max_chunk_tokens']}, overlap {settings['overlap']}, "
        f"batch size {settings['batch_size']}, seed {settings['seed']}"
    )
    for run in runs:
        full, change, _, noop = run.builds
        print(f"\n### {run.docs} documents\n")
        print(
            f"{run.docs} docs, {run.words} words, feed {run.feed_mb:.1f} MB → "
            f"{run.chunks} chunks, {run.tokens} tokens "
            f"(avg {run.avg_tokens_per_chunk:.0f}, max {run.max_tokens_per_chunk} per chunk), "
            f"{run.live_docs} live docs in retrieval_store\n"
        )
        print(
            "| build | wall s | chunks to embed | model load s | embed s | chunks/s | "
            "tokens/s | ≈256-token chunks/s | torch loaded | peak RSS MB | written MB | dbt |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|")
        for build in run.builds:
            equivalent = None if build.tokens_per_s is None else build.tokens_per_s / 256
            print(
                f"| {build.label} | {build.wall_s:.1f} | {fmt(build.chunks_to_embed, '{}')} | "
                f"{fmt(build.model_load_s)} | {fmt(build.embed_s)} | "
                f"{fmt(build.chunks_per_s)} | {fmt(build.tokens_per_s, '{:.0f}')} | "
                f"{fmt(equivalent)} | {'yes' if build.model_loaded else 'no'} | "
                f"{fmt(build.peak_rss_mb, '{:.0f}')} | {fmt(build.written_mb, '{:.0f}')} | "
                f"{build.dbt_summary} |"
            )
        print()
        print(
            f"- change build: {run.edited_docs} document(s) edited "
            f"({run.edited_docs / run.docs:.1%}), {change.chunks_to_embed} chunk(s) embedded, "
            f"wall time {change.wall_s / full.wall_s:.1%} of the full build"
        )
        print(
            f"- no-op build: {noop.chunks_to_embed} chunk(s) to embed, model "
            f"{'loaded' if noop.model_loaded else 'not loaded (torch not imported)'}"
        )
        throughput = (
            run.chunks / full.wall_s,
            run.tokens / full.wall_s,
        )
        print(
            f"- end to end (full build wall time): {throughput[0]:.1f} chunks/s, "
            f"{throughput[1]:.0f} tokens/s"
        )
        names = sorted(
            {name for build in run.builds for name in build.node_seconds},
            key=lambda name: -full.node_seconds.get(name, 0.0),
        )
        print("\n| dbt node (execution_time s) | full | change | change again | no-op |")
        print("|---|---:|---:|---:|---:|")
        for name in names:
            cells = " | ".join(fmt(b.node_seconds.get(name), "{:.2f}") for b in run.builds)
            print(f"| {name} | {cells} |")
    for note in skipped:
        print(f"\n{note}")


# --------------------------------------------------------------------------- main


def int_list(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int_list, default=[1000], help="e.g. 1000 or 1000,5000")
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument(
        "--short-documents",
        action="store_true",
        help="60-220 words in two sections (2 chunks per document) instead of 150-600 words "
        "in 3-5 (about 4.2): a million documents in two million chunks",
    )
    parser.add_argument("--change-fraction", type=float, default=0.01)
    parser.add_argument(
        "--max-full-build-seconds",
        type=float,
        default=240.0,
        help="run the next --docs size only if this size's full build was faster",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="per dbt build, seconds")
    parser.add_argument("--workdir", type=Path, default=None, help="keep feeds, DB and logs here")
    parser.add_argument("--no-time-binary", action="store_true", help="do not use /usr/bin/time")
    parser.add_argument("--json", type=Path, default=None, help="also write results as JSON")
    parser.add_argument(
        "--model", default=None, help="embedding_model var, e.g. bf16:all-MiniLM-L6-v2"
    )
    parser.add_argument(
        "--extra-vars", default="{}", help='more dbt vars as JSON, e.g. {"snapshot_parquet": false}'
    )
    return parser.parse_args(argv)


def project_settings() -> dict:
    """The settings the builds ran with: project defaults (the model may be overridden)."""
    import yaml

    project = yaml.safe_load((REPO / "dbt_project.yml").read_text())
    profile = yaml.safe_load((REPO / "profiles.yml").read_text())
    variables = project["vars"]
    return {
        "dbt_threads": profile["rag_store"]["outputs"]["dev"].get("threads"),
        "torch_threads": os.cpu_count(),
        "duckdb_threads": os.cpu_count(),
        "max_chunk_tokens": variables["max_chunk_tokens"] or "0 (= model window 256 - 2 = 254)",
        "overlap": variables["chunk_overlap_tokens"],
        "batch_size": variables["embedding_batch_size"] or "0 (= by device: 32 on the CPU)",
        "model": variables["embedding_model"],
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = {**project_settings(), "seed": args.seed, "short_documents": args.short_documents}
    if args.model:
        settings["model"] = args.model
    settings.update(json.loads(args.extra_vars))
    runs: list[CorpusRun] = []
    skipped: list[str] = []
    for docs in args.docs:
        if runs and runs[-1].builds[0].wall_s >= args.max_full_build_seconds:
            previous = runs[-1]
            projected = previous.builds[0].wall_s * docs / previous.docs
            skipped.append(
                f"{docs} documents not run: the {previous.docs}-document full build took "
                f"{previous.builds[0].wall_s:.0f}s (limit {args.max_full_build_seconds:.0f}s); "
                f"projected full build ≈ {projected:.0f}s (linear in documents)."
            )
            continue
        if args.workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix=f"rag-store-build-bench-{docs}-"))
        else:
            workdir = args.workdir / f"docs-{docs}"
            if workdir.exists():
                shutil.rmtree(workdir)
            workdir.mkdir(parents=True)
        try:
            runs.append(run_corpus(args, docs, workdir))
        finally:
            if args.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
    print_markdown(runs, skipped, settings)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"settings": settings, "runs": [asdict(r) for r in runs], "skipped": skipped}
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


def log(message: str) -> None:
    print(f"[build-bench] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
