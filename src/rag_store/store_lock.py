"""The single-writer check: fail fast, and readably, when another process has the store open.

DuckDB lets one process at a time open a database file for writing. Without this check a
second build would fail deep inside dbt with DuckDB's raw lock error.
"""

from __future__ import annotations

from pathlib import Path

import duckdb


def check_single_writer(path: str) -> None:
    """Raise dbt's DbtRuntimeError, naming the holder, when another process has `path` open."""
    if not Path(path).exists():
        return
    try:
        duckdb.connect(path).close()
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise
        from dbt_common.exceptions import DbtRuntimeError

        holder = str(exc).split("Conflicting lock is held in", 1)[-1].split(". See")[0]
        raise DbtRuntimeError(
            f"rag-store: another process already has {path} open ({holder.strip()}). "
            "DuckDB allows one writer per file: wait for that build or close that client, "
            "then run again. Nothing was changed."
        ) from None
