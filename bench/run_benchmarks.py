"""Run every benchmark with its defaults (what `make bench` does) and keep the results.

Each script's markdown goes to stdout and to bench/results/<name>.md, its JSON (where it has
one) to bench/results/<name>.json, together with the date, CPU model, load average and
package versions. Expect 25-40 minutes on a 2-core machine; --quick runs small sizes only
(a few minutes), to check that everything works.

    .venv/bin/python bench/run_benchmarks.py
    .venv/bin/python bench/run_benchmarks.py --quick
    .venv/bin/python bench/run_benchmarks.py --only search_latency
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
PACKAGES = ["duckdb", "dbt-core", "dbt-duckdb", "torch", "sentence-transformers"]

FULL = {
    "embed_throughput": [],
    "build_benchmark": ["--docs", "1000,5000"],
    "search_latency": [],
    "snapshot_search": [],
    "watch_lag": ["--docs", "1000,10000"],
}
QUICK = {
    "embed_throughput": ["--texts", "64"],
    "build_benchmark": ["--docs", "100"],
    "search_latency": ["--sizes", "10000", "--hnsw-sizes", "10000", "--queries", "20"],
    "snapshot_search": ["--sizes", "10000", "--queries", "20"],
    "watch_lag": ["--docs", "100", "--edits", "3"],
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> str:
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?", "?", "?")
    return (
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical CPUs\n"
        f"- load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n"
        f"- {', '.join(versions)}\n"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to smoke-test")
    parser.add_argument("--only", choices=sorted(FULL), action="append", default=None)
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    RESULTS.mkdir(parents=True, exist_ok=True)
    failures = 0
    for name, extra in plan.items():
        if args.only and name not in args.only:
            continue
        header = f"## {name}\n\n{environment()}"
        command = [sys.executable, str(BENCH / f"{name}.py"), *extra]
        command += ["--json", str(RESULTS / f"{name}.json")]
        print(f"\n{header}\n$ {' '.join(command[1:])}", flush=True)
        started = time.perf_counter()
        result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
        elapsed = time.perf_counter() - started
        print(result.stdout, flush=True)
        (RESULTS / f"{name}.md").write_text(
            f"{header}\n$ {' '.join(command[1:])}\n{result.stdout}\n"
            f"(exit {result.returncode}, {elapsed:.0f}s)\n"
        )
        failures += result.returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
