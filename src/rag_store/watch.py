"""`rag-store watch`: keep the store live by running the incremental build when a source changes.

What it watches comes from the same dbt vars as `dbt build`: the files matching
`document_feed`, every (non-hidden) file under `document_dir`, and `document_relation` when
it reads files (`read_parquet('x/*.parquet')`, a CSV/JSON glob, a quoted file path, or a
table of an attached DuckDB/SQLite file); any other relation (a dbt ref or source, a
Postgres table) is rebuilt every `relation_interval` seconds instead.

Change detection is a stat fingerprint — (path, size, mtime_ns) of every watched file — so
an idle poll reads no file contents. File events (watchfiles, when installed) only wake the
loop early; the fingerprint decides whether anything changed, so a missed or spurious event
costs nothing but a poll. A burst of writes is one build: after a change the loop waits until
the fingerprint has been still for `debounce` seconds.

dbt runs in this process (`dbtRunner`), so dbt's imports, the UDF plugin's caches and a
loaded embedding model stay warm between builds. dbt-duckdb keeps its DuckDB connection
open at class level after an invocation; the watcher closes it after every build so the
database file is free for analysts and `rag-store alerts` between builds.

Each cycle appends one JSON line to the watch history beside the database, and a heartbeat
file there says the watcher is alive (see `watch_paths`).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import yaml

EMBED_LINE = re.compile(r"chunk_embeddings: (\d+) chunk\(s\) to embed")
# The publish's own count of documents whose published rows changed (snapshot.publish_swap).
PUBLISH_LINE = re.compile(r"rag-store: published .*\((?:built whole: )?(\d+) document\(s\)")
DEFAULT_POLL_SECONDS = 5.0
DEFAULT_DEBOUNCE_SECONDS = 2.0
DEFAULT_RELATION_INTERVAL_SECONDS = 300.0
DEFAULT_RETRY_SECONDS = 60.0
MAX_RETRY_SECONDS = 1800.0
# A source that keeps changing still gets built: debouncing waits at most this long.
MAX_DEBOUNCE_WAIT_SECONDS = 30.0


class WatchError(RuntimeError):
    """An operational problem the watcher cannot work around; its text names cause and remedy."""


# ---------------------------------------------------------------- where the watcher writes


@dataclass(frozen=True)
class WatchPaths:
    history: Path
    heartbeat: Path
    state: Path
    lock: Path


def watch_paths(database: str | os.PathLike) -> WatchPaths:
    """The watcher's files, beside the database (store.duckdb -> store_watch_history.jsonl,
    store_watch_heartbeat.json, store_watch_state.json, store_watch.lock). The one place
    this rule lives: `rag-store watch` writes them, `rag-store alerts` reads them."""
    path = Path(database)
    stem = path.stem
    return WatchPaths(
        history=path.with_name(f"{stem}_watch_history.jsonl"),
        heartbeat=path.with_name(f"{stem}_watch_heartbeat.json"),
        state=path.with_name(f"{stem}_watch_state.json"),
        lock=path.with_name(f"{stem}_watch.lock"),
    )


# ---------------------------------------------------------------- vars and sources

_ENV_VAR = re.compile(
    r"\{\{\s*env_var\(\s*['\"]([^'\"]+)['\"]\s*(?:,\s*['\"]([^'\"]*)['\"]\s*)?\)\s*\}\}"
)


def _render_env_vars(value):
    """`{{ env_var('NAME', 'default') }}` in var values, as dbt renders them."""
    if isinstance(value, str):

        def substitute(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is None:
                raise WatchError(f"env var {name} is not set (a var refers to it); set it")
            return default

        return _ENV_VAR.sub(substitute, value)
    if isinstance(value, list):
        return [_render_env_vars(item) for item in value]
    if isinstance(value, dict):
        return {key: _render_env_vars(item) for key, item in value.items()}
    return value


def parse_cli_vars(text: str | None) -> dict:
    """dbt's --vars text (YAML or JSON) as a mapping."""
    if not text or not text.strip():
        return {}
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WatchError(f"--vars is not YAML ({exc.__class__.__name__}); pass a mapping") from exc
    if not isinstance(parsed, dict):
        raise WatchError(f"--vars must be a mapping, got {text!r}")
    return parsed


def project_vars(project_dir: str | os.PathLike, cli_vars: str | None) -> dict:
    """The vars a `dbt build --vars CLI_VARS` in `project_dir` sees: dbt_project.yml's vars
    (global ones, then those under the package name rag_store), then --vars."""
    project_file = Path(project_dir) / "dbt_project.yml"
    try:
        project = yaml.safe_load(project_file.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise WatchError(
            f"{project_file}: {exc.strerror or exc}; pass --project-dir of the dbt project"
        ) from exc
    declared = project.get("vars") or {}
    merged = {key: value for key, value in declared.items() if not isinstance(value, dict)}
    if isinstance(declared.get("rag_store"), dict):
        merged.update(declared["rag_store"])
    for key, value in declared.items():
        if isinstance(value, dict) and key != "rag_store" and key.startswith("document_"):
            merged[key] = value  # a mapping-valued var of this project (document_relation)
    merged.update(parse_cli_vars(cli_vars))
    return _render_env_vars(merged)


@dataclass(frozen=True)
class Sources:
    """What one configuration of the build reads, as things that can be stat-ed."""

    feed_glob: str | None = None
    document_dir: Path | None = None
    relation_globs: tuple[str, ...] = ()
    # The relation exists but cannot be stat-ed: build it every relation_interval seconds.
    relation_polled: bool = False
    relation_label: str = ""

    def describe(self) -> str:
        parts = []
        if self.feed_glob:
            parts.append(f"feed {self.feed_glob}")
        if self.document_dir:
            parts.append(f"directory {self.document_dir}")
        if self.relation_globs:
            parts.append(f"relation files {', '.join(self.relation_globs)}")
        if self.relation_polled:
            parts.append(f"relation {self.relation_label} (on an interval)")
        return "; ".join(parts) or "no source"

    def roots(self) -> list[tuple[Path, bool]]:
        """Directories to ask for file events: (directory, recursive)."""
        roots = []
        if self.feed_glob:
            roots.append(glob_root(self.feed_glob))
        if self.document_dir:
            roots.append((self.document_dir, True))
        roots.extend(glob_root(pattern) for pattern in self.relation_globs)
        return roots


def _absolute(path: str, base: Path) -> str:
    expanded = os.path.expanduser(path)
    return expanded if os.path.isabs(expanded) else str(base / expanded)


_FILE_READERS = re.compile(
    r"\b(?:read_parquet|parquet_scan|read_csv(?:_auto)?|read_json(?:_auto|_objects)?|"
    r"read_ndjson(?:_auto|_objects)?|read_text|read_blob|read_xlsx)\s*\(\s*(\[[^\]]*\]|'[^']*')",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"'((?:[^']|'')*)'")


def relation_files(table: str, attach: Iterable[Mapping], base: Path) -> tuple[str, ...] | None:
    """The file globs a `{table: ...}` relation reads, or None if it reads something that
    cannot be stat-ed (a Postgres table, a table of the store itself)."""
    text = table.strip()
    readers = _FILE_READERS.findall(text)
    if readers:
        return tuple(
            _absolute(name.replace("''", "'"), base)
            for argument in readers
            for name in _QUOTED.findall(argument)
        )
    if text.startswith("'") and text.endswith("'") and len(text) > 1:
        return (_absolute(text[1:-1].replace("''", "'"), base),)
    alias = text.split(".", 1)[0].strip('"').lower()
    for database in attach or ():
        if str(database.get("alias", "")).lower() != alias:
            continue
        if str(database.get("type", "duckdb")).lower() in ("duckdb", "sqlite"):
            path = _absolute(str(database.get("path", "")), base)
            # The file and its write-ahead log / journal, whichever exist.
            return (path, f"{path}.wal", f"{path}-wal", f"{path}-journal")
    return None


def sources_from_vars(dbt_vars: Mapping, project_dir: str | os.PathLike) -> Sources:
    """The stat-able sources of a build with these vars (relative paths resolve against the
    project directory, where dbt runs)."""
    base = Path(project_dir).resolve()
    feed = str(dbt_vars.get("document_feed") or "").strip()
    directory = str(dbt_vars.get("document_dir") or "").strip()
    relation = dbt_vars.get("document_relation") or ""
    globs: tuple[str, ...] = ()
    polled, label = False, ""
    if isinstance(relation, Mapping) and relation:
        label = json.dumps(dict(relation), sort_keys=True)
        table = relation.get("table")
        found = (
            relation_files(str(table), dbt_vars.get("document_attach") or [], base)
            if isinstance(table, str)
            else None
        )
        if found:
            globs = found
        else:
            polled = True
    elif isinstance(relation, str) and relation.strip():
        polled, label = True, relation.strip()
    return Sources(
        feed_glob=_absolute(feed, base) if feed else None,
        document_dir=Path(_absolute(directory, base)) if directory else None,
        relation_globs=globs,
        relation_polled=polled,
        relation_label=label,
    )


def glob_root(pattern: str) -> tuple[Path, bool]:
    """The deepest directory of `pattern` without wildcards, and whether files below it
    can match at any depth (a wildcard in a directory part, or `**`)."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    recursive = len(fixed) < len(parts) - 1 or "**" in parts[-1]
    return Path(*fixed) if fixed else Path("."), recursive


# ---------------------------------------------------------------- fingerprints


class FileStat(NamedTuple):
    size: int
    mtime_ns: int
    # When the file arrived here (a rename or write sets it; `cp -p`/rsync keep the mtime
    # of the source, not this): the delivery time for lag. Not part of the change test.
    ctime_ns: int


Fingerprint = dict[str, FileStat]


def _stat(path: str) -> FileStat | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not os.path.isfile(path):
        return None
    return FileStat(info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _walk(directory: str, into: Fingerprint) -> None:
    """Every non-hidden regular file below `directory` (hidden files and folders are not
    documents, the build skips them too)."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir(follow_symlinks=True):
                _walk(entry.path, into)
            elif entry.is_file(follow_symlinks=True):
                info = entry.stat(follow_symlinks=True)
                into["dir:" + entry.path] = FileStat(
                    info.st_size, info.st_mtime_ns, info.st_ctime_ns
                )
        except OSError:
            continue


def fingerprint(sources: Sources) -> Fingerprint:
    """(size, mtime_ns) of every file the build would read, keyed by kind and path. Costs one
    stat per file and one directory listing per folder; reads no file content."""
    found: Fingerprint = {}
    for kind, patterns in (
        ("feed:", (sources.feed_glob,) if sources.feed_glob else ()),
        ("relation:", sources.relation_globs),
    ):
        for pattern in patterns:
            paths = glob.glob(pattern, recursive=True) if glob.has_magic(pattern) else [pattern]
            for path in paths:
                stat = _stat(path)
                if stat is not None:
                    found[kind + path] = stat
    if sources.document_dir:
        _walk(str(sources.document_dir), found)
    return found


@dataclass(frozen=True)
class Change:
    added: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.modified or self.removed)

    @property
    def count(self) -> int:
        return len(self.added) + len(self.modified) + len(self.removed)


def diff(old: Mapping[str, FileStat], new: Mapping[str, FileStat]) -> Change:
    """What changed between two fingerprints: a file is modified when its size or mtime_ns
    differs (ctime alone — a chmod, a hard link — is not a change)."""
    added = tuple(sorted(path for path in new if path not in old))
    removed = tuple(sorted(path for path in old if path not in new))
    modified = tuple(
        sorted(
            path
            for path, stat in new.items()
            if path in old and (old[path].size, old[path].mtime_ns) != (stat.size, stat.mtime_ns)
        )
    )
    return Change(added, modified, removed)


def newest_delivery(new: Mapping[str, FileStat], change: Change, noticed_at: float) -> float | None:
    """When the newest change of `change` was delivered (epoch seconds): the latest arrival
    time (max of ctime and mtime) of an added or modified file; a removal counts as
    delivered when it was noticed. None when nothing changed."""
    times = [max(new[path].ctime_ns, new[path].mtime_ns) / 1e9 for path in change.added]
    times += [max(new[path].ctime_ns, new[path].mtime_ns) / 1e9 for path in change.modified]
    if change.removed:
        times.append(noticed_at)
    return max(times) if times else None


def encode_fingerprint(found: Mapping[str, FileStat]) -> dict:
    return {path: list(stat) for path, stat in sorted(found.items())}


def decode_fingerprint(data: Mapping) -> Fingerprint:
    return {str(path): FileStat(*(int(value) for value in stat)) for path, stat in data.items()}


def config_key(sources: Sources, cli_vars: str | None) -> str:
    """Identifies the configuration a saved fingerprint belongs to."""
    return json.dumps({"sources": asdict(sources), "vars": cli_vars or ""}, default=str)


# ---------------------------------------------------------------- builds


@dataclass
class BuildOutcome:
    ok: bool
    seconds: float
    chunks_embedded: int | None = None
    failed_node: str | None = None
    message: str = ""
    log_path: str = ""
    output: str = ""


class _Tee(io.TextIOBase):
    """A stand-in for sys.stderr during an in-process build: keeps the text (for the
    chunk count) and forwards it when verbose."""

    def __init__(self, forward):
        self.parts: list[str] = []
        self.forward = forward

    def write(self, text: str) -> int:
        self.parts.append(text)
        if self.forward is not None:
            self.forward.write(text)
            self.forward.flush()
        return len(text)

    def flush(self) -> None:
        if self.forward is not None:
            self.forward.flush()

    def isatty(self) -> bool:
        return False

    def getvalue(self) -> str:
        return "".join(self.parts)


def chunks_embedded(output: str) -> int | None:
    counts = EMBED_LINE.findall(output)
    return int(counts[-1]) if counts else None


def published_documents(output: str) -> int | None:
    """Documents the build's publish changed in the snapshot, from its log line."""
    counts = PUBLISH_LINE.findall(output)
    return int(counts[-1]) if counts else None


@dataclass
class BuildConfig:
    project_dir: Path
    cli_vars: str | None
    target_path: Path | None = None
    log_path: Path | None = None
    verbose: bool = False
    subprocess: bool = False

    def dbt_args(self) -> list[str]:
        # dbt's unit tests check the models' SQL on fixed inputs, which no delivery changes:
        # they belong to CI, not to every cycle of a live store.
        args = [
            "build",
            "--project-dir",
            str(self.project_dir),
            "--exclude-resource-type",
            "unit_test",
        ]
        if self.cli_vars:
            args += ["--vars", self.cli_vars]
        if self.target_path:
            args += ["--target-path", str(self.target_path)]
        args += ["--log-path", str(self.resolved_log_path)]
        if not os.environ.get("DBT_PROFILES_DIR"):
            args += ["--profiles-dir", str(self.project_dir)]
        if not self.verbose:
            args += ["--log-level", "none"]
        return [*args, "--log-level-file", "debug"]

    @property
    def resolved_log_path(self) -> Path:
        return self.log_path or self.project_dir / "logs"

    @property
    def resolved_target_path(self) -> Path:
        return self.target_path or self.project_dir / "target"


_ERROR_HEADER = re.compile(r"^\w+ Error( in \w+ .*)?$")


def _first_line(text: str, width: int = 300) -> str:
    """The first line of an error that says something: dbt's "Runtime Error" header is
    joined to the line after it."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    line = lines[0] if lines else ""
    if len(lines) > 1 and _ERROR_HEADER.match(line):
        line = f"{line}: {lines[1]}"
    return line if len(line) <= width else line[: width - 1] + "…"


def _failure_from_results(results) -> tuple[str | None, str]:
    """The first failing node of a run and its message: (name, message)."""
    for result in results or []:
        status = str(getattr(result, "status", "")).lower()
        if status in ("error", "fail", "runtime error"):
            node = getattr(result, "node", None)
            name = getattr(node, "name", None) or getattr(node, "unique_id", None)
            return name, _first_line(getattr(result, "message", "") or "")
    return None, ""


def _close_dbt_duckdb() -> None:
    """Close the DuckDB database dbt-duckdb keeps open at class level after an invocation
    (it would otherwise hold the store's write lock until this process exits)."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:
        return
    with DuckDBConnectionManager._LOCK:
        environment = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
        if environment is not None:
            with contextlib.suppress(Exception):
                environment.close()


def warm_embedder(model_ref: str, out) -> None:
    """Load the embedder the in-process builds will use and run it once, so the first change
    after a start does not pay for loading it (a build with nothing to embed never loads
    it). Best effort: a build that needs the model loads it (and reports) anyway."""
    if not model_ref:
        return
    try:
        from rag_store.embedder_info import embedder_info
        from rag_store.embedding import load_model

        if embedder_info(model_ref).backend == "hash":
            return
        started = time.monotonic()
        load_model(model_ref, texts=1).encode(["rag-store watch warms its embedder"])
    except Exception as exc:  # best effort: a build that needs the model reports failures
        print(f"rag-store watch: embedder not warmed ({_first_line(str(exc))})", file=out)
        return
    print(
        f"rag-store watch: embedder {model_ref} ready in {time.monotonic() - started:.1f} s",
        file=out,
        flush=True,
    )


def build_in_process(config: BuildConfig) -> BuildOutcome:
    from dbt.cli.main import dbtRunner

    started = time.monotonic()
    tee = _Tee(sys.__stderr__ if config.verbose else None)

    def keep_macro_logs(event) -> None:
        # the macros' log() lines (the publish's count among them) go to dbt's logger
        if event.info.name == "JinjaLogInfo":
            tee.parts.append(event.info.msg + "\n")

    try:
        with contextlib.redirect_stderr(tee):
            result = dbtRunner(callbacks=[keep_macro_logs]).invoke(config.dbt_args())
    finally:
        _close_dbt_duckdb()
    output = tee.getvalue()
    outcome = BuildOutcome(
        ok=bool(result.success),
        seconds=time.monotonic() - started,
        chunks_embedded=chunks_embedded(output),
        log_path=str(config.resolved_log_path / "dbt.log"),
        output=output,
    )
    if not outcome.ok:
        results = getattr(result.result, "results", None)
        outcome.failed_node, outcome.message = _failure_from_results(results)
        if result.exception is not None and not outcome.message:
            outcome.message = _first_line(str(result.exception))
    return outcome


def build_subprocess(config: BuildConfig) -> BuildOutcome:
    dbt = Path(sys.executable).parent / "dbt"
    started = time.monotonic()
    completed = subprocess.run(
        [str(dbt if dbt.exists() else "dbt"), *config.dbt_args()],
        cwd=config.project_dir,
        capture_output=True,
        text=True,
    )
    output = completed.stdout + completed.stderr
    if config.verbose:
        sys.stderr.write(output)
    outcome = BuildOutcome(
        ok=completed.returncode == 0,
        seconds=time.monotonic() - started,
        chunks_embedded=chunks_embedded(output),
        log_path=str(config.resolved_log_path / "dbt.log"),
        output=output,
    )
    if not outcome.ok:
        outcome.failed_node, outcome.message = _failure_from_run_results(
            config.resolved_target_path / "run_results.json", started
        )
        if not outcome.message:
            errors = [line for line in output.splitlines() if "error" in line.lower()]
            outcome.message = _first_line(errors[-1] if errors else output[-300:])
    return outcome


def _failure_from_run_results(path: Path, started: float) -> tuple[str | None, str]:
    try:
        if path.stat().st_mtime < time.time() - (time.monotonic() - started):
            return None, ""  # an older run's results
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, ""
    for result in data.get("results", []):
        if result.get("status") in ("error", "fail", "runtime error"):
            name = result.get("unique_id", "").split(".")[-1] or None
            return name, _first_line(result.get("message") or "")
    return None, ""


# ---------------------------------------------------------------- the store, read briefly


def document_states(database: Path) -> dict[str, tuple] | None:
    """doc_id -> (content_hash, is_deleted) from int_documents__latest, read-only and
    closed at once; None if the table cannot be read (first build, a writer holds it)."""
    if not database.exists():
        return None
    import duckdb

    try:
        with duckdb.connect(str(database), read_only=True) as conn:
            rows = conn.execute(
                "select doc_id, content_hash, is_deleted from main.int_documents__latest"
            ).fetchall()
    except duckdb.Error:
        return None
    return {row[0]: (row[1], bool(row[2])) for row in rows}


def documents_changed(before: dict | None, after: dict | None) -> int | None:
    """Documents new, changed, deleted or restored between two states (live ones only when
    there was no state before)."""
    if after is None:
        return None
    if before is None:
        return sum(1 for _, deleted in after.values() if not deleted)
    return sum(1 for doc_id, state in after.items() if before.get(doc_id) != state)


# ---------------------------------------------------------------- records


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


@dataclass
class CycleRecord:
    started_at: str
    finished_at: str
    status: str  # ok | failed
    trigger: str  # start | change | relation_interval | retry | once
    documents_changed: int | None
    chunks_embedded: int | None
    build_seconds: float
    newest_delivered_at: str | None
    published_at: str | None
    lag_seconds: float | None
    files_changed: int
    failed_node: str | None = None
    message: str = ""
    log_path: str = ""
    pid: int = field(default_factory=os.getpid)

    def progress_line(self) -> str:
        def number(value) -> str:
            return "?" if value is None else str(value)

        stamp = self.finished_at[:19].replace("T", " ")
        if self.status != "ok":
            node = self.failed_node or "dbt"
            return (
                f"{stamp}  build FAILED at {node}: {self.message or 'see the log'}  "
                f"(log: {self.log_path}; retrying on the next change)"
            )
        lag = "-" if self.lag_seconds is None else f"{self.lag_seconds:.1f} s"
        return (
            f"{stamp}  build ok  documents changed {number(self.documents_changed)}, "
            f"chunks embedded {number(self.chunks_embedded)}, "
            f"build {self.build_seconds:.1f} s, lag {lag}"
        )


def append_jsonl(path: Path, record: Mapping) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_json_atomic(path: Path, data: Mapping) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(scratch, path)


def read_history(path: Path) -> list[dict]:
    """The watch history's records (a torn last line from a killed writer is skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


class Heartbeat:
    """Rewrites the heartbeat file every `interval` seconds from a thread (builds included),
    and at once when the state changes."""

    def __init__(self, path: Path, interval: float):
        self.path, self.interval = path, interval
        self.state = "starting"
        self.building_since: str | None = None
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        with contextlib.suppress(OSError):
            write_json_atomic(
                self.path,
                {
                    "beat_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "state": self.state,
                    "building_since": self.building_since,
                    "poll_seconds": self.interval,
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "started_at": self.started_at,
                },
            )

    def set(self, state: str) -> None:
        self.state = state
        self.building_since = (
            datetime.now(UTC).isoformat(timespec="seconds") if state == "building" else None
        )
        self.beat()

    def start(self) -> None:
        def run() -> None:
            while not self._stop.wait(self.interval):
                self.beat()

        self.beat()
        self._thread = threading.Thread(target=run, name="rag-store-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.set("stopped")


# ---------------------------------------------------------------- file events


class EventWaker:
    """Sets `wake` when watchfiles reports any change under the sources' directories. Only a
    hint: the fingerprint decides. Without watchfiles (or for roots that do not exist yet)
    the poll alone finds changes."""

    def __init__(self, wake: threading.Event):
        self.wake = wake
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.roots: tuple = ()
        self.available = True
        try:
            import watchfiles  # noqa: F401
        except ImportError:
            self.available = False

    def follow(self, roots: list[tuple[Path, bool]]) -> None:
        """Watch the existing ones of `roots` (restarting if that set changed)."""
        existing = tuple(sorted({(str(p), r) for p, r in roots if p.is_dir()}))
        if not self.available or existing == self.roots:
            return
        self.close()
        self.roots = existing
        self._stop = threading.Event()
        for recursive in (False, True):
            paths = [path for path, deep in existing if deep is recursive]
            if paths:
                thread = threading.Thread(
                    target=self._run, args=(paths, recursive), daemon=True, name="rag-store-events"
                )
                thread.start()
                self._threads.append(thread)

    def _run(self, paths: list[str], recursive: bool) -> None:
        import watchfiles

        with contextlib.suppress(Exception):
            for _changes in watchfiles.watch(
                *paths,
                watch_filter=None,
                debounce=200,
                stop_event=self._stop,
                recursive=recursive,
                raise_interrupt=False,
                ignore_permission_denied=True,
            ):
                self.wake.set()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []
        self.roots = ()


# ---------------------------------------------------------------- the watcher


@dataclass
class WatchOptions:
    project_dir: Path
    database: Path
    cli_vars: str | None = None
    poll_seconds: float = DEFAULT_POLL_SECONDS
    debounce_seconds: float = DEFAULT_DEBOUNCE_SECONDS
    relation_interval_seconds: float = DEFAULT_RELATION_INTERVAL_SECONDS
    retry_seconds: float = DEFAULT_RETRY_SECONDS
    file_events: bool = True
    once: bool = False
    verbose: bool = False
    subprocess: bool = False
    target_path: Path | None = None
    log_path: Path | None = None


class Watcher:
    def __init__(
        self,
        options: WatchOptions,
        out=None,
        build: Callable[[BuildConfig], BuildOutcome] | None = None,
    ):
        self.options = options
        self.out = out or sys.stdout
        self.paths = watch_paths(options.database)
        dbt_vars = project_vars(options.project_dir, options.cli_vars)
        self.sources = sources_from_vars(dbt_vars, options.project_dir)
        from rag_store.snapshot import snapshot_paths

        self.snapshot = snapshot_paths(options.database, str(dbt_vars.get("snapshot_path") or ""))
        # A publish counts the documents it changed; without one the watcher compares the
        # documents' states before and after a build (a read of every document).
        # (true as the sql_bool macro reads a var: true, 1, yes, on)
        self.embedding_model = str(dbt_vars.get("embedding_model") or "")
        publish = str(dbt_vars.get("publish_snapshot", True)).lower()
        self.publishes = publish in ("true", "1", "yes", "on")
        self.config_key = config_key(self.sources, options.cli_vars)
        self.build_config = BuildConfig(
            options.project_dir,
            options.cli_vars,
            options.target_path,
            options.log_path,
            options.verbose,
            options.subprocess,
        )
        self._build = build or (build_subprocess if options.subprocess else build_in_process)
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.building = False
        self.signals = 0
        self.built: Fingerprint | None = None  # the fingerprint the store last built
        self.last_attempt: float = 0.0  # monotonic time the last build started
        self.retry_after: float | None = None  # monotonic time a failed build is retried
        self.retry_wait = options.retry_seconds
        self.failed_fingerprint: Fingerprint | None = None
        self.pending_since: float | None = None  # delivery time of a change not yet published
        self.heartbeat: Heartbeat | None = None  # kept by run_forever only
        self._load_state()

    # -- persisted state: the fingerprint of the last successful build

    def _load_state(self) -> None:
        try:
            data = json.loads(self.paths.state.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if data.get("config") == self.config_key:
            with contextlib.suppress(TypeError, ValueError):
                self.built = decode_fingerprint(data.get("fingerprint") or {})
                self.pending_since = data.get("pending_since")

    def _save_state(self) -> None:
        write_json_atomic(
            self.paths.state,
            {
                "config": self.config_key,
                "fingerprint": encode_fingerprint(self.built or {}),
                "pending_since": self.pending_since,
                "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )

    # -- signals

    def install_signal_handlers(self) -> None:
        def handle(signum, _frame) -> None:
            self.signals += 1
            if self.building and self.signals > 1:
                print(
                    "rag-store watch: stopping now, mid-build (the store is crash-safe: the "
                    "next build resumes)",
                    file=sys.__stderr__,
                    flush=True,
                )
                os._exit(128 + signum)
            if self.building:
                print(
                    "rag-store watch: stopping after this build (signal again to stop now)",
                    file=sys.__stderr__,
                    flush=True,
                )
            self.stop.set()
            self.wake.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    # -- one cycle

    def relation_due(self) -> bool:
        return self.sources.relation_polled and (
            self.last_attempt == 0.0
            or time.monotonic() - self.last_attempt >= self.options.relation_interval_seconds
        )

    def _wait_still(self, current: Fingerprint) -> Fingerprint:
        """Debounce: return once the fingerprint has not changed for debounce seconds (or
        after MAX_DEBOUNCE_WAIT_SECONDS of continuous change)."""
        deadline = time.monotonic() + MAX_DEBOUNCE_WAIT_SECONDS
        while self.options.debounce_seconds > 0 and time.monotonic() < deadline:
            if self.stop.wait(self.options.debounce_seconds):
                break
            latest = fingerprint(self.sources)
            if not diff(current, latest):
                return latest
            current = latest
        return current

    def cycle(self, trigger: str, current: Fingerprint, noticed_at: float) -> CycleRecord:
        change = diff(self.built or {}, current)
        delivered = newest_delivery(current, change, noticed_at) if self.built is not None else None
        if delivered is not None:
            self.pending_since = (
                delivered if self.pending_since is None else max(self.pending_since, delivered)
            )
        started = time.time()
        self.last_attempt = time.monotonic()
        before = None if self.publishes else document_states(self.options.database)
        self.building = True
        self.heartbeat_state("building")
        try:
            outcome = self._build(self.build_config)
        finally:
            self.building = False
        finished = time.time()
        published = None
        changed = None
        if outcome.ok:
            changed = published_documents(outcome.output)
            if not self.publishes:
                changed = documents_changed(before, document_states(self.options.database))
            try:
                snapshot_mtime = self.snapshot.snapshot.stat().st_mtime
            except OSError:
                snapshot_mtime = None
            published = (
                snapshot_mtime if snapshot_mtime and snapshot_mtime >= started - 1 else finished
            )
        newest = self.pending_since
        record = CycleRecord(
            started_at=_iso(started),
            finished_at=_iso(finished),
            status="ok" if outcome.ok else "failed",
            trigger=trigger,
            documents_changed=changed,
            chunks_embedded=outcome.chunks_embedded,
            build_seconds=round(outcome.seconds, 3),
            newest_delivered_at=_iso(newest),
            published_at=_iso(published),
            lag_seconds=round(max(0.0, published - newest), 3)
            if published is not None and newest is not None
            else None,
            files_changed=change.count,
            failed_node=outcome.failed_node,
            message=outcome.message,
            log_path=outcome.log_path,
        )
        if outcome.ok:
            self.built = current
            self.pending_since = None
            self.retry_after = None
            self.retry_wait = self.options.retry_seconds
            self.failed_fingerprint = None
        else:
            self.failed_fingerprint = current
            self.retry_after = time.monotonic() + self.retry_wait
            self.retry_wait = min(self.retry_wait * 2, MAX_RETRY_SECONDS)
        with contextlib.suppress(OSError):
            self._save_state()
        append_jsonl(self.paths.history, asdict(record))
        print(record.progress_line(), file=self.out, flush=True)
        self.heartbeat_state("idle")
        return record

    def heartbeat_state(self, state: str) -> None:
        if self.heartbeat is not None:
            self.heartbeat.set(state)

    def due(self, current: Fingerprint) -> str | None:
        """Why a build is due now, or None."""
        if self.failed_fingerprint is not None:
            if diff(self.failed_fingerprint, current):
                return "change"
            if self.retry_after is not None and time.monotonic() >= self.retry_after:
                return "retry"
            return None
        if self.built is None or diff(self.built, current):
            return "change"
        if self.relation_due():
            return "relation_interval"
        return None

    # -- the loops

    def run_once(self) -> int:
        """One cycle if anything changed since the last successful build (or the relation
        interval passed); 0 if it built or had nothing to do, 1 if the build failed."""
        with self._locked():
            current = fingerprint(self.sources)
            if self.sources.relation_polled:
                self.last_attempt = self._last_started_monotonic()
            trigger = self.due(current)
            if trigger is None:
                return 0
            record = self.cycle("once", self._wait_still(current), time.time())
            return 0 if record.status == "ok" else 1

    def _last_started_monotonic(self) -> float:
        """The last cycle's start on the monotonic clock (0.0: never), from the history."""
        for record in reversed(read_history(self.paths.history)):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                started = datetime.fromisoformat(record["started_at"]).timestamp()
                return max(1e-9, time.monotonic() - (time.time() - started))
        return 0.0

    def run_forever(self) -> int:
        with self._locked():
            events = EventWaker(self.wake) if self.options.file_events else None
            self.heartbeat = Heartbeat(self.paths.heartbeat, self.options.poll_seconds)
            self.heartbeat.start()
            mode = "file events + polling" if events is not None and events.available else "polling"
            print(
                f"rag-store watch: {self.sources.describe()}; {mode} every "
                f"{self.options.poll_seconds:g} s; store {self.options.database}",
                file=self.out,
                flush=True,
            )
            try:
                # Catch up with whatever was delivered while no watcher ran.
                if not self.options.subprocess:
                    warm_embedder(self.embedding_model, self.out)
                current = fingerprint(self.sources)
                self.cycle("start", current, time.time())
                while not self.stop.is_set():
                    if events is not None:
                        events.follow(self.sources.roots())
                    self.wake.wait(self.options.poll_seconds)
                    self.wake.clear()
                    if self.stop.is_set():
                        break
                    current = fingerprint(self.sources)
                    trigger = self.due(current)
                    if trigger is None:
                        continue
                    noticed = time.time()
                    if trigger in ("change",):
                        current = self._wait_still(current)
                        if self.stop.is_set():
                            break
                    self.cycle(trigger, current, noticed)
            finally:
                if events is not None:
                    events.close()
                self.heartbeat.stop()
        return 0

    @contextlib.contextmanager
    def _locked(self):
        """One watcher per store: an exclusive lock on store_watch.lock for the lifetime."""
        self.paths.lock.parent.mkdir(parents=True, exist_ok=True)
        handle = self.paths.lock.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise WatchError(
                f"{owner} is already watching {self.options.database}; stop it first "
                "(one watcher per store)"
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"rag-store watch (pid {os.getpid()})")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


def run(options: WatchOptions) -> int:
    """`rag-store watch`: resolve paths, take the watcher lock, loop (or run once)."""
    project_dir = options.project_dir
    if not (project_dir / "dbt_project.yml").is_file():
        raise WatchError(
            f"{project_dir} has no dbt_project.yml; pass --project-dir of the dbt project"
        )
    if options.poll_seconds <= 0:
        raise WatchError("--poll-seconds must be above 0")
    os.environ["RAG_STORE_DB"] = str(options.database)
    # Relative vars (document_feed, document_dir, Parquet globs) resolve where dbt runs.
    os.chdir(project_dir)
    watcher = Watcher(options)
    if options.once:
        return watcher.run_once()
    watcher.install_signal_handlers()
    return watcher.run_forever()
