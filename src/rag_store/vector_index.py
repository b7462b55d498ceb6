"""An exact in-memory copy of a snapshot's vectors, for `rag-store serve`.

`search_vector` in sql/search.sql scans every stored vector per question (11-17 ms at 10k
chunks on two cores), so one question at a time through DuckDB cannot serve hundreds of
questions a second. This index answers the same question from memory, a whole micro-batch
of questions with one matrix product, and returns what the macro returns: the same chunks,
in the same order, with bit-identical scores.

How it stays identical to the macro:

- **Query normalisation** as the macro does it: squares in float32, summed in double in
  order, each float32 component divided (in double) by the square root, rounded to float32.
- **Scores**: the macro's `array_inner_product` of two FLOAT arrays is a float32 sum of
  float32 products, in order. A BLAS matrix product sums in another order (errors ~1e-7), so
  it only picks candidates: every row whose fast score is within a proven error margin of
  the k-th best, which always contains the exact top k. The candidates are then re-scored
  the macro's way and ranked by its rule: score descending, then chunk_id ascending (rows
  are held in chunk_id order, so a row's position breaks ties).
- **Rows**: every row of retrieval_store is held; which of them a question may see is
  never decided here.
- **Filters and access control** are not re-implemented: the set of rows a combination of
  filters and caller principals admits is read once through the same `filtered_store` macro
  and kept (a few dozen combinations, LRU), so a caller never gets a row the macros would
  not give it.

A store whose rows the rule above cannot rank (NULL or non-finite vectors, duplicate
chunk_ids) gets no index: `build` raises IndexUnavailable with the reason, and the server
keeps using the SQL macros for it.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from rag_store import search

# Most filter combinations whose admitted rows are kept.
MASK_CACHE_SIZE = 32
# search_hybrid's defaults (sql/search.sql): the depth of each ranking and the RRF constant.
HYBRID_DEPTH = 50
RRF_K = 60
_PAYLOAD = (
    "chunk_id",
    "doc_id",
    "title",
    "heading_path",
    "chunk_text",
    "source_uri",
    "page_start",
    "page_end",
    "page_kind",
    "metadata",
)


class IndexUnavailable(RuntimeError):
    """The store cannot be served from memory exactly; the message says why."""


@dataclass(frozen=True)
class Ranked:
    """Top rows of one question: positions in the index and their scores, best first."""

    positions: np.ndarray
    scores: np.ndarray


def unit_vector(vector) -> np.ndarray:
    """`vector` L2-normalised exactly as search_vector's `normalised` step does it."""
    raw = np.asarray(vector, dtype=np.float32)
    squares = (raw * raw).astype(np.float64)
    total = np.cumsum(squares)[-1] if squares.size else 0.0  # in order, in double
    if not total > 0 or not np.isfinite(total):
        raise ValueError("the query vector has no direction (zero or non-finite)")
    return (raw.astype(np.float64) / np.sqrt(total)).astype(np.float32)


def fast_scores(queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """queries @ vectors.T in float32, in any summation order (candidates only). With torch
    loaded (a server embedding with a real model) its matrix product is used: it runs on the
    embedder's torch threads, where numpy's BLAS starts its own per core, and threads that
    wait for a busy core cost milliseconds per product (docs/benchmarks.md)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        with torch.inference_mode():
            product = torch.from_numpy(queries) @ torch.from_numpy(vectors).T
        return product.numpy()
    return queries @ vectors.T


def ordered_inner_products(rows: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Row-wise inner products of two float32 [n, d] arrays, summed component by component
    in float32, the way DuckDB's array_inner_product sums two FLOAT arrays."""
    left = np.ascontiguousarray(rows.T)
    right = np.ascontiguousarray(queries.T)
    total = np.zeros(rows.shape[0], dtype=np.float32)
    for component in range(left.shape[0]):
        total += left[component] * right[component]
    return total


class RowSets:
    """Row masks by key (a filter combination, a principal list), the most recently used
    MASK_CACHE_SIZE kept; safe to share between search threads."""

    def __init__(self, size: int = MASK_CACHE_SIZE):
        self.size = size
        self._sets: OrderedDict[object, np.ndarray | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key) -> tuple[bool, np.ndarray | None]:
        """(known, mask) for `key`."""
        with self._lock:
            if key not in self._sets:
                return False, None
            self._sets.move_to_end(key)
            return True, self._sets[key]

    def put(self, key, mask: np.ndarray | None) -> None:
        with self._lock:
            self._sets[key] = mask
            while len(self._sets) > self.size:
                self._sets.popitem(last=False)


class VectorIndex:
    """The rows of one opened snapshot: unit float32 vectors in chunk_id order, the hit
    columns, and the DuckDB rowid of each row (to map filter results onto positions)."""

    def __init__(
        self,
        vectors: np.ndarray,
        payload: dict[str, list],
        rowids: np.ndarray,
        access: search.AccessControl | None = None,
    ):
        # Own, writable memory (copied only if `vectors` is a view of other buffers).
        self.vectors = np.require(vectors, np.float32, ["C_CONTIGUOUS", "WRITEABLE", "OWNDATA"])
        self.count, self.dimension = self.vectors.shape
        self.payload = payload
        self.rowids = rowids
        self.access = access or search.AccessControl()
        self._rowid_order = np.argsort(rowids, kind="stable")
        self._sorted_rowids = rowids[self._rowid_order]
        norms = np.linalg.norm(self.vectors.astype(np.float64), axis=1)
        largest = float(norms.max()) if self.count else 0.0
        # |fast score - ordered score| <= 2 * gamma * |row| * |query|: each of the two sums
        # is within gamma = d*u / (1 - d*u) (u = 2^-24) of the exact value. Candidates need
        # twice that: the k-th fast score can itself be off by the same amount.
        unit_roundoff = 2.0**-24
        gamma = self.dimension * unit_roundoff / (1 - self.dimension * unit_roundoff)
        self.margin = 4.0 * gamma * max(largest, 1.0) * 1.01 + 1e-12
        self._masks = RowSets()

    @property
    def nbytes(self) -> int:
        """Bytes of the vector matrix (the payload's Python strings come on top)."""
        return self.vectors.nbytes

    # -- building

    @classmethod
    def build(cls, conn, schema: str, access: search.AccessControl) -> VectorIndex:
        """Read every row of the store in `schema`; IndexUnavailable when the store cannot
        be ranked exactly from memory."""
        rows = f'from "{schema}".retrieval_store as store'
        metadata = "store.metadata" if search.has_store_column(conn, schema, "metadata") else "'{}'"
        # The chunk_id order from a narrow sort; the wide rows (vectors, texts) are then
        # streamed unsorted, batch by batch, into preallocated arrays at their positions, so
        # neither DuckDB nor Arrow ever holds a sorted copy of the whole store.
        order = conn.execute(f"select store.rowid as row_id {rows} order by store.chunk_id")
        rowids = np.asarray(order.fetchnumpy()["row_id"], dtype=np.int64)
        count = len(rowids)
        by_rowid = np.argsort(rowids, kind="stable")
        sorted_rowids = rowids[by_rowid]
        columns = [f"store.{c}" for c in _PAYLOAD if c != "metadata"]
        reader = conn.execute(
            f"select store.rowid as row_id, {', '.join(columns)}, "
            f"{metadata}::varchar as metadata, store.embedding {rows}"
        ).to_arrow_reader(50_000)
        dimension = reader.schema.field("embedding").type.list_size
        vectors = np.empty((count, dimension), dtype=np.float32)
        payload: dict[str, list] = {name: [None] * count for name in _PAYLOAD}
        filled = 0
        for batch in reader:
            embedding = batch.column("embedding")
            if embedding.null_count:
                raise IndexUnavailable("some stored vectors are NULL")
            size = batch.num_rows
            found = np.searchsorted(sorted_rowids, batch.column("row_id").to_numpy())
            positions = by_rowid[np.clip(found, 0, max(count - 1, 0))]
            flat = embedding.flatten().to_numpy(zero_copy_only=False)
            vectors[positions] = flat.reshape(size, dimension)
            places = positions.tolist()
            for name in _PAYLOAD:
                column = payload[name]
                for place, value in zip(places, batch.column(name).to_pylist(), strict=True):
                    column[place] = value
            filled += size
        if filled != count:
            raise IndexUnavailable("the store changed while it was read")
        if count and not np.isfinite(vectors).all():
            raise IndexUnavailable("some stored vectors are not finite")
        if len(set(payload["chunk_id"])) != count:
            raise IndexUnavailable("chunk_ids are not unique")
        return cls(vectors, payload, rowids, access)

    # -- filters

    def mask(
        self, conn, schema: str, filters: search.Filters, principals=None
    ) -> np.ndarray | None:
        """The rows `filters` admit for a caller with `principals` (None: all rows), read
        through `filtered_store` once per combination and kept. `conn` is only used on a
        cache miss."""
        key = _mask_key(filters, principals)
        cached, found = self._masks.get(key)
        if cached:
            return found
        access_args, access_params = self.access.arguments(principals)
        rows = conn.execute(
            f"""
            select store.rowid
            from "{schema}".retrieval_store as store
            where store.chunk_id in (
                select chunk_id from "{schema}".filtered_store(
                    $doc_id_like, $title_like, $source_uri_like, $updated_after,
                    $updated_before, metadata_contains := $metadata_contains{access_args}
                )
            )
            """,
            {**filters.params(), **access_params},
        ).fetchnumpy()["rowid"]
        admitted = np.zeros(self.count, dtype=bool)
        admitted[self.positions(rows, strict=False)] = True
        result = None if admitted.all() else admitted
        self._masks.put(key, result)
        return result

    def positions(self, rowids, strict: bool = True) -> np.ndarray:
        """Positions in the index of the rows with DuckDB `rowids`; a rowid the index does
        not hold raises IndexUnavailable, or is skipped when not `strict`."""
        rowids = np.asarray(rowids, dtype=np.int64)
        if not len(rowids):
            return np.zeros(0, dtype=np.int64)
        found = np.searchsorted(self._sorted_rowids, rowids)
        found = np.clip(found, 0, max(self.count - 1, 0))
        known = self._sorted_rowids[found] == rowids if self.count else found < 0
        if not known.all():
            if strict:
                raise IndexUnavailable("the store changed while it was read")
            found = found[known]
        return self._rowid_order[found]

    def cached_mask(self, filters: search.Filters, principals=None):
        """(known, mask) without touching the database."""
        return self._masks.get(_mask_key(filters, principals))

    # -- searching

    def search(self, vectors, ks, masks=None) -> list[Ranked]:
        """Top-k of each query vector (the caller's raw vectors; normalised here), with
        `masks[i]` (bool per row, or None) restricting question i."""
        units = np.stack([unit_vector(vector) for vector in vectors])
        masks = masks if masks is not None else [None] * len(units)
        fast = (
            fast_scores(units, self.vectors)
            if self.count
            else np.zeros((len(units), 0), np.float32)
        )
        candidates = []
        for row, (k, mask) in enumerate(zip(ks, masks, strict=True)):
            scores = fast[row]
            admitted = self.count if mask is None else int(np.count_nonzero(mask))
            wanted = min(int(k), admitted)
            if wanted <= 0:
                candidates.append(np.zeros(0, dtype=np.int64))
                continue
            if mask is not None:
                scores = np.where(mask, scores, -np.inf)
            if wanted < scores.size:
                top = np.argpartition(scores, scores.size - wanted)[scores.size - wanted :]
            else:
                top = np.arange(scores.size)
            kth = scores[top].min()
            chosen = np.flatnonzero(scores >= kth - self.margin)
            if mask is not None:
                chosen = chosen[mask[chosen]]
            candidates.append(chosen)
        sizes = [len(chosen) for chosen in candidates]
        if sum(sizes):
            positions = np.concatenate(candidates)
            owners = np.repeat(np.arange(len(units)), sizes)
            exact = ordered_inner_products(self.vectors[positions], units[owners])
        results = []
        start = 0
        for chosen, k in zip(candidates, ks, strict=True):
            stop = start + len(chosen)
            if not len(chosen):
                results.append(Ranked(chosen, np.zeros(0, dtype=np.float32)))
                continue
            scores = exact[start:stop]
            start = stop
            order = np.lexsort((chosen, -scores))[: int(k)]
            results.append(Ranked(chosen[order], scores[order]))
        return results

    def hits(self, ranked: Ranked) -> list[search.Hit]:
        columns = self.payload
        return [
            search.Hit(
                rank,
                float(score),
                *(columns[name][position] for name in _PAYLOAD[:-1]),
                metadata=search.metadata_object(columns["metadata"][position]),
            )
            for rank, (position, score) in enumerate(
                zip(ranked.positions.tolist(), ranked.scores.tolist(), strict=True), start=1
            )
        ]


def _mask_key(filters: search.Filters, principals) -> tuple:
    names = search.principal_list(principals)
    return (filters, None if names is None else tuple(names))


def fuse_hybrid(keyword: list[search.Hit], vector: list[search.Hit], k: int) -> list[search.Hit]:
    """search_hybrid's reciprocal-rank fusion of a keyword and a vector ranking (each its
    top HYBRID_DEPTH): score = Σ 1 / (RRF_K + rank), ranked by score, then chunk_id."""
    fused: dict[str, float] = {}
    rows: dict[str, search.Hit] = {}
    for ranking in (keyword, vector):
        for rank, hit in enumerate(ranking, start=1):
            fused[hit.chunk_id] = fused.get(hit.chunk_id, 0.0) + 1.0 / (RRF_K + rank)
            rows.setdefault(hit.chunk_id, hit)
    order = sorted(fused, key=lambda chunk_id: (-fused[chunk_id], chunk_id))[:k]
    return [
        dataclasses.replace(rows[chunk_id], rank=rank, score=fused[chunk_id])
        for rank, chunk_id in enumerate(order, start=1)
    ]
