"""`rag-store serve`: retrieval over HTTP from the published snapshot, at application latency.

One process keeps the store's embedder loaded and the snapshot open read-only. Searches give
exactly what the CLI's search table macros give (`rag_store.search`): vector rankings come
from an exact in-memory index of the snapshot (`rag_store.vector_index`, same chunks, order
and scores as `search_vector`) and keyword rankings, hybrid's half included, from an
in-memory copy of its BM25 index (`rag_store.keyword_memory`, same chunks and order as
`search_keyword`); RAG_STORE_SERVE_INDEX=sql turns both off. Everything else comes from the
macros, with request data bound as parameters, never spliced into SQL.

- **Publishes** are picked up without a restart: a watcher notices the snapshot file has been
  replaced (publishing swaps a new file in by rename, so its inode changes), opens and warms
  the new file, then swaps it in. Requests already running finish on the generation they
  started on; it is closed when the last of them ends.
- **Concurrency**: questions that arrive while the model is busy are embedded together in
  one forward pass (micro-batching) and, with the in-memory index, ranked together by one
  matrix product on the embedder's thread; SQL searches run on a small thread pool, each
  thread with its own DuckDB cursor of the current generation.
- **Safety**: binds 127.0.0.1 unless told otherwise; an optional API key (RAG_STORE_API_KEY)
  guards every data endpoint; request sizes, question length and `k` are bounded; bad input
  is a 4xx with a JSON error, and nothing answers with a stack trace.
- **Access control**: principals come from the X-Rag-Principals header, honoured only on a
  server with an API key; they are handed to the search layer, which applies them to a store
  that restricts documents (see `rag_store.search.AccessControl`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path

import duckdb

from rag_store import alerts, search
from rag_store.duckdb_ext import extension_path
from rag_store.embedder_info import embedder_info
from rag_store.keyword_memory import KeywordIndex
from rag_store.vector_index import HYBRID_DEPTH, IndexUnavailable, VectorIndex, fuse_hybrid

log = logging.getLogger("rag_store.server")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
API_KEY_ENV = "RAG_STORE_API_KEY"
PRINCIPALS_HEADER = "X-Rag-Principals"
HISTORY_ROWS = 500
# How vector searches are answered: "memory" (an exact in-memory index, see
# rag_store.vector_index), "sql" (the search_vector macro per question), or "auto": memory
# while the vectors fit in INDEX_AUTO_BYTES, else sql.
INDEX_ENV = "RAG_STORE_SERVE_INDEX"
INDEX_MODES = ("auto", "memory", "sql")
INDEX_AUTO_BYTES = 1 << 30
# The HTTP stack under uvicorn: "auto" takes httptools' parser and uvloop's event loop
# (dependencies of rag-store, C code: about half the per-request CPU of the pure-Python
# pair, docs/benchmarks.md) and falls back to h11 and asyncio where they are missing; "h11"
# forces the pure-Python pair.
HTTP_ENV = "RAG_STORE_SERVE_HTTP"
HTTP_STACKS = {"auto": {}, "h11": {"http": "h11", "loop": "asyncio"}}


def http_stack(mode: str) -> str:
    """The HTTP parser and event loop uvicorn runs on for RAG_STORE_SERVE_HTTP `mode`."""
    if mode == "h11":
        return "h11, asyncio"
    import importlib.util

    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"{parser}, {loop}"


class ServeError(RuntimeError):
    """The server cannot start (or cannot open a snapshot); the message says why."""


class ApiError(Exception):
    """A request that cannot be answered; becomes a JSON error with `status`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    max_k: int = 100
    max_question_chars: int = 2000
    max_body_bytes: int = 16_384
    max_pattern_chars: int = 512
    max_principals: int = 64
    max_principal_chars: int = 256


@dataclass
class ServeConfig:
    snapshot: Path
    model: str | None = None
    api_key: str | None = None
    limits: Limits = field(default_factory=Limits)
    poll_seconds: float = 0.5
    # Searches at once, each on one DuckDB thread: on a small machine, queries side by side
    # beat each query spreading over every core (docs/benchmarks.md).
    search_threads: int = 2
    duckdb_threads: int = 1
    # torch threads of the question embedder (None: one, which leaves the other core to
    # HTTP and search; docs/benchmarks.md).
    embed_threads: int | None = None
    max_batch: int = 32
    # How long the embedder waits for more questions once one has arrived (seconds).
    batch_wait: float = 0.0
    alert_history: Path | None = None
    index: str = field(default_factory=lambda: os.environ.get(INDEX_ENV) or "auto")
    http: str = field(default_factory=lambda: os.environ.get(HTTP_ENV) or "auto")

    def __post_init__(self):
        if self.index not in INDEX_MODES:
            raise ServeError(f"{INDEX_ENV} must be one of {', '.join(INDEX_MODES)}")
        if self.http not in HTTP_STACKS:
            raise ServeError(f"{HTTP_ENV} must be one of {', '.join(HTTP_STACKS)}")


# ------------------------------------------------------------------ opened snapshots


def file_stamp(path: Path) -> tuple | None:
    """What changes when a snapshot is published over `path` (a new file is renamed in)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _utc(value: datetime) -> datetime:
    """A timestamp of the store (naive ones are UTC) as an aware UTC datetime."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value):
    """A value of a store row as JSON: timestamps as ISO 8601 UTC text, no NaN."""
    if isinstance(value, datetime):
        return _utc(value).replace(tzinfo=None).isoformat() + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _rows(conn, sql: str, params=None) -> list[dict]:
    cursor = conn.execute(sql, params or {})
    columns = [column[0] for column in cursor.description]
    return [
        {name: _iso(value) for name, value in zip(columns, row, strict=True)}
        for row in cursor.fetchall()
    ]


def _has_table(conn, name: str) -> bool:
    (count,) = conn.execute(
        "select count(*) from duckdb_tables() where table_name = $name "
        "and schema_name = 'main' and database_name = current_database()",
        {"name": name},
    ).fetchone()
    return count > 0


class Store:
    """One published snapshot, opened read-only. Everything in it is immutable, so what
    /info and /health show of it is read once, here.

    The file is ATTACHed to a private in-memory database rather than opened by path:
    DuckDB reuses an open database for a path it already has open, which would hand back
    the replaced file instead of the newly published one."""

    def __init__(self, path: Path, duckdb_threads: int | None = None, index: str = "sql"):
        self.path = path
        self.stamp = file_stamp(path)
        if self.stamp is None:
            raise ServeError(f"no published snapshot at {path}; run `dbt build` first")
        self.conn = duckdb.connect(":memory:")
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self.refs = 0
        self.retired = False
        self.closed = False
        self.opened_at = datetime.now(UTC)
        try:
            if duckdb_threads:
                self.conn.execute(f"set threads = {int(duckdb_threads)}")
            self.conn.execute(f"load '{extension_path('fts')}'")
            quoted = str(path).replace("'", "''")
            self.conn.execute(f"attach '{quoted}' as snapshot (read_only)")
            self.conn.execute("use snapshot")
            self._describe()
            self.index, self.index_note = self._index(index)
            self.keywords, self.keyword_note = self._keywords()
        except (duckdb.Error, search.SearchError) as exc:
            self.conn.close()
            first = str(exc).splitlines()[0]
            raise ServeError(f"cannot serve {path}: {first}") from None
        except BaseException:
            self.conn.close()
            raise

    def _index(self, mode: str) -> tuple[VectorIndex | None, str]:
        """The in-memory index `mode` asks for, built now (before the store is swapped
        in), or None and why vector searches go through the SQL macro instead."""
        if mode == "sql":
            return None, "sql: the search_vector macro per question (configured)"
        size = self.chunks * self.dimension * 4
        if mode == "auto" and size > INDEX_AUTO_BYTES:
            return None, (
                f"sql: {size / 2**30:.1f} GiB of vectors is over the automatic limit of "
                f"{INDEX_AUTO_BYTES / 2**30:.0f} GiB (set {INDEX_ENV}=memory to load them)"
            )
        try:
            index = VectorIndex.build(self.conn, self.schema, self.access)
        except IndexUnavailable as exc:
            log.warning("rag-store serve: %s: no in-memory index: %s", self.path, exc)
            return None, f"sql: {exc}"
        return index, f"memory: {index.count} vectors, {index.nbytes / 2**20:.1f} MiB"

    def _keywords(self) -> tuple[KeywordIndex | None, str]:
        """The in-memory copy of the BM25 index, made with the vector index (keyword and
        hybrid searches then stay out of SQL), or None and why they use the macro."""
        if self.index is None:
            return None, "sql: the search_keyword macro (no in-memory vector index)"
        try:
            keywords = KeywordIndex.build(self.conn, self.schema, self.index)
        except IndexUnavailable as exc:
            log.warning("rag-store serve: %s: no in-memory keyword index: %s", self.path, exc)
            return None, f"sql: {exc}"
        return keywords, (
            f"memory: {keywords.size} postings of {len(keywords.postings)} terms, "
            f"{keywords.nbytes / 2**20:.1f} MiB"
        )

    def _describe(self) -> None:
        conn = self.conn
        if not _has_table(conn, "store_info"):
            raise ServeError(
                f"{self.path} is not a published snapshot (no store_info); serve the "
                "snapshot, not the main database, which `dbt build` must be able to lock"
            )
        self.schema = search.store_schema(conn)
        model_ids = search.store_model_ids(conn)
        if len(model_ids) != 1:
            raise ServeError(f"{self.path}: retrieval_store holds model_ids {model_ids}")
        (self.model_id,) = model_ids
        info = _rows(conn, "select * from store_info")[0]
        self.info = info
        self.model_reference = info.get("model_reference")
        self.dimension = int(info["dimension"])
        self.published_at = info.get("published_at")
        self.access = search.access_control(conn, self.schema)
        if self.access.restricted and not self.access.macros_take_principals:
            raise ServeError(
                f"{self.path}: retrieval_store has an {search.PRINCIPALS_COLUMN} column but "
                "its search macros take no principals; refusing to serve it unfiltered"
            )
        (self.chunks, self.documents) = conn.execute(
            "select count(*), count(distinct doc_id) from retrieval_store"
        ).fetchone()
        # Whether any document is readable by some principals only.
        self.restricted_documents = self.access.restricted and bool(
            conn.execute(
                f"select count(*) from retrieval_store where {search.PRINCIPALS_COLUMN} is not null"
            ).fetchone()[0]
        )
        self.health_current = None
        self.health_history: list[dict] = []
        if _has_table(conn, "pipeline_health"):
            history = _rows(
                conn,
                "select * from pipeline_health order by measured_at desc limit $n",
                {"n": HISTORY_ROWS},
            )
            self.health_history = list(reversed(history))
            self.health_current = history[0] if history else None
        self.newest_loaded_at = None
        if _has_table(conn, "documents"):
            (newest,) = conn.execute("select max(_loaded_at) from documents").fetchone()
            self.newest_loaded_at = newest

    def published_epoch(self) -> float | None:
        if not self.published_at:
            return None
        return _utc(datetime.fromisoformat(self.published_at.rstrip("Z"))).timestamp()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor on this snapshot (DuckDB cursors are not shared by threads)."""
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self.conn.cursor()
            cursor.execute("use snapshot")
            self._local.cursor = cursor
            with self._lock:
                self._cursors.append(cursor)
        return cursor

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            cursors, self._cursors = self._cursors, []
        for cursor in cursors:
            with contextlib.suppress(duckdb.Error):
                cursor.close()
        with contextlib.suppress(duckdb.Error):
            self.conn.close()


# ------------------------------------------------------------------ the embedder


class QuestionEmbedder:
    """Keeps one embedder loaded and embeds questions on its own thread. Questions that
    arrive while a forward pass runs wait for the next one and share it: under load the
    per-question cost falls to a fraction of a single encode."""

    def __init__(self, model_ref: str, max_batch: int = 32, on_batch=None, threads=None, wait=0.0):
        from rag_store.chunking import load_tokenizer
        from rag_store.embedding import embed_batch

        self.model_ref = model_ref
        self.info = embedder_info(model_ref)
        self.max_batch = max_batch
        self.wait = wait
        self._embed_batch = embed_batch
        self._on_batch = on_batch
        self._tokenizer = load_tokenizer(str(self.info.tokenizer_file))
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        # Load and warm the model before the first request: the first forward pass of a
        # shape is several times slower than the next.
        embed_batch(["warm up"], model_ref)
        if self.info.backend != "hash":
            from rag_store.embedding import load_model

            # One thread by default: on two cores a second one mostly waits for the core
            # the event loop and the searches run on (docs/benchmarks.md).
            load_model(model_ref).set_threads(int(threads or 1))
        embed_batch(["warm up the embedder"] * 2, model_ref)
        embed_batch(["warm up"], model_ref)
        self._thread = threading.Thread(target=self._run, name="embedder", daemon=True)
        self._thread.start()

    def tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    async def embed(self, text: str, job: tuple | None = None):
        """The question's vector; with `job` = (index, k, mask), its top-k in that index
        instead, ranked together with the other questions of its batch."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((text, loop, future, job))
        return await future

    def stop(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stop = False
            deadline = time.perf_counter() + self.wait
            while len(batch) < self.max_batch:
                try:
                    remaining = deadline - time.perf_counter()
                    more = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            started = time.perf_counter()
            try:
                vectors = self._embed_batch([item[0] for item in batch], self.model_ref)
                outcome = [(vector, None) for vector in vectors]
            except Exception as exc:  # handed to every waiting request
                outcome = [(None, exc)] * len(batch)
            if self._on_batch:
                self._on_batch(len(batch), time.perf_counter() - started)
            outcome = _rank_jobs(batch, outcome)
            for (_, loop, future, _), (value, error) in zip(batch, outcome, strict=True):
                loop.call_soon_threadsafe(_settle, future, value, error)
            if stop:
                return


def _rank_jobs(batch: list, outcome: list) -> list:
    """Replace the vector of every question that asked for an index search with its
    ranking: one matrix product per index for all of the batch's questions."""
    groups: dict[int, list[int]] = {}
    for number, item in enumerate(batch):
        if item[3] is not None and outcome[number][1] is None:
            groups.setdefault(id(item[3][0]), []).append(number)
    outcome = list(outcome)
    for members in groups.values():
        index = batch[members[0]][3][0]
        try:
            ranked = index.search(
                [outcome[n][0] for n in members],
                [batch[n][3][1] for n in members],
                [batch[n][3][2] for n in members],
            )
            for number, result in zip(members, ranked, strict=True):
                outcome[number] = (result, None)
        except Exception as exc:
            for number in members:
                outcome[number] = (None, exc)
    return outcome


def _settle(future: asyncio.Future, value, error) -> None:
    if future.done():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


def memory_keyword_search(store, question: str, k: int, filters, principals) -> list:
    """search_keyword's answer from the store's in-memory indexes (on a search thread: the
    question's terms and a filter combination not seen before are read through DuckDB)."""
    cursor = store.cursor()
    index, keywords = store.index, store.keywords
    known, mask = index.cached_mask(filters, principals)
    if not known:
        mask = index.mask(cursor, store.schema, filters, principals)
    ranked = keywords.search(
        keywords.terms(cursor, question), k, mask, keywords.readable(cursor, principals)
    )
    return index.hits(ranked)


# ------------------------------------------------------------------ generations


class Generation:
    """A snapshot and the embedder for its model: what one request runs against."""

    def __init__(self, store: Store, embedder: QuestionEmbedder):
        self.store = store
        self.embedder = embedder


def resolve_model(store: Store, explicit: str | None) -> str:
    """The embedder reference for `store`: `explicit` if given (refused when its model_id
    is not the store's), else the reference the store records it was built with."""
    reference = explicit or store.model_reference
    if not reference:
        raise ServeError(f"{store.path} does not record its embedder; pass --model")
    wanted = embedder_info(reference).model_id
    if wanted != store.model_id:
        raise ServeError(
            f"the store holds vectors of {store.model_id} but --model {reference} is "
            f"{wanted}; vectors of different models are not comparable"
        )
    return reference


def _mark_pandas_absent() -> None:
    """DuckDB's Python client tries `import pandas` on every query with parameters; when
    pandas is not installed each attempt walks sys.path again (~0.3 ms a query, a quarter of
    a search thread's time under load). Recording the absence once makes it fail at once."""
    import importlib.util
    import sys

    if "pandas" not in sys.modules and importlib.util.find_spec("pandas") is None:
        sys.modules["pandas"] = None


class Retrieval:
    """The served state: the current generation, swapped when a publish lands."""

    def __init__(self, config: ServeConfig, metrics: Metrics):
        _mark_pandas_absent()
        self.config = config
        self.metrics = metrics
        self._lock = threading.Lock()
        self._embedders: dict[str, QuestionEmbedder] = {}
        self.last_swap_error: str | None = None
        self._failed_stamp = None
        store = Store(config.snapshot, config.duckdb_threads, config.index)
        try:
            embedder = self._embedder_for(store)
            self._warm(store, embedder)
        except BaseException:
            store.close()
            raise
        self.current = Generation(store, embedder)
        self.pool = ThreadPoolExecutor(config.search_threads, thread_name_prefix="search")
        metrics.observe_store(self)

    def _embedder_for(self, store: Store) -> QuestionEmbedder:
        reference = resolve_model(store, self.config.model)
        key = embedder_info(reference).model_id
        if key not in self._embedders:
            self._embedders[key] = QuestionEmbedder(
                reference,
                self.config.max_batch,
                self.metrics.observe_batch,
                self.config.embed_threads,
                self.config.batch_wait,
            )
        return self._embedders[key]

    def _warm(self, store: Store, embedder: QuestionEmbedder) -> None:
        """Run each kind of search once, so the first real request finds the file's pages
        read and the full-text extension loaded."""
        vector = embedder._embed_batch(["warm up"], embedder.model_ref)[0]
        cursor = store.cursor()
        for mode in ("vector", "keyword"):
            search.call_search_macro(
                cursor,
                mode,
                1,
                query_text="warm up",
                query_vector=vector,
                model_id=store.model_id,
                schema=store.schema,
                access=store.access,
                principals=[],
            )
        if store.index is not None:
            store.index.search([vector], [1])
        if store.keywords is not None:
            memory_keyword_search(store, "warm up", 1, search.Filters(), [])

    # -- requests

    @contextlib.asynccontextmanager
    async def generation(self):
        with self._lock:
            generation = self.current
            generation.store.refs += 1
        try:
            yield generation
        finally:
            with self._lock:
                generation.store.refs -= 1
                done = generation.store.retired and generation.store.refs == 0
            if done:
                generation.store.close()

    async def run(self, function, *args):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, function, *args)

    # -- publishes

    def changed(self) -> bool:
        stamp = file_stamp(self.config.snapshot)
        return stamp is not None and stamp not in (self.current.store.stamp, self._failed_stamp)

    def reload(self) -> bool:
        """Open, check and warm the snapshot now at the path, then swap it in. On failure
        the current generation stays and the error is kept for /health."""
        started = time.perf_counter()
        stamp = file_stamp(self.config.snapshot)
        try:
            store = Store(self.config.snapshot, self.config.duckdb_threads, self.config.index)
        except ServeError as exc:
            return self._swap_failed(stamp, str(exc))
        try:
            embedder = self._embedder_for(store)
            self._warm(store, embedder)
        except Exception as exc:
            store.close()
            return self._swap_failed(stamp, f"cannot serve {store.path}: {exc}")
        with self._lock:
            old = self.current
            self.current = Generation(store, embedder)
            old.store.retired = True
            idle = old.store.refs == 0
        if idle:
            old.store.close()
        self.last_swap_error = None
        self._failed_stamp = None
        self.metrics.swaps.inc()
        self.metrics.swap_seconds.observe(time.perf_counter() - started)
        log.warning("rag-store serve: now serving the snapshot published %s", store.published_at)
        return True

    def _swap_failed(self, stamp, message: str) -> bool:
        self._failed_stamp = stamp
        self.last_swap_error = message
        self.metrics.swap_failures.inc()
        log.error("rag-store serve: %s; still serving the previous snapshot", message)
        return False

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_seconds)
            try:
                if self.changed():
                    await asyncio.to_thread(self.reload)
            except Exception:  # the watcher must outlive any one bad publish
                log.exception("rag-store serve: snapshot watcher")

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for embedder in self._embedders.values():
            embedder.stop()
        self.current.store.close()


# ------------------------------------------------------------------ metrics


class Metrics:
    """Prometheus metrics of one server (its own registry, so tests can build several)."""

    def __init__(self):
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            disable_created_metrics,
        )

        disable_created_metrics()  # no *_created series: they only double the output
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rag_store_http_requests",
            "HTTP requests answered, by endpoint and status code.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rag_store_http_request_duration_seconds",
            "Time to answer an HTTP request, by endpoint.",
            ["endpoint"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "rag_store_embed_batch_size",
            "Questions embedded per forward pass.",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.embed_seconds = Histogram(
            "rag_store_embed_batch_duration_seconds",
            "Time of one forward pass over a batch of questions.",
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
            registry=self.registry,
        )
        self.swaps = Counter(
            "rag_store_snapshot_swaps",
            "Published snapshots opened, warmed and swapped in.",
            registry=self.registry,
        )
        self.swap_failures = Counter(
            "rag_store_snapshot_swap_failures",
            "Published snapshots that could not be served (the previous one stayed).",
            registry=self.registry,
        )
        self.swap_seconds = Histogram(
            "rag_store_snapshot_swap_duration_seconds",
            "Time to open and warm a newly published snapshot.",
            registry=self.registry,
        )
        self._store_age = Gauge(
            "rag_store_snapshot_age_seconds",
            "Seconds since the served snapshot was published.",
            registry=self.registry,
        )
        self._store_chunks = Gauge(
            "rag_store_snapshot_chunks",
            "Chunks in the served snapshot.",
            registry=self.registry,
        )

    def observe_store(self, retrieval: Retrieval) -> None:
        def age() -> float:
            published = retrieval.current.store.published_epoch()
            return math.nan if published is None else time.time() - published

        self._store_age.set_function(age)
        self._store_chunks.set_function(lambda: retrieval.current.store.chunks)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.embed_seconds.observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# ------------------------------------------------------------------ request parameters


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "string", "integer", "timestamp" or "enum"
    description: str
    required: bool = False
    default: object = None
    choices: tuple[str, ...] = ()


_FILTER_DESCRIPTIONS = {
    "doc_id_like": "only doc_ids LIKE this pattern, e.g. `api/%`",
    "title_like": "only titles LIKE this pattern",
    "source_uri_like": "only source_uris LIKE this pattern",
    "updated_after": "only documents updated at or after this ISO 8601 time",
    "updated_before": "only documents updated at or before this ISO 8601 time",
    "metadata_contains": (
        'only documents whose metadata contains this JSON object, e.g. `{"team": "hr"}`'
    ),
}
# One parameter per field of search.Filters, so the API has every filter search has.
FILTER_PARAMS = tuple(
    Param(
        f.name,
        "timestamp" if f.name.startswith("updated_") else "string",
        _FILTER_DESCRIPTIONS.get(f.name, f.name),
        default=f.default,
    )
    for f in fields(search.Filters)
)
K_PARAM = Param("k", "integer", "number of results", default=10)
SEARCH_PARAMS = (
    Param("q", "string", "the question (text)", required=True),
    K_PARAM,
    Param("mode", "enum", "how to search", default="vector", choices=search.MODES),
    *FILTER_PARAMS,
)
SIMILAR_PARAMS = (
    Param("chunk_id", "string", "the chunk to find neighbours of", required=True),
    K_PARAM,
    *FILTER_PARAMS,
)
DOCUMENT_PARAMS = (Param("doc_id", "string", "the document", required=True),)


def parse_params(specs: tuple[Param, ...], given: Mapping, limits: Limits) -> dict:
    """Validate request parameters (query string or JSON body) against `specs`."""
    known = {spec.name: spec for spec in specs}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ApiError(400, f"unknown parameter {unknown[0]!r}; expected one of {sorted(known)}")
    values = {}
    for spec in specs:
        raw = given.get(spec.name)
        if raw is None or (isinstance(raw, str) and raw == "" and not spec.required):
            if spec.required:
                raise ApiError(400, f"parameter {spec.name!r} is required")
            values[spec.name] = spec.default
            continue
        values[spec.name] = _parse_value(spec, raw, limits)
    return values


def _parse_value(spec: Param, raw, limits: Limits):
    name = spec.name
    if spec.kind == "integer":
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ApiError(400, f"{name} must be an integer")
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(400, f"{name} must be an integer, got {str(raw)[:40]!r}") from None
        if not 1 <= value <= limits.max_k:
            raise ApiError(400, f"{name} must be between 1 and {limits.max_k}, got {value}")
        return value
    if name == "metadata_contains" and isinstance(raw, dict):  # a JSON body's object
        raw = json.dumps(raw)
    if not isinstance(raw, str):
        raise ApiError(400, f"{name} must be a string")
    if spec.kind == "enum":
        if raw not in spec.choices:
            raise ApiError(400, f"{name} must be one of {', '.join(spec.choices)}")
        return raw
    if spec.kind == "timestamp":
        return _parse_timestamp(name, raw)
    longest = limits.max_question_chars if name == "q" else limits.max_pattern_chars
    if len(raw) > longest:
        raise ApiError(400, f"{name} is {len(raw)} characters; the limit is {longest}")
    if spec.required and not raw.strip():
        raise ApiError(400, f"{name} is empty")
    return raw


def _parse_timestamp(name: str, raw: str) -> str:
    if raw in ("-infinity", "infinity"):
        return raw
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ApiError(400, f"{name} must be an ISO 8601 time, got {raw[:40]!r}") from None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat()


def filters_of(values: dict) -> search.Filters:
    try:
        return search.Filters(**{spec.name: values[spec.name] for spec in FILTER_PARAMS})
    except search.SearchError as exc:
        raise ApiError(400, str(exc)) from None


def query_params(request) -> dict:
    params = {}
    for name, value in request.query_params.multi_items():
        if name in params:
            raise ApiError(400, f"parameter {name!r} is given more than once")
        params[name] = value
    return params


async def json_body(request, limits: Limits) -> dict:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limits.max_body_bytes):
        raise ApiError(413, f"the request body is over {limits.max_body_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limits.max_body_bytes:
            raise ApiError(413, f"the request body is over {limits.max_body_bytes} bytes")
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "the request body is not JSON") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return payload


# ------------------------------------------------------------------ the application


def _hit(hit: search.Hit) -> dict:
    return {
        "rank": hit.rank,
        "chunk_id": hit.chunk_id,
        "doc_id": hit.doc_id,
        "score": hit.score,
        "title": hit.title,
        "heading_path": hit.heading_path,
        "chunk_text": hit.chunk_text,
        "source_uri": hit.source_uri,
        "page_start": hit.page_start,
        "page_end": hit.page_end,
        "page_kind": hit.page_kind,
        "metadata": hit.metadata,
    }


def _store_summary(store: Store) -> dict:
    return {"published_at": store.published_at, "model_id": store.model_id}


def read_last_alert(path: Path | None) -> dict | None:
    """The newest report `rag-store alerts` appended to its history file, if any."""
    if path is None or not path.exists():
        return None
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 262_144))
        tail = handle.read().decode("utf-8", errors="replace")
    for line in reversed(tail.splitlines()):
        try:
            report = json.loads(line)
        except ValueError:
            continue
        if isinstance(report, dict) and "status" in report:
            return report
    return None


class Api:
    """The endpoints. Every data endpoint passes through `_guard` (API key, principals,
    errors as JSON)."""

    def __init__(self, retrieval: Retrieval, metrics: Metrics, config: ServeConfig):
        self.retrieval = retrieval
        self.metrics = metrics
        self.config = config
        self.limits = config.limits

    # -- guards

    def _authorised(self, request) -> bool:
        key = self.config.api_key
        if not key:
            return True
        presented = request.headers.get("x-api-key") or ""
        authorization = request.headers.get("authorization") or ""
        if authorization.lower().startswith("bearer "):
            presented = authorization[7:].strip()
        return hmac.compare_digest(presented.encode("utf-8"), key.encode("utf-8"))

    def principals(self, request) -> list[str]:
        """The caller's principals (X-Rag-Principals: comma-separated); none given, no
        principal: the caller sees public documents only, never everything. Only a server
        with an API key accepts them: without one, any client could claim any."""
        header = request.headers.get(PRINCIPALS_HEADER)
        if header is None:
            return []
        if not self.config.api_key:
            raise ApiError(
                400,
                f"{PRINCIPALS_HEADER} is only accepted by a server with an API key "
                f"(set {API_KEY_ENV})",
            )
        principals = [part.strip() for part in header.split(",") if part.strip()]
        if len(principals) > self.limits.max_principals:
            raise ApiError(400, f"more than {self.limits.max_principals} principals")
        if any(len(p) > self.limits.max_principal_chars for p in principals):
            raise ApiError(400, f"a principal is over {self.limits.max_principal_chars} chars")
        return principals

    def guarded(self, handler):
        async def endpoint(request):
            from starlette.responses import JSONResponse

            try:
                if not self._authorised(request):
                    raise ApiError(401, "missing or wrong API key")
                return await handler(request)
            except ApiError as exc:
                return JSONResponse({"error": exc.message, "status": exc.status}, exc.status)
            except search.SearchError as exc:
                log.error("rag-store serve: %s", exc)
                return JSONResponse({"error": str(exc), "status": 503}, 503)
            except Exception:
                log.exception("rag-store serve: unexpected error")
                return JSONResponse({"error": "internal error", "status": 500}, 500)

        return endpoint

    # -- endpoints

    async def search_get(self, request):
        return await self._search(request, query_params(request))

    async def search_post(self, request):
        return await self._search(request, await json_body(request, self.limits))

    async def _search(self, request, given: Mapping):
        started = time.perf_counter()
        values = parse_params(SEARCH_PARAMS, given, self.limits)
        principals = self.principals(request)
        question, mode, k = values["q"], values["mode"], values["k"]
        filters = filters_of(values)
        async with self.retrieval.generation() as generation:
            store, embedder = generation.store, generation.embedder
            vector = None
            if mode == "keyword" and store.keywords is not None:
                hits = await self.retrieval.run(
                    memory_keyword_search, store, question, k, filters, principals
                )
                return self._answer(started, question, k, mode, filters, hits, store)
            if mode != "keyword":
                tokens = embedder.tokens(question)
                if tokens > embedder.info.window_tokens:
                    raise ApiError(
                        400,
                        f"the question is {tokens} tokens; the embedder reads at most "
                        f"{embedder.info.window_tokens}",
                    )
                if store.index is not None:
                    hits = await self._index_search(
                        store, embedder, question, mode, k, filters, principals
                    )
                    return self._answer(started, question, k, mode, filters, hits, store)
                vector = await embedder.embed(question)
            hits = await self.retrieval.run(
                lambda: search.call_search_macro(
                    store.cursor(),
                    mode,
                    k,
                    query_text=question,
                    query_vector=vector,
                    model_id=store.model_id,
                    filters=filters,
                    schema=store.schema,
                    access=store.access,
                    principals=principals,
                )
            )
        return self._answer(started, question, k, mode, filters, hits, store)

    def _answer(self, started, question, k, mode, filters, hits, store):
        from starlette.responses import JSONResponse

        return JSONResponse(
            {
                "query": {"q": question, "k": k, "mode": mode, "filters": filters.params()},
                "results": [_hit(hit) for hit in hits],
                "store": _store_summary(store),
                "took_ms": round((time.perf_counter() - started) * 1000, 3),
            }
        )

    async def _index_search(self, store, embedder, question, mode, k, filters, principals):
        """A vector or hybrid search with the vector ranking from the store's in-memory
        index (batched with the other questions embedded together); hybrid's keyword
        ranking comes from the in-memory keyword index (or its macro when the store has
        none), run meanwhile, and is fused as the macro does."""
        index = store.index
        keyword = None
        if mode == "hybrid" and store.keywords is not None:
            keyword = asyncio.ensure_future(
                self.retrieval.run(
                    memory_keyword_search, store, question, HYBRID_DEPTH, filters, principals
                )
            )
        elif mode == "hybrid":
            keyword = asyncio.ensure_future(
                self.retrieval.run(
                    lambda: search.call_search_macro(
                        store.cursor(),
                        "keyword",
                        HYBRID_DEPTH,
                        query_text=question,
                        filters=filters,
                        schema=store.schema,
                        access=store.access,
                        principals=principals,
                    )
                )
            )
        try:
            known, mask = index.cached_mask(filters, principals)
            if not known:
                mask = await self.retrieval.run(
                    lambda: index.mask(store.cursor(), store.schema, filters, principals)
                )
            depth = HYBRID_DEPTH if mode == "hybrid" else k
            ranked = await embedder.embed(question, (index, depth, mask))
            vector_hits = index.hits(ranked)
        except BaseException:
            if keyword is not None:
                keyword.cancel()
                with contextlib.suppress(BaseException):
                    await keyword
            raise
        if keyword is None:
            return vector_hits
        return fuse_hybrid(await keyword, vector_hits, k)

    async def similar(self, request):
        from starlette.responses import JSONResponse

        values = parse_params(SIMILAR_PARAMS, query_params(request), self.limits)
        principals = self.principals(request)
        chunk_id, k, filters = values["chunk_id"], values["k"], filters_of(values)
        doc_id = chunk_id.rpartition(":")[0]
        async with self.retrieval.generation() as generation:
            store = generation.store

            def run():
                cursor = store.cursor()
                # The origin must itself be visible to the caller.
                chunks = search.document_chunks(
                    cursor, doc_id, store.schema, store.access, principals
                )
                if not any(chunk["chunk_id"] == chunk_id for chunk in chunks):
                    return None
                return search.call_search_macro(
                    cursor,
                    "similar",
                    k,
                    chunk_id=chunk_id,
                    filters=filters,
                    schema=store.schema,
                    access=store.access,
                    principals=principals,
                )

            hits = await self.retrieval.run(run)
            summary = _store_summary(store)
        if hits is None:
            raise ApiError(404, f"no chunk {chunk_id!r}")
        return JSONResponse(
            {
                "query": {"chunk_id": chunk_id, "k": k, "filters": filters.params()},
                "results": [_hit(hit) for hit in hits],
                "store": summary,
            }
        )

    async def document(self, request):
        from starlette.responses import JSONResponse

        values = parse_params(DOCUMENT_PARAMS, query_params(request), self.limits)
        principals = self.principals(request)
        doc_id = values["doc_id"]
        async with self.retrieval.generation() as generation:
            store = generation.store
            chunks = await self.retrieval.run(
                lambda: search.document_chunks(
                    store.cursor(), doc_id, store.schema, store.access, principals
                )
            )
            summary = _store_summary(store)
        if not chunks:
            raise ApiError(404, f"no document {doc_id!r}")
        first = chunks[0]
        return JSONResponse(
            {
                "doc_id": doc_id,
                "title": first["title"],
                "source_uri": first["source_uri"],
                "updated_at": _iso(first["doc_updated_at"]),
                "metadata": first["metadata"],
                "chunks": [
                    {
                        "chunk_id": chunk["chunk_id"],
                        "chunk_index": chunk["chunk_index"],
                        "heading_path": chunk["heading_path"],
                        "chunk_text": chunk["chunk_text"],
                        "page_start": chunk["page_start"],
                        "page_end": chunk["page_end"],
                        "page_kind": chunk["page_kind"],
                    }
                    for chunk in chunks
                ],
                "store": summary,
            }
        )

    async def info(self, request):
        from starlette.responses import JSONResponse

        principals = self.principals(request)
        async with self.retrieval.generation() as generation:
            store, embedder = generation.store, generation.embedder
            chunks, documents = store.chunks, store.documents
            if store.restricted_documents:
                # What this caller may read, never how much it may not.
                chunks, documents = await self.retrieval.run(
                    lambda: search.readable_counts(
                        store.cursor(), store.schema, store.access, principals
                    )
                )
            body = {
                "snapshot": str(store.path),
                "model_id": store.model_id,
                "model_reference": store.model_reference,
                "embedder": embedder.model_ref,
                "dimension": store.dimension,
                "published_at": store.published_at,
                "changed_documents": store.info.get("changed_documents"),
                "served_since": store.opened_at.isoformat(timespec="seconds"),
                "access_control": store.restricted_documents,
                "vector_index": store.index_note,
                "keyword_index": store.keyword_note,
                "http": http_stack(self.config.http),
                "modes": list(search.MODES),
                "filters": [spec.name for spec in FILTER_PARAMS],
                "limits": {
                    "max_k": self.limits.max_k,
                    "max_question_chars": self.limits.max_question_chars,
                    "max_question_tokens": embedder.info.window_tokens,
                    "max_body_bytes": self.limits.max_body_bytes,
                },
            }
            body.update(chunks=chunks, documents=documents)
        return JSONResponse(body)

    async def health(self, request):
        from starlette.responses import JSONResponse

        async with self.retrieval.generation() as generation:
            store = generation.store
            now = time.time()
            published = store.published_epoch()
            report = await asyncio.to_thread(read_last_alert, self.config.alert_history)
            newest = store.newest_loaded_at
            freshness = None
            if newest is not None:
                newest_epoch = _utc(newest).timestamp()
                freshness = {
                    "newest_loaded_at": _iso(newest),
                    "hours_since_newest_loaded_at": round((now - newest_epoch) / 3600, 2),
                }
            alert_lines = []
            if report:
                for check in report.get("problems", []):
                    with contextlib.suppress(TypeError):
                        alert_lines.append(alerts.describe(alerts.Check(**check)))
            body = {
                # The verdict of the latest `rag-store alerts` run; "unknown" before any.
                "status": report["status"] if report else "unknown",
                "store": {
                    "readable": True,
                    "snapshot": str(store.path),
                    "published_at": store.published_at,
                    "age_seconds": None if published is None else round(now - published, 1),
                    "model_id": store.model_id,
                    "chunks": None if store.restricted_documents else store.chunks,
                    "last_swap_error": self.retrieval.last_swap_error,
                },
                "alerts": (
                    {
                        "status": report["status"],
                        "checked_at": report.get("checked_at"),
                        "problems": alert_lines,
                        "checks": len(report.get("checks", [])),
                        "history": str(self.config.alert_history),
                    }
                    if report
                    else None
                ),
                "freshness": freshness,
                "pipeline_health": store.health_current,
                "history": [
                    {
                        "measured_at": row.get("measured_at"),
                        "coverage": row.get("coverage"),
                        "p95_lag_seconds": row.get("p95_lag_seconds"),
                        "max_lag_seconds": row.get("max_lag_seconds"),
                        "live_documents": row.get("live_documents"),
                        "stored_chunks": row.get("stored_chunks"),
                    }
                    for row in store.health_history
                ],
            }
        return JSONResponse(body)

    async def metrics_endpoint(self, request):
        from starlette.responses import Response

        payload, content_type = self.metrics.exposition()
        return Response(payload, media_type=content_type)

    async def openapi(self, request):
        from starlette.responses import JSONResponse

        return JSONResponse(openapi_document(self.limits, bool(self.config.api_key)))


# ------------------------------------------------------------------ OpenAPI


def _schema(spec: Param, limits: Limits) -> dict:
    if spec.kind == "integer":
        schema = {"type": "integer", "minimum": 1, "maximum": limits.max_k}
    elif spec.kind == "enum":
        schema = {"type": "string", "enum": list(spec.choices)}
    elif spec.kind == "timestamp":
        schema = {"type": "string", "description": "ISO 8601, or -infinity / infinity"}
    else:
        longest = limits.max_question_chars if spec.name == "q" else limits.max_pattern_chars
        schema = {"type": "string", "maxLength": longest}
    if spec.default is not None:
        schema["default"] = spec.default
    return schema


def _parameters(specs, limits: Limits) -> list[dict]:
    return [
        {
            "name": spec.name,
            "in": "query",
            "required": spec.required,
            "description": spec.description,
            "schema": _schema(spec, limits),
        }
        for spec in specs
    ]


_PRINCIPALS = {
    "name": PRINCIPALS_HEADER,
    "in": "header",
    "required": False,
    "description": "comma-separated principals of the end user, set by the calling "
    "application; accepted only by a server with an API key",
    "schema": {"type": "string"},
}
_HIT = {
    "type": "object",
    "properties": {
        "rank": {"type": "integer"},
        "chunk_id": {"type": "string"},
        "doc_id": {"type": "string"},
        "score": {"type": "number"},
        "title": {"type": "string"},
        "heading_path": {"type": "string"},
        "chunk_text": {"type": "string"},
        "source_uri": {"type": "string", "nullable": True},
        "page_start": {"type": "integer", "nullable": True},
        "page_end": {"type": "integer", "nullable": True},
        "page_kind": {"type": "string", "nullable": True, "enum": ["page", "slide"]},
    },
}
_HITS = {
    "type": "object",
    "properties": {
        "query": {"type": "object"},
        "results": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}},
        "store": {"type": "object"},
        "took_ms": {"type": "number"},
    },
}


def _responses(ok: str, schema: dict | None = None) -> dict:
    content = {"application/json": {"schema": schema or {"type": "object"}}}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {
        "200": {"description": ok, "content": content},
        "400": {"description": "invalid parameters", "content": error},
        "401": {"description": "missing or wrong API key", "content": error},
    }


def openapi_document(limits: Limits, api_key: bool) -> dict:
    from rag_store import __version__

    search_get = {
        "summary": "Top-k chunks for a question",
        "parameters": [*_parameters(SEARCH_PARAMS, limits), _PRINCIPALS],
        "responses": _responses("ranked chunks", _HITS),
    }
    body_schema = {
        "type": "object",
        "required": ["q"],
        "properties": {spec.name: _schema(spec, limits) for spec in SEARCH_PARAMS},
    }
    search_post = {
        "summary": "Top-k chunks for a question (parameters as a JSON body)",
        "parameters": [_PRINCIPALS],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": body_schema}},
        },
        "responses": {
            **_responses("ranked chunks", _HITS),
            "413": {"description": f"body over {limits.max_body_bytes} bytes"},
        },
    }
    document = {
        "openapi": "3.0.3",
        "info": {"title": "rag-store", "version": __version__},
        "paths": {
            "/search": {"get": search_get, "post": search_post},
            "/similar": {
                "get": {
                    "summary": "Chunks most like an existing chunk",
                    "parameters": [*_parameters(SIMILAR_PARAMS, limits), _PRINCIPALS],
                    "responses": {
                        **_responses("ranked chunks", _HITS),
                        "404": {"description": "no such chunk"},
                    },
                }
            },
            "/document": {
                "get": {
                    "summary": "A document's chunks in order",
                    "parameters": [*_parameters(DOCUMENT_PARAMS, limits), _PRINCIPALS],
                    "responses": {
                        **_responses("the document"),
                        "404": {"description": "no such document"},
                    },
                }
            },
            "/info": {"get": {"summary": "The served store", "responses": _responses("info")}},
            "/health": {
                "get": {
                    "summary": "Pipeline health and the latest `rag-store alerts` verdict",
                    "responses": _responses("health (200 while the store is readable)"),
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text exposition format"}},
                }
            },
        },
        "components": {
            "schemas": {
                "Hit": _HIT,
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
                },
            }
        },
    }
    if api_key:
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        document["security"] = [{"bearer": []}, {"apiKey": []}]
    return document


# ------------------------------------------------------------------ assembly


def _static_dir() -> Path:
    return Path(str(resources.files("rag_store") / "static"))


class _MetricsMiddleware:
    """Counts and times every request, labelled by endpoint (not by raw path)."""

    ENDPOINTS = frozenset(
        {"/search", "/similar", "/document", "/info", "/health", "/metrics", "/openapi.json", "/"}
    )

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        endpoint = (
            path
            if path in self.ENDPOINTS
            else ("/static" if path.startswith("/static/") else "other")
        )
        status = {"code": 500}

        async def record(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, record)
        finally:
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
            self.metrics.requests.labels(endpoint, scope.get("method", ""), status["code"]).inc()


def create_app(retrieval: Retrieval, metrics: Metrics, config: ServeConfig):
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    api = Api(retrieval, metrics, config)
    static = _static_dir()

    async def page(request):
        return FileResponse(static / "index.html", media_type="text/html")

    async def http_error(request, exc):
        return JSONResponse({"error": exc.detail, "status": exc.status_code}, exc.status_code)

    async def server_error(request, exc):
        log.error("rag-store serve: unexpected error: %s", exc)
        return JSONResponse({"error": "internal error", "status": 500}, 500)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        watcher = asyncio.create_task(retrieval.watch())
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    guarded = api.guarded
    routes = [
        Route("/", page, methods=["GET"]),
        Route("/search", guarded(api.search_get), methods=["GET"]),
        Route("/search", guarded(api.search_post), methods=["POST"]),
        Route("/similar", guarded(api.similar), methods=["GET"]),
        Route("/document", guarded(api.document), methods=["GET"]),
        Route("/info", guarded(api.info), methods=["GET"]),
        Route("/health", guarded(api.health), methods=["GET"]),
        Route("/metrics", guarded(api.metrics_endpoint), methods=["GET"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
        Mount("/static", StaticFiles(directory=static), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(_MetricsMiddleware, metrics=metrics)],
        exception_handlers={HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
    )


def serve(config: ServeConfig, host: str, port: int, access_log: bool = False, out=None):
    """Open the store, load its embedder, then answer HTTP on host:port until stopped."""
    import socket

    import uvicorn

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    metrics = Metrics()
    retrieval = Retrieval(config, metrics)
    app = create_app(retrieval, metrics, config)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listening now, so connections made as soon as the line below is printed wait in
        # the backlog until uvicorn accepts them.
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        retrieval.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = sock.getsockname()[1]
    store = retrieval.current.store
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    print(
        f"rag-store serve: listening on http://{shown}:{bound} — {store.path} "
        f"({store.chunks} chunks, published {store.published_at}, "
        f"model {store.model_id}{', API key required' if config.api_key else ''})",
        file=out,
        flush=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=access_log,
            server_header=False,
            timeout_graceful_shutdown=5,
            **HTTP_STACKS[config.http],
        )
    )
    try:
        server.run(sockets=[sock])
    finally:
        retrieval.close()
