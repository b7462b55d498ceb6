"""A plain Python client for `rag-store serve` (standard library only).

    from rag_store.client import RagStoreClient

    client = RagStoreClient("http://127.0.0.1:8765")
    for hit in client.search("how do I rotate an API key?", k=5, mode="hybrid"):
        print(hit.score, hit.doc_id, hit.heading_path)

One client may be shared by threads: every call opens its own HTTP connection.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from rag_store.search import Hit

API_KEY_ENV = "RAG_STORE_API_KEY"
PRINCIPALS_HEADER = "X-Rag-Principals"


class RagStoreError(RuntimeError):
    """The server answered with an error (`status` is its HTTP status, 0 if unreachable)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message


@dataclass
class RagStoreClient:
    base_url: str = "http://127.0.0.1:8765"
    # None: $RAG_STORE_API_KEY if set.
    api_key: str | None = None
    # The end user's principals, sent as X-Rag-Principals (needs an API key).
    principals: tuple[str, ...] | None = None
    timeout: float = 30.0

    def __post_init__(self):
        self.base_url = self.base_url.rstrip("/")
        if self.api_key is None:
            self.api_key = os.environ.get(API_KEY_ENV) or None

    # -- endpoints

    def search(
        self,
        question: str,
        k: int = 10,
        mode: str = "vector",
        principals=None,
        **filters: str,
    ) -> list[Hit]:
        """Top-k chunks; `filters` are doc_id_like, title_like, source_uri_like,
        updated_after, updated_before and metadata_contains (a dict, or JSON text)."""
        body = self.request(
            "POST",
            "/search",
            body={"q": question, "k": k, "mode": mode, **_filter_values(filters)},
            principals=principals,
        )
        return [_hit(row) for row in body["results"]]

    def similar(self, chunk_id: str, k: int = 10, principals=None, **filters: str) -> list[Hit]:
        body = self.request(
            "GET",
            "/similar",
            {"chunk_id": chunk_id, "k": k, **_filter_values(filters)},
            principals=principals,
        )
        return [_hit(row) for row in body["results"]]

    def document(self, doc_id: str, principals=None) -> dict:
        return self.request("GET", "/document", {"doc_id": doc_id}, principals=principals)

    def info(self) -> dict:
        return self.request("GET", "/info")

    def health(self) -> dict:
        return self.request("GET", "/health")

    # -- transport

    def request(
        self, method: str, path: str, params: dict | None = None, body=None, principals=None
    ) -> dict:
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        principals = principals if principals is not None else self.principals
        if principals is not None:
            headers[PRINCIPALS_HEADER] = ",".join(principals)
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise RagStoreError(exc.code, _error_message(exc)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RagStoreError(0, f"cannot reach {self.base_url}: {reason}") from None


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return json.loads(exc.read().decode("utf-8"))["error"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return exc.reason or "error"


def _filter_values(filters: dict) -> dict:
    """Filters as request parameters: a metadata_contains mapping as JSON text."""
    values = dict(filters)
    if isinstance(values.get("metadata_contains"), dict):
        values["metadata_contains"] = json.dumps(values["metadata_contains"])
    return values


def _hit(row: dict) -> Hit:
    return Hit(
        rank=row["rank"],
        score=row["score"],
        chunk_id=row["chunk_id"],
        doc_id=row["doc_id"],
        title=row["title"],
        heading_path=row["heading_path"],
        chunk_text=row["chunk_text"],
        source_uri=row.get("source_uri"),
        page_start=row.get("page_start"),
        page_end=row.get("page_end"),
        page_kind=row.get("page_kind"),
        metadata=row.get("metadata") or {},
    )
