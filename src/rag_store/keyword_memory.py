"""An in-memory copy of a snapshot's BM25 index, for `rag-store serve`.

`search_keyword` in sql/search.sql scores the postings of the store's keyword index
(sql/keyword_index.sql) per question in SQL, tens of milliseconds at 10k chunks, and
hybrid search waits for it. This index holds the same postings as arrays, next to the
server's in-memory vector index (rag_store.vector_index), and answers the same question in
about a millisecond: the same chunks in the same order, with the macro's scores.

How it stays the macro:

- **Terms** of a question come from the snapshot's own analyzer (its `tokenize` macro and
  the porter stemmer, one small query), so a term is exactly what the index holds.
- **Collection statistics** are those of what the caller may read, as the macro computes
  them: documents and their mean length over the index's `docs` rows less the store rows
  the caller may not read (`may_read`, evaluated by DuckDB), and each term's document
  frequency over the postings the caller may read.
- **Scores**: the macro's BM25 (k1 1.2, b 0.75, idf log10((N - df + 0.5) / (df + 0.5) + 1)),
  evaluated in double in the macro's order of operations. The one difference is the order
  in which a chunk's per-term parts are added: here by term, in the macro in whatever
  order its aggregate meets them, so scores agree to the last bits (~1e-15 relative), and
  chunks whose scores are equal by construction (the same terms, counts and length) tie
  here always and are ranked by chunk_id, the macro's rule.
- **Filters and access control** are not re-implemented: which rows a question may return
  is the vector index's mask, read through the same `filtered_store` macro.

A store without the incremental keyword index (published by an older rag-store) gets no
copy: `build` raises IndexUnavailable and the server keeps the SQL macro for it.
"""

from __future__ import annotations

import numpy as np

from rag_store import search
from rag_store.search_macros import StoreLayout
from rag_store.vector_index import IndexUnavailable, Ranked, RowSets, VectorIndex

# BM25's constants, as sql/search.sql's search_keyword has them.
K1 = 1.2
B = 0.75


class KeywordIndex:
    """The postings of one opened snapshot, by term: positions in the vector index (its
    chunk_id order) and term counts, plus each position's length in terms."""

    def __init__(
        self,
        vectors: VectorIndex,
        layout: StoreLayout,
        postings: dict[str, tuple[np.ndarray, np.ndarray, int]],
        lengths: np.ndarray,
        indexed_docs: int,
        indexed_terms: int,
    ):
        self.vectors = vectors
        self.layout = layout
        # term -> (positions, term counts, postings of chunks not in the store)
        self.postings = postings
        self.lengths = lengths
        self.indexed_docs = indexed_docs
        self.indexed_terms = indexed_terms
        self._readable = RowSets()

    @property
    def size(self) -> int:
        """Postings held (of chunks in the store)."""
        return sum(len(positions) for positions, _, _ in self.postings.values())

    @property
    def nbytes(self) -> int:
        """Bytes of the posting and length arrays (the terms' Python strings come on top)."""
        arrays = sum(p.nbytes + t.nbytes for p, t, _ in self.postings.values())
        return arrays + self.lengths.nbytes

    # -- building

    @classmethod
    def build(cls, conn, schema: str, vectors: VectorIndex) -> KeywordIndex:
        """Read the keyword index of the store in `schema` onto `vectors`' positions."""
        layout = StoreLayout(schema=schema)
        keywords = _identifier(layout.keyword_schema)
        store = f"{_identifier(schema)}.retrieval_store"
        found = conn.execute(
            "select count(*) from duckdb_tables() where schema_name = $schema "
            "and table_name in ('docs', 'terms')",
            {"schema": layout.keyword_schema},
        ).fetchone()[0]
        if found != 2:
            raise IndexUnavailable("the snapshot has no incremental keyword index")
        indexed_docs, indexed_terms = conn.execute(
            f"select count(*), coalesce(sum(docs.len), 0) from {keywords}.docs as docs"
        ).fetchone()
        lengths = np.zeros(vectors.count, dtype=np.int64)
        indexed = conn.execute(
            f"""
            select store.rowid as row_id, docs.len
            from {keywords}.docs as docs
            inner join {store} as store on docs.chunk_id = store.chunk_id
            """
        ).fetchnumpy()
        lengths[vectors.positions(indexed["row_id"])] = np.asarray(indexed["len"], dtype=np.int64)
        if len(indexed["row_id"]) != vectors.count:
            raise IndexUnavailable("the keyword index does not cover every stored chunk")
        # Postings sorted by term; a chunk the store no longer holds keeps position -1 (it
        # still counts in its term's document frequency, as in the macro, but never scores).
        rows = conn.execute(
            f"""
            select terms.term, coalesce(store.rowid, -1) as row_id, terms.tf
            from {keywords}.terms as terms
            left join {store} as store on terms.chunk_id = store.chunk_id
            order by terms.term, terms.chunk_id
            """
        ).fetchnumpy()
        terms = np.asarray(rows["term"], dtype=object)
        row_ids = np.asarray(rows["row_id"], dtype=np.int64)
        tf = np.asarray(rows["tf"], dtype=np.int32)
        positions = np.full(len(terms), -1, dtype=np.int32)
        stored = row_ids >= 0
        positions[stored] = vectors.positions(row_ids[stored])
        postings: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
        if len(terms):
            starts = np.flatnonzero(np.r_[True, terms[1:] != terms[:-1]])
            ends = np.r_[starts[1:], len(terms)]
            for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
                span = positions[start:end]
                kept = span >= 0
                postings[terms[start]] = (
                    span[kept],
                    tf[start:end][kept],
                    int(end - start - np.count_nonzero(kept)),
                )
        return cls(vectors, layout, postings, lengths, int(indexed_docs), int(indexed_terms))

    # -- per question

    def terms(self, conn, question: str) -> list[str]:
        """The question's distinct terms, from the snapshot's analyzer, in a fixed order."""
        analyzer = _identifier(self.layout.analyzer_schema)
        rows = conn.execute(
            f"select distinct stem(unnest({analyzer}.tokenize($q)), 'porter') as term",
            {"q": question},
        ).fetchall()
        return sorted(term for (term,) in rows if term is not None)

    def readable(self, conn, principals=None) -> np.ndarray | None:
        """The stored rows a caller with `principals` may read (None: all of them), as
        `may_read` decides, kept per principal list."""
        access = self.vectors.access
        if not access.restricted:
            return None
        names = search.principal_list(principals)
        key = None if names is None else tuple(names)
        known, found = self._readable.get(key)
        if known:
            return found
        _, params = access.arguments(principals)
        schema = _identifier(self.layout.schema)
        rows = conn.execute(
            f"""
            select store.rowid
            from {schema}.retrieval_store as store
            where {schema}.may_read(store.allowed_principals, $principals)
            """,
            params,
        ).fetchnumpy()["rowid"]
        admitted = np.zeros(self.vectors.count, dtype=bool)
        admitted[self.vectors.positions(np.asarray(rows, dtype=np.int64))] = True
        result = None if admitted.all() else admitted
        self._readable.put(key, result)
        return result

    def search(
        self, terms: list[str], k: int, mask: np.ndarray | None, readable: np.ndarray | None
    ) -> Ranked:
        """The top `k` of `terms` among the rows `mask` admits (None: all), scored with the
        statistics of the rows `readable` admits (None: all)."""
        documents = self.indexed_docs
        total = self.indexed_terms
        if readable is not None:
            hidden = ~readable
            documents -= int(np.count_nonzero(hidden))
            total -= int(self.lengths[hidden].sum())
        empty = Ranked(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))
        if documents <= 0 or k <= 0:
            return empty
        average = total / documents
        parts_at, parts = [], []
        for term in terms:
            found = self.postings.get(term)
            if found is None:
                continue
            positions, tf, outside = found
            if readable is not None:
                keep = readable[positions]
                positions, tf = positions[keep], tf[keep]
            if not len(positions):
                continue
            df = len(positions) + outside
            idf = np.log10((documents - df + 0.5) / (df + 0.5) + 1)
            saturation = tf + K1 * ((1 - B) + (B * self.lengths[positions]) / average)
            parts.append(idf * tf * (K1 + 1) / saturation)
            parts_at.append(positions)
        if not parts:
            return empty
        # Per chunk, its parts added in term order (bincount adds in input order). Every
        # part is > 0 (idf > 0, tf >= 1), so a chunk scored is a chunk with a posting.
        scores = np.bincount(
            np.concatenate(parts_at), np.concatenate(parts), minlength=self.vectors.count
        )
        if mask is not None:
            scores[~mask] = 0.0
        chunks = np.flatnonzero(scores > 0)
        scores = scores[chunks]
        if len(chunks) > k:  # all rows at or above the k-th score: ties stay in
            kth = np.partition(scores, len(scores) - k)[len(scores) - k]
            kept = scores >= kth
            chunks, scores = chunks[kept], scores[kept]
        order = np.lexsort((chunks, -scores))[:k]
        return Ranked(chunks[order], scores[order])


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
