"""Text questions end to end through `rag-store serve` (HTTP, embedding with the real model,
search, JSON), beside the CLI path on the same snapshot.

For each size a synthetic snapshot is published with `rag_store.snapshot.publish_export`
(the function dbt's on-run-end hook calls), from the rows bench/snapshot_search.py
generates, labelled with the real embedder's model_id so the server embeds questions with
all-MiniLM-L6-v2. A real `rag-store serve` process answers distinct questions from
concurrent clients on keep-alive connections:

- closed loop: every client sends its next question as soon as the last one is answered
  (the sustained rate, and latency at that rate);
- paced: the clients together offer a fixed rate (latency below saturation);
- publishes (first size only): closed loop while the snapshot is republished N times.

Each size is served once per `--indexes` entry (RAG_STORE_SERVE_INDEX): `sql`, the
search_vector macro per question, and `memory`, the server's exact in-memory index, so the
two are compared in the same run. The server's resident memory after warm-up is reported
per run, and the embedder's mean batch size (from /metrics). The clients run on the same
2-core machine as the server, so they take some of its CPU.

    .venv/bin/python bench/serve_latency.py                      # 10k and 100k chunks
    .venv/bin/python bench/serve_latency.py --sizes 1000000 --seconds 20 --publishes 0
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from snapshot_search import DIMENSION, WORDS, int_list, write_export

from rag_store.embedder_info import DEFAULT_MODEL, embedder_info
from rag_store.snapshot import publish_export

BIN = Path(sys.executable).parent
LISTENING = "rag-store serve: listening on "


def build_snapshot(workdir: Path, size: int, seed: int, model: str) -> Path:
    """A published snapshot of `size` synthetic chunks, labelled as embedded by `model`."""
    export = workdir / f"export-{size}"
    template = workdir / f"template-{size}"
    if not template.exists():
        template.mkdir(parents=True)
        write_export(template, size, seed, restricted=False)  # as the earlier figures
        info = embedder_info(model)
        pq.write_table(
            pa.table(
                {
                    "model_id": [info.model_id],
                    "model_reference": [model],
                    "dimension": pa.array([DIMENSION], pa.int32()),
                    "acl_deny_by_default": [False],
                }
            ),
            template / "store_info.parquet",
        )
        table = pq.read_table(template / "retrieval_store.parquet")
        pq.write_table(
            table.set_column(
                table.schema.get_field_index("model_id"),
                "model_id",
                pa.array([info.model_id] * table.num_rows),
            ),
            template / "retrieval_store.parquet",
        )
    shutil.rmtree(export, ignore_errors=True)
    shutil.copytree(template, export)  # publishing removes its export when done
    snapshot = workdir / f"snapshot-{size}.duckdb"
    publish_export(export, snapshot)
    return snapshot


def questions(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    starts = ["how do I", "what is the", "where can I find the", "who approves the", "why does the"]
    return [
        f"{rng.choice(starts)} {' '.join(rng.choice(WORDS) for _ in range(rng.randint(4, 9)))}?"
        for _ in range(count)
    ]


class Server:
    def __init__(self, snapshot: Path, options: list[str], index: str, http: str = "auto"):
        self.proc = subprocess.Popen(
            [
                *(str(BIN / "rag-store"), "serve", "--db", str(snapshot), "--port", "0"),
                *("--poll-seconds", "0.2", *options),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "RAG_STORE_SERVE_INDEX": index,
                "RAG_STORE_SERVE_HTTP": http,
            },
        )
        line = self.proc.stdout.readline()
        if not line.startswith(LISTENING):
            raise RuntimeError(f"server did not start: {line}{self.proc.stderr.read()}")
        self.host, port = line[len(LISTENING) :].split()[0].split("//")[1].split(":")
        self.port = int(port)
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def metric_sum(self, name: str) -> float:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        return sum(
            float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")
        )

    def mean_batch(self, before: tuple[float, float]) -> float:
        total = self.metric_sum("rag_store_embed_batch_size_sum") - before[0]
        count = self.metric_sum("rag_store_embed_batch_size_count") - before[1]
        return total / count if count else float("nan")

    def batches(self) -> tuple[float, float]:
        return (
            self.metric_sum("rag_store_embed_batch_size_sum"),
            self.metric_sum("rag_store_embed_batch_size_count"),
        )


def run_load(server: Server, texts, clients: int, seconds: float, rate: float | None, mode: str):
    """`clients` connections asking distinct questions for `seconds` (closed loop, or `rate`
    requests/s offered in total): latencies (ms), failures and the achieved rate. One asyncio
    loop drives them all, so the load generator takes little of the CPU the server needs
    (16 http.client threads took more than a core of the two); CLIENT=threads uses those."""
    if os.environ.get("CLIENT") == "threads":
        return run_load_threads(server, texts, clients, seconds, rate, mode)
    import asyncio

    latencies: list[float] = []
    failures: list[str] = []
    counter = iter(range(10**9))

    async def ask(reader, writer, text):
        path = "/search?" + urllib.parse.urlencode({"q": text, "k": 10, "mode": mode})
        writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
        if status == 200 and b'"results"' in body:
            return None
        return f"HTTP {status}: {body[:120]!r}"

    async def client(deadline):
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection(server.host, server.port)
        interval = clients / rate if rate else 0.0
        next_at = loop.time() + random.random() * interval
        while True:
            if interval:
                pause = next_at - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
                next_at += interval
            now = time.perf_counter()
            if now >= deadline:
                break
            try:
                error = await asyncio.wait_for(
                    ask(reader, writer, texts[next(counter) % len(texts)]), 60
                )
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                writer.close()
                reader, writer = await asyncio.open_connection(server.host, server.port)
            elapsed = (time.perf_counter() - now) * 1000
            (failures if error else latencies).append(error or elapsed)
        writer.close()

    async def main():
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(client(deadline) for _ in range(clients)))

    started = time.perf_counter()
    asyncio.run(main())
    wall = time.perf_counter() - started
    return latencies, failures, (len(latencies) + len(failures)) / wall


def run_load_threads(
    server: Server, texts, clients: int, seconds: float, rate: float | None, mode: str
):
    """`clients` threads asking distinct questions for `seconds`; closed loop, or `rate`
    requests/s offered in total. Returns latencies (ms), failures and the achieved rate."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    def client(number: int):
        conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
        interval = clients / rate if rate else 0.0
        next_at = time.perf_counter() + random.random() * interval
        while True:
            if interval:
                pause = next_at - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                next_at += interval
            now = time.perf_counter()
            if now >= deadline:
                break
            text = texts[next(counter) % len(texts)]
            path = "/search?" + urllib.parse.urlencode({"q": text, "k": 10, "mode": mode})
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                ok = response.status == 200 and b'"results"' in body
                error = None if ok else f"HTTP {response.status}: {body[:120]!r}"
            except (OSError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"
                conn.close()
                conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
            elapsed = (time.perf_counter() - now) * 1000
            with lock:
                if error:
                    failures.append(error)
                else:
                    latencies.append(elapsed)
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return latencies, failures, (len(latencies) + len(failures)) / wall


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(label: str, latencies, failures, rate) -> dict:
    return {
        "run": label,
        "requests": len(latencies) + len(failures),
        "failed": len(failures),
        "rate": rate,
        "p50_ms": statistics.median(latencies) if latencies else None,
        "p99_ms": percentile(latencies, 0.99) if latencies else None,
        "first_failures": failures[:3],
    }


def cli_path(snapshot: Path, texts: list[str], runs: int) -> dict:
    if runs < 1:
        return None
    timings = []
    for text in texts[:runs]:
        started = time.perf_counter()
        completed = subprocess.run(
            [str(BIN / "rag-store"), "search", text, "--db", str(snapshot), "--k", "10", "--json"],
            capture_output=True,
            text=True,
        )
        if completed.returncode != 0:
            raise RuntimeError(completed.stderr)
        timings.append((time.perf_counter() - started) * 1000)
    return {
        "run": "CLI `rag-store search` (one process per question)",
        "requests": runs,
        "failed": 0,
        "rate": 1000 / statistics.mean(timings),
        "p50_ms": statistics.median(timings),
        "p99_ms": max(timings),
    }


def measure(size: int, args, workdir: Path, first: bool) -> list[dict]:
    snapshot = workdir / f"snapshot-{size}.duckdb"
    if not (args.workdir and snapshot.exists()):
        print(f"[serve-latency] {size:,} chunks: publishing ...", file=sys.stderr, flush=True)
        snapshot = build_snapshot(workdir, size, args.seed, args.model)
    texts = questions(20_000, args.seed + size)
    rows = []
    for index in args.indexes:
        for stack in args.http:
            rows.extend(measure_index(size, index, stack, snapshot, texts, args, workdir, first))
    cli = cli_path(snapshot, texts, args.cli_runs)
    if cli:
        rows.append(cli)
    for row in rows:
        row["chunks"] = size
        row.setdefault("index", "")
    return rows


def measure_index(size, index, stack, snapshot, texts, args, workdir, first) -> list[dict]:
    rows = []
    started = time.perf_counter()
    server = Server(snapshot, args.server_options, index, stack)
    startup = time.perf_counter() - started
    if len(args.http) > 1:
        index = f"{index}, {stack}"

    def add(row):
        row["index"] = index
        rows.append(row)
        print(f"[serve-latency] {index}: {row}", file=sys.stderr, flush=True)

    try:
        run_load(server, texts[-500:], args.clients, 3, None, "vector")  # warm-up
        rss = server.rss_mib()
        print(
            f"[serve-latency] {size:,} chunks, index {index}: started in {startup:.1f} s, "
            f"RSS {rss:.0f} MiB after warm-up",
            file=sys.stderr,
            flush=True,
        )
        before = server.batches()
        closed = run_load(server, texts, args.clients, args.seconds, None, "vector")
        row = summary(f"{args.clients} clients, closed loop, vector", *closed)
        row.update(rss_mib=rss, startup_s=startup, mean_batch=server.mean_batch(before))
        add(row)
        for fraction in args.paced:
            rate = closed[2] * fraction
            paced = run_load(server, texts[5000:], args.clients, args.seconds, rate, "vector")
            add(summary(f"{args.clients} clients, paced at {rate:.0f}/s, vector", *paced))
        text_modes = first and args.hybrid and stack == args.http[0]
        for mode in ("hybrid", "keyword") if text_modes else ():
            before = server.batches()
            result = run_load(server, texts[10000:], args.clients, args.seconds, None, mode)
            row = summary(f"{args.clients} clients, closed loop, {mode}", *result)
            row.update(mean_batch=server.mean_batch(before))
            add(row)
        publishes = stack == args.http[0] and index.split(",")[0] in args.publish_indexes
        if first and args.publishes and publishes:
            done = threading.Event()
            published = []

            def publisher():
                for _ in range(args.publishes):
                    build_snapshot(workdir, size, args.seed, args.model)
                    published.append(time.time())
                    time.sleep(0.5)
                done.set()

            thread = threading.Thread(target=publisher)
            thread.start()
            results = ([], [], 0.0)
            started = time.perf_counter()
            while not done.is_set():
                part = run_load(server, texts[12000:], args.clients, 5, None, "vector")
                results[0].extend(part[0])
                results[1].extend(part[1])
            thread.join()
            wall = time.perf_counter() - started
            rate = (len(results[0]) + len(results[1])) / wall
            add(
                summary(
                    f"{args.clients} clients, closed loop, during {len(published)} publishes",
                    results[0],
                    results[1],
                    rate,
                )
            )
    finally:
        server.stop()
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int_list, default=[10_000, 100_000])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument(
        "--paced",
        type=lambda t: [float(x) for x in t.split(",") if x],
        default=[0.5],
        help="paced runs, as fractions of the closed-loop rate",
    )
    parser.add_argument("--publishes", type=int, default=20)
    parser.add_argument(
        "--hybrid",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also closed loops of hybrid and keyword questions (first size only)",
    )
    parser.add_argument(
        "--server-options",
        type=lambda text: text.split(),
        default=[],
        help="extra `rag-store serve` options, e.g. '--threads 3 --embed-threads 1'",
    )
    parser.add_argument(
        "--indexes",
        type=lambda text: [x for x in text.split(",") if x],
        default=["sql", "memory"],
        help="RAG_STORE_SERVE_INDEX values to serve each size with, in order",
    )
    parser.add_argument(
        "--http",
        type=lambda text: [x for x in text.split(",") if x],
        default=["auto"],
        help="RAG_STORE_SERVE_HTTP values (auto: httptools + uvloop; h11: pure Python) to "
        "serve each index with, e.g. auto,h11",
    )
    parser.add_argument(
        "--publish-indexes",
        type=lambda text: [x for x in text.split(",") if x],
        default=["memory"],
        help="which of --indexes also run the publishes",
    )
    parser.add_argument("--cli-runs", type=int, default=3)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--json", type=Path, default=None, help="also write results as JSON")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep generated snapshots here; one already there is served as it is",
    )
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="rag-store-serve-bench-") as scratch:
        workdir = args.workdir or Path(scratch)
        for number, size in enumerate(args.sizes):
            rows.extend(measure(size, args, workdir, first=number == 0))
    print(f"\n{args.clients} clients, k=10, distinct questions, model {args.model}\n")
    print(
        "| chunks | index | run | requests | failed | rate/s | p50 ms | p99 ms | batch | RSS MiB |"
    )
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        batch = f"{row['mean_batch']:.1f}" if row.get("mean_batch") else ""
        rss = f"{row['rss_mib']:,.0f}" if row.get("rss_mib") else ""
        print(
            f"| {row['chunks']:,} | {row['index']} | {row['run']} | {row['requests']:,} | "
            f"{row['failed']} | {row['rate']:.1f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
            f"{batch} | {rss} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
