"""DuckDB extensions from their pip packages: where the file is, and loading it (no network)."""

from __future__ import annotations

import os
import tempfile
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


# Extensions whose file in the pip package is named differently from the extension itself.
# DuckDB finds an extension's entry point by its file name, so such a file is loaded through
# a link of the right name.
LOADED_AS = {"postgres": "postgres_scanner", "sqlite": "sqlite_scanner"}


def loadable_path(name: str) -> Path:
    """A path DuckDB can LOAD the pip-installed extension `name` from."""
    path = extension_path(name)
    loaded_as = LOADED_AS.get(name)
    if loaded_as is None:
        return path
    links = Path(tempfile.gettempdir()) / f"rag-store-duckdb-{duckdb.__version__}-{os.getuid()}"
    links.mkdir(parents=True, exist_ok=True)
    link = links / f"{loaded_as}.duckdb_extension"
    if not link.exists() or link.resolve() != path.resolve():
        staged = links / f".{loaded_as}.{os.getpid()}"
        staged.unlink(missing_ok=True)
        staged.symlink_to(path)
        staged.replace(link)
    return link


def loadable_file(name: str) -> str:
    """loadable_path as text (for SQL: `load '<file>'`)."""
    return str(loadable_path(name))


def load_extension(conn: duckdb.DuckDBPyConnection, name: str) -> None:
    conn.execute(f"load '{loadable_path(name)}'")
