"""DuckDB extensions from their pip packages: where the file is, and loading it (no network)."""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

import duckdb


def extension_path(name: str) -> Path:
    """The .duckdb_extension file of a pip-installed DuckDB extension."""
    try:
        package = import_module(f"duckdb_extension_{name}")
    except ImportError as exc:
        raise RuntimeError(
            f"the DuckDB extension package duckdb-extension-{name} is not installed; "
            f"run `make setup` (or pip install duckdb-extension-{name}=={duckdb.__version__})"
        ) from exc
    root = Path(package.__file__).parent / "extensions" / f"v{duckdb.__version__}"
    path = root / f"{name}.duckdb_extension"
    if not path.exists():
        raise RuntimeError(
            f"{path} is missing: the extension does not match duckdb {duckdb.__version__}; "
            f"install duckdb-extension-{name}=={duckdb.__version__}"
        )
    return path


def load_extension(conn: duckdb.DuckDBPyConnection, name: str) -> None:
    conn.execute(f"load '{extension_path(name)}'")
