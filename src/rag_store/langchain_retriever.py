"""A LangChain retriever over `rag-store serve` (needs the `langchain` extra:
`pip install 'rag-store[langchain]'`).

    from rag_store.langchain_retriever import RagStoreRetriever

    retriever = RagStoreRetriever(base_url="http://127.0.0.1:8765", k=4, mode="hybrid")
    documents = retriever.invoke("how do I rotate an API key?")

Each Document's page_content is the chunk text; its metadata carries chunk_id, doc_id,
title, heading_path, source_uri, score and rank. `k`, `mode`, `filters` and `principals`
can also be given per call: `retriever.invoke(question, k=2)`.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import Field

from rag_store.client import RagStoreClient


class RagStoreRetriever(BaseRetriever):
    """Retrieves chunks from a rag-store server."""

    base_url: str = "http://127.0.0.1:8765"
    api_key: str | None = None
    k: int = 4
    mode: str = "vector"
    # Filters: doc_id_like, title_like, source_uri_like, updated_after/_before and
    # metadata_contains (a dict, or JSON text).
    filters: dict[str, str] = Field(default_factory=dict)
    # The end user's principals (sent behind the API key), for stores with access control.
    principals: list[str] | None = None
    timeout: float = 30.0

    def _client(self) -> RagStoreClient:
        return RagStoreClient(self.base_url, self.api_key, timeout=self.timeout)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        filters = {**self.filters, **kwargs.pop("filters", {})}
        hits = self._client().search(
            query,
            k=kwargs.pop("k", self.k),
            mode=kwargs.pop("mode", self.mode),
            principals=kwargs.pop("principals", self.principals),
            **filters,
        )
        return [
            Document(
                page_content=hit.chunk_text,
                id=hit.chunk_id,
                metadata={
                    "chunk_id": hit.chunk_id,
                    "doc_id": hit.doc_id,
                    "title": hit.title,
                    "heading_path": hit.heading_path,
                    "source_uri": hit.source_uri,
                    "pages": hit.pages,
                    "document_metadata": hit.metadata,
                    "score": hit.score,
                    "rank": hit.rank,
                },
            )
            for hit in hits
        ]
