"""Delivery → searchable lag of `rag-store watch`, one-document edits, at several store sizes.

For each corpus size (--docs) the script writes the deterministic synthetic corpus of
bench/corpus.py as one feed file, builds the store once with `dbt build` and starts a real
`rag-store watch` on it. It then delivers --edits one-document edits per size, one at a
time and alternating between the sizes (so that all sizes share the machine's drift), each
as a new feed file renamed into the feed directory (as a producer should). Each edit appends
a unique marker sentence to one section. The lag is measured from outside, the way a reader
sees it: from the rename to the first moment a new read-only connection to the published
snapshot finds the marker in that document's chunks (polled every 0.1 s). The watcher's own
figures (build seconds, its lag) come from its history file. Reported: p50 / p95 / max lag,
the build's wall time per cycle, and the snapshot's size. No figure is checked against a
threshold.

    .venv/bin/python bench/watch_lag.py --docs 1000 --edits 10
    .venv/bin/python bench/watch_lag.py --docs 1000,10000 --model all-MiniLM-L6-v2 --json out.json

`--model hash:all-MiniLM-L6-v2` (the test-only embedder) keeps the initial build short for
big stores. With a real model, a store of 170k chunks would take hours of embedding before
the first edit; `--borrowed-vectors` builds it with the hash embedder instead and files those
vectors in the embedding cache under the real model's model_id, so the watcher (real model,
loaded once) starts on a store of that size and embeds only what the edits change. Search
quality is meaningless in such a store; the lag is what is measured. `--reuse-stores` with
`--workdir` starts the watcher on stores an earlier run left there (same sizes, seed and
flags) instead of building them again; its edits get file names of their own.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import make_corpus, write_feed
from run_benchmarks import cpu_model

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def environment(db: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        RAG_STORE_DB=str(db),
        DBT_PROFILES_DIR=str(REPO),
        DBT_SEND_ANONYMOUS_USAGE_STATS="False",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        DBT_EXCLUDE_RESOURCE_TYPES="unit_test",
    )
    return env


def snapshot_has(snapshot: Path, doc_id: str, marker: str) -> bool:
    try:
        with duckdb.connect(str(snapshot), read_only=True) as conn:
            (found,) = conn.execute(
                "select count(*) from retrieval_store "
                "where doc_id = $d and contains(chunk_text, $m)",
                {"d": doc_id, "m": marker},
            ).fetchone()
    except duckdb.Error:
        return False
    return found > 0


def history(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(condition, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


HASH_MODEL = "hash:all-MiniLM-L6-v2"


def borrow_vectors(db: Path, from_model: str, to_model: str) -> None:
    """File every cached vector of `from_model` under `to_model`'s model_id as well (same
    tokenizer, so the same chunks and chunk hashes; same dimension)."""
    from rag_store.embedder_info import embedder_info

    source, target = embedder_info(from_model), embedder_info(to_model)
    if source.dimension != target.dimension:
        raise SystemExit(f"--borrowed-vectors: {from_model} and {to_model} differ in dimension")
    with duckdb.connect(str(db)) as conn:
        conn.execute(
            "insert into chunk_embeddings "
            "(chunk_hash, model_id, embedding, token_count, embedded_at, error) "
            "select chunk_hash, $to, embedding, token_count, embedded_at, error "
            "from chunk_embeddings where model_id = $from",
            {"to": target.model_id, "from": source.model_id},
        )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@dataclass
class Size:
    """One store under test: its corpus, paths, running watcher and measurements."""

    docs: int
    workdir: Path
    corpus: list
    chunks: int = 0
    initial_s: float | None = None
    watcher: subprocess.Popen | None = None
    lags: list = field(default_factory=list)
    builds: list = field(default_factory=list)
    reported: list = field(default_factory=list)

    @property
    def history_file(self) -> Path:
        return self.workdir / "store_watch_history.jsonl"

    @property
    def snapshot(self) -> Path:
        return self.workdir / "store_snapshot.duckdb"


def prepare(docs: int, args, workdir: Path) -> Size:
    """Build (or reuse) the store of one size and start its watcher; returns once the
    watcher's catch-up build is done."""
    size = Size(docs, workdir, make_corpus(docs, args.seed))
    feed_dir = workdir / "feed"
    db = workdir / "store.duckdb"
    reuse = args.reuse_stores and db.exists()
    initial_model = HASH_MODEL if args.borrowed_vectors else args.model
    extra = json.loads(args.extra_vars)
    dbt_vars = json.dumps(
        {"document_feed": f"{feed_dir}/*.jsonl", "embedding_model": initial_model, **extra}
    )
    env = environment(db)
    common = ["--target-path", str(workdir / "target"), "--log-path", str(workdir / "logs")]
    if not reuse:
        write_feed(feed_dir / "0000_initial.jsonl", size.corpus)
        started = time.perf_counter()
        subprocess.run(
            [str(BIN / "dbt"), "build", "--vars", dbt_vars, *common],
            cwd=REPO,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=args.timeout,
        )
        size.initial_s = time.perf_counter() - started
    with duckdb.connect(str(db), read_only=True) as conn:
        (size.chunks,) = conn.execute("select count(*) from retrieval_store").fetchone()
    if args.borrowed_vectors:
        if not reuse:
            borrow_vectors(db, initial_model, args.model)
        dbt_vars = json.dumps(
            {"document_feed": f"{feed_dir}/*.jsonl", "embedding_model": args.model, **extra}
        )
    built = "reused" if reuse else f"initial build {size.initial_s:.0f}s"
    print(f"{docs} docs: {built}, {size.chunks} chunks", file=sys.stderr)

    earlier_cycles = len(history(size.history_file))  # a reused store keeps its history
    size.watcher = subprocess.Popen(
        [
            str(BIN / "rag-store"),
            "watch",
            "--project-dir",
            str(REPO),
            "--vars",
            dbt_vars,
            "--db",
            str(db),
            "--poll-seconds",
            str(args.poll_seconds),
            *common,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # the catch-up build every start runs
    wait_for(
        lambda: len(history(size.history_file)) > earlier_cycles,
        args.timeout,
        f"the catch-up build of {docs} docs",
    )
    return size


def edit_once(size: Size, number: int, run_stamp: str, args) -> None:
    """Deliver one one-document edit to `size` and wait until a reader finds it."""
    doc = size.corpus[(number * 7919) % len(size.corpus)]
    marker = f"Revision marker {run_stamp}{number:04d}{size.docs}"
    heading, text = doc.sections[-1]
    now = datetime.now(UTC)
    edited = replace(
        doc,
        sections=(*doc.sections[:-1], (heading, f"{text} {marker}.")),
        updated_at=now,
        loaded_at=now,
    )
    name = f"edit_{run_stamp}_{number:04d}.jsonl"
    staging = size.workdir / f"{name}.part"
    write_feed(staging, [edited])
    cycles = len(history(size.history_file))
    delivered = time.monotonic()
    os.replace(staging, size.workdir / "feed" / name)
    wait_for(
        lambda: snapshot_has(size.snapshot, doc.doc_id, marker),
        args.timeout,
        f"edit {number} of {size.docs} docs to be searchable",
    )
    size.lags.append(time.monotonic() - delivered)
    wait_for(lambda: len(history(size.history_file)) > cycles, 60, "the watch history line")
    record = history(size.history_file)[-1]
    if record.get("build_seconds") is not None:
        size.builds.append(record["build_seconds"])
    if record.get("lag_seconds") is not None:
        size.reported.append(record["lag_seconds"])
    print(
        f"  {size.docs} docs, edit {number}: searchable after {size.lags[-1]:.1f}s", file=sys.stderr
    )


def stop(size: Size) -> None:
    if size.watcher is None:
        return
    size.watcher.send_signal(signal.SIGTERM)
    try:
        size.watcher.wait(timeout=300)
    except subprocess.TimeoutExpired:
        size.watcher.kill()


def summary(size: Size) -> dict:
    return {
        "docs": size.docs,
        "chunks": size.chunks,
        "initial_build_s": size.initial_s,
        "edits": len(size.lags),
        "lag_p50_s": statistics.median(size.lags),
        "lag_p95_s": percentile(size.lags, 0.95),
        "lag_max_s": max(size.lags),
        "build_p50_s": statistics.median(size.builds) if size.builds else None,
        "watch_reported_lag_p50_s": statistics.median(size.reported) if size.reported else None,
        "snapshot_mb": size.snapshot.stat().st_size / 1e6,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", default="1000", help="comma-separated sizes, e.g. 1000,10000")
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--model", default=HASH_MODEL)
    parser.add_argument(
        "--borrowed-vectors",
        action="store_true",
        help="build the initial store with the hash embedder, its vectors filed under --model",
    )
    parser.add_argument(
        "--extra-vars", default="{}", help='more dbt vars as JSON, e.g. {"snapshot_parquet": false}'
    )
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    parser.add_argument("--pause-seconds", type=float, default=1.0, help="between edits")
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--workdir", type=Path, default=None, help="keep stores and logs here")
    parser.add_argument("--json", type=Path, default=None, help="also write results as JSON")
    parser.add_argument(
        "--reuse-stores",
        action="store_true",
        help="start on the stores an earlier run left in --workdir rather than building them",
    )
    args = parser.parse_args(argv)
    if args.reuse_stores and args.workdir is None:
        parser.error("--reuse-stores needs --workdir")

    sizes: list[Size] = []
    run_stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    with tempfile.TemporaryDirectory(prefix="rag-store-watch-lag-") as scratch:
        root = args.workdir or Path(scratch)
        try:
            for docs in (int(size) for size in args.docs.split(",")):
                workdir = root / f"docs-{docs}"
                workdir.mkdir(parents=True, exist_ok=True)
                sizes.append(prepare(docs, args, workdir))
            # Edits alternate between the sizes, one at a time (the other watchers idle), so
            # every size sees the same machine: its speed drifts by tens of percent within
            # minutes on a shared host.
            for number in range(args.edits):
                for size in sizes:
                    edit_once(size, number, run_stamp, args)
                    time.sleep(args.pause_seconds)
        finally:
            for size in sizes:
                stop(size)
        rows = [summary(size) for size in sizes]
    machine = {"cpu": cpu_model(), "cpus": os.cpu_count(), "load": os.getloadavg()[0]}
    print(
        f"\n{machine['cpu']}, {machine['cpus']} CPUs (load {machine['load']:.1f} at the end); "
        f"model {args.model}{' (initial vectors borrowed)' if args.borrowed_vectors else ''}, "
        f"poll {args.poll_seconds}s, {args.edits} one-document edits, vars {args.extra_vars}\n"
    )
    print("| docs | chunks | lag p50 s | lag p95 s | lag max s | build p50 s | snapshot MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        build = "-" if row["build_p50_s"] is None else f"{row['build_p50_s']:.1f}"
        print(
            f"| {row['docs']} | {row['chunks']} | {row['lag_p50_s']:.1f} | "
            f"{row['lag_p95_s']:.1f} | {row['lag_max_s']:.1f} | {build} | "
            f"{row['snapshot_mb']:.0f} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
